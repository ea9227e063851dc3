//! What the build phase collects from the cluster — inventory, the patch controller's hosts,
//! workloads — the builder's input, and kept in the strategy so a resumed one plans the same.

use host_state::{AdminState, Availability, OperState};
use serde::{Deserialize, Serialize};

/// A host in the inventory (the VIM's host table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryHost {
    /// Host name.
    pub name: String,
    /// Host UUID.
    pub uuid: String,
    /// `controller`, `worker` or `storage` (or `swift`).
    pub personality: String,
    /// Subfunctions (`controller`, `worker` for an all-in-one).
    #[serde(default)]
    pub subfunctions: Vec<String>,
    /// Administrative state.
    pub admin: AdminState,
    /// Operational state.
    pub oper: OperState,
    /// Availability.
    pub availability: Availability,
    /// Runs the OpenStack compute service (its workloads can be migrated).
    #[serde(default)]
    pub openstack_compute: bool,
    /// Runs OpenStack control services.
    #[serde(default)]
    pub openstack_control: bool,
    /// Storage replication group (storage hosts).
    #[serde(default)]
    pub replication_group: Option<String>,
    /// Host aggregates it belongs to.
    #[serde(default)]
    pub aggregates: Vec<String>,
}

impl InventoryHost {
    /// Whether the host has this personality or subfunction.
    pub fn has(&self, personality: &str) -> bool {
        self.personality == personality || self.subfunctions.iter().any(|s| s == personality)
    }

    pub(crate) fn state_is(&self, admin: AdminState, oper: OperState, avail: Availability) -> bool {
        self.admin == admin && self.oper == oper && self.availability == avail
    }
}

/// A host as the patch controller reports it (`query_hosts`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchHost {
    /// Host name.
    pub hostname: String,
    /// Subfunctions (the personality the builder classifies by).
    pub subfunctions: Vec<String>,
    /// Installing needs a lock and a reboot.
    pub requires_reboot: bool,
    /// Nothing to install.
    pub patch_current: bool,
    /// The last install failed.
    pub patch_failed: bool,
    /// A patch operation is recent and the host has not reported since.
    pub interim_state: bool,
    /// The agent's install state.
    pub state: String,
    /// Why its last install failed (a health check's words, for instance).
    #[serde(default)]
    pub last_error: Option<String>,
}

/// A server group an instance belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerGroup {
    /// Name.
    pub name: String,
    /// Policies, e.g. `anti-affinity`.
    pub policies: Vec<String>,
}

/// A workload on a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// The host it runs on.
    pub host: String,
    /// Stopped (locked and disabled): no instance action needed.
    #[serde(default)]
    pub locked: bool,
    /// Server groups.
    #[serde(default)]
    pub groups: Vec<ServerGroup>,
}

/// What the build phase collected; the builder's input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collected {
    /// The inventory.
    pub inventory: Vec<InventoryHost>,
    /// The patch controller's hosts, in its order.
    pub patch_hosts: Vec<PatchHost>,
    /// How many patches the patch controller lists.
    pub patch_count: usize,
    /// Workloads.
    pub instances: Vec<Instance>,
    /// The controller the orchestrator runs on (patched last, after a swact).
    pub local_controller: Option<String>,
}
