//! The controller's service core: the one place that owns the store, the host registry, the
//! alarms and the strategy, and offers typed operations with typed results and typed errors
//! whose messages are the original's. The patching REST API, the VIM API and the dashboard
//! are adapters around it (HTTP ↔ these calls); none of them restates a rule.
//!
//! Two pair rules live here for every caller: a controller that is not active refuses
//! mutations, and a mutation returns only once the standby holds it.

mod agents;
mod alarms;
mod hosts;
mod patches;
mod precheck;
mod strategy;
mod system;

use std::sync::Arc;

pub(crate) use agents::FileArea;
pub(crate) use alarms::AlarmFilter;
pub(crate) use patches::{PatchView, Patches, RemoveOptions, ShowFilter, basename};
pub(crate) use precheck::{Precheck, PrecheckRequest};
pub(crate) use strategy::{Plan, StrategyError};
pub(crate) use system::SystemInfo;

use crate::ControllerConfig;
use crate::alarms::AlarmError;
use crate::ha::Urls;
use crate::inventory::HostActionError;
use crate::orchestration::Orchestration;
use crate::state::App;
use patch_store::StoreError;

/// Why a service operation did not happen (or, for `NotReplicated`, is not yet on both
/// controllers). The texts are the original's where it has one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Apply and remove wait while a host installs.
    #[error("Rejected: One or more nodes are installing patches.")]
    Installing,
    /// No patch has that id.
    #[error("{0} is unrecognized")]
    Unrecognized(String),
    /// `upload_dir` found nothing to upload.
    #[error("No patches found")]
    NoPatchesFound,
    /// A host action was refused.
    #[error(transparent)]
    Host(#[from] HostActionError),
    /// A strategy operation was refused or failed.
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    /// An alarm operation was refused or failed.
    #[error(transparent)]
    Alarm(#[from] AlarmError),
    /// This controller is the standby: mutations go to the active one.
    #[error("{message}")]
    NotActive {
        /// What the operator reads.
        message: String,
    },
    /// The change was made here but the standby does not hold it (yet).
    #[error("{0}")]
    NotReplicated(String),
    /// A worker task died.
    #[error("internal task failed: {0}")]
    Task(String),
    /// A host credential could not be issued, revoked or read.
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
    /// The repository index could not be signed or read.
    #[error("repository index: {0}")]
    Index(String),
}

impl ServiceError {
    /// Whether this is a refusal the caller can act on (the patching API answers it with
    /// 200 and `error` set), as opposed to a failure of the controller itself.
    pub(crate) fn is_refusal(&self) -> bool {
        match self {
            ServiceError::Store(e) => e.is_refusal(),
            ServiceError::Alarm(AlarmError::Io { .. } | AlarmError::Unreadable { .. }) => false,
            ServiceError::Strategy(StrategyError::Save(_)) => false,
            ServiceError::Task(_) => false,
            ServiceError::Credential(e) => {
                matches!(
                    e,
                    crate::credentials::CredentialError::Enrolled(_)
                        | crate::credentials::CredentialError::Full(_)
                )
            }
            _ => true,
        }
    }
}

/// The service: cheap to clone, shared by every adapter.
#[derive(Clone)]
pub(crate) struct Service {
    app: Arc<App>,
    orch: Arc<Orchestration>,
}

impl Service {
    pub(crate) fn new(app: Arc<App>, orch: Arc<Orchestration>) -> Service {
        Service { app, orch }
    }

    /// The controller's configuration.
    pub(crate) fn config(&self) -> &ControllerConfig {
        &self.app.config
    }

    /// Whether this controller belongs to a pair.
    pub(crate) fn is_pair(&self) -> bool {
        self.app.ha.is_some()
    }

    /// The controller host that is active, if known.
    pub(crate) fn active_controller(&self) -> Option<String> {
        self.app.active_controller()
    }

    /// On the standby of a pair: why mutations are refused here, and the base URL (chosen by
    /// `pick` among the active one's listeners) where they go instead, if known.
    pub(crate) fn not_active(
        &self,
        pick: fn(&Urls) -> Option<String>,
    ) -> Option<(String, Option<String>)> {
        self.app.ha.as_ref()?.not_active(pick)
    }

    /// The header line of the dashboard: which controller of a pair this is.
    pub(crate) fn pair_role(&self) -> Option<Result<String, String>> {
        let ha = self.app.ha.as_ref()?;
        Some(match ha.not_active(|u| u.web.clone()) {
            Some((message, _)) => Err(message),
            None => Ok(ha.host.clone()),
        })
    }

    /// The metrics, as a scrape reads them (OpenMetrics text).
    pub(crate) fn metrics_text(&self) -> String {
        use host_state::{AdminState, Availability, InstallState};
        let hosts = self
            .hosts()
            .iter()
            .map(|h| crate::metrics::HostConditions {
                patch_current: h.patch_current,
                reboot_required: h.requires_reboot || h.reboot_pending,
                installing: h.state == InstallState::Installing,
                install_failed: h.patch_failed
                    || matches!(
                        h.state,
                        InstallState::InstallFailed | InstallState::InstallRejected
                    ),
                offline: h.availability == Availability::Offline,
                locked: h.administrative == AdminState::Locked,
            })
            .collect();
        let patches = self.patches();
        let patch_states = patches.iter().map(|p| p.state).collect();
        let strategy = self.strategy();
        let reading = crate::metrics::Reading {
            hosts,
            patch_states,
            strategy: strategy.as_ref(),
            replication: self.app.ha.as_ref().map(|ha| ha.replication_stats()),
        };
        self.app.metrics.render(&reading)
    }

    /// Refuses a mutation on a controller that is not active.
    fn must_be_active(&self) -> Result<(), ServiceError> {
        match self.not_active(|u| u.api.clone()) {
            Some((message, _)) => Err(ServiceError::NotActive { message }),
            None => Ok(()),
        }
    }

    /// Waits until the standby holds every change made so far (at once without a pair).
    async fn replicated(&self) -> Result<(), ServiceError> {
        let Some(ha) = self.app.ha.clone() else {
            return Ok(());
        };
        blocking(move || ha.barrier().map_err(ServiceError::NotReplicated)).await
    }

    /// A mutation's ending: its result, once the standby holds it.
    async fn settled<T>(&self, result: Result<T, ServiceError>) -> Result<T, ServiceError> {
        let value = result?;
        self.replicated().await?;
        Ok(value)
    }
}

/// Runs blocking work (store and registry locks, file I/O) off the async threads. Work whose
/// caller has gone (the client hung up, so the request's future was dropped) before a thread
/// picked it up is not started: an operator who gave up on an `apply` must not see it carried
/// out minutes later.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Abandon(Arc<AtomicBool>);
    impl Drop for Abandon {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
        }
    }
    let wanted = Arc::new(AtomicBool::new(true));
    let _abandon_if_dropped = Abandon(wanted.clone());
    tokio::task::spawn_blocking(move || {
        if !wanted.load(Ordering::Acquire) {
            return Err(ServiceError::Task(
                "the caller went away before the operation started; it was not carried out".into(),
            ));
        }
        f()
    })
    .await
    .map_err(|e| ServiceError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The probe from the issue: an `apply` whose client had given up ran later. Here the only
    /// blocking thread is busy while a caller gives up; the work it asked for never runs.
    #[test]
    fn work_whose_caller_went_away_before_it_started_is_not_done() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        runtime.block_on(async {
            let (release, held) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || held.recv());
            let flag = ran.clone();
            let gave_up = tokio::time::timeout(
                std::time::Duration::from_millis(100),
                blocking(move || {
                    flag.store(true, Ordering::SeqCst);
                    Ok(())
                }),
            )
            .await;
            assert!(
                gave_up.is_err(),
                "the caller gave up while the thread was busy"
            );
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
            // The abandoned work had its turn on the thread by now; a fresh call still runs.
            blocking(|| Ok(())).await.unwrap();
        });
        assert!(
            !ran.load(Ordering::SeqCst),
            "abandoned work was carried out"
        );
    }
}
