//! The agent's link to the controller: requests through the failover client, retried while
//! the controller restarts or swacts; reports, order polls, and the repositories' files.

use std::path::Path;
use std::time::{Duration, Instant};

use host_state::protocol::{AgentOrder, Delivery, HostReport, ReportReply};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Agent, CREDENTIAL_FILE, PINNED_REPO_KEY, subfunctions};

/// The largest report reply or order read (both are a few hundred bytes).
const MAX_REPLY_BYTES: u64 = 1 << 20;
/// The most of an error answer's text read.
const MAX_ERROR_BYTES: u64 = 8 << 10;

/// How long an install keeps retrying a fetch that failed for a reason that may pass.
pub const FETCH_RETRY: Duration = Duration::from_secs(120);

/// A request to the controller that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// No controller served it (unreachable, standby, handing over).
    #[error(transparent)]
    Unreachable(#[from] failover::FailoverError),
    /// The controller answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The request's URL.
        url: String,
        /// The status.
        status: u16,
        /// The answer's text.
        body: String,
    },
    /// The report could not be made here (so none was sent).
    #[error("no report sent: {0}")]
    NotReported(String),
    /// The answer could not be read or understood.
    #[error("{what}: {reason}")]
    BadAnswer {
        /// What was asked for.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl ControllerError {
    /// Whether asking again later may succeed (a controller restarting or swacting).
    fn may_pass(&self) -> bool {
        match self {
            ControllerError::Unreachable(_) => true,
            ControllerError::Status { status, .. } => {
                // A server error, or every controller refusing as a standby.
                *status >= 500 || *status == 307
            }
            ControllerError::BadAnswer { .. } => false,
            // Asked again at the next heartbeat.
            ControllerError::NotReported(_) => true,
        }
    }
}

impl From<ControllerError> for Fetch {
    fn from(e: ControllerError) -> Fetch {
        if e.may_pass() {
            Fetch::Retry(e.to_string())
        } else {
            Fetch::Fail(e.to_string())
        }
    }
}

/// A failed fetch from the controller (or of what it sent).
pub(super) enum Fetch {
    /// It may succeed later (connection refused or cut, server error).
    Retry(String),
    /// It will not (refused, corrupt).
    Fail(String),
}

impl From<Fetch> for String {
    fn from(f: Fetch) -> String {
        match f {
            Fetch::Retry(m) | Fetch::Fail(m) => m,
        }
    }
}

impl Agent {
    /// Sends a request to the active controller (every agent request is idempotent, so one
    /// without an answer is sent again); an error status is an error.
    pub(super) async fn send(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ControllerError> {
        let credential = self.credential().await?;
        let response = self
            .controllers
            .send(failover::Resend::Always, |base| {
                build(&self.http, base).bearer_auth(&credential)
            })
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // Revoked (the host was dropped): enrol again at the next call.
            self.forget_credential().await;
        }
        Err(Self::failure(response).await)
    }

    /// An error status as an error, with the start of the answer's text.
    async fn failure(response: reqwest::Response) -> ControllerError {
        let status = response.status();
        let url = response.url().to_string();
        // An error's text is for a message: its first few KiB are enough.
        let body = read_bounded(response, MAX_ERROR_BYTES, "error")
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        ControllerError::Status {
            url,
            status: status.as_u16(),
            body: body.trim().to_owned(),
        }
    }

    /// This host's credential: the one kept in the state directory, or a new one got by
    /// enrolling with the agent token (once; the controller refuses a host enrolled already).
    async fn credential(&self) -> Result<String, ControllerError> {
        let mut cached = self.credential.lock().await;
        if let Some(credential) = cached.as_ref() {
            return Ok(credential.clone());
        }
        let file = self.config.state_dir.join(CREDENTIAL_FILE);
        let bad = |reason: String| ControllerError::BadAnswer {
            what: "enrolment".into(),
            reason,
        };
        // A credential is 64 hex digits; anything much larger is not one.
        let credential = match durable_fs::read_bounded(&file, 4096) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
                _ => {
                    return Err(bad(format!(
                        "{} is empty or not text: remove it to enrol again",
                        file.display()
                    )));
                }
            },
            Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
                let body = serde_json::json!({ "hostname": self.config.hostname }).to_string();
                let response = self
                    .controllers
                    .send(failover::Resend::Always, |base| {
                        self.http
                            .post(format!("{base}/agent/v1/enrol"))
                            .bearer_auth(&self.config.token)
                            .header("content-type", "application/json")
                            .body(body.clone())
                    })
                    .await?;
                if response.status() == reqwest::StatusCode::CONFLICT {
                    return Err(bad(format!(
                        "the controller has {0} enrolled, but this host's credential ({1}) is gone or was refused: an operator must run `sw-patch drop-host {0}` to let it enrol again",
                        self.config.hostname,
                        file.display()
                    )));
                }
                if !response.status().is_success() {
                    return Err(Self::failure(response).await);
                }
                let bytes = read_bounded(response, MAX_REPLY_BYTES, "enrolment")
                    .await
                    .map_err(|e| bad(e.into()))?;
                #[derive(Deserialize)]
                struct Enrolled {
                    credential: String,
                }
                let enrolled: Enrolled =
                    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                durable_fs::write_new(&file, enrolled.credential.as_bytes(), 0o600)
                    .map_err(|e| bad(e.to_string()))?;
                tracing::info!("enrolled with the controller as {}", self.config.hostname);
                enrolled.credential
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        *cached = Some(credential.clone());
        Ok(credential)
    }

    /// Drops a credential the controller no longer accepts.
    async fn forget_credential(&self) {
        let mut cached = self.credential.lock().await;
        if cached.take().is_some() {
            let _ = durable_fs::remove_file(&self.config.state_dir.join(CREDENTIAL_FILE));
            tracing::warn!("the controller refused this host's credential; enrolling again");
        }
    }

    /// Runs a fetch, retrying transient failures (a controller restarting or swacting) for
    /// up to [`FETCH_RETRY`].
    pub(super) async fn retrying<T, Fut>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, String>
    where
        Fut: std::future::Future<Output = Result<T, Fetch>>,
    {
        let deadline = Instant::now() + FETCH_RETRY;
        // A restarting controller is usually back within a fraction of a second: retry soon,
        // then back off to the heartbeat (at most 2 s).
        let mut delay = Duration::from_millis(100);
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(Fetch::Fail(message)) => return Err(message),
                Err(Fetch::Retry(message)) if Instant::now() >= deadline => return Err(message),
                Err(Fetch::Retry(message)) => {
                    tracing::warn!("{what}: {message}; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.heartbeat.min(Duration::from_secs(2)));
                }
            }
        }
    }

    /// Sends a report; returns the controller's reply.
    pub async fn report(&self, op_counter: u64) -> Result<ReportReply, ControllerError> {
        let result = self.send_report(op_counter).await;
        self.metrics.reported(result.is_ok());
        result
    }

    async fn send_report(&self, op_counter: u64) -> Result<ReportReply, ControllerError> {
        let workloads = match &self.config.workload_hook {
            None => Vec::new(),
            Some(hook) => {
                let mut last = self.workloads.lock().await;
                match crate::workloads::list(hook).await {
                    Ok(list) => *last = list,
                    Err(e) => tracing::warn!("{e}; reporting the last list"),
                }
                last.clone()
            }
        };
        // Not knowing what is installed is not "nothing installed": no report is sent (the
        // host shows offline until the database can be read again).
        let installed = self.installed().map_err(|e| {
            ControllerError::NotReported(format!("cannot list installed packages: {e}"))
        })?;
        let state = self.state.lock().await.clone();
        let report = HostReport {
            hostname: self.config.hostname.clone(),
            ip: self.config.ip.clone(),
            personality: self.config.personality,
            subfunctions: subfunctions(self.config.personality),
            sw_version: self.config.release.clone(),
            install_state: state.install_state,
            last_error: state.last_error.clone(),
            reboot_pending: state.reboot_pending,
            boot_id: state.boot_id.clone(),
            installed: installed.into_values().collect(),
            op_counter,
            install_done: state.install_done,
            instance: self.instance.clone(),
            workloads,
            workload_actions: self.config.workload_hook.is_some(),
            services_disabled: state.services_disabled,
            disk_free_bytes: disk_free_bytes(&self.config.state_dir),
            health: state.health.clone(),
        };
        let bad = |reason: String| ControllerError::BadAnswer {
            what: "report".into(),
            reason,
        };
        let body = serde_json::to_vec(&report).map_err(|e| bad(e.to_string()))?;
        let response = self
            .send(|http, base| {
                http.post(format!("{base}/agent/v1/report"))
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await?;
        let bytes = read_bounded(response, MAX_REPLY_BYTES, "report reply")
            .await
            .map_err(|e| bad(e.into()))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad reply: {e}")))
    }

    /// Waits for the next order, acknowledging the last delivery received. A delivery already
    /// received (handed over again because the acknowledgement was lost) is recorded as
    /// nothing to do; a new one is recorded before it is returned, with its install order
    /// number, so a crash from here on is reported as a failed install of it.
    pub(super) async fn poll(&self) -> Result<AgentOrder, ControllerError> {
        let wait = self.config.heartbeat.as_secs().max(1);
        let host = self.config.hostname.clone();
        let received = self.state.lock().await.received;
        let response = self
            .send(|http, base| {
                http.get(format!("{base}/agent/v1/orders"))
                    .query(&[
                        ("hostname", host.as_str()),
                        ("wait", &wait.to_string()),
                        ("received", &received.to_string()),
                    ])
                    .timeout(Duration::from_secs(wait + 10))
            })
            .await?;
        let bad = |reason: String| ControllerError::BadAnswer {
            what: "order".into(),
            reason,
        };
        let bytes = read_bounded(response, MAX_REPLY_BYTES, "order")
            .await
            .map_err(|e| bad(e.into()))?;
        let delivery: Delivery = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if delivery.order == AgentOrder::None {
            return Ok(AgentOrder::None);
        }
        let mut state = self.state.lock().await;
        if delivery.delivery <= state.received {
            tracing::info!("delivery {} already received", delivery.delivery);
            return Ok(AgentOrder::None);
        }
        state.received = delivery.delivery;
        if let AgentOrder::Install { seq, .. } = delivery.order {
            state.in_progress = seq;
        }
        self.save(&state);
        Ok(delivery.order)
    }

    /// The `area` index of this host's release, accepted only in an envelope signed by the
    /// pinned controller key, unexpired and not older than the last one accepted.
    pub(super) async fn fetch_index<T: for<'de> Deserialize<'de>>(
        &self,
        area: &str,
    ) -> Result<T, Fetch> {
        let release = self.config.release.clone();
        let what = format!("the {area} index");
        let response = self
            .send(|http, base| http.get(format!("{base}/agent/v1/index/{area}/{release}")))
            .await?;
        let signature = response
            .headers()
            .get(repo_sign::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_bounded(response, MAX_INDEX_BYTES, &what).await?;
        let verifier = self.repo_verifier().await?;
        let last = self.state.lock().await.index_serials.last(area, &release);
        let accepted = verifier
            .check(
                &bytes,
                signature.as_deref(),
                area,
                &release,
                repo_sign::now_ms(),
                last,
            )
            .map_err(|e| Fetch::Fail(format!("{what}: {e}")))?;
        let index = serde_json::from_str(accepted.index.get())
            .map_err(|e| Fetch::Fail(format!("{what}: {e}")))?;
        let mut state = self.state.lock().await;
        state.index_serials.accept(area, &release, accepted.serial);
        self.save(&state);
        Ok(index)
    }

    /// The verifier of repository indexes: the key given with `--repo-key`, else the one
    /// pinned in the state directory, else the controller's, fetched once over the verified
    /// channel and pinned from then on.
    async fn repo_verifier(&self) -> Result<repo_sign::Verifier, Fetch> {
        let mut pinned = self.repo_key.lock().await;
        if let Some(verifier) = pinned.as_ref() {
            return Ok(verifier.clone());
        }
        let file = self.config.state_dir.join(PINNED_REPO_KEY);
        let key = if file.exists() {
            repo_sign::PublicKey::load(&file).map_err(|e| Fetch::Fail(e.to_string()))?
        } else {
            let response = self
                .send(|http, base| http.get(format!("{base}/agent/v1/repo-key")))
                .await?;
            let pem = read_bounded(response, 64 << 10, "the repository key").await?;
            let key = repo_sign::PublicKey::from_pem(&String::from_utf8_lossy(&pem))
                .map_err(|e| Fetch::Fail(format!("the controller's repository key: {e}")))?;
            durable_fs::write(&file, key.to_pem().as_bytes())
                .map_err(|e| Fetch::Fail(e.to_string()))?;
            tracing::warn!(
                "pinned the controller's repository key {} on first contact ({}); give --repo-key to pin it from a trusted copy instead",
                key.id(),
                file.display()
            );
            key
        };
        let verifier = repo_sign::Verifier::new(key);
        *pinned = Some(verifier.clone());
        Ok(verifier)
    }

    /// Downloads to `file`, checking size and SHA-256 as the bytes arrive.
    pub(super) async fn download(
        &self,
        path: &str,
        file: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), Fetch> {
        let mut response = self
            .send(|http, base| http.get(format!("{base}/agent/v1/{path}")))
            .await?;
        let local = |e: std::io::Error| Fetch::Fail(format!("{}: {e}", file.display()));
        // Large writes: each write of a tokio file is a trip through the blocking pool.
        let mut out = tokio::io::BufWriter::with_capacity(
            1024 * 1024,
            tokio::fs::File::create(file).await.map_err(local)?,
        );
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Fetch::Retry(format!("download interrupted: {e}")))?
        {
            got += chunk.len() as u64;
            if got > size {
                return Err(Fetch::Fail(format!(
                    "the download is larger than the {size} bytes the index states"
                )));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(local)?;
        }
        out.flush().await.map_err(local)?;
        // A complete response of the wrong size is the controller's file, not the network:
        // retrying would fetch the same bytes (a connection cut mid-body errors above).
        if got != size {
            return Err(Fetch::Fail(format!(
                "the download is {got} bytes, the index states {size} (truncated?)"
            )));
        }
        let actual = hex::encode(hasher.finalize());
        if actual != sha256 {
            return Err(Fetch::Fail(format!(
                "sha256 {actual} does not match the index ({sha256}); refusing it"
            )));
        }
        Ok(())
    }
}

/// The largest repository index an agent accepts.
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// The largest restart script an agent accepts.
pub(super) const MAX_SCRIPT_BYTES: u64 = 1 << 20;

/// An answer's body, refused past `limit` bytes (what the controller sends is outside input).
pub(super) async fn read_bounded(
    mut response: reqwest::Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, Fetch> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_big(what, limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Fetch::Retry(format!("{what}: {e}")))?
    {
        push_bounded(&mut body, &chunk, limit, what)?;
    }
    Ok(body)
}

fn too_big(what: &str, limit: u64) -> Fetch {
    Fetch::Fail(format!("{what}: larger than {limit} bytes"))
}

/// Appends a chunk unless the body would pass `limit`.
fn push_bounded(body: &mut Vec<u8>, chunk: &[u8], limit: u64, what: &str) -> Result<(), Fetch> {
    if body.len() as u64 + chunk.len() as u64 > limit {
        return Err(too_big(what, limit));
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// Bytes free for an unprivileged writer on the file system holding `dir` (where packages are
/// downloaded and installed from), for the controller's precheck.
fn disk_free_bytes(dir: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_past_its_limit_is_refused() {
        let mut body = Vec::new();
        assert!(push_bounded(&mut body, &[1; 6], 10, "x").is_ok());
        assert!(push_bounded(&mut body, &[1; 4], 10, "x").is_ok());
        match push_bounded(&mut body, &[1], 10, "x") {
            Err(Fetch::Fail(m)) => assert!(m.contains("larger than 10 bytes"), "{m}"),
            _ => panic!("an 11th byte passed a 10-byte limit"),
        }
        assert_eq!(body.len(), 10);
    }
}
