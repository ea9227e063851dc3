//! One function per step kind: each polls its step, issuing the step's actions
//! idempotently (a host already locked is not locked again; a patch-current host is not
//! installed), and says whether the step is done.

use crate::builder::{AlarmCheck, AlarmVerdict, Collected, sort_alarms};
use crate::cluster::{Cluster, ClusterError, InstanceOp};
use crate::model::{Alarm, PhaseName, Stage, Step, StepKind, StepResult, Strategy};

/// What one step's poll concluded.
pub(crate) enum Poll {
    /// Not finished; `changed` says whether its bookkeeping changed (worth saving).
    Pending { changed: bool },
    /// Finished.
    Done(StepResult, String),
}

pub(crate) fn pending() -> Poll {
    Poll::Pending { changed: false }
}

/// Done once every action of the step reached its target, else waiting.
fn success_when(done: bool) -> Poll {
    if done {
        Poll::Done(StepResult::Success, String::new())
    } else {
        pending()
    }
}

fn secs(s: u64) -> u64 {
    s.saturating_mul(1000)
}

impl Strategy {
    /// Polls one running step of any kind.
    pub(crate) fn poll_kind(
        &mut self,
        step: &mut Step,
        cluster: &dyn Cluster,
        now_ms: u64,
        elapsed_ms: u64,
    ) -> Poll {
        match step.kind.clone() {
            StepKind::QueryAlarms { fail_on_alarms } => {
                self.poll_query_alarms(cluster, now_ms, fail_on_alarms)
            }
            StepKind::QuerySwPatches => self.poll_query_patches(cluster),
            StepKind::QuerySwPatchHosts => self.poll_query_hosts(cluster),
            StepKind::SwactHosts => self.poll_swact(step, cluster, now_ms, elapsed_ms),
            StepKind::LockHosts {
                wait_until_disabled,
            } => self.poll_lock(step, cluster, elapsed_ms, wait_until_disabled),
            StepKind::SwPatchHosts => self.poll_install(step, cluster),
            StepKind::SystemStabilize => self.poll_stabilize(step, cluster),
            StepKind::UnlockHosts => self.poll_unlock(step, cluster),
            StepKind::RebootHosts => self.poll_reboot(step, cluster, elapsed_ms),
            StepKind::WaitAlarmsClear | StepKind::WaitDataSync => {
                self.poll_wait_alarms(step, cluster, now_ms, elapsed_ms)
            }
            StepKind::MigrateInstancesFromHost => {
                self.poll_instances(step, cluster, InstanceOp::Migrate)
            }
            StepKind::StopInstances => self.poll_instances(step, cluster, InstanceOp::Stop),
            StepKind::StartInstances => self.poll_instances(step, cluster, InstanceOp::Start),
            StepKind::DisableHostServices | StepKind::EnableHostServices => {
                self.poll_host_services(step, cluster)
            }
            StepKind::CanarySoak => self.poll_canary_soak(step, cluster, now_ms),
        }
    }

    /// Watches the canaries until the soak period ends (the runner counts its end as
    /// success): any canary that is no longer patch-current, or failed, or a blocking alarm,
    /// fails the step and so the strategy.
    fn poll_canary_soak(&mut self, step: &mut Step, cluster: &dyn Cluster, now_ms: u64) -> Poll {
        let Ok(hosts) = cluster.patch_hosts() else {
            return pending();
        };
        for name in &step.entity_names {
            match hosts.iter().find(|h| &h.hostname == name) {
                None => {
                    return Poll::Done(StepResult::Failed, format!("canary {name} is gone"));
                }
                Some(h) if h.patch_failed => {
                    return Poll::Done(
                        StepResult::Failed,
                        format!("canary {name} failed during its soak"),
                    );
                }
                Some(h) if !h.patch_current => {
                    return Poll::Done(
                        StepResult::Failed,
                        format!("canary {name} is no longer patch current"),
                    );
                }
                Some(_) => {}
            }
        }
        let Ok(alarms) = cluster.alarms() else {
            return pending();
        };
        let verdict = self.sort_alarms_now(&alarms, AlarmCheck::Query, now_ms);
        if !verdict.blocking.is_empty() {
            return Poll::Done(
                StepResult::Failed,
                format!(
                    "alarms [{}] raised during the canary soak",
                    verdict.blocking_ids()
                ),
            );
        }
        pending()
    }

    /// `alarms` as this strategy's rules sort them now.
    fn sort_alarms_now<'a>(
        &self,
        alarms: &'a [Alarm],
        check: AlarmCheck,
        now_ms: u64,
    ) -> AlarmVerdict<'a> {
        sort_alarms(
            alarms,
            &self.alarm_rules(),
            check,
            &self.timing,
            now_ms / 1000,
            &self.failed_hosts,
        )
    }

    /// Reads the alarms (the build's query, or the apply's check before a stage).
    fn poll_query_alarms(
        &mut self,
        cluster: &dyn Cluster,
        now_ms: u64,
        fail_on_alarms: bool,
    ) -> Poll {
        let Ok(alarms) = cluster.alarms() else {
            return Poll::Done(StepResult::Failed, String::new());
        };
        let (result, reason) = if fail_on_alarms {
            let verdict = self.sort_alarms_now(&alarms, AlarmCheck::Query, now_ms);
            let note = verdict.stale_note(&self.alarm_rules());
            if verdict.blocking.is_empty() {
                (StepResult::Success, note)
            } else {
                let present = format!(
                    "alarms [{}] from platform are present",
                    verdict.blocking_ids()
                );
                let reason = if note.is_empty() {
                    present
                } else {
                    format!("{present}; {note}")
                };
                (StepResult::Failed, reason)
            }
        } else {
            (StepResult::Success, String::new())
        };
        self.nfvi_alarms = alarms;
        Poll::Done(result, reason)
    }

    /// Counts the patches.
    fn poll_query_patches(&mut self, cluster: &dyn Cluster) -> Poll {
        match cluster.patch_count() {
            Ok(count) => {
                self.collected
                    .get_or_insert_with(Collected::default)
                    .patch_count = count;
                Poll::Done(StepResult::Success, String::new())
            }
            Err(_) => Poll::Done(StepResult::Failed, String::new()),
        }
    }

    /// Collects the hosts, their patch status and the workloads for the plan.
    fn poll_query_hosts(&mut self, cluster: &dyn Cluster) -> Poll {
        let count = self.collected.as_ref().map_or(0, |c| c.patch_count);
        match collect(cluster) {
            Ok(mut c) => {
                c.patch_count = count;
                self.collected = Some(c);
                Poll::Done(StepResult::Success, String::new())
            }
            Err(_) => Poll::Done(StepResult::Failed, String::new()),
        }
    }

    /// Moves the active controller role off the stage's controller, then lets it settle.
    fn poll_swact(
        &mut self,
        step: &mut Step,
        cluster: &dyn Cluster,
        now_ms: u64,
        elapsed_ms: u64,
    ) -> Poll {
        let hosts = step.entity_names.clone();
        let Some(host) = hosts.first() else {
            return Poll::Done(StepResult::Success, String::new());
        };
        let issued = step.progress.issued.contains(host);
        if cluster.local_controller().as_deref() == Some(host.as_str()) {
            // Still active here: start the swact, or poll it (the controller that
            // takes over resumes this step and finds the host no longer active).
            if cluster.swact(host).is_err() {
                return Poll::Done(StepResult::Failed, "host swact failed".into());
            }
            if issued {
                return pending();
            }
            step.progress.issued.insert(host.clone());
            // The settle time counts from the swact.
            step.progress.started_ms = now_ms;
            return Poll::Pending { changed: true };
        }
        if !issued {
            return Poll::Done(StepResult::Success, "Already on correct host".into());
        }
        if elapsed_ms >= secs(self.timing.swact_settle) {
            Poll::Done(StepResult::Success, String::new())
        } else {
            pending()
        }
    }

    /// Locks the stage's hosts (recorded before the lock is asked for).
    fn poll_lock(
        &mut self,
        step: &mut Step,
        cluster: &dyn Cluster,
        elapsed_ms: u64,
        wait_until_disabled: bool,
    ) -> Poll {
        let hosts = step.entity_names.clone();
        let Ok(inventory) = cluster.inventory() else {
            return pending();
        };
        let mut changed = false;
        let mut all_done = true;
        for name in &hosts {
            let Some(host) = inventory.iter().find(|h| &h.name == name) else {
                return Poll::Done(StepResult::Failed, "host no longer exists".into());
            };
            let locked = host.admin == host_state::AdminState::Locked;
            let disabled = host.oper == host_state::OperState::Disabled;
            if !locked {
                if step.progress.issued.contains(name) {
                    all_done = false;
                    continue;
                }
                if let Err(error) = cluster.lock(name) {
                    let reason = error.to_string();
                    return Poll::Done(
                        StepResult::Failed,
                        if reason.is_empty() {
                            "host lock failed".into()
                        } else {
                            reason
                        },
                    );
                }
                step.progress.issued.insert(name.clone());
                changed = true;
                all_done = false;
            } else if wait_until_disabled && !disabled {
                all_done = false;
            }
        }
        let min_wait = if wait_until_disabled {
            0
        } else {
            secs(self.timing.lock_no_disable_wait)
        };
        if all_done && elapsed_ms >= min_wait {
            Poll::Done(StepResult::Success, String::new())
        } else {
            Poll::Pending { changed }
        }
    }

    /// Waits for the stage's hosts to hold their states for the settle time.
    fn poll_stabilize(&mut self, step: &mut Step, cluster: &dyn Cluster) -> Poll {
        let Ok(inventory) = cluster.inventory() else {
            return pending();
        };
        let stage_hosts = self.stage_hosts_of(step);
        let states: Vec<(String, String)> = inventory
            .iter()
            .filter(|h| stage_hosts.is_empty() || stage_hosts.contains(&h.name))
            .map(|h| {
                (
                    h.name.clone(),
                    format!("{}-{}-{}", h.admin, h.oper, h.availability),
                )
            })
            .collect();
        if step.progress.baseline.is_empty() && !states.is_empty() {
            step.progress.baseline = states;
            return Poll::Pending { changed: true };
        }
        for (name, state) in &step.progress.baseline {
            let now = states.iter().find(|(n, _)| n == name).map(|(_, s)| s);
            if now != Some(state) {
                return Poll::Done(
                    StepResult::Failed,
                    format!("host {name} changed state unexpectedly"),
                );
            }
        }
        pending()
    }

    /// Reboots the stage's locked hosts and waits until they no longer need it.
    fn poll_reboot(&mut self, step: &mut Step, cluster: &dyn Cluster, elapsed_ms: u64) -> Poll {
        let hosts = step.entity_names.clone();
        let mut changed = false;
        for name in &hosts {
            if !step.progress.issued.contains(name) {
                if cluster.reboot(name).is_err() {
                    return Poll::Done(StepResult::Failed, "host reboot failed".into());
                }
                step.progress.issued.insert(name.clone());
                changed = true;
            }
        }
        let rebooted = cluster.patch_hosts().is_ok_and(|list| {
            hosts.iter().all(|n| {
                list.iter()
                    .find(|p| &p.hostname == n)
                    .is_some_and(|p| !p.requires_reboot)
            })
        });
        if rebooted && elapsed_ms >= secs(self.timing.reboot_settle) {
            Poll::Done(StepResult::Success, String::new())
        } else {
            Poll::Pending { changed }
        }
    }

    /// Waits until no alarm outside the ignore list blocks the strategy.
    fn poll_wait_alarms(
        &mut self,
        step: &mut Step,
        cluster: &dyn Cluster,
        now_ms: u64,
        elapsed_ms: u64,
    ) -> Poll {
        let first = if step.kind == StepKind::WaitDataSync {
            self.timing.data_sync_first_query
        } else {
            self.timing.alarms_first_query
        };
        if elapsed_ms < secs(first) {
            return pending();
        }
        let Ok(alarms) = cluster.alarms() else {
            return Poll::Done(StepResult::Failed, String::new());
        };
        let clear = self
            .sort_alarms_now(&alarms, AlarmCheck::Wait, now_ms)
            .blocking
            .is_empty();
        if clear {
            Poll::Done(StepResult::Success, String::new())
        } else {
            pending()
        }
    }

    /// Disables or enables the stage's hosts' compute services.
    fn poll_host_services(&mut self, step: &mut Step, cluster: &dyn Cluster) -> Poll {
        let hosts = step.entity_names.clone();
        let enable = step.kind == StepKind::EnableHostServices;
        let mut done = true;
        for name in &hosts {
            match cluster.host_services(name, enable) {
                Ok(true) => {}
                Ok(false) => done = false,
                Err(error) => return Poll::Done(StepResult::Failed, error.to_string()),
            }
        }
        success_when(done)
    }

    /// The hosts of the stage a step belongs to (for the stabilize check).
    fn stage_hosts_of(&self, step: &Step) -> Vec<String> {
        let phase = match self.current_phase {
            PhaseName::Abort => &self.abort_phase,
            PhaseName::Apply => &self.apply_phase,
            _ => return Vec::new(),
        };
        phase
            .stages
            .get(phase.current_stage)
            .filter(|s| s.steps.get(step.id).is_some_and(|x| x.kind == step.kind))
            .map(Stage::hosts)
            .unwrap_or_default()
    }

    fn poll_install(&mut self, step: &mut Step, cluster: &dyn Cluster) -> Poll {
        let Ok(status) = cluster.patch_hosts() else {
            return pending();
        };
        let mut changed = false;
        let mut waiting = false;
        for name in step.entity_names.clone() {
            if step.progress.failed.contains(&name) {
                continue;
            }
            let Some(host) = status.iter().find(|p| p.hostname == name) else {
                return Poll::Done(StepResult::Failed, "host no longer exists".into());
            };
            let installing = host.state == "installing";
            if !step.progress.issued.contains(&name) {
                // A host already patch-current (an install finished before a restart) or
                // already installing is not asked again.
                let soak = self.options.health_soak_secs.unwrap_or(0);
                if !host.patch_current && !installing && cluster.install(&name, soak).is_err() {
                    return Poll::Done(StepResult::Failed, String::new());
                }
                step.progress.issued.insert(name.clone());
                changed = true;
                waiting = true;
                continue;
            }
            if installing {
                waiting = true;
            } else if host.patch_failed {
                step.progress.failed.insert(name.clone());
                changed = true;
            } else if !host.patch_current {
                waiting = true;
            }
        }
        if waiting {
            return Poll::Pending { changed };
        }
        self.hosts_failed_verdict(step, &status)
    }

    /// How a step whose hosts are done ends: success, or the original's words for the last
    /// host that failed (with why, when the host said: a health check's output); degraded
    /// while the failed hosts are within the budget.
    fn hosts_failed_verdict(
        &mut self,
        step: &Step,
        status: &[crate::collected::PatchHost],
    ) -> Poll {
        let Some(last_failed) = step
            .entity_names
            .iter()
            .rev()
            .find(|n| step.progress.failed.contains(*n))
        else {
            return Poll::Done(StepResult::Success, String::new());
        };
        let why = status
            .iter()
            .find(|h| &h.hostname == last_failed)
            .and_then(|h| h.last_error.as_deref())
            .and_then(|e| e.lines().next())
            .filter(|e| !e.is_empty());
        let reason = match why {
            Some(why) => format!("software update failed to apply on host {last_failed}: {why}"),
            None => format!("software update failed to apply on host {last_failed}"),
        };
        self.failed_hosts
            .extend(step.progress.failed.iter().cloned());
        // A canary's failure stops the strategy whatever the budget: nothing else is touched.
        let canary = self
            .apply_phase
            .stages
            .get(self.apply_phase.current_stage)
            .is_some_and(|s| s.canary);
        if !canary && self.failed_hosts.len() as u64 <= u64::from(self.options.max_failed_hosts) {
            Poll::Done(StepResult::Degraded, reason)
        } else {
            Poll::Done(StepResult::Failed, reason)
        }
    }

    fn poll_unlock(&mut self, step: &mut Step, cluster: &dyn Cluster) -> Poll {
        let Ok(inventory) = cluster.inventory() else {
            return pending();
        };
        let mut changed = false;
        let mut done = true;
        for name in step.entity_names.clone() {
            let Some(host) = inventory.iter().find(|h| h.name == name) else {
                return Poll::Done(StepResult::Failed, "host no longer exists".into());
            };
            if host.admin == host_state::AdminState::Locked {
                if !step.progress.issued.contains(&name) {
                    if cluster.unlock(&name).is_err() {
                        return Poll::Done(StepResult::Failed, "host unlock failed".into());
                    }
                    step.progress.issued.insert(name.clone());
                    changed = true;
                }
                done = false;
                continue;
            }
            // A rebooting host is not enabled-available until it is back.
            let in_service = host.oper == host_state::OperState::Enabled
                && host.availability == host_state::Availability::Available;
            if !in_service {
                done = false;
            } else if self.locked_hosts.remove(&name) {
                changed = true;
            }
        }
        if !done {
            return Poll::Pending { changed };
        }
        // Back from the reboot, a host whose health checks failed has rolled back (and
        // rebooted again): it failed, as an install does, unless it had failed already.
        let Ok(status) = cluster.patch_hosts() else {
            return Poll::Pending { changed };
        };
        for name in &step.entity_names {
            let failed_now = status
                .iter()
                .any(|p| &p.hostname == name && p.patch_failed && p.state != "installing");
            if failed_now && !self.failed_hosts.contains(name) {
                step.progress.failed.insert(name.clone());
            }
        }
        self.hosts_failed_verdict(step, &status)
    }

    fn poll_instances(&mut self, step: &mut Step, cluster: &dyn Cluster, op: InstanceOp) -> Poll {
        let mut done = true;
        for name in &step.entity_names {
            // The instance as the build found it (its host then).
            let Some(instance) = self
                .collected
                .as_ref()
                .and_then(|c| c.instances.iter().find(|i| &i.name == name))
            else {
                return Poll::Done(
                    StepResult::Failed,
                    format!("instance {name} no longer exists"),
                );
            };
            match cluster.instance_action(op, instance) {
                Ok(true) => {}
                Ok(false) => done = false,
                Err(error) => return Poll::Done(StepResult::Failed, error.to_string()),
            }
        }
        success_when(done)
    }
}

/// Everything the build's host query collects.
pub(crate) fn collect(cluster: &dyn Cluster) -> Result<Collected, ClusterError> {
    Ok(Collected {
        inventory: cluster.inventory()?,
        patch_hosts: cluster.patch_hosts()?,
        patch_count: cluster.patch_count()?,
        instances: cluster.instances()?,
        local_controller: cluster.local_controller(),
    })
}
