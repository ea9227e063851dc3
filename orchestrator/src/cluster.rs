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

/// The system a strategy runs against. Every action must be idempotent: the runner may call it
/// again after a restart, and each call also serves as the poll of its completion.
pub trait Cluster {
    /// The inventory (host states).
    fn inventory(&self) -> Result<Vec<InventoryHost>, String>;
    /// The per-host patch status, in the patch controller's order.
    fn patch_hosts(&self) -> Result<Vec<PatchHost>, String>;
    /// How many patches the patch controller lists.
    fn patch_count(&self) -> Result<usize, String>;
    /// Active alarms.
    fn alarms(&self) -> Result<Vec<Alarm>, String>;
    /// Workloads.
    fn instances(&self) -> Result<Vec<Instance>, String>;
    /// The controller the orchestrator runs on, if it runs on a managed host.
    fn local_controller(&self) -> Option<String>;
    /// Lock a host (an error's text becomes the step's reason).
    fn lock(&self, host: &str) -> Result<(), String>;
    /// Unlock a host (it reboots when a reboot-required change is installed).
    fn unlock(&self, host: &str) -> Result<(), String>;
    /// Reboot a locked host.
    fn reboot(&self, host: &str) -> Result<(), String>;
    /// Start an install on a host (`host-install-async`).
    fn install(&self, host: &str) -> Result<(), String>;
    /// Move the active controller role away from a host.
    fn swact(&self, host: &str) -> Result<(), String>;
    /// Act on an instance (as the build found it: name and host); `Ok(true)` once it reached
    /// the target state. An instance that moved since the build is an error for stop and
    /// start (`instance X has moved from A to B after strategy created`).
    fn instance_action(&self, op: InstanceOp, instance: &Instance) -> Result<bool, String>;
    /// Disable or enable a host's compute services; `Ok(true)` once done.
    fn host_services(&self, host: &str, enable: bool) -> Result<bool, String>;
}
