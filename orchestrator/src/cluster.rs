//! What the runner needs from the system it orchestrates. The controller implements it over
//! its inventory, patch store and agents; tests implement it in memory.

use crate::builder::{Instance, InventoryHost, PatchHost};
use crate::model::Alarm;

/// An operation on a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceOp {
    /// Move it off its host.
    Migrate,
    /// Stop it.
    Stop,
    /// Start it.
    Start,
}

/// Why the system did not answer a query or carry out an action. Its text is what a step
/// shows as its reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The system could not be asked (down, or its answer unreadable).
    #[error("{what} unavailable: {reason}")]
    Unavailable {
        /// What was asked for, e.g. `alarms`.
        what: &'static str,
        /// Why it could not be had.
        reason: String,
    },
    /// The host named is not in the inventory (any more).
    #[error("host no longer exists")]
    HostGone {
        /// The host.
        host: String,
    },
    /// The instance named is gone.
    #[error("instance {name} no longer exists")]
    InstanceGone {
        /// The instance.
        name: String,
    },
    /// The instance is on another host than when the strategy was built.
    #[error("instance {name} has moved from {from} to {to} after strategy created")]
    InstanceMoved {
        /// The instance.
        name: String,
        /// Its host when the strategy was built.
        from: String,
        /// Its host now.
        to: String,
    },
    /// The system refused the action, in its own words (e.g. `Host compute-0 is installing
    /// patches; wait for it to finish or use --force.`).
    #[error("{0}")]
    Refused(String),
}

/// The system a strategy runs against. Every action must be idempotent: the runner may call it
/// again after a restart, and each call also serves as the poll of its completion.
pub trait Cluster {
    /// The inventory (host states).
    fn inventory(&self) -> Result<Vec<InventoryHost>, ClusterError>;
    /// The per-host patch status, in the patch controller's order.
    fn patch_hosts(&self) -> Result<Vec<PatchHost>, ClusterError>;
    /// How many patches the patch controller lists.
    fn patch_count(&self) -> Result<usize, ClusterError>;
    /// Active alarms.
    fn alarms(&self) -> Result<Vec<Alarm>, ClusterError>;
    /// Workloads.
    fn instances(&self) -> Result<Vec<Instance>, ClusterError>;
    /// The controller the orchestrator runs on, if it runs on a managed host.
    fn local_controller(&self) -> Option<String>;
    /// Lock a host (an error's text becomes the step's reason).
    fn lock(&self, host: &str) -> Result<(), ClusterError>;
    /// Unlock a host (it reboots when a reboot-required change is installed).
    fn unlock(&self, host: &str) -> Result<(), ClusterError>;
    /// Reboot a locked host.
    fn reboot(&self, host: &str) -> Result<(), ClusterError>;
    /// Start an install on a host (`host-install-async`); its health checks must then keep
    /// passing for `soak_secs` before it counts as done.
    fn install(&self, host: &str, soak_secs: u64) -> Result<(), ClusterError>;
    /// Move the active controller role away from a host.
    fn swact(&self, host: &str) -> Result<(), ClusterError>;
    /// Act on an instance (as the build found it: name and host); `Ok(true)` once it reached
    /// the target state. An instance that moved since the build is an error for stop and
    /// start (`instance X has moved from A to B after strategy created`).
    fn instance_action(&self, op: InstanceOp, instance: &Instance) -> Result<bool, ClusterError>;
    /// Disable or enable a host's compute services; `Ok(true)` once done.
    fn host_services(&self, host: &str, enable: bool) -> Result<bool, ClusterError>;
}
