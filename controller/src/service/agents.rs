//! What the hosts' agents ask of the controller: take a report, hand over the next order
//! (long-polled, redelivered until acknowledged), and serve the repositories' files.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use host_state::protocol::{Delivery, HostReport, ReportReply};

use super::{Service, ServiceError, blocking};

/// The longest an order poll waits.
const MAX_POLL_WAIT: Duration = Duration::from_secs(60);

/// Which of the controller's trees an agent reads files from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FileArea {
    /// The base-load feed.
    Feed,
    /// The patch repository.
    Repo,
}

impl FileArea {
    /// The tree's directory name, as the envelope names it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FileArea::Feed => "feed",
            FileArea::Repo => "repo",
        }
    }
}

/// The largest index served (thousands of packages take a few MiB).
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// An index file as text, bounded, and its serial ([`patch_store::index_serial`]: kept
/// beside it, the same on both controllers of a pair). One that is missing, too large or not
/// JSON (the envelope refuses it) is an error, never an empty index (agents would remove
/// every package).
fn read_index(path: &Path) -> Result<(String, u64), ServiceError> {
    let failed = |reason: String| ServiceError::Index(format!("{}: {reason}", path.display()));
    let bytes = durable_fs::read_bounded(path, MAX_INDEX_BYTES)
        .map_err(|e| failed(e.source.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("not UTF-8 text".into()))?;
    // Read after the index: its serial is written first, so this one is never older.
    let serial = patch_store::index_serial(path).map_err(|e| failed(e.to_string()))?;
    Ok((text, serial))
}

impl Service {
    /// Takes a host's report: what it reports is what the controller knows of it.
    pub(crate) async fn report(&self, report: HostReport) -> Result<ReportReply, ServiceError> {
        self.must_be_active()?;
        let mut report = report;
        // A host may say it rolled back only from patches that are applied here: anything
        // else would be held (and persisted) for it without bound.
        if let Some(health) = report.health.as_mut() {
            let snapshot = self.app.snapshot();
            health.rolled_back.retain(|id| {
                snapshot
                    .patches()
                    .get(id)
                    .is_some_and(|p| p.repo_state == patch_store::RepoState::Applied)
            });
        }
        let app = self.app.clone();
        let hostname = report.hostname.clone();
        let done = report.install_done;
        let locked = blocking(move || {
            let was_interim = app.host_reported(&hostname);
            Ok(app.with_hosts(|hosts| {
                let before = hosts.hosts.get(&hostname).map(|h| h.install_done);
                let failed = matches!(
                    report.install_state,
                    host_state::InstallState::InstallFailed
                        | host_state::InstallState::InstallRejected
                );
                let changed = hosts.report(report, done);
                if before.is_some_and(|b| done > b) {
                    app.metrics.install_finished(&hostname, !failed);
                }
                let locked = hosts
                    .hosts
                    .get(&hostname)
                    .is_some_and(|h| h.facts.admin == host_state::AdminState::Locked);
                // A plain heartbeat changes nothing the snapshot shows: no rebuild.
                (locked, changed || was_interim)
            }))
        })
        .await?;
        Ok(ReportReply {
            op_counter: self.app.op_counter(),
            locked,
        })
    }

    /// The host's next order, waiting up to `wait` (at most a minute) for one; `received`
    /// acknowledges the last delivery the agent got. A controller that stops being active
    /// meanwhile answers `NotActive` within a second, so agents move to the new active one.
    pub(crate) async fn next_order(
        &self,
        hostname: &str,
        received: u64,
        wait: Duration,
    ) -> Result<Delivery, ServiceError> {
        self.must_be_active()?;
        let deadline = tokio::time::Instant::now() + wait.min(MAX_POLL_WAIT);
        loop {
            // Register interest before checking, so a notify in between is not lost.
            let notified = self.app.orders.notified();
            let order = self
                .app
                .with_hosts(|hosts| (hosts.take_order(hostname, received), false));
            if let Some(order) = order {
                return Ok(order);
            }
            let tick = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
            let woken = tokio::time::timeout_at(tick, notified).await.is_ok();
            self.must_be_active()?;
            if !woken && tokio::time::Instant::now() >= deadline {
                return Ok(Delivery::none());
            }
        }
    }

    /// The `area` index of `release`, in an envelope signed with the controller's key: the
    /// body and its signature header. Agents install only from indexes that verify.
    pub(crate) async fn signed_index(
        &self,
        area: FileArea,
        release: &str,
    ) -> Result<(Vec<u8>, String), ServiceError> {
        self.must_be_active()?;
        patch_format::validate_patch_id(release)
            .map_err(|e| ServiceError::Index(format!("release: {e}")))?;
        let path = self
            .agent_file(area, &format!("rel-{release}/index.json"))
            .ok_or_else(|| ServiceError::Index("bad release".into()))?;
        let signer = self.app.repo_signer.clone();
        let validity = self.config().repo_index_validity_secs.saturating_mul(1000);
        let (name, release) = (area.name(), release.to_owned());
        blocking(move || {
            let (index, serial) = read_index(&path)?;
            repo_sign::Envelope::seal(&signer, (name, &release), &index, serial, validity)
                .map_err(|e| ServiceError::Index(format!("{}: {e}", path.display())))
        })
        .await
    }

    /// Enrols `host`: a credential of its own, which only it may use from now on. A host
    /// enrolled already is refused until an operator drops it.
    pub(crate) async fn enrol(&self, host: String, from: String) -> Result<String, ServiceError> {
        self.must_be_active()?;
        let app = self.app.clone();
        let name = host.clone();
        let result = blocking(move || {
            let max_hosts = app.config.max_hosts;
            Ok(app.with_credentials(|c| c.enrol(&name, max_hosts))?)
        })
        .await;
        match &result {
            Ok(_) => tracing::info!(target: "audit", "host {host} enrolled from {from}"),
            Err(e) => {
                tracing::warn!(target: "audit", "host {host} not enrolled (from {from}): {e}")
            }
        }
        self.settled(result).await
    }

    /// The host a presented credential belongs to.
    pub(crate) fn host_of(&self, credential: &str) -> Option<String> {
        self.app.with_credentials(|c| c.host_of(credential))
    }

    /// The public key agents pin (PEM).
    pub(crate) fn repo_key(&self) -> Result<String, ServiceError> {
        self.app
            .repo_signer
            .public_key()
            .map(|k| k.to_pem())
            .map_err(|e| ServiceError::Index(e.to_string()))
    }

    /// Where a file an agent asks for lives; only plain relative paths are accepted.
    pub(crate) fn agent_file(&self, area: FileArea, path: &str) -> Option<PathBuf> {
        let rel = Path::new(path);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        Some(self.config().state_dir.join(area.name()).join(rel))
    }
}
