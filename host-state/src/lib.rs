//! Hosts and what they must install, as pure functions (no I/O), so that every rule is a
//! table-driven unit test.
//!
//! * [`HostFacts`] — what the inventory knows of a host and what its agent reports.
//! * [`desired_packages`] — the package set a host should have: its node type's base load
//!   plus the applied/committed patches' packages (upgrades of what it has, and new packages
//!   only through a patch's personality list), highest EVR per name+arch.
//! * [`HostDiff`] — installed versus desired: install/upgrade, downgrade, remove, missing;
//!   Patch Current ⇔ empty; Reboot Required when a change involves a reboot-required patch.
//! * [`derive_patch_states`] — the original's `check_patch_states` (reference §4), with its
//!   known bugs fixed: every patch (not only the first) is `n/a` without hosts, and a newer
//!   reboot-required patch no longer drags older applied patches to Partial-Apply.
#![forbid(unsafe_code)]

mod desired;
mod model;
mod patch_state;
pub mod protocol;

pub use desired::{
    DesiredPackage, HostDiff, PackageChange, desired_packages, desired_packages_holding,
};
pub use model::{
    AdminState, Availability, HostFacts, InstallState, InstalledPackage, OperState, PackageKey,
};
pub use patch_state::{PatchInfo, PatchState, derive_patch_states};
