//! The subcloud patch strategy (the original's `sw-update-strategy` of type `patch`): which
//! subclouds it covers, in which stages, each subcloud's step state, the per-subcloud
//! options its own patch strategy is created with, and the rules deciding what runs next.
//! Pure values and rules; the database keeps them ([`crate::db`]) and the runner carries
//! them out ([`crate::orchestrate`]).

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{ApplyType, Group, Subcloud, named};

named!(
    /// The whole strategy's state (the original's names, plus `paused`).
    StrategyState, "state" {
        /// Created, not applied yet.
        Initial = "initial",
        /// Subclouds are being updated.
        Applying = "applying",
        /// The canary subclouds are done: waits for `apply` to go on with the rest.
        Paused = "paused",
        /// Abort asked: no subcloud starts; those under way finish.
        AbortRequested = "abort requested",
        /// Every subcloud is done.
        Complete = "complete",
        /// Stopped by an abort.
        Aborted = "aborted",
        /// A subcloud failed (and the strategy stopped, or finished the rest).
        Failed = "failed",
        /// Being deleted.
        Deleted = "deleted",
    }
);

named!(
    /// One subcloud's step (the original dcmanager's state names).
    StepState, "state" {
        /// Not started.
        Initial = "initial",
        /// Uploading the patches it lacks, applying and removing to match.
        UpdatingPatches = "updating patches",
        /// Creating its own patch strategy through its orchestration API.
        CreatingStrategy = "creating VIM patch strategy",
        /// Applying that strategy and waiting for it.
        ApplyingStrategy = "applying VIM patch strategy",
        /// Deleting the applied strategy.
        DeletingStrategy = "deleting VIM patch strategy",
        /// Checking it is in sync with every host patched.
        Finishing = "finishing patch strategy",
        /// Done.
        Complete = "complete",
        /// Failed (the details say why).
        Failed = "failed",
        /// Not started because the strategy was aborted or stopped.
        Aborted = "aborted",
    }
);

named!(
    /// Alarms a subcloud's own strategy tolerates.
    AlarmRestriction, "alarm-restriction-type" {
        /// Any alarm stops it.
        Strict = "strict",
        /// Alarms that do not affect the update are ignored.
        Relaxed = "relaxed",
    }
);

named!(
    /// What a subcloud's own strategy does with instances on a worker it locks.
    InstanceAction, "default-instance-action" {
        /// Stop them and start them again.
        StopStart = "stop-start",
        /// Migrate them away.
        Migrate = "migrate",
    }
);

impl StepState {
    /// Whether the step has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Failed | Self::Aborted)
    }

    /// Whether the step is under way (started, not ended).
    pub fn is_running(self) -> bool {
        !self.is_terminal() && self != Self::Initial
    }
}

impl StrategyState {
    /// Whether the runner has work (or in-flight steps to finish).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Applying | Self::AbortRequested)
    }
}

/// The name the default options are shown under (the original's).
pub const DEFAULT_OPTIONS_NAME: &str = "all clouds default";

/// How a subcloud's own patch strategy is created (`sw-update-options`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpdateOptions {
    /// The subcloud these are for; none for the default.
    pub cloud: Option<String>,
    /// Storage hosts one at a time or in parallel.
    pub storage_apply_type: ApplyType,
    /// Workers one at a time or in parallel.
    pub worker_apply_type: ApplyType,
    /// At most this many workers at once (2 to 100).
    pub max_parallel_workers: i64,
    /// Alarms tolerated.
    pub alarm_restriction_type: AlarmRestriction,
    /// Instances on a locked worker.
    pub default_instance_action: InstanceAction,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

impl UpdateOptions {
    /// The original's defaults.
    pub fn defaults(now: i64) -> UpdateOptions {
        UpdateOptions {
            cloud: None,
            storage_apply_type: ApplyType::Parallel,
            worker_apply_type: ApplyType::Parallel,
            max_parallel_workers: 10,
            alarm_restriction_type: AlarmRestriction::Relaxed,
            default_instance_action: InstanceAction::Migrate,
            created_at: now,
            updated_at: now,
        }
    }

    /// The body creating a subcloud's patch strategy through its orchestration API
    /// (controllers are always patched one at a time, as the original does).
    pub fn vim_create_body(&self) -> Value {
        json!({
            "controller-apply-type": "serial",
            "storage-apply-type": self.storage_apply_type.as_str(),
            "worker-apply-type": self.worker_apply_type.as_str(),
            "max-parallel-worker-hosts": self.max_parallel_workers,
            "default-instance-action": self.default_instance_action.as_str(),
            "alarm-restrictions": self.alarm_restriction_type.as_str(),
        })
    }

    /// As the API shows them.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.cloud.as_deref().unwrap_or(DEFAULT_OPTIONS_NAME),
            "storage-apply-type": self.storage_apply_type.as_str(),
            "worker-apply-type": self.worker_apply_type.as_str(),
            "max-parallel-workers": self.max_parallel_workers,
            "alarm-restriction-type": self.alarm_restriction_type.as_str(),
            "default-instance-action": self.default_instance_action.as_str(),
            "created-at": self.created_at,
            "updated-at": self.updated_at,
        })
    }
}

/// Checks a worker parallelism the subcloud's orchestration API accepts.
pub fn check_max_parallel_workers(n: i64) -> Result<(), String> {
    if (2..=100).contains(&n) {
        Ok(())
    } else {
        Err(format!("max-parallel-workers must be 2 to 100, not {n}"))
    }
}

/// What `patch-strategy create` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StrategySpec {
    /// Serial or parallel for every subcloud (none: each group's own).
    pub subcloud_apply_type: Option<ApplyType>,
    /// At most this many subclouds at once (none: each group's own).
    pub max_parallel_subclouds: Option<i64>,
    /// Start no subcloud after one failed.
    pub stop_on_failure: bool,
    /// Start no subcloud once more than this many failed (none: no limit).
    pub max_failed_subclouds: Option<i64>,
    /// This many subclouds first, alone; then the strategy pauses until applied again.
    pub canary: i64,
    /// Only upload the patches each subcloud lacks (nothing applied or installed).
    pub upload_only: bool,
    /// One subcloud only.
    pub cloud_name: Option<String>,
    /// One group only (name or id).
    pub group: Option<String>,
}

impl StrategySpec {
    /// How many failed subclouds are tolerated before no more start (none: any number).
    pub fn failure_budget(&self) -> Option<i64> {
        if self.stop_on_failure {
            Some(0)
        } else {
            self.max_failed_subclouds
        }
    }
}

/// The strategy as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwUpdateStrategy {
    /// What was asked.
    pub spec: StrategySpec,
    /// Its state.
    pub state: StrategyState,
    /// Whether the canary stage was passed (an `apply` after the pause).
    pub canary_done: bool,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// One subcloud's step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyStep {
    /// The subcloud's id.
    pub subcloud_id: i64,
    /// Its name.
    pub cloud: String,
    /// The stage it is in (from 1; stages run one after another).
    pub stage: i64,
    /// Where it is.
    pub state: StepState,
    /// Why it failed, or what it is doing.
    pub details: String,
    /// Seconds since the epoch.
    pub started_at: Option<i64>,
    /// Seconds since the epoch.
    pub finished_at: Option<i64>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

/// Where a step is: what the runner's rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepStatus {
    /// The subcloud's id.
    pub subcloud_id: i64,
    /// Its stage.
    pub stage: i64,
    /// Its state.
    pub state: StepState,
}

/// Splits the subclouds (each with its group, in the order to update them) into stages:
/// the canary first when asked, then either the strategy's own apply type and limit for
/// all, or each group's (groups in order, each one's subclouds in chunks of its limit).
/// Returns (subcloud id, stage) pairs, stages from 1.
pub fn plan_stages(subclouds: &[(Subcloud, Group)], spec: &StrategySpec) -> Vec<(i64, i64)> {
    let mut out = Vec::with_capacity(subclouds.len());
    let mut stage = 0;
    let canary = usize::try_from(spec.canary.max(0))
        .unwrap_or(0)
        .min(subclouds.len());
    if canary > 0 {
        stage += 1;
        out.extend(subclouds[..canary].iter().map(|(s, _)| (s.id, stage)));
    }
    let rest = &subclouds[canary..];
    let width = |apply: ApplyType, max: i64| match apply {
        ApplyType::Serial => 1,
        ApplyType::Parallel => usize::try_from(max.max(1)).unwrap_or(1),
    };
    if spec.subcloud_apply_type.is_some() || spec.max_parallel_subclouds.is_some() {
        let apply = spec.subcloud_apply_type.unwrap_or(ApplyType::Parallel);
        let max = spec.max_parallel_subclouds.unwrap_or(2);
        for chunk in rest.chunks(width(apply, max)) {
            stage += 1;
            out.extend(chunk.iter().map(|(s, _)| (s.id, stage)));
        }
        return out;
    }
    let mut i = 0;
    while i < rest.len() {
        let group = &rest[i].1;
        let end = rest[i..]
            .iter()
            .position(|(_, g)| g.id != group.id)
            .map_or(rest.len(), |n| i + n);
        let w = width(group.update_apply_type, group.max_parallel_subclouds);
        for chunk in rest[i..end].chunks(w) {
            stage += 1;
            out.extend(chunk.iter().map(|(s, _)| (s.id, stage)));
        }
        i = end;
    }
    out
}

/// What the runner does next with an active strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Steps (subcloud ids) that must have a task: those under way, and those of the current
    /// stage that may start.
    pub run: Vec<i64>,
    /// Steps not started that will not be (set to aborted).
    pub abort: Vec<i64>,
    /// The strategy's new state, once nothing runs.
    pub then: Option<StrategyState>,
}

/// The rules: stages one after another; a failed subcloud counts against the budget
/// (`--stop-on-failure` = 0, `--max-failed-subclouds`); beyond it, or once abort is asked,
/// nothing new starts and those under way finish; a failed canary stops everything; a
/// passed canary pauses until applied again.
pub fn decide(strategy: &SwUpdateStrategy, steps: &[StepStatus]) -> Decision {
    let failed = steps
        .iter()
        .filter(|s| s.state == StepState::Failed)
        .count() as i64;
    let running: Vec<i64> = steps
        .iter()
        .filter(|s| s.state.is_running())
        .map(|s| s.subcloud_id)
        .collect();
    let canary_failed = strategy.spec.canary > 0
        && steps
            .iter()
            .any(|s| s.stage == 1 && s.state == StepState::Failed);
    let over_budget = canary_failed
        || strategy
            .spec
            .failure_budget()
            .is_some_and(|budget| failed > budget);
    let stopping = strategy.state == StrategyState::AbortRequested || over_budget;
    if stopping {
        let abort = steps
            .iter()
            .filter(|s| s.state == StepState::Initial)
            .map(|s| s.subcloud_id)
            .collect();
        let then =
            running
                .is_empty()
                .then_some(if strategy.state == StrategyState::AbortRequested {
                    StrategyState::Aborted
                } else {
                    StrategyState::Failed
                });
        return Decision {
            run: running,
            abort,
            then,
        };
    }
    let Some(stage) = steps
        .iter()
        .filter(|s| !s.state.is_terminal())
        .map(|s| s.stage)
        .min()
    else {
        let then = if failed == 0 {
            StrategyState::Complete
        } else {
            StrategyState::Failed
        };
        return Decision {
            run: Vec::new(),
            abort: Vec::new(),
            then: Some(then),
        };
    };
    if strategy.spec.canary > 0 && stage > 1 && !strategy.canary_done && running.is_empty() {
        return Decision {
            run: Vec::new(),
            abort: Vec::new(),
            then: Some(StrategyState::Paused),
        };
    }
    let mut run = running;
    run.extend(
        steps
            .iter()
            .filter(|s| s.stage == stage && s.state == StepState::Initial)
            .map(|s| s.subcloud_id),
    );
    Decision {
        run,
        abort: Vec::new(),
        then: None,
    }
}

/// The strategy as the API shows it, with its steps' progress.
pub fn strategy_json(s: &SwUpdateStrategy, steps: &[StrategyStep]) -> Value {
    let count = |state: StepState| steps.iter().filter(|st| st.state == state).count();
    let failed: Vec<Value> = steps
        .iter()
        .filter(|st| st.state == StepState::Failed)
        .map(|st| json!({"cloud": st.cloud, "reason": st.details}))
        .collect();
    json!({
        "id": 1,
        "type": "patch",
        "subcloud-apply-type": s.spec.subcloud_apply_type.map(ApplyType::as_str),
        "max-parallel-subclouds": s.spec.max_parallel_subclouds,
        "stop-on-failure": s.spec.stop_on_failure,
        "max-failed-subclouds": s.spec.max_failed_subclouds,
        "canary": s.spec.canary,
        "cloud_name": s.spec.cloud_name,
        "subcloud_group": s.spec.group,
        "state": s.state.as_str(),
        "created-at": s.created_at,
        "updated-at": s.updated_at,
        "extra-args": {"upload-only": s.spec.upload_only},
        "progress": {
            "total": steps.len(),
            "stages": steps.iter().map(|st| st.stage).max().unwrap_or(0),
            "complete": count(StepState::Complete),
            "failed": count(StepState::Failed),
            "aborted": count(StepState::Aborted),
            "initial": count(StepState::Initial),
            "in-progress": steps.iter().filter(|st| st.state.is_running()).count(),
        },
        "failed-subclouds": failed,
    })
}

/// One step as the API shows it.
pub fn step_json(s: &StrategyStep) -> Value {
    json!({
        "cloud": s.cloud,
        "stage": s.stage,
        "state": s.state.as_str(),
        "details": s.details,
        "started-at": s.started_at,
        "finished-at": s.finished_at,
        "created-at": s.created_at,
        "updated-at": s.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Availability, Management, SyncStatus};

    fn subcloud(id: i64, group: &Group) -> (Subcloud, Group) {
        (
            Subcloud {
                id,
                name: format!("subcloud{id}"),
                url: String::new(),
                vim_url: None,
                description: String::new(),
                location: String::new(),
                group_id: group.id,
                management: Management::Managed,
                availability: Availability::Online,
                sync_status: SyncStatus::OutOfSync,
                sync_detail: String::new(),
                created_at: 0,
                updated_at: 0,
                audited_at: None,
            },
            group.clone(),
        )
    }

    fn group(id: i64, apply: ApplyType, max: i64) -> Group {
        Group {
            id,
            name: format!("g{id}"),
            description: String::new(),
            update_apply_type: apply,
            max_parallel_subclouds: max,
        }
    }

    #[test]
    fn stages_follow_the_groups_or_the_strategys_own_limit() {
        let a = group(1, ApplyType::Parallel, 2);
        let b = group(2, ApplyType::Serial, 5);
        let clouds: Vec<_> = [(1, &a), (2, &a), (3, &a), (4, &b), (5, &b)]
            .into_iter()
            .map(|(id, g)| subcloud(id, g))
            .collect();
        let spec = StrategySpec::default();
        assert_eq!(
            plan_stages(&clouds, &spec),
            vec![(1, 1), (2, 1), (3, 2), (4, 3), (5, 4)]
        );
        let spec = StrategySpec {
            subcloud_apply_type: Some(ApplyType::Parallel),
            max_parallel_subclouds: Some(3),
            canary: 1,
            ..StrategySpec::default()
        };
        assert_eq!(
            plan_stages(&clouds, &spec),
            vec![(1, 1), (2, 2), (3, 2), (4, 2), (5, 3)]
        );
    }

    fn step(id: i64, stage: i64, state: StepState) -> StepStatus {
        StepStatus {
            subcloud_id: id,
            stage,
            state,
        }
    }

    fn strategy(spec: StrategySpec) -> SwUpdateStrategy {
        SwUpdateStrategy {
            spec,
            state: StrategyState::Applying,
            canary_done: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn stages_run_in_order_and_the_budget_stops_new_subclouds() {
        use StepState::*;
        let s = strategy(StrategySpec::default());
        let steps = vec![
            step(1, 1, Complete),
            step(2, 1, ApplyingStrategy),
            step(3, 2, Initial),
        ];
        assert_eq!(decide(&s, &steps).run, vec![2]);
        let steps = vec![
            step(1, 1, Failed),
            step(2, 1, Complete),
            step(3, 2, Initial),
        ];
        // No budget given: the rest go on.
        assert_eq!(decide(&s, &steps).run, vec![3]);
        let stop = strategy(StrategySpec {
            stop_on_failure: true,
            ..StrategySpec::default()
        });
        let d = decide(&stop, &steps);
        assert_eq!(
            (d.run, d.abort, d.then),
            (vec![], vec![3], Some(StrategyState::Failed))
        );
        // Those under way finish first.
        let steps = vec![
            step(1, 1, Failed),
            step(2, 1, ApplyingStrategy),
            step(3, 2, Initial),
        ];
        let d = decide(&stop, &steps);
        assert_eq!((d.run, d.then), (vec![2], None));
        let budget = strategy(StrategySpec {
            max_failed_subclouds: Some(1),
            ..StrategySpec::default()
        });
        let steps = vec![
            step(1, 1, Failed),
            step(2, 1, Complete),
            step(3, 2, Initial),
        ];
        assert_eq!(decide(&budget, &steps).run, vec![3]);
        let steps = vec![step(1, 1, Failed), step(2, 1, Failed), step(3, 2, Initial)];
        assert_eq!(decide(&budget, &steps).then, Some(StrategyState::Failed));
        let done = vec![step(1, 1, Complete), step(2, 1, Complete)];
        assert_eq!(decide(&s, &done).then, Some(StrategyState::Complete));
    }

    #[test]
    fn a_canary_pauses_when_passed_and_stops_everything_when_failed() {
        use StepState::*;
        let mut s = strategy(StrategySpec {
            canary: 1,
            max_failed_subclouds: Some(5),
            ..StrategySpec::default()
        });
        let steps = vec![step(1, 1, Complete), step(2, 2, Initial)];
        assert_eq!(decide(&s, &steps).then, Some(StrategyState::Paused));
        s.canary_done = true;
        assert_eq!(decide(&s, &steps).run, vec![2]);
        let failed = vec![step(1, 1, Failed), step(2, 2, Initial)];
        let d = decide(&s, &failed);
        assert_eq!((d.abort, d.then), (vec![2], Some(StrategyState::Failed)));
    }

    #[test]
    fn an_abort_lets_those_under_way_finish() {
        use StepState::*;
        let mut s = strategy(StrategySpec::default());
        s.state = StrategyState::AbortRequested;
        let steps = vec![
            step(1, 1, Complete),
            step(2, 1, UpdatingPatches),
            step(3, 2, Initial),
        ];
        let d = decide(&s, &steps);
        assert_eq!((d.run, d.abort, d.then), (vec![2], vec![3], None));
        let steps = vec![
            step(1, 1, Complete),
            step(2, 1, Complete),
            step(3, 2, Aborted),
        ];
        assert_eq!(decide(&s, &steps).then, Some(StrategyState::Aborted));
    }

    #[test]
    fn the_subclouds_strategy_is_created_with_the_options() {
        let o = UpdateOptions::defaults(0);
        assert_eq!(o.vim_create_body()["max-parallel-worker-hosts"], 10);
        assert_eq!(o.to_json()["name"], DEFAULT_OPTIONS_NAME);
        assert!(check_max_parallel_workers(1).is_err());
    }
}
