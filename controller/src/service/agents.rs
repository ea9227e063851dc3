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

impl Service {
    /// Takes a host's report: what it reports is what the controller knows of it.
    pub(crate) async fn report(&self, report: HostReport) -> Result<ReportReply, ServiceError> {
        self.must_be_active()?;
        let app = self.app.clone();
        let hostname = report.hostname.clone();
        let done = report.install_done;
        let locked = blocking(move || {
            let was_interim = app.host_reported(&hostname);
            Ok(app.with_hosts(|hosts| {
                let changed = hosts.report(report, done);
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

    /// Where a file an agent asks for lives; only plain relative paths are accepted.
    pub(crate) fn agent_file(&self, area: FileArea, path: &str) -> Option<PathBuf> {
        let rel = Path::new(path);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        let dir = match area {
            FileArea::Feed => "feed",
            FileArea::Repo => "repo",
        };
        Some(self.config().state_dir.join(dir).join(rel))
    }
}
