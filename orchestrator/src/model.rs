//! The strategy model: a strategy has a build, an apply and an abort phase, each a list of
//! stages, each a list of steps (reference §1). Everything here is plain data that serializes
//! to the persisted form; [`crate::api`] renders the original's kebab-case JSON.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Timing;

/// A string that names none of an enumeration's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not one of: {}", valid.join(", "))]
pub struct UnknownValue {
    /// What was given.
    pub value: String,
    /// The values accepted, in the original's spelling.
    pub valid: &'static [&'static str],
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $v),* }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$v),*];

            /// The original's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($s => Ok(Self::$v),)*
                    _ => Err(UnknownValue { value: s.to_owned(), valid: &[$($s),*] }),
                }
            }
        }
    };
}

string_enum!(
    /// The strategy's state (reference §6).
    StrategyState {
        /// Created, not yet building.
        Initial = "initial",
        /// The build phase runs.
        Building = "building",
        /// The build failed; the reason is in the build phase.
        BuildFailed = "build-failed",
        /// The build timed out.
        BuildTimeout = "build-timeout",
        /// Built; waiting for apply.
        ReadyToApply = "ready-to-apply",
        /// The apply phase runs (or is paused after an `apply-stage`).
        Applying = "applying",
        /// The apply failed (transient: an abort follows at once).
        ApplyFailed = "apply-failed",
        /// The apply timed out (transient as well).
        ApplyTimeout = "apply-timeout",
        /// Every stage finished.
        Applied = "applied",
        /// The abort phase runs.
        Aborting = "aborting",
        /// The abort phase failed.
        AbortFailed = "abort-failed",
        /// The abort phase timed out.
        AbortTimeout = "abort-timeout",
        /// The abort phase finished.
        Aborted = "aborted",
    }
);

string_enum!(
    /// Which phase is current.
    PhaseName {
        /// None yet.
        Initial = "initial",
        /// Querying the system and planning.
        Build = "build",
        /// Rolling the patches out.
        Apply = "apply",
        /// Undoing what the interrupted stage did.
        Abort = "abort",
    }
);

string_enum!(
    /// The result of a strategy, phase, stage or step (one set for all, as the original).
    StepResult {
        /// Not started.
        Initial = "initial",
        /// Running.
        Inprogress = "inprogress",
        /// Waiting for something outside (never rolled up).
        Wait = "wait",
        /// Done.
        Success = "success",
        /// Done, with tolerated failures.
        Degraded = "degraded",
        /// Failed.
        Failed = "failed",
        /// Ran out of time.
        TimedOut = "timed-out",
        /// Aborted (the original spells aborting the same way).
        Aborted = "aborted",
    }
);

impl StepResult {
    /// The roll-up precedence: a parent moves to a child's result only if it ranks higher
    /// (aborted > timed-out > failed > degraded > success).
    fn rank(self) -> u8 {
        match self {
            StepResult::Initial | StepResult::Inprogress | StepResult::Wait => 0,
            StepResult::Success => 1,
            StepResult::Degraded => 2,
            StepResult::Failed => 3,
            StepResult::TimedOut => 4,
            StepResult::Aborted => 5,
        }
    }

    /// Rolls a child's result into this parent's.
    pub fn roll_up(self, child: StepResult) -> StepResult {
        if child == StepResult::Wait {
            return self;
        }
        if self.rank() == 0 || child.rank() > self.rank() {
            child
        } else {
            self
        }
    }

    /// Whether the step has finished (counted in the completion percentage).
    pub fn is_done(self) -> bool {
        self.rank() > 0
    }

    /// Whether the result ends a phase: failed, timed out or aborted.
    pub fn is_fatal(self) -> bool {
        self.rank() >= 3
    }
}

string_enum!(
    /// How a class of hosts is patched.
    ApplyType {
        /// One host (or group) at a time.
        Serial = "serial",
        /// Several hosts per stage.
        Parallel = "parallel",
        /// Not at all.
        Ignore = "ignore",
    }
);

string_enum!(
    /// What happens to the workloads of a host that must be locked.
    InstanceAction {
        /// Move them to other hosts.
        Migrate = "migrate",
        /// Stop them before the lock, start them after the unlock.
        StopStart = "stop-start",
    }
);

string_enum!(
    /// Which alarms block the strategy.
    AlarmRestrictions {
        /// Every alarm not on the ignore list.
        Strict = "strict",
        /// Only management-affecting ones.
        Relaxed = "relaxed",
        /// Every alarm but those already active when the strategy was created (unless they
        /// got worse).
        Baseline = "baseline",
    }
);

/// The operator's choices for a strategy (the create request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyOptions {
    /// Controllers: serial or ignore (parallel fails the build, as the original).
    pub controller_apply_type: ApplyType,
    /// Storage hosts.
    pub storage_apply_type: ApplyType,
    /// Swift hosts (always serial when not ignored).
    pub swift_apply_type: ApplyType,
    /// Workers (and all-in-one controllers).
    pub worker_apply_type: ApplyType,
    /// Largest parallel worker stage (2..=100).
    pub max_parallel_worker_hosts: u32,
    /// Migrate or stop-start.
    pub default_instance_action: InstanceAction,
    /// Strict or relaxed.
    pub alarm_restrictions: AlarmRestrictions,
    /// Error budget: how many hosts may fail to install before the strategy stops starting
    /// stages and aborts (0: the original's behaviour, any failure aborts).
    #[serde(default)]
    pub max_failed_hosts: u32,
    /// An alarm unchanged for this many seconds no longer blocks (it is named as ignored in
    /// the step's reason); none: every alarm counts however old.
    #[serde(default)]
    pub alarm_stale_after_secs: Option<u64>,
    /// Hosts (workers first, then storage; never controllers) patched in stages of their
    /// own before the rest; the apply pauses after them until `apply` is called again, or
    /// with `canary_soak_secs` until they stayed healthy that long.
    #[serde(default)]
    pub canary_hosts: u32,
    /// How long the canaries must stay healthy (patch-current, no failed install, no
    /// blocking alarm) before the rest goes on by itself.
    #[serde(default)]
    pub canary_soak_secs: Option<u64>,
    /// After an install, each host's health checks must keep passing this long before the
    /// install counts as done (its install step's timeout grows by as much).
    #[serde(default)]
    pub health_soak_secs: Option<u64>,
}

impl Default for StrategyOptions {
    fn default() -> Self {
        StrategyOptions {
            controller_apply_type: ApplyType::Serial,
            storage_apply_type: ApplyType::Serial,
            swift_apply_type: ApplyType::Ignore,
            worker_apply_type: ApplyType::Serial,
            max_parallel_worker_hosts: 2,
            default_instance_action: InstanceAction::StopStart,
            alarm_restrictions: AlarmRestrictions::Strict,
            max_failed_hosts: 0,
            alarm_stale_after_secs: None,
            canary_hosts: 0,
            canary_soak_secs: None,
            health_soak_secs: None,
        }
    }
}

/// What a step does. The step names are the original's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepKind {
    /// Collect alarms; in apply stages fail when a blocking one is present.
    QueryAlarms {
        /// Fail on blocking alarms (apply stages) or only collect them (build).
        fail_on_alarms: bool,
    },
    /// Collect the patch list.
    QuerySwPatches,
    /// Collect the per-host patch status.
    QuerySwPatchHosts,
    /// Move the active controller role away from the host.
    SwactHosts,
    /// Lock the hosts.
    LockHosts {
        /// Wait until disabled (false only for a single-controller all-in-one).
        wait_until_disabled: bool,
    },
    /// Install on every host; done when each is patch-current or failed.
    SwPatchHosts,
    /// A timed wait that fails if a host changes state meanwhile.
    SystemStabilize,
    /// Unlock the hosts (they reboot into the patched load).
    UnlockHosts,
    /// Reboot hosts that were locked before the strategy (they stay locked).
    RebootHosts,
    /// Wait until no blocking alarm remains.
    WaitAlarmsClear,
    /// Wait for storage replication to catch up (no blocking alarm).
    WaitDataSync,
    /// Move the workloads off the hosts.
    MigrateInstancesFromHost,
    /// Stop scheduling workloads onto the hosts.
    DisableHostServices,
    /// Undo [`StepKind::DisableHostServices`].
    EnableHostServices,
    /// Stop the workloads on the hosts.
    StopInstances,
    /// Start them again.
    StartInstances,
    /// Watch the canaries for the soak period: fails when one stops being patch-current or
    /// healthy, or a blocking alarm appears.
    CanarySoak,
}

impl StepKind {
    /// The step's name as the original shows it.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::QueryAlarms { .. } => "query-alarms",
            StepKind::QuerySwPatches => "query-sw-patches",
            StepKind::QuerySwPatchHosts => "query-sw-patch-hosts",
            StepKind::SwactHosts => "swact-hosts",
            StepKind::LockHosts { .. } => "lock-hosts",
            StepKind::SwPatchHosts => "sw-patch-hosts",
            StepKind::SystemStabilize => "system-stabilize",
            StepKind::UnlockHosts => "unlock-hosts",
            StepKind::RebootHosts => "reboot-hosts",
            StepKind::WaitAlarmsClear => "wait-alarms-clear",
            StepKind::WaitDataSync => "wait-data-sync",
            StepKind::MigrateInstancesFromHost => "migrate-instances-from-host",
            StepKind::DisableHostServices => "disable-host-services",
            StepKind::EnableHostServices => "enable-host-services",
            StepKind::StopInstances => "stop-instances",
            StepKind::StartInstances => "start-instances",
            StepKind::CanarySoak => "canary-soak",
        }
    }

    /// The step that undoes this one in an abort phase, if any.
    pub fn abort_kind(&self) -> Option<StepKind> {
        match self {
            StepKind::LockHosts { .. } => Some(StepKind::UnlockHosts),
            StepKind::StopInstances => Some(StepKind::StartInstances),
            StepKind::DisableHostServices => Some(StepKind::EnableHostServices),
            _ => None,
        }
    }
}

/// The runner's bookkeeping inside a running step (persisted, so a restart resumes it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    /// When the step started (Unix milliseconds); its timeout runs from here, across restarts.
    pub started_ms: u64,
    /// Hosts the step's action was issued to (install requested, lock requested, ...).
    pub issued: BTreeSet<String>,
    /// Hosts that finished with a failure.
    pub failed: BTreeSet<String>,
    /// Host states seen when a stabilize step started (host → "admin-oper-avail").
    pub baseline: Vec<(String, String)>,
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Index in its stage.
    pub id: usize,
    /// What it does.
    pub kind: StepKind,
    /// Seconds before it times out (a stabilize step succeeds then).
    pub timeout: u64,
    /// `hosts`, `instances` or empty.
    pub entity_type: String,
    /// The hosts or instances it acts on.
    pub entity_names: Vec<String>,
    /// Their UUIDs.
    pub entity_uuids: Vec<String>,
    /// Result.
    pub result: StepResult,
    /// Why it failed.
    pub reason: String,
    /// Local time it started, `%Y-%m-%d %H:%M:%S`, or empty.
    pub start_date_time: String,
    /// Local time it ended, or empty.
    pub end_date_time: String,
    /// Runner bookkeeping.
    #[serde(default)]
    pub progress: StepProgress,
}

impl Step {
    /// A step acting on hosts.
    pub fn hosts(kind: StepKind, timeout: u64, hosts: &[(String, String)]) -> Step {
        Step {
            id: 0,
            kind,
            timeout,
            entity_type: "hosts".into(),
            entity_names: hosts.iter().map(|(n, _)| n.clone()).collect(),
            entity_uuids: hosts.iter().map(|(_, u)| u.clone()).collect(),
            result: StepResult::Initial,
            reason: String::new(),
            start_date_time: String::new(),
            end_date_time: String::new(),
            progress: StepProgress::default(),
        }
    }

    /// A step acting on nothing in particular.
    pub fn plain(kind: StepKind, timeout: u64) -> Step {
        Step {
            entity_type: String::new(),
            ..Step::hosts(kind, timeout, &[])
        }
    }

    /// A step acting on instances.
    pub fn instances(kind: StepKind, timeout: u64, instances: &[(String, String)]) -> Step {
        Step {
            entity_type: "instances".into(),
            ..Step::hosts(kind, timeout, instances)
        }
    }

    /// The step's name.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

/// One stage: steps run in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Index in its phase.
    pub id: usize,
    /// e.g. `sw-patch-worker-hosts`.
    pub name: String,
    /// The steps.
    pub steps: Vec<Step>,
    /// Index of the running (or next) step.
    pub current_step: usize,
    /// Sum of the step timeouts plus 1 (0 when they sum to 0).
    pub timeout: u64,
    /// Running.
    pub inprogress: bool,
    /// Result.
    pub result: StepResult,
    /// Why it failed.
    pub reason: String,
    /// Local start time.
    pub start_date_time: String,
    /// Local end time.
    pub end_date_time: String,
    /// A canary stage: its failure stops the strategy whatever the error budget.
    #[serde(default)]
    pub canary: bool,
}

impl Stage {
    /// A stage of `steps`, numbering them and computing its timeout.
    pub fn new(name: &str, mut steps: Vec<Step>) -> Stage {
        for (i, s) in steps.iter_mut().enumerate() {
            s.id = i;
        }
        let sum: u64 = steps.iter().map(|s| s.timeout).sum();
        Stage {
            id: 0,
            name: name.into(),
            steps,
            current_step: 0,
            timeout: if sum > 0 { sum + 1 } else { 0 },
            inprogress: false,
            result: StepResult::Initial,
            reason: String::new(),
            start_date_time: String::new(),
            end_date_time: String::new(),
            canary: false,
        }
    }

    /// The hosts the stage works on (every host-entity step's hosts, deduplicated, in order).
    pub fn hosts(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.steps
            .iter()
            .filter(|s| s.entity_type == "hosts")
            .flat_map(|s| s.entity_names.iter())
            .filter(|h| seen.insert(h.as_str()))
            .cloned()
            .collect()
    }
}

/// One phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// build, apply or abort.
    pub name: PhaseName,
    /// The stages.
    pub stages: Vec<Stage>,
    /// Index of the running (or next) stage.
    pub current_stage: usize,
    /// The phase pauses when `current_stage` reaches this (apply-stage).
    pub stop_at_stage: usize,
    /// Seconds; computed when the phase starts.
    pub timeout: u64,
    /// Running (also while paused between single stages).
    pub inprogress: bool,
    /// Result.
    pub result: StepResult,
    /// Why it failed.
    pub reason: String,
    /// Detail of the failure, if any.
    pub response: String,
    /// Local start time.
    pub start_date_time: String,
    /// Local end time.
    pub end_date_time: String,
    /// When the phase (re)started running, Unix ms (backstop timer).
    #[serde(default)]
    pub started_ms: u64,
}

impl Phase {
    /// An empty phase.
    pub fn new(name: PhaseName) -> Phase {
        Phase {
            name,
            stages: Vec::new(),
            current_stage: 0,
            stop_at_stage: 0,
            timeout: 0,
            inprogress: false,
            result: StepResult::Initial,
            reason: String::new(),
            response: String::new(),
            start_date_time: String::new(),
            end_date_time: String::new(),
            started_ms: 0,
        }
    }

    /// Appends stages, numbering them.
    pub fn set_stages(&mut self, stages: Vec<Stage>) {
        self.stages = stages;
        for (i, s) in self.stages.iter_mut().enumerate() {
            s.id = i;
        }
        self.stop_at_stage = self.stages.len();
    }

    /// Sum of the stage timeouts from the current stage up to `stop_at_stage`, plus 1.
    pub fn compute_timeout(&self) -> u64 {
        let end = self.stop_at_stage.min(self.stages.len());
        let start = self.current_stage.min(end);
        self.stages[start..end]
            .iter()
            .map(|s| s.timeout)
            .sum::<u64>()
            + 1
    }

    /// Finished steps over all steps, percent rounded down; 100 for a phase not running.
    pub fn completion_percentage(&self) -> u64 {
        if !self.inprogress {
            return 100;
        }
        let total: usize = self.stages.iter().map(|s| s.steps.len()).sum();
        if total == 0 {
            return 100;
        }
        let done = self
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|s| s.result.is_done())
            .count();
        (done * 100 / total) as u64
    }
}

/// An alarm as the strategy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// Unique id of this occurrence.
    pub uuid: String,
    /// e.g. `900.001`.
    pub alarm_id: String,
    /// e.g. `host=controller-0`.
    pub entity_instance_id: String,
    /// critical, major, minor, warning.
    pub severity: String,
    /// Text.
    pub reason_text: String,
    /// Whether it affects management operations (relaxed restrictions ignore the others).
    pub mgmt_affecting: bool,
    /// When it was raised or last changed (severity, text, management effect), Unix
    /// seconds.
    pub raised_at: u64,
}

/// An alarm active when a strategy was created with baseline restrictions: it blocks only if
/// its severity gets worse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineAlarm {
    /// e.g. `100.101`.
    pub alarm_id: String,
    /// e.g. `host=compute-0`.
    pub entity_instance_id: String,
    /// Its severity then.
    pub severity: String,
}

impl BaselineAlarm {
    /// The baseline entry of an active alarm.
    pub fn of(alarm: &Alarm) -> BaselineAlarm {
        BaselineAlarm {
            alarm_id: alarm.alarm_id.clone(),
            entity_instance_id: alarm.entity_instance_id.clone(),
            severity: alarm.severity.clone(),
        }
    }

    /// Whether `alarm` is this one, no worse than it was.
    pub fn covers(&self, alarm: &Alarm) -> bool {
        self.alarm_id == alarm.alarm_id
            && self.entity_instance_id == alarm.entity_instance_id
            && severity_rank(&alarm.severity) <= severity_rank(&self.severity)
    }
}

/// Severities in rising order; an unknown one ranks as critical (worse is safer).
fn severity_rank(severity: &str) -> u8 {
    match severity {
        "warning" => 0,
        "minor" => 1,
        "major" => 2,
        _ => 3,
    }
}

/// A strategy: the persisted unit (saved whole after every transition).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strategy {
    /// Identity.
    pub uuid: String,
    /// Always `sw-patch`.
    pub name: String,
    /// The create options.
    pub options: StrategyOptions,
    /// Timeouts and delays in force.
    pub timing: Timing,
    /// Single-controller (AIO-SX) system.
    pub single_controller: bool,
    /// Extra alarm ids to ignore (the VIM's `ignore_alarms`).
    #[serde(default)]
    pub ignore_alarms: Vec<String>,
    /// The alarms active at creation, with baseline restrictions.
    #[serde(default)]
    pub alarm_baseline: Vec<BaselineAlarm>,
    /// State.
    pub state: StrategyState,
    /// Current phase.
    pub current_phase: PhaseName,
    /// The build phase.
    pub build_phase: Phase,
    /// The apply phase.
    pub apply_phase: Phase,
    /// The abort phase (built when an abort happens).
    pub abort_phase: Phase,
    /// Alarms the last query step collected.
    #[serde(default)]
    pub nfvi_alarms: Vec<Alarm>,
    /// Hosts this strategy locked and has not unlocked (an abort unlocks them all).
    #[serde(default)]
    pub locked_hosts: BTreeSet<String>,
    /// Hosts whose install failed (counted against `max_failed_hosts`).
    #[serde(default)]
    pub failed_hosts: BTreeSet<String>,
    /// An abort was requested while a step ran; it takes effect when the step finishes.
    #[serde(default)]
    pub abort_requested: bool,
    /// Data collected by the build phase, planned into the apply phase when it completes.
    #[serde(default)]
    pub collected: Option<crate::collected::Collected>,
}

impl Strategy {
    /// How far the current phase is, percent (`current-phase-completion-percentage`).
    pub fn completion_percentage(&self) -> u64 {
        match self.current_phase {
            PhaseName::Initial => 0,
            PhaseName::Build => self.build_phase.completion_percentage(),
            PhaseName::Apply => self.apply_phase.completion_percentage(),
            PhaseName::Abort => self.abort_phase.completion_percentage(),
        }
    }
}

/// Local time in the original's format.
pub fn timestamp() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_up_follows_the_precedence() {
        use StepResult::*;
        assert_eq!(Initial.roll_up(Success), Success);
        assert_eq!(Success.roll_up(Degraded), Degraded);
        assert_eq!(Degraded.roll_up(Success), Degraded);
        assert_eq!(Failed.roll_up(TimedOut), TimedOut);
        assert_eq!(TimedOut.roll_up(Failed), TimedOut);
        assert_eq!(TimedOut.roll_up(Aborted), Aborted);
        assert_eq!(Success.roll_up(Wait), Success);
    }

    #[test]
    fn enums_parse_the_original_spellings() {
        assert_eq!(
            "stop-start".parse::<InstanceAction>(),
            Ok(InstanceAction::StopStart)
        );
        assert_eq!("timed-out".parse::<StepResult>(), Ok(StepResult::TimedOut));
        assert!(
            "sideways"
                .parse::<ApplyType>()
                .unwrap_err()
                .to_string()
                .contains("serial")
        );
    }

    #[test]
    fn timeouts_add_up_as_the_original() {
        let steps = vec![
            Step::plain(
                StepKind::QueryAlarms {
                    fail_on_alarms: false,
                },
                60,
            ),
            Step::plain(StepKind::QuerySwPatches, 60),
            Step::plain(StepKind::QuerySwPatchHosts, 60),
        ];
        let stage = Stage::new("sw-patch-query", steps);
        assert_eq!(stage.timeout, 181);
        let mut phase = Phase::new(PhaseName::Build);
        phase.set_stages(vec![stage]);
        assert_eq!(phase.compute_timeout(), 182);
        assert_eq!(phase.completion_percentage(), 100);
    }
}
