//! Patch orchestration: the strategy model (phases, stages, steps), the builder that plans a
//! rollout from the inventory, and the runner that executes it step by step against a
//! [`Cluster`], persisting the whole strategy before every transition so that a restart
//! resumes where it stopped.
//!
//! The model and rules are the StarlingX VIM's sw-patch strategy (see the repository's
//! `reference/starlingx-orchestration.md`), with three additions: an error budget
//! (`max_failed_hosts`), an abort that unlocks every host the strategy locked, and a dry run.
//!
//! ```
//! use orchestrator::{Collected, InventoryHost, PatchHost, PlanContext, StrategyOptions, Timing};
//! use host_state::{AdminState, Availability, OperState};
//!
//! let host = |name: &str, personality: &str| InventoryHost {
//!     name: name.into(),
//!     uuid: format!("uuid-{name}"),
//!     personality: personality.into(),
//!     subfunctions: vec![personality.into()],
//!     admin: AdminState::Unlocked,
//!     oper: OperState::Enabled,
//!     availability: Availability::Available,
//!     openstack_compute: false,
//!     openstack_control: false,
//!     replication_group: None,
//!     aggregates: vec![],
//! };
//! let patch_host = |name: &str, personality: &str| PatchHost {
//!     hostname: name.into(),
//!     subfunctions: vec![personality.into()],
//!     requires_reboot: true,
//!     patch_current: false,
//!     patch_failed: false,
//!     interim_state: false,
//!     last_error: None,
//!     state: "idle".into(),
//! };
//! let collected = Collected {
//!     inventory: vec![host("controller-0", "controller"), host("controller-1", "controller")],
//!     patch_hosts: vec![patch_host("controller-0", "controller"), patch_host("controller-1", "controller")],
//!     patch_count: 1,
//!     instances: vec![],
//!     local_controller: Some("controller-0".into()),
//! };
//! let options = StrategyOptions::default();
//! let timing = Timing::default();
//! let ctx = PlanContext {
//!     options: &options,
//!     timing: &timing,
//!     single_controller: false,
//!     ignore_alarms: &[],
//!     alarm_baseline: &[],
//!     alarms: &[],
//!     now_secs: 0,
//! };
//! let stages = orchestrator::plan(&collected, &ctx).unwrap();
//! // The standby controller first, the local (active) one last.
//! assert_eq!(stages[0].hosts(), ["controller-1"]);
//! assert_eq!(stages[1].hosts(), ["controller-0"]);
//! assert_eq!(stages[0].timeout, 7876);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod builder;
mod cluster;
mod collected;
pub mod model;
mod runner;
mod steps;
mod timing;

pub use builder::{
    AlarmCheck, AlarmRules, AlarmVerdict, BuildRefusal, Collected, Instance, InventoryHost,
    PatchHost, PlanContext, ServerGroup, blocking_alarms, plan, sort_alarms,
};
pub use cluster::{Cluster, ClusterError, InstanceOp};
pub use model::{
    Alarm, AlarmRestrictions, ApplyType, BaselineAlarm, InstanceAction, Phase, PhaseName, Stage,
    Step, StepKind, StepResult, Strategy, StrategyOptions, StrategyState, UnknownValue,
};
pub use runner::{AbortPreview, ActionRefused, DryRunError};
pub use timing::Timing;
