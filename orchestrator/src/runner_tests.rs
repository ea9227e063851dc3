//! The runner against an in-memory cluster whose hosts take a few polls to install, lock and
//! reboot, including a restart at every save point.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use host_state::{AdminState, Availability, OperState};

use crate::builder::{Instance, InventoryHost, PatchHost};
use crate::cluster::{Cluster, ClusterError, InstanceOp};
use crate::model::{
    Alarm, ApplyType, PhaseName, StepResult, Strategy, StrategyOptions, StrategyState,
};
use crate::timing::Timing;

#[derive(Clone, Debug)]
struct FakeHost {
    inv: InventoryHost,
    /// Needs a patch (none means patch-current).
    needs_patch: bool,
    reboot_patch: bool,
    reboot_pending: bool,
    /// Polls left until the running install finishes.
    installing: u32,
    rebooting: u32,
    fails: bool,
    failed: bool,
    installs: u32,
}

#[derive(Default)]
struct State {
    hosts: Vec<FakeHost>,
    alarms: Vec<Alarm>,
    locks: BTreeMap<String, u32>,
    instances: Vec<Instance>,
    /// The active controller the orchestrator runs on, if it runs on one.
    local: Option<String>,
    /// Swacts of the local controller asked for.
    swacts: u32,
    /// Hosts whose compute services are disabled.
    services_disabled: BTreeSet<String>,
}

#[derive(Default)]
struct Fake(RefCell<State>);

impl Fake {
    fn new(hosts: &[(&str, &str)], reboot: bool) -> Fake {
        let fake = Fake::default();
        for (name, personality) in hosts {
            fake.0.borrow_mut().hosts.push(FakeHost {
                inv: InventoryHost {
                    name: (*name).into(),
                    uuid: format!("uuid-{name}"),
                    personality: (*personality).into(),
                    subfunctions: vec![(*personality).into()],
                    admin: AdminState::Unlocked,
                    oper: OperState::Enabled,
                    availability: Availability::Available,
                    openstack_compute: false,
                    openstack_control: false,
                    replication_group: None,
                    aggregates: vec![],
                },
                needs_patch: true,
                reboot_patch: reboot,
                reboot_pending: false,
                installing: 0,
                rebooting: 0,
                fails: false,
                failed: false,
                installs: 0,
            });
        }
        fake
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut FakeHost) -> R) -> R {
        let mut s = self.0.borrow_mut();
        let host = s.hosts.iter_mut().find(|h| h.inv.name == name).unwrap();
        f(host)
    }

    /// Time passes: installs and reboots progress.
    fn progress(&self) {
        for h in &mut self.0.borrow_mut().hosts {
            if h.installing > 0 {
                h.installing -= 1;
                if h.installing == 0 {
                    if h.fails {
                        h.failed = true;
                    } else {
                        h.needs_patch = false;
                        h.reboot_pending = h.reboot_patch;
                        h.failed = false;
                    }
                }
            }
            if h.rebooting > 0 {
                h.rebooting -= 1;
                if h.rebooting == 0 {
                    h.reboot_pending = false;
                    h.inv.availability = if h.inv.admin == AdminState::Locked {
                        Availability::Online
                    } else {
                        Availability::Available
                    };
                    h.inv.oper = if h.inv.admin == AdminState::Locked {
                        OperState::Disabled
                    } else {
                        OperState::Enabled
                    };
                }
            }
        }
    }

    fn installs(&self) -> BTreeMap<String, u32> {
        self.0
            .borrow()
            .hosts
            .iter()
            .map(|h| (h.inv.name.clone(), h.installs))
            .collect()
    }

    fn locked(&self) -> Vec<String> {
        self.0
            .borrow()
            .hosts
            .iter()
            .filter(|h| h.inv.admin == AdminState::Locked)
            .map(|h| h.inv.name.clone())
            .collect()
    }

    fn start_reboot(h: &mut FakeHost) {
        h.rebooting = 2;
        h.inv.availability = Availability::Offline;
        h.inv.oper = OperState::Disabled;
    }
}

impl Cluster for Fake {
    fn inventory(&self) -> Result<Vec<InventoryHost>, ClusterError> {
        Ok(self
            .0
            .borrow()
            .hosts
            .iter()
            .map(|h| h.inv.clone())
            .collect())
    }

    fn patch_hosts(&self) -> Result<Vec<PatchHost>, ClusterError> {
        Ok(self
            .0
            .borrow()
            .hosts
            .iter()
            .map(|h| PatchHost {
                hostname: h.inv.name.clone(),
                subfunctions: h.inv.subfunctions.clone(),
                requires_reboot: h.reboot_pending || (h.needs_patch && h.reboot_patch),
                patch_current: !h.needs_patch,
                patch_failed: h.failed && h.installing == 0,
                interim_state: false,
                last_error: None,
                state: if h.installing > 0 {
                    "installing".into()
                } else if h.failed {
                    "install-failed".into()
                } else {
                    "idle".into()
                },
            })
            .collect())
    }

    fn patch_count(&self) -> Result<usize, ClusterError> {
        Ok(1)
    }

    fn alarms(&self) -> Result<Vec<Alarm>, ClusterError> {
        Ok(self.0.borrow().alarms.clone())
    }

    fn instances(&self) -> Result<Vec<Instance>, ClusterError> {
        Ok(self.0.borrow().instances.clone())
    }

    fn local_controller(&self) -> Option<String> {
        self.0.borrow().local.clone()
    }

    fn lock(&self, host: &str) -> Result<(), ClusterError> {
        *self.0.borrow_mut().locks.entry(host.into()).or_default() += 1;
        self.with(host, |h| {
            h.inv.admin = AdminState::Locked;
            h.inv.oper = OperState::Disabled;
            h.inv.availability = Availability::Online;
        });
        Ok(())
    }

    fn unlock(&self, host: &str) -> Result<(), ClusterError> {
        // As the controller: an unlocked host gets its compute services back.
        self.0.borrow_mut().services_disabled.remove(host);
        self.with(host, |h| {
            h.inv.admin = AdminState::Unlocked;
            if h.reboot_pending {
                Fake::start_reboot(h);
            } else {
                h.inv.oper = OperState::Enabled;
                h.inv.availability = Availability::Available;
            }
        });
        Ok(())
    }

    fn reboot(&self, host: &str) -> Result<(), ClusterError> {
        self.with(host, Fake::start_reboot);
        Ok(())
    }

    fn install(&self, host: &str, _soak_secs: u64) -> Result<(), ClusterError> {
        self.with(host, |h| {
            if h.reboot_patch && h.inv.admin != AdminState::Locked {
                return Err(ClusterError::Refused("Node must be locked.".into()));
            }
            h.installs += 1;
            h.installing = 2;
            h.failed = false;
            Ok(())
        })
    }

    fn swact(&self, host: &str) -> Result<(), ClusterError> {
        let mut s = self.0.borrow_mut();
        if s.local.as_deref() != Some(host) {
            return Err(ClusterError::Refused("no standby controller".into()));
        }
        // The other controller takes over (the orchestrator moves with the active role).
        s.swacts += 1;
        s.local = s
            .hosts
            .iter()
            .find(|h| h.inv.personality == "controller" && h.inv.name != host)
            .map(|h| h.inv.name.clone());
        Ok(())
    }

    fn instance_action(&self, op: InstanceOp, instance: &Instance) -> Result<bool, ClusterError> {
        let mut s = self.0.borrow_mut();
        let vm = s
            .instances
            .iter_mut()
            .find(|i| i.name == instance.name)
            .ok_or_else(|| ClusterError::InstanceGone {
                name: instance.name.clone(),
            })?;
        Ok(match op {
            InstanceOp::Stop => std::mem::replace(&mut vm.locked, true),
            InstanceOp::Start => !std::mem::replace(&mut vm.locked, false),
            InstanceOp::Migrate => {
                let moved = vm.host != instance.host;
                vm.host = "elsewhere".into();
                moved
            }
        })
    }

    fn host_services(&self, host: &str, enable: bool) -> Result<bool, ClusterError> {
        let disabled = &mut self.0.borrow_mut().services_disabled;
        // Done by the next poll, as the host's hook takes a moment.
        let done = disabled.contains(host) != enable;
        if enable {
            disabled.remove(host);
        } else {
            disabled.insert(host.to_owned());
        }
        Ok(done)
    }
}

fn fast_timing() -> Timing {
    Timing {
        swact_settle: 0,
        lock_no_disable_wait: 0,
        stabilize_after_install: 0,
        stabilize_in_service: 0,
        stabilize_final: 0,
        reboot_settle: 0,
        alarms_first_query: 0,
        data_sync_first_query: 0,
        ..Timing::default()
    }
}

const CLUSTER: &[(&str, &str)] = &[
    ("controller-0", "controller"),
    ("controller-1", "controller"),
    ("worker-0", "worker"),
    ("worker-1", "worker"),
];

struct Run {
    fake: Fake,
    strategy: Strategy,
    now_ms: u64,
    saved: Vec<String>,
}

impl Run {
    fn new(fake: Fake, options: StrategyOptions) -> Run {
        Run::with_timing(fake, options, fast_timing())
    }

    fn with_timing(fake: Fake, options: StrategyOptions, timing: Timing) -> Run {
        let mut strategy = Strategy::new(options, timing, false, vec![]);
        strategy.start_build(0);
        Run {
            fake,
            strategy,
            now_ms: 0,
            saved: Vec::new(),
        }
    }

    /// One audit: time passes, the strategy advances.
    fn tick(&mut self) {
        self.now_ms += 1000;
        self.fake.progress();
        let saved = &mut self.saved;
        self.strategy
            .tick(&self.fake, self.now_ms, &mut |s: &Strategy| {
                saved.push(serde_json::to_string(s).map_err(|e| e.to_string())?);
                Ok::<(), String>(())
            })
            .unwrap();
    }

    fn until(&mut self, done: impl Fn(&Strategy) -> bool) {
        for _ in 0..500 {
            if done(&self.strategy) {
                return;
            }
            self.tick();
        }
        panic!("never reached: {:#?}", self.strategy.state);
    }

    fn until_idle(&mut self) {
        self.until(Strategy::is_idle);
    }

    fn built(mut self) -> Run {
        self.until_idle();
        assert_eq!(
            self.strategy.state,
            StrategyState::ReadyToApply,
            "{:?}",
            self.strategy.build_phase.reason
        );
        self
    }
}

#[test]
fn a_reboot_required_strategy_applies_every_host_once() {
    let mut run = Run::new(Fake::new(CLUSTER, true), StrategyOptions::default()).built();
    assert_eq!(run.strategy.apply_phase.stages.len(), 4);
    assert_eq!(run.strategy.build_phase.completion_percentage(), 100);
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until_idle();
    let s = &run.strategy;
    assert_eq!(s.state, StrategyState::Applied);
    assert_eq!(s.apply_phase.result, StepResult::Success);
    assert!(
        s.apply_phase
            .stages
            .iter()
            .all(|st| st.result == StepResult::Success)
    );
    assert!(s.locked_hosts.is_empty());
    assert!(run.fake.locked().is_empty());
    assert!(
        run.fake.installs().values().all(|&n| n == 1),
        "{:?}",
        run.fake.installs()
    );
    assert!(
        run.fake
            .patch_hosts()
            .unwrap()
            .iter()
            .all(|h| h.patch_current && !h.requires_reboot)
    );
    let step = &s.apply_phase.stages[0].steps[1];
    assert_eq!(step.name(), "swact-hosts");
    assert_eq!(step.reason, "Already on correct host");
    assert!(!step.start_date_time.is_empty() && !step.end_date_time.is_empty());
}

/// A restart at every save point: the strategy reloads from the last save and finishes with
/// every host installed once and none left locked.
#[test]
fn a_restart_at_any_save_point_resumes_and_finishes() {
    let mut reference = Run::new(Fake::new(CLUSTER, true), StrategyOptions::default()).built();
    reference.strategy.apply(None, reference.now_ms).unwrap();
    let saves_before_apply = reference.saved.len();
    reference.until_idle();
    let total = reference.saved.len();
    assert!(total - saves_before_apply > 20);
    for crash_at in saves_before_apply..total {
        let mut run = Run::new(Fake::new(CLUSTER, true), StrategyOptions::default()).built();
        run.strategy.apply(None, run.now_ms).unwrap();
        while run.saved.len() <= crash_at {
            run.tick();
        }
        // Crash right after save number `crash_at`: everything after it is lost.
        let last = run.saved[crash_at].clone();
        run.strategy = serde_json::from_str(&last).unwrap();
        run.until_idle();
        assert_eq!(
            run.strategy.state,
            StrategyState::Applied,
            "crash at save {crash_at}"
        );
        assert!(run.fake.locked().is_empty(), "crash at save {crash_at}");
        assert!(
            run.fake.installs().values().all(|&n| n == 1),
            "crash at save {crash_at}: {:?}",
            run.fake.installs()
        );
    }
}

#[test]
fn an_install_failure_auto_aborts_and_unlocks_the_failed_host() {
    let fake = Fake::new(CLUSTER, true);
    fake.with("controller-0", |h| h.fails = true);
    let mut run = Run::new(fake, StrategyOptions::default()).built();
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until_idle();
    let s = &run.strategy;
    assert_eq!(s.state, StrategyState::Aborted);
    assert_eq!(s.current_phase, PhaseName::Abort);
    assert_eq!(s.apply_phase.result, StepResult::Failed);
    assert_eq!(
        s.apply_phase.reason,
        "software update failed to apply on host controller-0"
    );
    assert_eq!(s.abort_phase.stages.len(), 1);
    assert_eq!(s.abort_phase.stages[0].name, "sw-patch-controllers");
    let undo: Vec<&str> = s.abort_phase.stages[0]
        .steps
        .iter()
        .map(|x| x.name())
        .collect();
    assert_eq!(undo, ["unlock-hosts"]);
    assert_eq!(s.abort_phase.result, StepResult::Success);
    // Later stages never started; no host is left locked (the original leaves this one).
    assert!(
        s.apply_phase.stages[1..]
            .iter()
            .all(|st| st.result == StepResult::Initial)
    );
    assert!(run.fake.locked().is_empty());
    assert_eq!(run.fake.installs()["controller-1"], 0);
}

#[test]
fn the_error_budget_lets_other_stages_finish() {
    let fake = Fake::new(CLUSTER, true);
    fake.with("worker-0", |h| h.fails = true);
    let options = StrategyOptions {
        max_failed_hosts: 1,
        ..StrategyOptions::default()
    };
    let mut run = Run::new(fake, options).built();
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until_idle();
    let s = &run.strategy;
    assert_eq!(s.state, StrategyState::Applied);
    assert_eq!(s.apply_phase.result, StepResult::Degraded);
    assert_eq!(s.failed_hosts, BTreeSet::from(["worker-0".to_string()]));
    assert_eq!(s.apply_phase.stages[2].result, StepResult::Degraded);
    assert_eq!(s.apply_phase.stages[3].result, StepResult::Success);
    assert!(run.fake.locked().is_empty());
    let current: Vec<bool> = run
        .fake
        .patch_hosts()
        .unwrap()
        .iter()
        .map(|h| h.patch_current)
        .collect();
    assert_eq!(current, [true, true, false, true]);
}

#[test]
fn a_second_failure_beyond_the_budget_aborts() {
    let fake = Fake::new(CLUSTER, true);
    fake.with("worker-0", |h| h.fails = true);
    fake.with("worker-1", |h| h.fails = true);
    let options = StrategyOptions {
        max_failed_hosts: 1,
        ..StrategyOptions::default()
    };
    let mut run = Run::new(fake, options).built();
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until_idle();
    assert_eq!(run.strategy.state, StrategyState::Aborted);
    assert_eq!(run.strategy.failed_hosts.len(), 2);
    assert!(run.fake.locked().is_empty());
}

#[test]
fn apply_stage_then_apply_all_with_the_original_refusals() {
    let mut run = Run::new(Fake::new(CLUSTER, false), StrategyOptions::default()).built();
    let now = run.now_ms;
    assert_eq!(
        run.strategy.apply(Some(2), now).unwrap_err().to_string(),
        "invalid stage id 2 for the apply, total-stages are 4"
    );
    run.strategy.apply(Some(0), now).unwrap();
    run.until_idle();
    let s = &run.strategy;
    assert_eq!(s.state, StrategyState::Applying);
    assert!(s.apply_phase.inprogress);
    assert_eq!(s.apply_phase.current_stage, 1);
    assert_eq!(s.apply_phase.stages[0].result, StepResult::Success);
    assert_eq!(s.apply_phase.stages[1].result, StepResult::Initial);
    let now = run.now_ms;
    assert_eq!(
        run.strategy.apply(Some(0), now).unwrap_err().to_string(),
        "apply already complete for stage id 0"
    );
    assert_eq!(
        run.strategy.apply(Some(3), now).unwrap_err().to_string(),
        "stage id 3 is not the next stage to be applied, next-stage = 1"
    );
    run.strategy.apply(Some(1), now).unwrap();
    run.tick();
    assert_eq!(
        run.strategy
            .apply(None, run.now_ms)
            .unwrap_err()
            .to_string(),
        "apply already inprogress"
    );
    run.until_idle();
    assert_eq!(run.strategy.apply_phase.current_stage, 2);
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until_idle();
    assert_eq!(run.strategy.state, StrategyState::Applied);
    assert_eq!(
        run.strategy
            .apply(None, run.now_ms)
            .unwrap_err()
            .to_string(),
        "apply already completed"
    );
    // In-service: nothing was locked.
    assert!(run.fake.0.borrow().locks.is_empty());
}

#[test]
fn abort_mid_stage_lets_the_step_finish_then_unlocks() {
    let mut run = Run::new(Fake::new(CLUSTER, true), StrategyOptions::default()).built();
    run.strategy.apply(None, run.now_ms).unwrap();
    // Run until the first stage's install step is running.
    run.until(|s| {
        let stage = &s.apply_phase.stages[0];
        stage.steps[3].result == StepResult::Inprogress
    });
    assert_eq!(
        run.strategy
            .abort(Some(1), run.now_ms)
            .unwrap_err()
            .to_string(),
        "apply not inprogress for stage id 1"
    );
    run.strategy.abort(Some(0), run.now_ms).unwrap();
    assert_eq!(run.strategy.state, StrategyState::Aborting);
    assert_eq!(
        run.strategy.check_delete(false).unwrap_err().to_string(),
        "strategy is being aborted, can't delete"
    );
    run.until_idle();
    let s = &run.strategy;
    assert_eq!(s.state, StrategyState::Aborted);
    let stage = &s.apply_phase.stages[0];
    // The install step finished; the rest of the stage never ran.
    assert_eq!(stage.steps[3].result, StepResult::Success);
    assert_eq!(stage.steps[4].result, StepResult::Initial);
    assert_eq!(stage.result, StepResult::Aborted);
    assert_eq!(s.apply_phase.result, StepResult::Aborted);
    assert!(
        s.apply_phase.stages[1..]
            .iter()
            .all(|st| st.result == StepResult::Initial)
    );
    assert!(run.fake.locked().is_empty());
    // The aborted host was installed; its reboot happened through the unlock.
    assert_eq!(run.fake.installs()["controller-0"], 1);
    assert!(run.strategy.check_delete(false).is_ok());
    assert_eq!(
        run.strategy
            .abort(None, run.now_ms)
            .unwrap_err()
            .to_string(),
        "apply not inprogress"
    );
    assert_eq!(
        run.strategy
            .apply(None, run.now_ms)
            .unwrap_err()
            .to_string(),
        "apply not supported during an abort"
    );
}

#[test]
fn abort_while_paused_between_stages_is_immediate() {
    let mut run = Run::new(Fake::new(CLUSTER, true), StrategyOptions::default()).built();
    run.strategy.apply(Some(0), run.now_ms).unwrap();
    run.until_idle();
    run.strategy.abort(None, run.now_ms).unwrap();
    assert_eq!(run.strategy.state, StrategyState::Aborted);
    assert_eq!(run.strategy.apply_phase.result, StepResult::Aborted);
}

#[test]
fn build_refusals_end_build_failed_with_the_reason() {
    let fake = Fake::new(CLUSTER, true);
    fake.0.borrow_mut().alarms.push(Alarm {
        uuid: "a".into(),
        alarm_id: "100.101".into(),
        entity_instance_id: "host=worker-0".into(),
        severity: "major".into(),
        reason_text: "hot".into(),
        mgmt_affecting: true,
        raised_at: 0,
    });
    let mut run = Run::new(fake, StrategyOptions::default());
    assert_eq!(
        run.strategy.check_delete(false).unwrap_err().to_string(),
        "strategy is being built, can't delete"
    );
    run.until_idle();
    assert_eq!(run.strategy.state, StrategyState::BuildFailed);
    assert_eq!(run.strategy.build_phase.result, StepResult::Failed);
    assert_eq!(run.strategy.build_phase.reason, "active alarms present");
    assert_eq!(
        run.strategy
            .apply(None, run.now_ms)
            .unwrap_err()
            .to_string(),
        "active alarms present"
    );
}

#[test]
fn an_alarm_raised_mid_apply_fails_the_next_stage() {
    let mut run = Run::new(Fake::new(CLUSTER, false), StrategyOptions::default()).built();
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until(|s| s.apply_phase.current_stage == 1);
    run.fake.0.borrow_mut().alarms.push(Alarm {
        uuid: "a".into(),
        alarm_id: "100.101".into(),
        entity_instance_id: "host=worker-0".into(),
        severity: "major".into(),
        reason_text: "hot".into(),
        mgmt_affecting: true,
        raised_at: 0,
    });
    run.until_idle();
    assert_eq!(run.strategy.state, StrategyState::Aborted);
    assert_eq!(
        run.strategy.apply_phase.reason,
        "alarms ['100.101'] from platform are present"
    );
}

#[test]
fn worker_apply_type_ignore_with_parallel_controllers_refuses() {
    let options = StrategyOptions {
        controller_apply_type: ApplyType::Parallel,
        ..StrategyOptions::default()
    };
    let mut run = Run::new(Fake::new(CLUSTER, true), options);
    run.until_idle();
    assert_eq!(
        run.strategy.build_phase.reason,
        "parallel apply type not allowed for controllers"
    );
}

#[test]
fn stop_start_instances_around_the_lock() {
    let fake = Fake::new(CLUSTER, true);
    fake.0.borrow_mut().instances = vec![Instance {
        name: "vm-1".into(),
        uuid: "u".into(),
        host: "worker-1".into(),
        locked: false,
        groups: vec![],
    }];
    let mut run = Run::new(fake, StrategyOptions::default()).built();
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until_idle();
    let s = &run.strategy;
    assert_eq!(s.state, StrategyState::Applied);
    let names: Vec<&str> = s.apply_phase.stages[3]
        .steps
        .iter()
        .map(|x| x.name())
        .collect();
    assert!(names.contains(&"stop-instances") && names.contains(&"start-instances"));
    assert!(!run.fake.0.borrow().instances[0].locked, "started again");
}

#[test]
fn an_instance_gone_since_the_build_fails_its_step() {
    let fake = Fake::new(CLUSTER, true);
    fake.0.borrow_mut().instances = vec![Instance {
        name: "vm-1".into(),
        uuid: "u".into(),
        host: "worker-1".into(),
        locked: false,
        groups: vec![],
    }];
    let mut run = Run::new(fake, StrategyOptions::default()).built();
    run.fake.0.borrow_mut().instances.clear();
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until_idle();
    // The abort's start-instances cannot start it either: abort-failed, as the original.
    assert_eq!(run.strategy.state, StrategyState::AbortFailed);
    assert_eq!(
        run.strategy.apply_phase.reason,
        "instance vm-1 no longer exists"
    );
    assert!(run.fake.locked().is_empty());
}

/// The controller the orchestrator runs on is patched last, after a swact moved the active
/// role (and the orchestrator) to the other controller, which then finishes the strategy.
#[test]
fn the_local_controller_is_swacted_away_before_it_is_locked() {
    let fake = Fake::new(CLUSTER, true);
    fake.0.borrow_mut().local = Some("controller-0".into());
    let mut run = Run::new(fake, StrategyOptions::default()).built();
    run.strategy.apply(None, run.now_ms).unwrap();
    run.until_idle();
    let s = &run.strategy;
    assert_eq!(s.state, StrategyState::Applied);
    assert_eq!(run.fake.0.borrow().swacts, 1);
    assert_eq!(run.fake.0.borrow().local.as_deref(), Some("controller-1"));
    let controller_stages: Vec<_> = s
        .apply_phase
        .stages
        .iter()
        .filter(|st| st.steps.iter().any(|step| step.name() == "swact-hosts"))
        .collect();
    // The standby first (nothing to swact), the local controller last (swacted).
    let swact = |i: usize| {
        controller_stages[i]
            .steps
            .iter()
            .find(|step| step.name() == "swact-hosts")
            .unwrap()
    };
    assert_eq!(swact(0).entity_names, vec!["controller-1".to_owned()]);
    assert_eq!(swact(0).reason, "Already on correct host");
    assert_eq!(swact(1).entity_names, vec!["controller-0".to_owned()]);
    assert_eq!(swact(1).result, StepResult::Success);
    assert_eq!(swact(1).reason, "");
    assert!(run.fake.installs().values().all(|&n| n == 1));
}

/// Clusters whose strategies between them hold every step kind an apply phase can have.
fn every_step_kind_clusters() -> Vec<(&'static str, Fake, StrategyOptions)> {
    let vm = |name: &str, host: &str| Instance {
        name: name.into(),
        uuid: format!("u-{name}"),
        host: host.into(),
        locked: false,
        groups: vec![],
    };
    // Reboot-required, the orchestrator on controller-0 (swacted away), storage in a
    // replication group, a stopped-and-started instance on worker-1.
    let hosts = &[
        ("controller-0", "controller"),
        ("controller-1", "controller"),
        ("storage-0", "storage"),
        ("storage-1", "storage"),
        ("worker-0", "worker"),
        ("worker-1", "worker"),
    ];
    let stop_start = Fake::new(hosts, true);
    {
        let mut s = stop_start.0.borrow_mut();
        s.local = Some("controller-0".into());
        s.instances = vec![vm("vm-1", "worker-1")];
        for h in &mut s.hosts {
            if h.inv.personality == "storage" {
                h.inv.replication_group = Some("group-0".into());
            }
        }
    }
    // OpenStack computes patched in parallel whose instances migrate: their services are
    // disabled first.
    let migrate = Fake::new(CLUSTER, true);
    {
        let mut s = migrate.0.borrow_mut();
        s.instances = vec![vm("vm-2", "worker-0")];
        for h in &mut s.hosts {
            h.inv.openstack_compute = h.inv.personality == "worker";
        }
    }
    // In service, one canary watched for a soak before the rest.
    let canary = Fake::new(CLUSTER, false);
    vec![
        ("stop-start", stop_start, StrategyOptions::default()),
        (
            "migrate",
            migrate,
            StrategyOptions {
                default_instance_action: crate::model::InstanceAction::Migrate,
                worker_apply_type: ApplyType::Parallel,
                ..StrategyOptions::default()
            },
        ),
        (
            "canary",
            canary,
            StrategyOptions {
                canary_hosts: 1,
                canary_soak_secs: Some(3),
                ..StrategyOptions::default()
            },
        ),
    ]
}

/// An abort asked for while any step of any kind runs ends with the cluster consistent: no
/// host left locked, installing or waiting for its reboot, no compute service left
/// disabled, no instance left stopped; and the abort waited for the running step.
#[test]
fn an_abort_at_every_step_of_every_kind_leaves_the_cluster_consistent() {
    let mut kinds_seen = BTreeSet::new();
    let mut kinds_planned = BTreeSet::new();
    // Timed waits long enough (in audits) to be caught running.
    let timing = Timing {
        stabilize_after_install: 3,
        stabilize_in_service: 3,
        stabilize_final: 3,
        alarms_first_query: 2,
        data_sync_first_query: 2,
        ..fast_timing()
    };
    for (name, fake, options) in every_step_kind_clusters() {
        let plan = Run::with_timing(fake, options.clone(), timing.clone()).built();
        let positions: Vec<(usize, usize)> = plan
            .strategy
            .apply_phase
            .stages
            .iter()
            .enumerate()
            .flat_map(|(i, stage)| (0..stage.steps.len()).map(move |j| (i, j)))
            .collect();
        for stage in &plan.strategy.apply_phase.stages {
            kinds_planned.extend(stage.steps.iter().map(|s| s.name()));
        }
        let (_, fake, _) = every_step_kind_clusters()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .unwrap();
        drop(plan);
        let mut template = Some(fake);
        for (i, j) in positions {
            let fake = template.take().unwrap_or_else(|| {
                every_step_kind_clusters()
                    .into_iter()
                    .find(|(n, _, _)| *n == name)
                    .unwrap()
                    .1
            });
            let mut run = Run::with_timing(fake, options.clone(), timing.clone()).built();
            run.strategy.apply(None, run.now_ms).unwrap();
            let mut running = None;
            for _ in 0..500 {
                let phase = &run.strategy.apply_phase;
                let stage = &phase.stages[phase.current_stage.min(phase.stages.len() - 1)];
                if phase.current_stage == i
                    && stage.current_step == j
                    && stage.steps[j].result == StepResult::Inprogress
                {
                    running = Some(stage.steps[j].name());
                    break;
                }
                if run.strategy.state != StrategyState::Applying {
                    break;
                }
                run.tick();
            }
            let at = format!("{name}: stage {i} step {j}");
            let Some(kind) = running else {
                // A step that starts and ends within one audit is never seen running.
                continue;
            };
            kinds_seen.insert(kind);
            run.strategy
                .abort(None, run.now_ms)
                .unwrap_or_else(|e| panic!("{at} ({kind}): abort refused: {e}"));
            run.until_idle();
            let s = &run.strategy;
            assert_eq!(s.state, StrategyState::Aborted, "{at} ({kind})");
            // The running step was let finish, never cut short.
            let step = &s.apply_phase.stages[i].steps[j];
            assert_ne!(step.result, StepResult::Inprogress, "{at} ({kind})");
            assert_ne!(step.result, StepResult::Initial, "{at} ({kind})");
            let state = run.fake.0.borrow();
            for h in &state.hosts {
                let host = &h.inv.name;
                assert_eq!(h.inv.admin, AdminState::Unlocked, "{at} ({kind}): {host}");
                assert_eq!(h.installing, 0, "{at} ({kind}): {host} installing");
                assert!(!h.reboot_pending, "{at} ({kind}): {host} awaits its reboot");
                assert_eq!(h.rebooting, 0, "{at} ({kind}): {host} rebooting");
                assert_eq!(
                    h.inv.availability,
                    Availability::Available,
                    "{at} ({kind}): {host}"
                );
            }
            assert!(
                state.services_disabled.is_empty(),
                "{at} ({kind}): services left disabled on {:?}",
                state.services_disabled
            );
            for vm in &state.instances {
                assert!(!vm.locked, "{at} ({kind}): {} left stopped", vm.name);
            }
        }
    }
    // Every kind planned was caught running at least once (the instant ones aside).
    let instant = BTreeSet::from(["query-alarms"]);
    let missed: Vec<_> = kinds_planned
        .difference(&kinds_seen)
        .filter(|k| !instant.contains(*k))
        .collect();
    assert!(missed.is_empty(), "never aborted during {missed:?}");
    for kind in [
        "swact-hosts",
        "lock-hosts",
        "stop-instances",
        "disable-host-services",
        "migrate-instances-from-host",
        "sw-patch-hosts",
        "system-stabilize",
        "unlock-hosts",
        "start-instances",
        "wait-data-sync",
        "canary-soak",
    ] {
        assert!(kinds_planned.contains(kind), "no strategy plans {kind}");
    }
}
