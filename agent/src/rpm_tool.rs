//! The `rpm` installer: the system's `rpm` tool with `--root`, for hosts whose packages are
//! managed by rpm's own database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use host_state::{InstalledPackage, PackageKey};
use serde::{Deserialize, Serialize};

use crate::builtin::db_key;
use crate::{InstallError, Transaction};

/// Where the installer keeps what rpm's database does not know (the owning patch and whether
/// it was reboot-required), under the root.
const ORIGINS: &str = "var/lib/stx-patch/rpm-origins.json";

/// Installs with `rpm --root <root> --dbpath /var/lib/rpm`.
///
/// One `rpm -U --oldpackage` transaction installs, upgrades and downgrades (rpm rolls it back
/// itself if any element fails); removals follow as one `rpm -e` transaction. Scriptlets run as
/// rpm runs them. Package signatures are not checked by rpm here: the agent has verified every
/// file's SHA-256 against the signed repository index before.
#[derive(Debug)]
pub struct RpmToolInstaller {
    root: PathBuf,
    origins: BTreeMap<String, (Option<String>, bool)>,
}

#[derive(Serialize, Deserialize)]
struct Origins(BTreeMap<String, (Option<String>, bool)>);

impl RpmToolInstaller {
    /// Opens the installer on `root`; fails if the `rpm` tool is missing.
    pub fn open(root: &Path) -> Result<Self, InstallError> {
        let version =
            Command::new("rpm")
                .arg("--version")
                .output()
                .map_err(|e| InstallError::Package {
                    package: "rpm".into(),
                    reason: format!(
                        "the rpm tool is not available ({e}); install it or use --installer builtin"
                    ),
                })?;
        if !version.status.success() {
            return Err(InstallError::Package {
                package: "rpm".into(),
                reason: "rpm --version failed".into(),
            });
        }
        let path = root.join(ORIGINS);
        let origins = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<Origins>(&bytes)
                    .map_err(|e| InstallError::Corrupt(format!("{}: {e}", path.display())))?
                    .0
            }
            Err(_) => BTreeMap::new(),
        };
        Ok(RpmToolInstaller {
            root: root.to_owned(),
            origins,
        })
    }

    fn rpm(&self) -> Command {
        crate::builtin::rpm_command(&self.root)
    }

    /// The installed packages, from rpm's database.
    pub fn installed(&self) -> Result<BTreeMap<PackageKey, InstalledPackage>, InstallError> {
        // rpm's listing, read as the builtin installer reads it (a failing or erroring
        // query is an error, never "nothing installed").
        let listed = crate::builtin::rpm_list(&self.root).map_err(InstallError::RpmDb)?;
        let mut installed = BTreeMap::new();
        for p in listed {
            let (patch, reboot_required) = self
                .origins
                .get(&db_key(&p.id.name, &p.id.arch))
                .cloned()
                .unwrap_or((None, false));
            installed.insert(
                (p.id.name.clone(), p.id.arch.clone()),
                InstalledPackage {
                    id: p.id,
                    patch,
                    reboot_required,
                },
            );
        }
        Ok(installed)
    }

    /// Runs the transaction with rpm.
    pub fn apply(&mut self, tx: &Transaction) -> Result<(), InstallError> {
        if !tx.install.is_empty() {
            let mut cmd = self.rpm();
            cmd.args(["-U", "--oldpackage", "--replacepkgs", "--nosignature"]);
            for item in &tx.install {
                cmd.arg(&item.rpm);
            }
            run(cmd, "rpm -U")?;
        }
        if !tx.remove.is_empty() {
            let mut cmd = self.rpm();
            cmd.arg("-e");
            for (name, arch) in &tx.remove {
                cmd.arg(db_key(name, arch));
            }
            run(cmd, "rpm -e")?;
        }
        for item in &tx.install {
            self.origins.insert(
                db_key(&item.package.id.name, &item.package.id.arch),
                (item.package.patch.clone(), item.package.reboot_required),
            );
        }
        for (name, arch) in &tx.remove {
            self.origins.remove(&db_key(name, arch));
        }
        let path = self.root.join(ORIGINS);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(InstallError::io(dir))?;
        }
        let bytes = serde_json::to_vec_pretty(&Origins(self.origins.clone()))
            .map_err(|e| InstallError::Corrupt(e.to_string()))?;
        Ok(durable_fs::write(&path, &bytes)?)
    }
}

fn run(cmd: Command, what: &str) -> Result<(), InstallError> {
    crate::builtin::run_rpm(cmd, what).map_err(|reason| InstallError::Package {
        package: what.into(),
        reason,
    })
}
