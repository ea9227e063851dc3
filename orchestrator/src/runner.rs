//! The runner: a state machine driven by [`Strategy::tick`]. Each tick advances the strategy
//! as far as it can without waiting, calling `save` after every transition and before the
//! next side effect, so a process killed at any instant resumes from the saved strategy.
//! Steps' side effects are idempotent on resume: each checks the cluster before acting
//! (a host already locked is not locked again; a patch-current host is not installed).

use std::collections::BTreeSet;

use crate::builder::{BuildRefusal, PlanContext, plan};
use crate::cluster::{Cluster, ClusterError};
use crate::model::{
    Phase, PhaseName, Stage, Step, StepKind, StepProgress, StepResult, Strategy, StrategyOptions,
    StrategyState, timestamp,
};
use crate::steps::{Poll, collect};
use crate::timing::Timing;

/// Why an action (apply, abort, delete) was refused; the texts are the original's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActionRefused(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, ActionRefused> {
    Err(ActionRefused(message.into()))
}

/// What one advance of the state machine did.
enum Advance {
    /// A transition: save, then keep going.
    Moved,
    /// Nothing more to do now; save first if `changed`.
    Parked { changed: bool },
}

impl Strategy {
    /// A new strategy in state `initial`, with its build phase laid out.
    pub fn new(
        options: StrategyOptions,
        timing: Timing,
        single_controller: bool,
        ignore_alarms: Vec<String>,
    ) -> Strategy {
        let mut build = Phase::new(PhaseName::Build);
        build.set_stages(vec![Stage::new(
            "sw-patch-query",
            vec![
                Step::plain(
                    StepKind::QueryAlarms {
                        fail_on_alarms: false,
                    },
                    timing.query,
                ),
                Step::plain(StepKind::QuerySwPatches, timing.query),
                Step::plain(StepKind::QuerySwPatchHosts, timing.query),
            ],
        )]);
        Strategy {
            uuid: uuid::Uuid::new_v4().to_string(),
            name: "sw-patch".into(),
            options,
            timing,
            single_controller,
            ignore_alarms,
            alarm_baseline: Vec::new(),
            state: StrategyState::Initial,
            current_phase: PhaseName::Initial,
            build_phase: build,
            apply_phase: Phase::new(PhaseName::Apply),
            abort_phase: Phase::new(PhaseName::Abort),
            nfvi_alarms: Vec::new(),
            locked_hosts: BTreeSet::new(),
            failed_hosts: BTreeSet::new(),
            abort_requested: false,
            collected: None,
        }
    }

    /// What makes an alarm block this strategy.
    pub fn alarm_rules(&self) -> crate::builder::AlarmRules<'_> {
        crate::builder::AlarmRules {
            restrictions: self.options.alarm_restrictions,
            ignored: &self.ignore_alarms,
            baseline: &self.alarm_baseline,
            stale_after_secs: self.options.alarm_stale_after_secs,
        }
    }

    /// Starts the build phase (state `building`).
    pub fn start_build(&mut self, now_ms: u64) {
        self.state = StrategyState::Building;
        self.current_phase = PhaseName::Build;
        start_phase(&mut self.build_phase, now_ms);
    }

    /// Builds the plan at once from the cluster, storing nothing: the dry run.
    pub fn plan_now(&self, cluster: &dyn Cluster, now_ms: u64) -> Result<Vec<Stage>, DryRunError> {
        let alarms = cluster.alarms().map_err(DryRunError::Query)?;
        let collected = collect(cluster).map_err(DryRunError::Query)?;
        plan(
            &collected,
            &PlanContext {
                options: &self.options,
                timing: &self.timing,
                single_controller: self.single_controller,
                ignore_alarms: &self.ignore_alarms,
                alarm_baseline: &self.alarm_baseline,
                alarms: &alarms,
                now_secs: now_ms / 1000,
            },
        )
        .map_err(DryRunError::Refused)
    }

    /// Whether a step is running in the apply phase (as opposed to paused between stages).
    fn apply_step_running(&self) -> bool {
        let phase = &self.apply_phase;
        phase
            .stages
            .get(phase.current_stage)
            .is_some_and(|s| s.inprogress)
    }

    /// Whether `apply-all` (`stage: None`) or `apply-stage` would be accepted now.
    pub fn check_apply(&self, stage: Option<usize>) -> Result<(), ActionRefused> {
        let total = self.apply_phase.stages.len();
        match self.state {
            StrategyState::ReadyToApply => match stage {
                Some(id) if id != 0 => refuse(format!(
                    "invalid stage id {id} for the apply, total-stages are {total}"
                )),
                _ => Ok(()),
            },
            StrategyState::Applying => {
                let current = self.apply_phase.current_stage;
                if !self.apply_paused() {
                    return refuse("apply already inprogress");
                }
                match stage {
                    Some(id) if id < current => {
                        refuse(format!("apply already complete for stage id {id}"))
                    }
                    Some(id) if id != current => refuse(format!(
                        "stage id {id} is not the next stage to be applied, next-stage = {current}"
                    )),
                    _ => Ok(()),
                }
            }
            StrategyState::Applied => refuse("apply already completed"),
            StrategyState::Aborting
            | StrategyState::Aborted
            | StrategyState::AbortFailed
            | StrategyState::AbortTimeout => refuse("apply not supported during an abort"),
            _ => refuse(if self.build_phase.reason.is_empty() {
                format!("strategy is {}, not ready to apply", self.state)
            } else {
                self.build_phase.reason.clone()
            }),
        }
    }

    /// `apply-all` (`stage: None`) or `apply-stage`.
    pub fn apply(&mut self, stage: Option<usize>, now_ms: u64) -> Result<(), ActionRefused> {
        self.check_apply(stage)?;
        let total = self.apply_phase.stages.len();
        // Without a soak, a whole apply stops after the canaries until it is asked again.
        let canaries = self.canary_stages();
        let canaries_pending = canaries > 0
            && self.options.canary_soak_secs.is_none()
            && self.apply_phase.current_stage < canaries;
        self.apply_phase.stop_at_stage = match stage {
            Some(id) => id + 1,
            None if canaries_pending => canaries,
            None => total,
        };
        if self.state == StrategyState::ReadyToApply {
            self.state = StrategyState::Applying;
            self.current_phase = PhaseName::Apply;
            start_phase(&mut self.apply_phase, now_ms);
        } else {
            // Paused between single stages: the next one(s) go.
            self.apply_phase.timeout = self.apply_phase.compute_timeout();
            self.apply_phase.started_ms = now_ms;
        }
        Ok(())
    }

    /// Whether `abort` (`stage: None`) or `abort-stage` would be accepted now.
    pub fn check_abort(&self, stage: Option<usize>) -> Result<(), ActionRefused> {
        let inprogress = self.current_phase == PhaseName::Apply
            && matches!(
                self.state,
                StrategyState::Applying | StrategyState::ApplyFailed | StrategyState::ApplyTimeout
            );
        if let Some(id) = stage
            && !(inprogress && id == self.apply_phase.current_stage && self.apply_step_running())
        {
            return refuse(format!("apply not inprogress for stage id {id}"));
        }
        if !inprogress {
            return refuse("apply not inprogress");
        }
        Ok(())
    }

    /// `abort` (`stage: None`) or `abort-stage`.
    pub fn abort(&mut self, stage: Option<usize>, now_ms: u64) -> Result<(), ActionRefused> {
        self.check_abort(stage)?;
        if self.apply_step_running() {
            // The running step finishes; then the stage ends aborted and the abort phase runs.
            self.abort_requested = true;
            self.state = StrategyState::Aborting;
        } else {
            // Paused between single stages: nothing is half done.
            let phase = &mut self.apply_phase;
            phase.inprogress = false;
            phase.result = StepResult::Aborted;
            phase.end_date_time = timestamp();
            if self.locked_hosts.is_empty() {
                self.state = StrategyState::Aborted;
            } else {
                self.begin_abort_phase(now_ms);
            }
        }
        Ok(())
    }

    /// Whether the strategy may be deleted.
    pub fn check_delete(&self, force: bool) -> Result<(), ActionRefused> {
        if force {
            return Ok(());
        }
        match self.state {
            StrategyState::Building => refuse("strategy is being built, can't delete"),
            StrategyState::Applying => refuse("strategy is being applied, can't delete"),
            StrategyState::Aborting => refuse("strategy is being aborted, can't delete"),
            _ => Ok(()),
        }
    }

    /// Whether nothing more will happen without an operator action.
    pub fn is_idle(&self) -> bool {
        match self.state {
            StrategyState::Building | StrategyState::Aborting => false,
            StrategyState::ApplyFailed | StrategyState::ApplyTimeout => false,
            StrategyState::Applying => self.apply_paused(),
            _ => true,
        }
    }

    /// Where the canaries stand: `None` without canaries; `in-progress` until their stages
    /// are done; `wait-for-approval` while the apply waits after them; `passed` after.
    pub fn canary_state(&self) -> Option<&'static str> {
        let canaries = self.canary_stages();
        if canaries == 0 {
            return None;
        }
        let phase = &self.apply_phase;
        Some(if phase.current_stage < canaries {
            "in-progress"
        } else if self.apply_paused() && phase.current_stage == canaries {
            "wait-for-approval"
        } else {
            "passed"
        })
    }

    /// How many leading apply stages are canary stages.
    fn canary_stages(&self) -> usize {
        self.apply_phase
            .stages
            .iter()
            .take_while(|s| s.canary)
            .count()
    }

    fn apply_paused(&self) -> bool {
        let phase = &self.apply_phase;
        phase.inprogress
            && phase.current_stage == phase.stop_at_stage
            && phase.current_stage < phase.stages.len()
            && !self.apply_step_running()
    }

    /// When the running step's own timer fires (a stabilize period ends, a first alarm query
    /// is due), Unix ms: the caller can tick exactly then instead of at its next audit.
    pub fn next_timer_ms(&self) -> Option<u64> {
        let phase = match self.current_phase {
            PhaseName::Build | PhaseName::Initial => &self.build_phase,
            PhaseName::Apply => &self.apply_phase,
            PhaseName::Abort => &self.abort_phase,
        };
        let stage = phase.stages.get(phase.current_stage)?;
        let step = stage.steps.get(stage.current_step)?;
        if step.result != StepResult::Inprogress {
            return None;
        }
        let t = &self.timing;
        let secs = match step.kind {
            StepKind::SystemStabilize | StepKind::CanarySoak => step.timeout,
            StepKind::WaitAlarmsClear => t.alarms_first_query,
            StepKind::WaitDataSync => t.data_sync_first_query,
            StepKind::SwactHosts => t.swact_settle,
            StepKind::RebootHosts => t.reboot_settle,
            StepKind::LockHosts {
                wait_until_disabled: false,
            } => t.lock_no_disable_wait,
            _ => return None,
        };
        Some(step.progress.started_ms + secs * 1000)
    }

    /// Advances the strategy as far as it can now, calling `save` after every transition.
    pub fn tick<E>(
        &mut self,
        cluster: &dyn Cluster,
        now_ms: u64,
        save: &mut dyn FnMut(&Strategy) -> Result<(), E>,
    ) -> Result<(), E> {
        // Bounded: each transition moves a step, stage or phase forward.
        for _ in 0..10_000 {
            match self.advance(cluster, now_ms) {
                Advance::Moved => save(self)?,
                Advance::Parked { changed } => {
                    if changed {
                        save(self)?;
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn advance(&mut self, cluster: &dyn Cluster, now_ms: u64) -> Advance {
        use StrategyState::*;
        match self.state {
            Building => {
                self.advance_phase(
                    PhaseName::Build,
                    cluster,
                    now_ms,
                    |s, result, now| match result {
                        StepResult::TimedOut => BuildTimeout,
                        r if r.is_fatal() => BuildFailed,
                        _ => s.build_complete(now),
                    },
                )
            }
            Applying => {
                self.advance_phase(
                    PhaseName::Apply,
                    cluster,
                    now_ms,
                    |_, result, _| match result {
                        StepResult::TimedOut => ApplyTimeout,
                        r if r.is_fatal() => ApplyFailed,
                        _ => Applied,
                    },
                )
            }
            ApplyFailed | ApplyTimeout => {
                // The automatic abort (the state was saved first, as the original shows it).
                self.begin_abort_phase(now_ms);
                Advance::Moved
            }
            Aborting if self.abort_requested => {
                // Let the running apply step finish, then end the stage aborted.
                if !self.apply_step_inprogress() {
                    self.end_apply_aborted(now_ms);
                    return Advance::Moved;
                }
                match self.run_phase(PhaseName::Apply, cluster, now_ms) {
                    PhaseProgress::StepFinished | PhaseProgress::Finished(_) => {
                        self.end_apply_aborted(now_ms);
                        Advance::Moved
                    }
                    other => other.into(),
                }
            }
            Aborting => {
                self.advance_phase(
                    PhaseName::Abort,
                    cluster,
                    now_ms,
                    |_, result, _| match result {
                        StepResult::TimedOut => AbortTimeout,
                        r if r.is_fatal() => AbortFailed,
                        _ => Aborted,
                    },
                )
            }
            _ => Advance::Parked { changed: false },
        }
    }

    /// Runs `phase` one transition; once it finishes, the strategy moves to the state
    /// `finished` gives for the phase's result.
    fn advance_phase(
        &mut self,
        phase: PhaseName,
        cluster: &dyn Cluster,
        now_ms: u64,
        finished: impl FnOnce(&mut Self, StepResult, u64) -> StrategyState,
    ) -> Advance {
        match self.run_phase(phase, cluster, now_ms) {
            PhaseProgress::Finished(result) => {
                self.state = finished(self, result, now_ms);
                Advance::Moved
            }
            other => other.into(),
        }
    }

    /// Whether a step of the apply phase is running (an abort lets it finish).
    fn apply_step_inprogress(&self) -> bool {
        let phase = &self.apply_phase;
        phase.inprogress
            && phase.stages.get(phase.current_stage).is_some_and(|s| {
                s.inprogress
                    && s.steps
                        .get(s.current_step)
                        .is_some_and(|x| x.result == StepResult::Inprogress)
            })
    }

    /// Ends the interrupted stage and the apply phase as aborted, then starts the abort phase.
    fn end_apply_aborted(&mut self, now_ms: u64) {
        let phase = &mut self.apply_phase;
        if let Some(stage) = phase.stages.get_mut(phase.current_stage)
            && stage.inprogress
        {
            stage.inprogress = false;
            stage.result = StepResult::Aborted;
            stage.end_date_time = timestamp();
        }
        phase.inprogress = false;
        phase.result = phase.result.roll_up(StepResult::Aborted);
        phase.end_date_time = timestamp();
        self.abort_requested = false;
        self.begin_abort_phase(now_ms);
    }

    /// Plans the apply phase from what the build collected (reference §3).
    fn build_complete(&mut self, now_ms: u64) -> StrategyState {
        let collected = self.collected.clone().unwrap_or_default();
        let planned = plan(
            &collected,
            &PlanContext {
                options: &self.options,
                timing: &self.timing,
                single_controller: self.single_controller,
                ignore_alarms: &self.ignore_alarms,
                alarm_baseline: &self.alarm_baseline,
                alarms: &self.nfvi_alarms,
                now_secs: now_ms / 1000,
            },
        );
        match planned {
            Ok(stages) => {
                self.apply_phase.set_stages(stages);
                StrategyState::ReadyToApply
            }
            Err(refusal) => {
                self.build_phase.result = StepResult::Failed;
                self.build_phase.reason = refusal.to_string();
                StrategyState::BuildFailed
            }
        }
    }

    /// Lays out and starts the abort phase: the undo steps of the interrupted stage, from its
    /// current step back to its first, plus (better than the original) an unlock of every
    /// host the strategy locked and has not unlocked.
    fn begin_abort_phase(&mut self, now_ms: u64) {
        let (name, steps) = self.abort_steps();
        let mut abort = Phase::new(PhaseName::Abort);
        abort.set_stages(vec![Stage::new(&name, steps)]);
        self.abort_phase = abort;
        self.current_phase = PhaseName::Abort;
        self.state = StrategyState::Aborting;
        start_phase(&mut self.abort_phase, now_ms);
    }

    /// What an abort requested now would do: whether it is accepted, the running step it
    /// waits for (an abort never stops a step half-way), and the steps that undo what the
    /// strategy did (unlocks, instance starts, service enables). `None` outside an apply.
    pub fn abort_preview(&self) -> Option<AbortPreview> {
        if self.current_phase != PhaseName::Apply {
            return None;
        }
        let refused = self.check_abort(None).err().map(|e| e.to_string());
        let phase = &self.apply_phase;
        let waits_for = phase
            .stages
            .get(phase.current_stage)
            .filter(|s| s.inprogress)
            .and_then(|s| s.steps.get(s.current_step))
            .filter(|s| s.result == StepResult::Inprogress)
            .map(|s| {
                if s.entity_names.is_empty() {
                    s.name().to_owned()
                } else {
                    format!("{} ({})", s.name(), s.entity_names.join(", "))
                }
            });
        let undoes = self
            .abort_steps()
            .1
            .iter()
            .map(|s| format!("{} ({})", s.name(), s.entity_names.join(", ")))
            .collect();
        Some(AbortPreview {
            refused,
            waits_for,
            undoes,
        })
    }

    /// The abort phase's stage name and steps, from where the apply stands.
    fn abort_steps(&self) -> (String, Vec<Step>) {
        let phase = &self.apply_phase;
        let mut steps = Vec::new();
        let mut name = "sw-patch-abort".to_string();
        if let Some(stage) = phase.stages.get(
            phase
                .current_stage
                .min(phase.stages.len().saturating_sub(1)),
        ) {
            name = stage.name.clone();
            let last = stage.current_step.min(stage.steps.len().saturating_sub(1));
            for step in stage.steps[..stage.steps.len().min(last + 1)].iter().rev() {
                if step.result == StepResult::Initial {
                    continue;
                }
                let Some(kind) = step.kind.abort_kind() else {
                    continue;
                };
                let timeout = match kind {
                    StepKind::UnlockHosts => self.timing.unlock,
                    StepKind::StartInstances => self.timing.start_instances,
                    _ => self.timing.host_services,
                };
                let mut undo = step.clone();
                undo.kind = kind;
                undo.timeout = timeout;
                undo.result = StepResult::Initial;
                undo.reason.clear();
                undo.start_date_time.clear();
                undo.end_date_time.clear();
                undo.progress = StepProgress::default();
                if undo.kind == StepKind::UnlockHosts {
                    undo.entity_names = self.locked_hosts.iter().cloned().collect();
                    undo.entity_uuids = self.uuids_of(&undo.entity_names, step);
                    if undo.entity_names.is_empty() {
                        continue;
                    }
                }
                steps.push(undo);
            }
        }
        if !self.locked_hosts.is_empty() && !steps.iter().any(|s| s.kind == StepKind::UnlockHosts) {
            let names: Vec<String> = self.locked_hosts.iter().cloned().collect();
            let uuids = self.uuids_of(&names, &Step::plain(StepKind::UnlockHosts, 0));
            let pairs: Vec<(String, String)> = names.into_iter().zip(uuids).collect();
            steps.insert(
                0,
                Step::hosts(StepKind::UnlockHosts, self.timing.unlock, &pairs),
            );
        }
        (name, steps)
    }

    fn uuids_of(&self, names: &[String], hint: &Step) -> Vec<String> {
        names
            .iter()
            .map(|n| {
                hint.entity_names
                    .iter()
                    .position(|e| e == n)
                    .and_then(|i| hint.entity_uuids.get(i).cloned())
                    .or_else(|| {
                        self.collected.as_ref().and_then(|c| {
                            c.inventory
                                .iter()
                                .find(|h| &h.name == n)
                                .map(|h| h.uuid.clone())
                        })
                    })
                    .unwrap_or_default()
            })
            .collect()
    }

    fn phase_mut(&mut self, name: PhaseName) -> &mut Phase {
        match name {
            PhaseName::Build | PhaseName::Initial => &mut self.build_phase,
            PhaseName::Apply => &mut self.apply_phase,
            PhaseName::Abort => &mut self.abort_phase,
        }
    }

    /// Runs the named phase one transition forward.
    fn run_phase(&mut self, name: PhaseName, cluster: &dyn Cluster, now_ms: u64) -> PhaseProgress {
        let phase = self.phase_mut(name);
        if !phase.inprogress {
            return PhaseProgress::Finished(phase.result);
        }
        // The phase backstop timer (steps time out first in practice).
        let running = phase
            .stages
            .get(phase.current_stage)
            .is_some_and(|s| s.inprogress);
        if running
            && phase.timeout > 0
            && now_ms.saturating_sub(phase.started_ms) > phase.timeout * 1000
        {
            let stage = &mut phase.stages[phase.current_stage];
            stage.inprogress = false;
            stage.result = StepResult::TimedOut;
            stage.reason = "timeout".into();
            stage.end_date_time = timestamp();
            return finish_phase(phase, StepResult::TimedOut, "timeout".into());
        }
        if phase.current_stage >= phase.stages.len() {
            let result = phase.result.roll_up(StepResult::Success);
            return finish_phase(phase, result, String::new());
        }
        if phase.current_stage == phase.stop_at_stage {
            // Paused after an apply-stage.
            return PhaseProgress::Parked { changed: false };
        }
        let stage_index = phase.current_stage;
        let stage = &mut phase.stages[stage_index];
        if !stage.inprogress {
            stage.inprogress = true;
            stage.result = StepResult::Inprogress;
            stage.start_date_time = timestamp();
            return PhaseProgress::Moved;
        }
        if stage.current_step >= stage.steps.len() {
            stage.inprogress = false;
            stage.result = stage.result.roll_up(StepResult::Success);
            if stage.result == StepResult::Inprogress {
                stage.result = StepResult::Success;
            }
            stage.end_date_time = timestamp();
            let stage_result = stage.result;
            phase.result = phase.result.roll_up(stage_result);
            phase.current_stage += 1;
            return PhaseProgress::Moved;
        }
        let step_index = stage.current_step;
        let step = &mut stage.steps[step_index];
        if step.result == StepResult::Initial {
            step.result = StepResult::Inprogress;
            step.start_date_time = timestamp();
            step.progress = StepProgress {
                started_ms: now_ms,
                ..StepProgress::default()
            };
            // Write-ahead: a host is recorded as locked by the strategy before it is locked.
            if let StepKind::LockHosts { .. } = step.kind {
                let hosts = step.entity_names.clone();
                self.locked_hosts.extend(hosts);
            }
            return PhaseProgress::Moved;
        }
        let mut step = self.phase_mut(name).stages[stage_index].steps[step_index].clone();
        let poll = self.poll_step(&mut step, cluster, now_ms);
        let phase = self.phase_mut(name);
        let stage = &mut phase.stages[stage_index];
        match poll {
            Poll::Pending { changed } => {
                stage.steps[step_index] = step;
                PhaseProgress::Parked { changed }
            }
            Poll::Done(result, reason) => {
                step.result = result;
                step.reason = reason.clone();
                step.end_date_time = timestamp();
                stage.steps[step_index] = step;
                stage.current_step += 1;
                if result.is_fatal() {
                    stage.inprogress = false;
                    stage.result = stage.result.roll_up(result);
                    stage.reason = reason.clone();
                    stage.end_date_time = timestamp();
                    let _ = finish_phase(phase, result, reason);
                } else if result == StepResult::Degraded {
                    stage.result = StepResult::Degraded;
                    stage.reason = reason.clone();
                    if phase.reason.is_empty() {
                        phase.reason = reason;
                    }
                }
                PhaseProgress::StepFinished
            }
        }
    }

    /// Polls one running step: issues its actions (idempotently) and checks for completion.
    fn poll_step(&mut self, step: &mut Step, cluster: &dyn Cluster, now_ms: u64) -> Poll {
        let elapsed_ms = now_ms.saturating_sub(step.progress.started_ms);
        let timed_out = elapsed_ms >= step.timeout.saturating_mul(1000);
        let poll = self.poll_kind(step, cluster, now_ms, elapsed_ms);
        match poll {
            Poll::Pending { .. } if timed_out => {
                if matches!(step.kind, StepKind::SystemStabilize | StepKind::CanarySoak) {
                    Poll::Done(StepResult::Success, String::new())
                } else {
                    Poll::Done(StepResult::TimedOut, "timeout".into())
                }
            }
            other => other,
        }
    }
}

/// What an abort requested now would do ([`Strategy::abort_preview`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbortPreview {
    /// Why an abort is refused now (none: it is accepted).
    pub refused: Option<String>,
    /// The running step the abort waits for: it finishes first, never stopped half-way.
    pub waits_for: Option<String>,
    /// The steps that undo what the strategy did, in order.
    pub undoes: Vec<String>,
}

/// Why a dry run produced no plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DryRunError {
    /// The cluster could not be queried.
    #[error("cannot query the system: {0}")]
    Query(ClusterError),
    /// The builder refused.
    #[error("{0}")]
    Refused(BuildRefusal),
}

impl From<PhaseProgress> for Advance {
    /// A phase that did not finish: a transition, or a wait.
    fn from(progress: PhaseProgress) -> Advance {
        match progress {
            PhaseProgress::Parked { changed } => Advance::Parked { changed },
            _ => Advance::Moved,
        }
    }
}

enum PhaseProgress {
    /// A stage or step started, or a stage finished.
    Moved,
    /// A step finished.
    StepFinished,
    /// Waiting.
    Parked { changed: bool },
    /// The phase finished with this result.
    Finished(StepResult),
}

fn start_phase(phase: &mut Phase, now_ms: u64) {
    phase.inprogress = true;
    phase.result = StepResult::Inprogress;
    phase.start_date_time = timestamp();
    phase.started_ms = now_ms;
    phase.timeout = phase.compute_timeout();
}

fn finish_phase(phase: &mut Phase, result: StepResult, reason: String) -> PhaseProgress {
    phase.inprogress = false;
    phase.result = if result == StepResult::Inprogress {
        StepResult::Success
    } else {
        result
    };
    if !reason.is_empty() {
        phase.reason = reason;
    }
    phase.end_date_time = timestamp();
    PhaseProgress::Finished(phase.result)
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
