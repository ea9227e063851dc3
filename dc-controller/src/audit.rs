//! The patching audit: asks each managed subcloud's controller which patches it has applied
//! or committed and compares them with the system controller's own, as dcmanager's patch
//! audit does. A subcloud that does not answer is offline with its sync status unknown;
//! one audit never waits on a subcloud longer than [`QUERY_TIMEOUT`].

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;

use crate::db::{AuditResult, Db, DbError};
use crate::model::{Access, Availability, SyncStatus};

/// How long one subcloud may take to answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Subclouds asked at once.
const CONCURRENT_QUERIES: usize = 64;

/// The largest query answer read (thousands of patches are a few MiB).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Patches by id, with their repository state (`Available`, `Applied`, `Committed`).
pub type PatchSet = BTreeMap<String, String>;

/// Whether a repository state counts for sync.
fn counts(state: &str) -> bool {
    matches!(state, "Applied" | "Committed")
}

/// Why a controller's patches could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The TLS trust could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The request failed or timed out.
    #[error("{0}")]
    Http(String),
    /// The answer was not the patching API's.
    #[error("unexpected answer: {0}")]
    BadAnswer(String),
}

/// Every patch (id → repository state) of the controller at `access` (either of a pair's),
/// from its patching API's `query`.
pub async fn patches_of(access: &Access, name: &str) -> Result<PatchSet, QueryError> {
    crate::remote::Remote::new(access, name, QUERY_TIMEOUT)?
        .patches()
        .await
        .map_err(|e| match e {
            crate::remote::RemoteError::BadAnswer(m) => QueryError::BadAnswer(m),
            other => QueryError::Http(other.to_string()),
        })
}

/// An HTTP client for the controller at `access` (named `name` in errors): it trusts the
/// CA given for it, follows no redirect to elsewhere than a pair's active controller, and
/// gives up after `timeout` (none: uploads may take long).
pub fn client_for(
    access: &Access,
    name: &str,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, QueryError> {
    let mut builder = client_builder(access, name)?.redirect(reqwest::redirect::Policy::limited(3));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().map_err(|e| QueryError::Http(e.to_string()))
}

/// A client builder trusting the CA given for `access` (named `name` in errors).
pub fn client_builder(access: &Access, name: &str) -> Result<reqwest::ClientBuilder, QueryError> {
    let mut builder = reqwest::Client::builder().connect_timeout(QUERY_TIMEOUT);
    if let Some(pem) = &access.ca_pem {
        let trust = tls::Trust::CaPem {
            name: format!("{name}'s CA"),
            pem: pem.as_bytes().to_vec(),
        };
        builder = builder.tls_backend_preconfigured(trust.client_config()?);
    }
    Ok(builder)
}

/// An answer's body, refused beyond [`MAX_ANSWER_BYTES`] (whoever answers cannot make the
/// system controller exhaust its memory).
pub async fn read_bounded(
    mut response: reqwest::Response,
    url: &str,
) -> Result<Vec<u8>, QueryError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| QueryError::Http(format!("{url}: {}", chain(&e))))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(QueryError::BadAnswer(format!(
                "{url}: more than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes (reqwest's own message leaves out why a connection failed).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// How a subcloud's patches compare with the system controller's: in sync, or out of sync
/// with what it lacks, has beyond and has in another state.
pub fn compare(reference: &PatchSet, subcloud: &PatchSet) -> (SyncStatus, String) {
    let only = |set: &PatchSet| -> PatchSet {
        set.iter()
            .filter(|(_, state)| counts(state))
            .map(|(id, state)| (id.clone(), state.clone()))
            .collect()
    };
    let (reference, subcloud) = (&only(reference), &only(subcloud));
    let missing: Vec<&str> = reference
        .keys()
        .filter(|id| !subcloud.contains_key(*id))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = subcloud
        .keys()
        .filter(|id| !reference.contains_key(*id))
        .map(String::as_str)
        .collect();
    let differ: Vec<String> = reference
        .iter()
        .filter_map(|(id, state)| {
            let theirs = subcloud.get(id)?;
            (theirs != state).then(|| format!("{id} ({theirs}, {state} here)"))
        })
        .collect();
    if missing.is_empty() && extra.is_empty() && differ.is_empty() {
        return (SyncStatus::InSync, String::new());
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing: {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        parts.push(format!("extra: {}", extra.join(", ")));
    }
    if !differ.is_empty() {
        parts.push(format!("differ: {}", differ.join(", ")));
    }
    (SyncStatus::OutOfSync, parts.join("; "))
}

/// One audit of every managed subcloud against the system controller at `reference`.
/// Returns how many subclouds were audited.
pub async fn audit_once(db: &Db, reference: &Access) -> Result<usize, DbError> {
    let managed = db.managed().await?;
    audit_these(db, reference, managed).await
}

/// Audits one subcloud now (as it becomes managed), not at the next round.
pub async fn audit_subcloud(db: &Db, reference: &Access, id: i64) -> Result<usize, DbError> {
    let subcloud = db.subcloud(&id.to_string()).await?;
    if subcloud.management != crate::model::Management::Managed {
        return Ok(0);
    }
    let access = db.access(id).await?;
    audit_these(db, reference, vec![(subcloud, access)]).await
}

async fn audit_these(
    db: &Db,
    reference: &Access,
    managed: Vec<(crate::model::Subcloud, Access)>,
) -> Result<usize, DbError> {
    let ours = patches_of(reference, "the system controller").await;
    if let Err(e) = &ours {
        tracing::warn!("audit: the system controller's patches cannot be read: {e}");
    }
    let ours = ours.map_err(|e| e.to_string());
    // Only HTTP here: the results are written below, one by one, so no query waits on
    // a connection another (unpolled) query holds.
    let audits = futures_util::stream::iter(managed)
        .map(|(subcloud, access)| {
            let ours = &ours;
            async move {
                let result = match patches_of(&access, &subcloud.name).await {
                    Err(e) => AuditResult {
                        availability: Availability::Offline,
                        sync_status: SyncStatus::Unknown,
                        sync_detail: format!("offline: {e}"),
                    },
                    Ok(theirs) => match ours {
                        Err(e) => AuditResult {
                            availability: Availability::Online,
                            sync_status: SyncStatus::Unknown,
                            sync_detail: format!(
                                "the system controller's patches cannot be read: {e}"
                            ),
                        },
                        Ok(ours) => {
                            let (sync_status, sync_detail) = compare(ours, &theirs);
                            AuditResult {
                                availability: Availability::Online,
                                sync_status,
                                sync_detail,
                            }
                        }
                    },
                };
                (subcloud, result)
            }
        })
        .buffer_unordered(CONCURRENT_QUERIES);
    let results: Vec<_> = audits.collect().await;
    let mut audited = 0;
    for (subcloud, result) in results {
        if result.availability != subcloud.availability
            || result.sync_status != subcloud.sync_status
        {
            tracing::info!(
                "subcloud {}: {} {} {}",
                subcloud.name,
                result.availability,
                result.sync_status,
                result.sync_detail
            );
        }
        db.record_audit(subcloud.id, &result).await?;
        audited += 1;
    }
    Ok(audited)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, &str)]) -> PatchSet {
        items
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn sync_compares_applied_and_committed_patches_both_ways() {
        let ours = set(&[("P1", "Committed"), ("P2", "Applied"), ("P9", "Available")]);
        assert_eq!(
            compare(&ours, &ours.clone()),
            (SyncStatus::InSync, String::new())
        );
        let theirs = set(&[("P1", "Applied"), ("P3", "Applied")]);
        assert_eq!(
            compare(&ours, &theirs),
            (
                SyncStatus::OutOfSync,
                "missing: P2; extra: P3; differ: P1 (Applied, Committed here)".into()
            )
        );
    }
}
