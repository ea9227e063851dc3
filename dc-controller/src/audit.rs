//! The patching audit: asks each managed subcloud's controller which patches it has applied
//! or committed and compares them with the system controller's own, as dcmanager's patch
//! audit does. A subcloud that does not answer is offline with its sync status unknown;
//! one audit never waits on a subcloud longer than [`QUERY_TIMEOUT`].

use futures_util::StreamExt;

use crate::client::{PatchSet, QUERY_TIMEOUT, QueryError};
use crate::db::{AuditResult, Db, DbError};
use crate::model::{Access, Availability, SyncStatus};

/// Subclouds asked at once.
const CONCURRENT_QUERIES: usize = 64;

/// Whether a repository state counts for sync (what a subcloud must match: applied or
/// committed there too).
pub(crate) fn counts(state: &str) -> bool {
    matches!(state, "Applied" | "Committed")
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
