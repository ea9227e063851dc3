//! Host facts and the states of a host.

use std::collections::BTreeMap;
use std::fmt;

use patch_format::{Evr, PackageId, Personality};
use serde::{Deserialize, Serialize};

/// A package identity on a host: name and architecture.
pub type PackageKey = (String, String);

/// Administrative state (`system host-lock` / `host-unlock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    /// In service.
    #[default]
    Unlocked,
    /// Taken out of service: reboot-required patches may be installed.
    Locked,
}

/// Operational state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperState {
    /// Running its services.
    #[default]
    Enabled,
    /// Not running them (locked, rebooting, failed).
    Disabled,
}

/// Availability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Availability {
    /// Reporting and healthy.
    #[default]
    Available,
    /// Locked and reporting.
    Online,
    /// Not reporting.
    Offline,
}

macro_rules! display_serde {
    ($($t:ty => [$($v:ident = $s:literal),*]),*) => {$(
        impl $t {
            /// The name shown in tables and JSON.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_serde!(
    AdminState => [Unlocked = "unlocked", Locked = "locked"],
    OperState => [Enabled = "enabled", Disabled = "disabled"],
    Availability => [Available = "available", Online = "online", Offline = "offline"],
    InstallState => [Idle = "idle", Installing = "installing", InstallFailed = "install-failed", InstallRejected = "install-rejected"]
);

/// The agent's install state (the original's agent states).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallState {
    /// Nothing in progress.
    #[default]
    Idle,
    /// An install transaction is running.
    Installing,
    /// The last install failed (and was rolled back).
    InstallFailed,
    /// The last install was refused ("Node must be locked.").
    InstallRejected,
}

/// A package installed on a host, as its agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "InstalledPackageWire")]
pub struct InstalledPackage {
    /// The package (serialized flat: name, epoch, version, release, arch).
    #[serde(flatten)]
    pub id: PackageId,
    /// The patch it was installed from (none for the base load).
    pub patch: Option<String>,
    /// It came from a reboot-required patch.
    pub reboot_required: bool,
}

/// An installed package as read: today's flat shape, or the shape host records saved before
/// the package identity was one type (`"evr": {…}` beside name and arch), so an upgraded
/// controller reads its old host records.
#[derive(Deserialize)]
#[serde(untagged)]
enum InstalledPackageWire {
    Nested {
        name: String,
        arch: String,
        evr: Evr,
        patch: Option<String>,
        reboot_required: bool,
    },
    Flat {
        #[serde(flatten)]
        id: PackageId,
        patch: Option<String>,
        reboot_required: bool,
    },
}

impl From<InstalledPackageWire> for InstalledPackage {
    fn from(wire: InstalledPackageWire) -> InstalledPackage {
        match wire {
            InstalledPackageWire::Nested {
                name,
                arch,
                evr,
                patch,
                reboot_required,
            } => InstalledPackage {
                id: PackageId::new(name, evr, arch),
                patch,
                reboot_required,
            },
            InstalledPackageWire::Flat {
                id,
                patch,
                reboot_required,
            } => InstalledPackage {
                id,
                patch,
                reboot_required,
            },
        }
    }
}

/// What the controller knows about a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Host name, e.g. `controller-0`.
    pub hostname: String,
    /// Management address.
    pub ip: String,
    /// Node type.
    pub personality: Personality,
    /// Subfunctions (e.g. `controller`, `worker` for an all-in-one).
    pub subfunctions: Vec<String>,
    /// The release the host runs.
    pub sw_version: String,
    /// Administrative state.
    pub admin: AdminState,
    /// Operational state.
    pub oper: OperState,
    /// Availability.
    pub availability: Availability,
    /// Agent install state.
    pub install_state: InstallState,
    /// Changes a reboot-required patch installed are waiting for a reboot.
    pub reboot_pending: bool,
    /// Identifies the current boot (changes on every reboot).
    pub boot_id: String,
    /// Seconds since the epoch of the last report.
    pub last_report: u64,
    /// Installed packages.
    #[serde(with = "installed_as_list")]
    pub installed: BTreeMap<PackageKey, InstalledPackage>,
}

impl HostFacts {
    /// Whether the host is locked.
    pub fn is_locked(&self) -> bool {
        self.admin == AdminState::Locked
    }
}

/// JSON object keys must be strings, so the installed map is stored as the list of its
/// values (each carries its own name and architecture).
mod installed_as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{InstalledPackage, PackageKey};

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<PackageKey, InstalledPackage>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.values())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<PackageKey, InstalledPackage>, D::Error> {
        let list = Vec::<InstalledPackage>::deserialize(deserializer)?;
        Ok(list.into_iter().map(|p| (p.id.key(), p)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_with_packages_round_trip_through_json() {
        let pkg = InstalledPackage {
            id: PackageId::new("sysinv", Evr::parse("1.0-230").unwrap(), "x86_64"),
            patch: Some("P1".into()),
            reboot_required: true,
        };
        let facts = HostFacts {
            hostname: "compute-0".into(),
            ip: "10.0.0.5".into(),
            personality: Personality::Worker,
            subfunctions: vec!["worker".into()],
            sw_version: "19.01".into(),
            admin: AdminState::Locked,
            oper: OperState::Disabled,
            availability: Availability::Online,
            install_state: InstallState::Idle,
            reboot_pending: true,
            boot_id: "b".into(),
            last_report: 7,
            installed: BTreeMap::from([(("sysinv".into(), "x86_64".into()), pkg)]),
        };
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(serde_json::from_str::<HostFacts>(&json).unwrap(), facts);
    }

    /// The package identity is one flat type on the wire; host records saved before it was
    /// (with `"evr": {…}` beside name and arch) still read.
    #[test]
    fn an_installed_package_is_flat_and_the_older_nested_shape_still_reads() {
        let pkg = InstalledPackage {
            id: PackageId::new("sysinv", Evr::new(1, "1.0", "230"), "x86_64"),
            patch: None,
            reboot_required: false,
        };
        assert_eq!(
            serde_json::to_string(&pkg).unwrap(),
            r#"{"name":"sysinv","epoch":1,"version":"1.0","release":"230","arch":"x86_64","patch":null,"reboot_required":false}"#
        );
        let older = r#"{"name":"sysinv","arch":"x86_64","evr":{"epoch":1,"version":"1.0","release":"230"},"patch":null,"reboot_required":false}"#;
        assert_eq!(
            serde_json::from_str::<InstalledPackage>(older).unwrap(),
            pkg
        );
        let broken = r#"{"name":"sysinv","arch":"x86_64","patch":null,"reboot_required":false}"#;
        assert!(serde_json::from_str::<InstalledPackage>(broken).is_err());
    }
}
