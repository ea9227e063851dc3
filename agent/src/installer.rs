//! The installers an agent can use, behind one interface.

use std::collections::BTreeMap;

use host_state::{InstalledPackage, PackageKey};

use crate::{BuiltinInstaller, InstallError, RpmToolInstaller, Transaction};

/// Which installer an agent uses.
#[derive(Debug)]
pub enum Installer {
    /// Payloads extracted by stx-patch, journalled (see [`BuiltinInstaller`]).
    Builtin(BuiltinInstaller),
    /// The system's `rpm` tool (see [`RpmToolInstaller`]).
    Rpm(RpmToolInstaller),
}

impl Installer {
    /// The installed packages.
    pub fn installed(&self) -> BTreeMap<PackageKey, InstalledPackage> {
        match self {
            Installer::Builtin(i) => i.installed(),
            Installer::Rpm(i) => i.installed().unwrap_or_else(|e| {
                tracing::error!("cannot list installed packages: {e}");
                BTreeMap::new()
            }),
        }
    }

    /// Runs a transaction.
    pub fn apply(&mut self, tx: &Transaction) -> Result<(), InstallError> {
        match self {
            Installer::Builtin(i) => i.apply(tx),
            Installer::Rpm(i) => i.apply(tx),
        }
    }
}
