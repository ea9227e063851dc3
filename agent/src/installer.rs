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
    /// The installed packages. A database that cannot be listed is an error, never "nothing
    /// installed" (a host would then report every package missing).
    pub fn installed(&self) -> Result<BTreeMap<PackageKey, InstalledPackage>, InstallError> {
        match self {
            Installer::Builtin(i) => Ok(i.installed()),
            Installer::Rpm(i) => i.installed(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A root whose rpm database cannot be read lists as an error, not as an empty host.
    #[test]
    fn a_database_that_cannot_be_listed_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/lib")).unwrap();
        // The database directory is a file: rpm cannot open it.
        std::fs::write(root.path().join("var/lib/rpm"), b"junk").unwrap();
        let rpm = RpmToolInstaller::open(root.path())
            .expect("the rpm tool is installed (./scripts/test.sh installs rpm)");
        let installer = Installer::Rpm(rpm);
        assert!(installer.installed().is_err());
    }
}
