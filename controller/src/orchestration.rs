//! The patch strategy service: at most one strategy, saved whole to
//! `<state>/orchestration/strategy.json` after every transition, advanced by an audit task
//! against this controller's own inventory, store and agents; plus the patching and strategy
//! alarms it keeps in step.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use host_state::protocol::WorkloadVerb;
use host_state::{AdminState, InstallState};
use orchestrator::{
    Alarm, Cluster, ClusterError, Instance, InstanceOp, InventoryHost, PatchHost, ServerGroup,
    StepResult, Strategy, StrategyState,
};

use crate::alarms::{self, AlarmError};
use crate::inventory;
use crate::state::App;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The strategy and where it is saved.
pub(crate) struct Orchestration {
    pub(crate) app: Arc<App>,
    path: PathBuf,
    strategy: Mutex<Option<Strategy>>,
    /// Wakes the audit task early (after create or an action).
    pub(crate) wake: tokio::sync::Notify,
}

impl Orchestration {
    /// Loads the saved strategy, if any: a restart resumes it on the next audit.
    pub(crate) fn open(app: Arc<App>) -> std::io::Result<Orchestration> {
        let dir = app.config.state_dir.join("orchestration");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("strategy.json");
        let strategy = Self::load(&path)?;
        if let Some(s) = &strategy {
            tracing::info!(uuid = %s.uuid, state = %s.state, "resuming saved strategy");
        }
        Ok(Orchestration {
            app,
            path,
            strategy: Mutex::new(strategy),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The saved strategy, if any. One that cannot be read stops the controller with a
    /// message naming the file: going on without it would forget a rollout in progress (hosts
    /// it locked stay locked, and a new strategy could start over them).
    fn load(path: &std::path::Path) -> std::io::Result<Option<Strategy>> {
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<Strategy>(&bytes) {
                Ok(s) => Ok(Some(s)),
                Err(e) => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the saved strategy cannot be read ({e}); repair it, or move it aside and check the hosts it may have locked (system host-list) before creating another"
                    ),
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(path: &std::path::Path, strategy: &Strategy) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(strategy).map_err(std::io::Error::other)?;
        Ok(durable_fs::write(path, &bytes)?)
    }

    /// Runs `f` on the strategy slot; saves (or removes) it if `f` says it changed.
    pub(crate) fn with_strategy<T>(
        &self,
        f: impl FnOnce(&mut Option<Strategy>) -> (T, bool),
    ) -> std::io::Result<T> {
        let mut slot = lock(&self.strategy);
        let before = slot.clone();
        let (value, changed) = f(&mut slot);
        if changed {
            let result = match slot.as_ref() {
                Some(s) => Self::save(&self.path, s),
                None => match std::fs::remove_file(&self.path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            if let Err(e) = result {
                // Nothing that was not saved takes effect.
                *slot = before;
                return Err(e);
            }
        }
        Ok(value)
    }

    /// Re-reads the saved strategy (a standby after its state was replaced).
    pub(crate) fn reload(&self) -> std::io::Result<()> {
        *lock(&self.strategy) = Self::load(&self.path)?;
        Ok(())
    }

    /// Holds the strategy (it does not advance meanwhile): a swact.
    pub(crate) fn hold(&self) -> MutexGuard<'_, Option<Strategy>> {
        lock(&self.strategy)
    }

    /// A copy of the current strategy.
    pub(crate) fn current(&self) -> Option<Strategy> {
        lock(&self.strategy).clone()
    }

    /// One audit: advance the strategy, then bring the alarms in line. Returns whether the
    /// strategy is still moving on its own and when its running step's timer fires, if any.
    pub(crate) fn audit(&self) -> (bool, Option<u64>) {
        let cluster = AppCluster(&self.app);
        {
            let mut slot = lock(&self.strategy);
            if let Some(strategy) = slot.as_mut()
                && !strategy.is_idle()
            {
                let path = self.path.clone();
                let result =
                    strategy.tick(&cluster, now_ms(), &mut |s: &Strategy| Self::save(&path, s));
                if let Err(e) = result {
                    tracing::error!("cannot save the strategy ({e}); retrying from the last save");
                    *slot = std::fs::read(&self.path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                }
            }
        }
        if let Err(e) = self.sync_alarms() {
            tracing::error!("alarms: {e}");
        }
        let slot = lock(&self.strategy);
        let running = slot.as_ref().is_some_and(|s| !s.is_idle());
        (running, slot.as_ref().and_then(Strategy::next_timer_ms))
    }

    /// Patching alarms follow the patch and host states; strategy alarms the strategy state.
    pub(crate) fn sync_alarms(&self) -> Result<(), AlarmError> {
        let snapshot = self.app.snapshot();
        let in_progress = snapshot.states.values().any(|s| s.is_partial());
        let patching: Vec<(String, &str, String)> = if in_progress {
            vec![(
                "host=controller".into(),
                "minor",
                "Patching operation in progress.".into(),
            )]
        } else {
            vec![]
        };
        let failed: Vec<(String, &str, String)> = snapshot
            .hosts
            .iter()
            .filter(|h| h.install_state == InstallState::InstallFailed)
            .map(|h| {
                (
                    format!("host={}", h.facts.hostname),
                    "major",
                    format!("{} failed to install patch.", h.facts.hostname),
                )
            })
            .collect();
        let strategy = self.current();
        let entity = "orchestration=sw-patch".to_string();
        let applying = strategy
            .as_ref()
            .is_some_and(|s| s.state == StrategyState::Applying);
        let aborting = strategy
            .as_ref()
            .is_some_and(|s| s.state == StrategyState::Aborting);
        let apply_failed = strategy.as_ref().is_some_and(|s| {
            matches!(
                s.apply_phase.result,
                StepResult::Failed | StepResult::TimedOut
            )
        });
        let one = |on: bool, severity: &'static str, text: &str| {
            if on {
                vec![(entity.clone(), severity, text.to_string())]
            } else {
                vec![]
            }
        };
        let mut alarms = self.app.alarms();
        alarms.sync(alarms::PATCH_IN_PROGRESS, &patching)?;
        alarms.sync(alarms::PATCH_HOST_INSTALL_FAILED, &failed)?;
        alarms.sync(
            alarms::STRATEGY_APPLY_IN_PROGRESS,
            &one(applying, "major", "Patch auto-apply inprogress"),
        )?;
        alarms.sync(
            alarms::STRATEGY_ABORT_IN_PROGRESS,
            &one(aborting, "major", "Patch auto-apply abort inprogress"),
        )?;
        alarms.sync(
            alarms::STRATEGY_FAILED,
            &one(apply_failed, "critical", "Patch auto-apply failed"),
        )?;
        Ok(())
    }

    /// The cluster view the runner uses (also for dry runs).
    pub(crate) fn cluster(&self) -> AppCluster<'_> {
        AppCluster(&self.app)
    }
}

/// The system as the runner sees it: this controller's inventory, patch states and agents.
pub(crate) struct AppCluster<'a>(&'a App);

/// A host's stable UUID (derived from its name; the inventory has no other identity).
pub(crate) fn host_uuid(hostname: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, hostname.as_bytes()).to_string()
}

impl AppCluster<'_> {
    /// A host's administrative state, from the registry (no snapshot rebuild).
    fn admin(&self, host: &str) -> Option<AdminState> {
        self.0
            .with_hosts(|hosts| (hosts.hosts.get(host).map(|h| h.facts.admin), false))
    }
}

impl Cluster for AppCluster<'_> {
    fn inventory(&self) -> Result<Vec<InventoryHost>, ClusterError> {
        Ok(self
            .0
            .snapshot()
            .hosts
            .iter()
            .map(|h| InventoryHost {
                name: h.facts.hostname.clone(),
                uuid: host_uuid(&h.facts.hostname),
                personality: h.facts.personality.as_str().to_owned(),
                subfunctions: h.facts.subfunctions.clone(),
                admin: h.facts.admin,
                oper: h.facts.oper,
                availability: h.facts.availability,
                openstack_compute: h.workload_actions,
                openstack_control: false,
                replication_group: None,
                aggregates: Vec::new(),
            })
            .collect())
    }

    fn patch_hosts(&self) -> Result<Vec<PatchHost>, ClusterError> {
        Ok(self
            .0
            .snapshot()
            .hosts
            .iter()
            .map(|h| PatchHost {
                hostname: h.facts.hostname.clone(),
                subfunctions: h.facts.subfunctions.clone(),
                requires_reboot: h.requires_reboot(),
                patch_current: h.patch_current(),
                patch_failed: h.install_state == InstallState::InstallFailed,
                interim_state: h.interim,
                state: h.install_state.as_str().to_owned(),
                last_error: h.last_error.clone(),
            })
            .collect())
    }

    fn patch_count(&self) -> Result<usize, ClusterError> {
        Ok(self.0.snapshot().patches().len())
    }

    fn alarms(&self) -> Result<Vec<Alarm>, ClusterError> {
        Ok(self.0.alarms().list().to_vec())
    }

    fn instances(&self) -> Result<Vec<Instance>, ClusterError> {
        Ok(self
            .0
            .snapshot()
            .hosts
            .iter()
            .flat_map(|h| {
                h.workloads.iter().map(|w| Instance {
                    name: w.name.clone(),
                    uuid: w.uuid.clone(),
                    host: h.facts.hostname.clone(),
                    locked: w.locked,
                    groups: w
                        .groups
                        .iter()
                        .map(|g| ServerGroup {
                            name: g.name.clone(),
                            policies: g.policies.clone(),
                        })
                        .collect(),
                })
            })
            .collect())
    }

    fn local_controller(&self) -> Option<String> {
        self.0.active_controller()
    }

    fn lock(&self, host: &str) -> Result<(), ClusterError> {
        if self.admin(host) == Some(AdminState::Locked) {
            return Ok(());
        }
        inventory::lock(self.0, host, false)
            .map(drop)
            .map_err(|e| ClusterError::Refused(e.to_string()))
    }

    fn unlock(&self, host: &str) -> Result<(), ClusterError> {
        if self.admin(host) == Some(AdminState::Unlocked) {
            return Ok(());
        }
        inventory::unlock(self.0, host)
            .map(drop)
            .map_err(|e| ClusterError::Refused(e.to_string()))
    }

    fn reboot(&self, host: &str) -> Result<(), ClusterError> {
        self.0.with_hosts(|hosts| {
            hosts.order_reboot(host);
            ((), true)
        });
        self.0.orders.notify_waiters();
        Ok(())
    }

    fn install(&self, host: &str, soak_secs: u64) -> Result<(), ClusterError> {
        inventory::install_soaking(self.0, host, false, soak_secs)
            .map(drop)
            .map_err(|e| ClusterError::Refused(e.to_string()))
    }

    fn swact(&self, host: &str) -> Result<(), ClusterError> {
        let Some(ha) = &self.0.ha else {
            return Err(ClusterError::Refused(format!(
                "cannot swact {host}: this controller has no standby to take over"
            )));
        };
        if ha.host != host || !ha.is_active() {
            return Ok(());
        }
        // The handover needs the strategy this audit holds: it runs once the audit returns,
        // and the strategy does not advance until it is over.
        ha.start_swact().map_err(ClusterError::Refused)
    }

    fn instance_action(&self, op: InstanceOp, instance: &Instance) -> Result<bool, ClusterError> {
        let snapshot = self.0.snapshot();
        let now = snapshot.hosts.iter().find_map(|h| {
            h.workloads
                .iter()
                .find(|w| w.name == instance.name)
                .map(|w| (h.facts.hostname.as_str(), w.locked))
        });
        let (host, locked) = match (op, now) {
            // Gone from the host it was on: migrated.
            (InstanceOp::Migrate, None) => return Ok(true),
            (InstanceOp::Migrate, Some((host, _))) if host != instance.host => return Ok(true),
            (_, None) => {
                return Err(ClusterError::InstanceGone {
                    name: instance.name.clone(),
                });
            }
            (_, Some((host, _))) if host != instance.host => {
                return Err(ClusterError::InstanceMoved {
                    name: instance.name.clone(),
                    from: instance.host.clone(),
                    to: host.to_owned(),
                });
            }
            (_, Some(found)) => found,
        };
        let verb = match op {
            InstanceOp::Stop if locked => return Ok(true),
            InstanceOp::Start if !locked => return Ok(true),
            InstanceOp::Stop => WorkloadVerb::Stop,
            InstanceOp::Start => WorkloadVerb::Start,
            InstanceOp::Migrate => WorkloadVerb::Migrate,
        };
        let host = host.to_owned();
        if self
            .0
            .with_hosts(|hosts| (hosts.order_workload(&host, verb, &instance.name), false))
        {
            self.0.orders.notify_waiters();
        }
        Ok(false)
    }

    fn host_services(&self, host: &str, enable: bool) -> Result<bool, ClusterError> {
        let snapshot = self.0.snapshot();
        let Some(view) = snapshot.hosts.iter().find(|h| h.facts.hostname == host) else {
            return Err(ClusterError::HostGone {
                host: host.to_owned(),
            });
        };
        if !view.workload_actions {
            return Err(ClusterError::Refused(format!(
                "host {host} has no workload hook"
            )));
        }
        if view.services_disabled != enable {
            return Ok(true);
        }
        let verb = if enable {
            WorkloadVerb::EnableServices
        } else {
            WorkloadVerb::DisableServices
        };
        if self
            .0
            .with_hosts(|hosts| (hosts.order_workload(host, verb, host), false))
        {
            self.0.orders.notify_waiters();
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A saved strategy that cannot be read stops the controller (naming what to do); it is
    /// never silently dropped, nor read as "no strategy".
    #[test]
    fn an_unreadable_strategy_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strategy.json");
        assert!(
            Orchestration::load(&path).unwrap().is_none(),
            "none saved yet"
        );
        std::fs::write(&path, b"{\"uuid\": ").unwrap();
        let err = Orchestration::load(&path).unwrap_err();
        assert!(err.to_string().contains("cannot be read"), "{err}");
        assert!(path.exists(), "the file stays for repair");
    }
}
