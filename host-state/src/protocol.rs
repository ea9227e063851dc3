//! The agent ↔ controller messages (JSON over HTTP, bearer token). The agent always calls the
//! controller; the controller never connects to a host.
//!
//! * `POST /agent/v1/report` — [`HostReport`] → [`ReportReply`] (registration and heartbeat).
//! * `GET /agent/v1/orders?hostname=H&wait=S&received=N` — long poll → [`Delivery`]. `N` is
//!   the last delivery the agent received; the controller hands an order over again until a
//!   poll acknowledges it, so an answer lost with a killed controller or a broken connection
//!   is not an order lost (the agent acts once per delivery number).
//! * `GET /agent/v1/feed/rel-R/…`, `GET /agent/v1/repo/rel-R/…` — index.json ([`RepoIndex`])
//!   and RPMs.

use std::fmt;

use patch_format::{PackageId, Personality};
use serde::{Deserialize, Serialize};

use crate::{InstallState, InstalledPackage};

/// What an agent tells the controller about its host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    /// Host name.
    pub hostname: String,
    /// Management address.
    pub ip: String,
    /// Node type.
    pub personality: Personality,
    /// Subfunctions.
    pub subfunctions: Vec<String>,
    /// Release the host runs.
    pub sw_version: String,
    /// Install state.
    pub install_state: InstallState,
    /// Why the last install failed or was rejected.
    pub last_error: Option<String>,
    /// A reboot-required change is installed and waits for a reboot.
    pub reboot_pending: bool,
    /// The current boot's identifier.
    pub boot_id: String,
    /// Installed packages.
    pub installed: Vec<InstalledPackage>,
    /// The repository operation counter the host last computed its state against.
    pub op_counter: u64,
    /// Sequence number of the last install order the agent finished (0: none).
    pub install_done: u64,
    /// Random identifier of this agent process: a new one means the agent restarted.
    #[serde(default)]
    pub instance: String,
    /// The workloads on the host, from its workload hook (none without one).
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// The host can act on workloads (its workload hook is configured).
    #[serde(default)]
    pub workload_actions: bool,
    /// The host's compute services are disabled (no workloads scheduled onto it).
    #[serde(default)]
    pub services_disabled: bool,
    /// Bytes free (for an unprivileged writer) on the file system that holds the host's root
    /// and the agent's downloads; none when the agent could not tell.
    #[serde(default)]
    pub disk_free_bytes: Option<u64>,
    /// How the host's health checks came out after its last install that brought patches
    /// (none: no checks configured, or nothing installed yet).
    #[serde(default)]
    pub health: Option<HealthReport>,
}

/// The outcome of a host's health checks (`required.d/` must pass, `wanted.d/` may warn).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Passed, warned or failed.
    pub state: HealthState,
    /// What failed or warned, with the check's output.
    pub detail: String,
    /// The patches the host rolled back from because a required check failed.
    #[serde(default)]
    pub rolled_back: std::collections::BTreeSet<String>,
}

/// How health checks came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthState {
    /// Every check passed.
    Passed,
    /// A wanted check failed.
    Warned,
    /// A required check failed: the host rolled back.
    Failed,
    /// The checks run once the host has rebooted into a reboot-required patch.
    AfterReboot,
}

/// A workload (instance) on a host, as the host's workload hook lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Name.
    pub name: String,
    /// UUID (or any stable identifier).
    #[serde(default)]
    pub uuid: String,
    /// Stopped.
    #[serde(default)]
    pub locked: bool,
    /// Server groups it belongs to.
    #[serde(default)]
    pub groups: Vec<WorkloadGroup>,
}

/// A server group of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadGroup {
    /// Name.
    pub name: String,
    /// Policies, e.g. `anti-affinity`.
    #[serde(default)]
    pub policies: Vec<String>,
}

/// What a workload order asks the host's hook to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadVerb {
    /// Stop a workload.
    Stop,
    /// Start it.
    Start,
    /// Move it to another host.
    Migrate,
    /// Stop scheduling workloads onto this host.
    DisableServices,
    /// Undo that.
    EnableServices,
}

impl WorkloadVerb {
    /// The hook's first argument.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadVerb::Stop => "stop",
            WorkloadVerb::Start => "start",
            WorkloadVerb::Migrate => "migrate",
            WorkloadVerb::DisableServices => "disable-services",
            WorkloadVerb::EnableServices => "enable-services",
        }
    }
}

/// The controller's answer to a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportReply {
    /// The store's operation counter (a higher one than the agent's means: re-check).
    pub op_counter: u64,
    /// Whether the host is administratively locked.
    pub locked: bool,
}

/// An order as the orders endpoint hands it over, numbered for acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Per-host delivery number, rising; 0 for [`AgentOrder::None`].
    #[serde(default)]
    pub delivery: u64,
    /// The order.
    #[serde(flatten)]
    pub order: AgentOrder,
}

impl Delivery {
    /// The answer to a long poll that timed out.
    pub fn none() -> Delivery {
        Delivery {
            delivery: 0,
            order: AgentOrder::None,
        }
    }
}

/// Something the controller wants an agent to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "order", rename_all = "kebab-case")]
pub enum AgentOrder {
    /// Nothing (the long poll timed out).
    None,
    /// Bring the host to its desired package set.
    Install {
        /// Install reboot-required changes even on an unlocked host.
        force: bool,
        /// Sequence number, echoed in [`HostReport::install_done`] once finished.
        seq: u64,
        /// Whether the host is locked as the order is handed over.
        #[serde(default)]
        locked: bool,
        /// Patches this host is held back from (rolled back): their packages are not
        /// installed, older ones take their place.
        #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
        held: std::collections::BTreeSet<String>,
        /// After the install the host's health checks must keep passing this long (0: none).
        #[serde(default, skip_serializing_if = "is_zero")]
        soak_secs: u64,
    },
    /// Reboot (after an unlock with reboot-required changes installed).
    Reboot,
    /// Run the workload hook: `<hook> <verb> <target>` (target: a workload, or the host).
    Workload {
        /// What to do.
        verb: WorkloadVerb,
        /// The workload's name (the host's name for the services verbs).
        target: String,
    },
}

// The software repository as hosts read it (`index.json`), and the patch states it is built
// from: the controller's store writes them, agents and the state derivation read them.

/// Where a patch sits: the directory holding its `<ID>-metadata.xml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RepoState {
    /// Uploaded, not in the software repository.
    Available,
    /// In the software repository.
    Applied,
    /// Applied for good: cannot be removed.
    Committed,
}

impl RepoState {
    /// All three, in the original's load order (applied, available, committed).
    pub const ALL: [RepoState; 3] = [
        RepoState::Applied,
        RepoState::Available,
        RepoState::Committed,
    ];

    /// The metadata sub-directory name.
    pub fn dir_name(self) -> &'static str {
        match self {
            RepoState::Available => "available",
            RepoState::Applied => "applied",
            RepoState::Committed => "committed",
        }
    }

    /// The display name (`Available`, `Applied`, `Committed`).
    pub fn as_str(self) -> &'static str {
        match self {
            RepoState::Available => "Available",
            RepoState::Applied => "Applied",
            RepoState::Committed => "Committed",
        }
    }

    /// In the software repository (applied or committed).
    pub fn in_repo(self) -> bool {
        !matches!(self, RepoState::Available)
    }
}

impl fmt::Display for RepoState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One package of a repository's `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The package (serialized flat: name, epoch, version, release, arch).
    #[serde(flatten)]
    pub id: PackageId,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Path relative to the repository root, `Packages/<arch>/<file>`.
    pub path: String,
    /// The patch that provides it (none for the base load).
    pub patch: Option<String>,
    /// Installing it requires a locked host and a reboot.
    pub reboot_required: bool,
    /// Node types that must install it even when not installed yet (new packages). Empty:
    /// only an upgrade for hosts that have the package.
    pub personalities: Vec<Personality>,
}

/// An in-service restart script of an applied patch, published beside the packages
/// (`scripts/<name>` in the repository).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartScriptEntry {
    /// The patch it belongs to.
    pub patch: String,
    /// Its file name.
    pub name: String,
    /// SHA-256, hex (as signed in the patch metadata).
    pub sha256: String,
}

/// A repository's `index.json`: what hosts compute their desired package set from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoIndex {
    /// The release, e.g. `19.01`.
    pub release: String,
    /// The store's operation counter when the index was written.
    pub op_counter: u64,
    /// The packages, sorted by name, arch, then version.
    pub packages: Vec<IndexEntry>,
    /// Restart scripts of the applied in-service patches.
    #[serde(default)]
    pub restart_scripts: Vec<RestartScriptEntry>,
}

/// Serde's "leave out when zero".
fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index entry's bytes did not move when its identity became a `PackageId`: the
    /// fields keep their names and order.
    #[test]
    fn an_index_entry_keeps_its_json_shape() {
        let entry = IndexEntry {
            id: PackageId::new("sysinv", patch_format::Evr::new(0, "1.0", "231"), "x86_64"),
            size: 5,
            sha256: "ab".into(),
            path: "Packages/x86_64/sysinv-1.0-231.x86_64.rpm".into(),
            patch: Some("P1".into()),
            reboot_required: false,
            personalities: vec![],
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            json,
            r#"{"name":"sysinv","epoch":0,"version":"1.0","release":"231","arch":"x86_64","size":5,"sha256":"ab","path":"Packages/x86_64/sysinv-1.0-231.x86_64.rpm","patch":"P1","reboot_required":false,"personalities":[]}"#
        );
        assert_eq!(serde_json::from_str::<IndexEntry>(&json).unwrap(), entry);
    }

    #[test]
    fn a_delivery_is_the_order_with_its_number_beside_the_tag() {
        let delivery = Delivery {
            delivery: 3,
            order: AgentOrder::Install {
                force: true,
                seq: 2,
                locked: false,
                held: Default::default(),
                soak_secs: 0,
            },
        };
        let json = serde_json::to_value(&delivery).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"delivery": 3, "order": "install", "force": true, "seq": 2, "locked": false})
        );
        assert_eq!(serde_json::from_value::<Delivery>(json).unwrap(), delivery);
        // A timed-out poll.
        assert_eq!(
            serde_json::to_value(Delivery::none()).unwrap(),
            serde_json::json!({"delivery": 0, "order": "none"})
        );
    }
}
