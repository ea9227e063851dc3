//! The builtin installer: RPM payloads into a root directory, transactionally, installed
//! exactly as `rpm -U` installs them.
//!
//! A transaction happens in three parts. First, nothing under the root changes: every
//! package's header is read, its scriptlets' interpreters are checked in the root, its
//! payload (any compressor) is streamed into a staging area under the root with every
//! attribute rpm sets (owner, mode, setuid bits, capabilities, mtime, hard-link sets as one
//! inode), the fate of each path is decided by rpm's rules (`%config`, `noreplace`, shared
//! files, conflicts), the staging area is flushed to disk and the rpm database (if the root
//! has one) is copied aside. Then a journal of reversible steps is written and run in rpm's
//! order: `%pretrans`; for each package `%pre`, its files, `%post`; for each replaced package
//! `%preun`, its leftover files, `%postun`; `%posttrans`; the rpm database update. Last, the
//! installer's package database names the transaction: that write is the commit point. A
//! crash or an error before it rolls files and rpm database back to exactly their previous
//! state (when the installer is next opened, or at once). Scriptlets' own side effects are
//! theirs: like rpm, the installer cannot undo what a script did.

mod caps;
mod fate;
mod owners;
mod package;
mod rpmdb;
mod script;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use host_state::{InstalledPackage, PackageKey};
use patch_format::Evr;
use serde::{Deserialize, Serialize};

use self::fate::Fate;
use self::owners::Owners;
pub use self::package::{FileInfo, FileKind, Script, Scripts};
use self::package::{Header, read_header};
pub use self::rpmdb::DBPATH as RPMDB_PATH;
use self::rpmdb::RpmDb;
pub(crate) use self::rpmdb::{rpm_command, run as run_rpm};
pub(crate) use self::script::output_tail;
use crate::InstallError;

/// Where the installer keeps its database, journal and work area, under the root.
const STATE_DIR: &str = "var/lib/stx-patch";

/// A package the transaction installs (new, upgrade or downgrade of the same name+arch).
#[derive(Clone, Debug)]
pub struct TransactionPackage {
    /// What it is (recorded in the package database).
    pub package: InstalledPackage,
    /// The downloaded and verified RPM file.
    pub rpm: PathBuf,
}

/// One install transaction: all of it happens, or none of it.
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    /// Packages to install or replace.
    pub install: Vec<TransactionPackage>,
    /// Packages to remove.
    pub remove: Vec<PackageKey>,
}

/// What the database knows of an installed package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledRecord {
    /// The package.
    pub package: InstalledPackage,
    /// Every path of its header (files, links, directories, ghosts) with its attributes.
    #[serde(default)]
    pub entries: Vec<FileInfo>,
    /// Its scriptlets (the uninstall ones run when it is replaced or removed).
    #[serde(default)]
    pub scripts: Scripts,
    /// What it requires and provides (removals are ordered by them).
    #[serde(default)]
    pub requires: Vec<String>,
    /// See `requires`.
    #[serde(default)]
    pub provides: Vec<String>,
    /// Format 1 (before attributes were recorded): placed files.
    #[serde(default, skip_serializing)]
    files: Vec<String>,
    /// Format 1: directories its installs created.
    #[serde(default, skip_serializing)]
    dirs: Vec<String>,
}

impl InstalledRecord {
    /// Format 1 records list paths only: treat them as plain files and owned directories.
    fn upgrade_format(&mut self) {
        if !self.entries.is_empty() {
            return;
        }
        let plain = |path: &String, kind| FileInfo {
            path: path.clone(),
            kind,
            mode: 0o755,
            user: "root".into(),
            group: "root".into(),
            mtime: 0,
            size: 0,
            flags: 0,
            digest: None,
            link: None,
            caps: None,
        };
        let files = std::mem::take(&mut self.files);
        let dirs = std::mem::take(&mut self.dirs);
        self.entries = files
            .iter()
            .map(|f| plain(f, FileKind::Regular))
            .chain(dirs.iter().map(|d| plain(d, FileKind::Dir)))
            .collect();
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PackageDb {
    /// The last committed transaction.
    last_tx: u64,
    /// Keyed `name.arch`.
    packages: BTreeMap<String, InstalledRecord>,
}

/// Attributes set on a created path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    /// `None`: leave the time the file system gives it.
    mtime: Option<i64>,
}

/// One step on the root (paths relative to the root), reversible unless said otherwise.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Op {
    MakeDir {
        target: String,
        meta: Meta,
    },
    SetDirMeta {
        target: String,
        new: Meta,
        old: Meta,
    },
    Place {
        target: String,
        staged: String,
        backup: Option<String>,
    },
    Delete {
        target: String,
        backup: String,
    },
    /// Moves `target` to `to` (`.rpmsave`, `.rpmorig`); `to` is free (deleted before).
    Rename {
        target: String,
        to: String,
    },
    RemoveDir {
        target: String,
        meta: Meta,
    },
    /// Not reversible: a scriptlet's effects are its own.
    Script {
        package: String,
        which: String,
        script: Script,
        arg: u32,
        /// Its failure fails the transaction (`%pretrans`, `%pre`, `%preun`), as in rpm
        /// where it stops that package; others only warn.
        fatal: bool,
    },
    /// The rpm database update; reversed by restoring the snapshot.
    RpmDb {
        install: Vec<PathBuf>,
        erase: Vec<String>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Journal {
    tx: u64,
    ops: Vec<Op>,
}

/// What opening the installer found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No transaction was interrupted.
    Clean,
    /// A transaction had committed; its leftovers were cleaned up.
    RolledForward,
    /// A transaction was interrupted before committing; the root was restored.
    RolledBack,
}

/// Installs RPM packages into a root directory; see the module docs.
#[derive(Debug)]
pub struct BuiltinInstaller {
    root: PathBuf,
    canonical_root: PathBuf,
    db: PackageDb,
    rpmdb: Option<RpmDb>,
}

/// Every package rpm's database in `root` lists (name, EVR, arch; no files).
pub(crate) fn rpm_list(root: &Path) -> Result<Vec<rpmdb::DbPackage>, String> {
    RpmDb::at(root).list()
}

/// The package database's key of a package: `name.arch` (rpm's database uses the same).
pub(crate) fn db_key(name: &str, arch: &str) -> String {
    format!("{name}.{arch}")
}

fn key_name(key: &PackageKey) -> String {
    db_key(&key.0, &key.1)
}

fn item_key(p: &TransactionPackage) -> String {
    db_key(&p.package.id.name, &p.package.id.arch)
}

impl BuiltinInstaller {
    /// Opens the installer on `root`, finishing or rolling back an interrupted transaction.
    /// When the root has an rpm database, packages it lists that this installer did not
    /// install are adopted (so their upgrade or removal follows rpm's rules).
    pub fn open(root: &Path) -> Result<(Self, Recovery), InstallError> {
        let state = root.join(STATE_DIR);
        std::fs::create_dir_all(&state).map_err(InstallError::io(&state))?;
        let canonical_root = root.canonicalize().map_err(InstallError::io(root))?;
        let mut db = read_json::<PackageDb>(&state.join("packages.json"))?.unwrap_or_default();
        for record in db.packages.values_mut() {
            record.upgrade_format();
        }
        let rpmdb = RpmDb::detect(root).map_err(InstallError::RpmDb)?;
        let mut installer = BuiltinInstaller {
            root: root.to_owned(),
            canonical_root,
            db,
            rpmdb,
        };
        let recovery = match read_json::<Journal>(&state.join("journal.json"))? {
            None => Recovery::Clean,
            Some(journal) if journal.tx == installer.db.last_tx => Recovery::RolledForward,
            Some(journal) => {
                installer.undo(&journal.ops)?;
                Recovery::RolledBack
            }
        };
        installer.cleanup()?;
        installer.adopt_rpmdb()?;
        Ok((installer, recovery))
    }

    /// Takes into the database what rpm's database lists and this one does not know (or
    /// knows at another version: rpm's database is the truth about what is installed). One
    /// quick listing; files and scriptlets are read only for the packages that differ.
    fn adopt_rpmdb(&mut self) -> Result<(), InstallError> {
        let Some(rpmdb) = &self.rpmdb else {
            return Ok(());
        };
        let differ: Vec<String> = rpmdb
            .list()
            .map_err(InstallError::RpmDb)?
            .iter()
            .filter(|p| {
                let evr = Evr::new(p.id.evr.epoch, &p.id.evr.version, &p.id.evr.release);
                self.db
                    .packages
                    .get(&db_key(&p.id.name, &p.id.arch))
                    .is_none_or(|r| r.package.id.evr != evr)
            })
            .map(|p| p.nevra())
            .collect();
        for p in rpmdb.details(&differ).map_err(InstallError::RpmDb)? {
            self.db.packages.insert(
                db_key(&p.id.name, &p.id.arch),
                InstalledRecord {
                    package: InstalledPackage {
                        id: p.id,
                        patch: None,
                        reboot_required: false,
                    },
                    entries: p.files,
                    scripts: p.scripts,
                    requires: p.requires,
                    provides: p.provides,
                    files: Vec::new(),
                    dirs: Vec::new(),
                },
            );
        }
        Ok(())
    }

    /// Whether the root has an rpm database this installer keeps up to date.
    pub fn has_rpmdb(&self) -> bool {
        self.rpmdb.is_some()
    }

    /// The installed packages.
    pub fn installed(&self) -> BTreeMap<PackageKey, InstalledPackage> {
        self.db
            .packages
            .values()
            .map(|r| {
                (
                    (r.package.id.name.clone(), r.package.id.arch.clone()),
                    r.package.clone(),
                )
            })
            .collect()
    }

    /// The database records (with file lists).
    pub fn records(&self) -> impl Iterator<Item = &InstalledRecord> {
        self.db.packages.values()
    }

    fn state(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    fn work(&self) -> PathBuf {
        self.state().join("tx")
    }

    /// Runs a transaction. On any error the root is put back as it was and the error returned.
    pub fn apply(&mut self, tx: &Transaction) -> Result<(), InstallError> {
        self.apply_with_hook(tx, &mut |_| {})
    }

    /// As [`apply`](Self::apply), calling `hook(step)` before each step that changes the root
    /// (tests use it to stop at every possible point).
    pub fn apply_with_hook(
        &mut self,
        tx: &Transaction,
        hook: &mut dyn FnMut(usize),
    ) -> Result<(), InstallError> {
        self.cleanup()?;
        let work = self.work();
        std::fs::create_dir_all(work.join("staged")).map_err(InstallError::io(&work))?;
        std::fs::create_dir_all(work.join("backup")).map_err(InstallError::io(&work))?;
        let result = self.plan_and_run(tx, hook);
        if result.is_err() {
            // Undo whatever the journal says happened (the journal may not exist yet).
            if let Some(journal) = read_json::<Journal>(&self.state().join("journal.json"))? {
                self.undo(&journal.ops)?;
            }
        }
        self.cleanup()?;
        result
    }

    fn plan_and_run(
        &mut self,
        tx: &Transaction,
        hook: &mut dyn FnMut(usize),
    ) -> Result<(), InstallError> {
        let txid = self.db.last_tx + 1;
        let plan = self.plan(tx)?;
        // The journal, then the root.
        let journal = Journal {
            tx: txid,
            ops: plan.ops.clone(),
        };
        write_json(&self.state().join("journal.json"), &journal)?;
        for (step, op) in plan.ops.iter().enumerate() {
            hook(step);
            self.run(op)?;
        }
        hook(plan.ops.len());
        // Every rename and directory change of the transaction on disk before the commit.
        sync_fs(&self.root)?;
        // Commit point: the database names this transaction.
        let mut new_db = plan.db;
        new_db.last_tx = txid;
        write_json(&self.state().join("packages.json"), &new_db)?;
        self.db = new_db;
        hook(plan.ops.len() + 1);
        Ok(())
    }

    /// Everything before the first change to the root: headers, checks, staging, fates.
    fn plan(&self, tx: &Transaction) -> Result<Plan, InstallError> {
        let installing: BTreeSet<String> = tx.install.iter().map(item_key).collect();
        let removing: Vec<String> = tx.remove.iter().map(key_name).collect();
        if let Some(both) = removing.iter().find(|name| installing.contains(*name)) {
            return Err(InstallError::Package {
                package: both.clone(),
                reason: "the transaction both installs and removes it".into(),
            });
        }
        // Headers, then rpm's order.
        let mut elements = Vec::new();
        for item in &tx.install {
            let header = read_header(&item.rpm).map_err(|reason| InstallError::Package {
                package: item.package.id.name.clone(),
                reason,
            })?;
            if header.name != item.package.id.name {
                return Err(InstallError::Package {
                    package: item.package.id.name.clone(),
                    reason: format!("the RPM file is package {:?}", header.name),
                });
            }
            let label = item_key(item);
            elements.push(Element {
                old: self.db.packages.get(&label).cloned(),
                label,
                item: item.clone(),
                header,
            });
        }
        order_installs(&mut elements);
        let erasing = order_erases(
            tx.remove
                .iter()
                .filter_map(|k| self.db.packages.get(&key_name(k)).cloned())
                .collect(),
        );

        // Scriptlets must be runnable here before anything changes.
        let runnable =
            |package: &str, (which, s): (&str, &Script)| match script::cannot_run(&self.root, s) {
                None => Ok(()),
                Some(reason) => Err(InstallError::Script {
                    package: package.to_owned(),
                    scriptlet: which.to_owned(),
                    reason,
                }),
            };
        for e in &elements {
            for s in e.header.scripts.install_side() {
                runnable(&e.item.package.id.name, s)?;
            }
        }
        for old in elements
            .iter()
            .filter_map(|e| e.old.as_ref())
            .chain(&erasing)
        {
            for s in old.scripts.erase_side() {
                runnable(&old.package.id.name, s)?;
            }
        }

        // Stage every payload (nothing under the root outside the work area changes).
        let owners = Owners::of_root(&self.root);
        let mut staged = Vec::new();
        for (n, e) in elements.iter().enumerate() {
            let dir = self.work().join("staged").join(n.to_string());
            // The rpm crate may panic on a malformed payload: an error, never a crash.
            let staging = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.stage(e, &dir, &owners)
            }))
            .unwrap_or_else(|_| {
                Err(InstallError::Package {
                    package: e.item.package.id.name.clone(),
                    reason: "malformed RPM payload (the reader gave up on it)".into(),
                })
            });
            staged.push(staging?);
        }
        // Staged content is on disk before the journal points at it.
        sync_fs(&self.root)?;

        // Who owns what once the transaction is done, apart from the new packages.
        let leaving: BTreeSet<&str> = elements
            .iter()
            .map(|e| e.label.as_str())
            .chain(removing.iter().map(String::as_str))
            .collect();
        let mut planner = Planner {
            installer: self,
            owners,
            kept_owner: HashMap::new(),
            new_owner: HashMap::new(),
            made_dirs: BTreeSet::new(),
            gone: BTreeSet::new(),
            ops: Vec::new(),
        };
        for (name, record) in &self.db.packages {
            if !leaving.contains(name.as_str()) {
                for f in &record.entries {
                    planner
                        .kept_owner
                        .insert(f.path.as_str(), (name.as_str(), f));
                }
            }
        }
        // rpm's `$1`: the instances of the name once the element is done.
        let count = |name: &str| {
            self.db
                .packages
                .values()
                .filter(|r| r.package.id.name == name)
                .count() as u32
        };

        let mut new_db = self.db.clone();
        for e in &elements {
            let name = &e.item.package.id.name;
            planner.script(
                name,
                "%pretrans",
                &e.header.scripts.pretrans,
                count(name) + 1,
                true,
            );
        }
        for (e, staged) in elements.iter().zip(&staged) {
            let name = &e.item.package.id.name;
            let arg = count(name) + 1;
            planner.script(name, "%pre", &e.header.scripts.pre, arg, true);
            let old_entries: HashMap<&str, &FileInfo> = e
                .old
                .iter()
                .flat_map(|o| o.entries.iter().map(|f| (f.path.as_str(), f)))
                .collect();
            for info in e.header.files.iter().filter(|f| !f.is_ghost()) {
                planner.missing_parents(&info.path);
                if info.kind == FileKind::Dir {
                    planner.dir_entry(&e.label, info)?;
                } else {
                    let old = old_entries.get(info.path.as_str()).copied();
                    planner.file_entry(&e.label, info, old, staged)?;
                }
            }
            planner.script(name, "%post", &e.header.scripts.post, arg, false);
            new_db.packages.insert(
                e.label.clone(),
                InstalledRecord {
                    package: e.item.package.clone(),
                    entries: e.header.files.clone(),
                    scripts: e.header.scripts.clone(),
                    requires: e.header.requires.clone(),
                    provides: e.header.provides.clone(),
                    files: Vec::new(),
                    dirs: Vec::new(),
                },
            );
        }
        // Replaced packages, then removed ones: %preun, files nothing owns any more, %postun.
        let new_paths: BTreeSet<&str> = elements
            .iter()
            .flat_map(|e| e.header.files.iter().map(|f| f.path.as_str()))
            .collect();
        let replaced = elements.iter().filter_map(|e| e.old.as_ref());
        for old in replaced {
            planner.erase(old, count(&old.package.id.name), &new_paths);
        }
        for old in &erasing {
            planner.erase(old, count(&old.package.id.name) - 1, &new_paths);
        }
        for name in &removing {
            new_db.packages.remove(name);
        }
        for e in &elements {
            let name = &e.item.package.id.name;
            planner.script(
                name,
                "%posttrans",
                &e.header.scripts.posttrans,
                count(name) + 1,
                false,
            );
        }
        let mut ops = planner.ops;
        if let Some(rpmdb) = &self.rpmdb {
            rpmdb
                .snapshot(&self.work().join("rpmdb"))
                .map_err(InstallError::RpmDb)?;
            ops.push(Op::RpmDb {
                install: elements.iter().map(|e| e.item.rpm.clone()).collect(),
                erase: removing,
            });
        }
        Ok(Plan { ops, db: new_db })
    }

    fn run(&self, op: &Op) -> Result<(), InstallError> {
        match op {
            Op::MakeDir { target, meta } => {
                let path = self.root.join(target);
                self.check_inside(&path, target)?;
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(InstallError::io(&path)(e)),
                }
                self.check_inside(&path, target)?;
                set_meta(&path, meta, false).map_err(InstallError::io(&path))?;
            }
            Op::SetDirMeta { target, new, .. } => {
                let path = self.root.join(target);
                self.check_inside(&path, target)?;
                set_meta(&path, new, false).map_err(InstallError::io(&path))?;
            }
            Op::Place {
                target,
                staged,
                backup,
            } => {
                let path = self.root.join(target);
                self.check_inside(&path, target)?;
                if let Some(backup) = backup {
                    std::fs::rename(&path, self.root.join(backup))
                        .map_err(InstallError::io(&path))?;
                }
                std::fs::rename(self.root.join(staged), &path).map_err(InstallError::io(&path))?;
            }
            Op::Delete { target, backup } => {
                let path = self.root.join(target);
                self.check_inside(&path, target)?;
                std::fs::rename(&path, self.root.join(backup)).map_err(InstallError::io(&path))?;
            }
            Op::Rename { target, to } => {
                let path = self.root.join(target);
                self.check_inside(&path, target)?;
                std::fs::rename(&path, self.root.join(to)).map_err(InstallError::io(&path))?;
                tracing::warn!("/{target} saved as /{to}");
            }
            Op::RemoveDir { target, .. } => {
                // Only if empty: something else may have put files there.
                let _ = std::fs::remove_dir(self.root.join(target));
            }
            Op::Script {
                package,
                which,
                script,
                arg,
                fatal,
            } => {
                if let Err(reason) = script::run(&self.root, script, *arg) {
                    if *fatal {
                        return Err(InstallError::Script {
                            package: package.clone(),
                            scriptlet: which.clone(),
                            reason,
                        });
                    }
                    // rpm's rule: the package stays installed, the failure is a warning.
                    tracing::warn!("package {package}: {which} scriptlet {reason}");
                }
            }
            Op::RpmDb { install, erase } => {
                if let Some(rpmdb) = &self.rpmdb {
                    rpmdb
                        .register(install, erase)
                        .map_err(InstallError::RpmDb)?;
                }
            }
        }
        Ok(())
    }

    /// Reverses `ops` (any prefix of them may have happened). Idempotent.
    fn undo(&self, ops: &[Op]) -> Result<(), InstallError> {
        for op in ops.iter().rev() {
            match op {
                Op::MakeDir { target, .. } => {
                    let _ = std::fs::remove_dir(self.root.join(target));
                }
                Op::SetDirMeta { target, old, .. } => {
                    let path = self.root.join(target);
                    if path.is_dir() {
                        set_meta(&path, old, false).map_err(InstallError::io(&path))?;
                    }
                }
                Op::Place { target, backup, .. } => {
                    let path = self.root.join(target);
                    match backup {
                        Some(backup) if self.root.join(backup).symlink_metadata().is_ok() => {
                            std::fs::rename(self.root.join(backup), &path)
                                .map_err(InstallError::io(&path))?;
                        }
                        Some(_) => {}
                        None => {
                            if path.symlink_metadata().is_ok() {
                                std::fs::remove_file(&path).map_err(InstallError::io(&path))?;
                            }
                        }
                    }
                }
                Op::Delete { target, backup } => {
                    let backup = self.root.join(backup);
                    if backup.symlink_metadata().is_ok() {
                        let path = self.root.join(target);
                        std::fs::rename(&backup, &path).map_err(InstallError::io(&path))?;
                    }
                }
                Op::Rename { target, to } => {
                    let (path, to) = (self.root.join(target), self.root.join(to));
                    if to.symlink_metadata().is_ok() && path.symlink_metadata().is_err() {
                        std::fs::rename(&to, &path).map_err(InstallError::io(&path))?;
                    }
                }
                Op::RemoveDir { target, meta } => {
                    let path = self.root.join(target);
                    if !path.exists() {
                        std::fs::create_dir(&path).map_err(InstallError::io(&path))?;
                        set_meta(&path, meta, false).map_err(InstallError::io(&path))?;
                    }
                }
                Op::Script { .. } => {}
                Op::RpmDb { .. } => {
                    if let Some(rpmdb) = &self.rpmdb {
                        let snapshot = self.work().join("rpmdb");
                        if snapshot.is_dir() {
                            rpmdb.restore(&snapshot).map_err(InstallError::RpmDb)?;
                        }
                    }
                }
            }
        }
        sync_fs(&self.root)
    }

    /// Removes the journal and the work area.
    fn cleanup(&self) -> Result<(), InstallError> {
        let work = self.work();
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(InstallError::io(&work))?;
        }
        durable_fs::remove_file(&self.state().join("journal.json"))?;
        Ok(())
    }

    /// Refuses a path whose existing parent resolves outside the root (through a symlink).
    fn check_inside(&self, path: &Path, rel: &str) -> Result<(), InstallError> {
        let parent = path.parent().unwrap_or(path);
        if let Ok(real) = parent.canonicalize()
            && !real.starts_with(&self.canonical_root)
        {
            return Err(InstallError::UnsafePath {
                package: "transaction".into(),
                path: rel.to_owned(),
                reason: format!("it resolves outside the root, to {}", real.display()),
            });
        }
        Ok(())
    }

    /// Streams one package's payload into `dir`, every file with its final attributes and
    /// hard-link sets as one inode; returns path → staged path (relative to the root).
    fn stage(
        &self,
        e: &Element,
        dir: &Path,
        owners: &Owners,
    ) -> Result<HashMap<String, String>, InstallError> {
        let label = e.item.package.id.name.clone();
        let bad = |reason: String| InstallError::Package {
            package: label.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(InstallError::io(dir))?;
        let header = &e.header;
        let index: HashMap<&str, usize> = header
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.path.as_str(), i))
            .collect();
        for f in &header.files {
            if f.path.starts_with(STATE_DIR) {
                return Err(InstallError::UnsafePath {
                    package: label.clone(),
                    path: f.path.clone(),
                    reason: "it is the installer's own state directory".into(),
                });
            }
            if f.kind == FileKind::Special && !f.is_ghost() {
                return Err(InstallError::UnsafePath {
                    package: label.clone(),
                    path: f.path.clone(),
                    reason: "devices, fifos and sockets are not installed".into(),
                });
            }
        }
        let mut staged: HashMap<String, String> = HashMap::new();
        // Hard-link sets: the staged file holding the set's content, and members waiting for it.
        let mut set_content: HashMap<usize, PathBuf> = HashMap::new();
        let mut set_waiting: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut reader = header.payload(&e.item.rpm).map_err(bad)?;
        let mut buf = vec![0u8; 256 * 1024];
        let staged_path = |i: usize| dir.join(i.to_string());
        // Attributes in rpm's order, and the path recorded as staged.
        let mut finish = |i: usize, path: &Path| -> Result<(), InstallError> {
            let info = &header.files[i];
            set_meta(
                path,
                &Meta::of_entry(info, owners),
                info.kind == FileKind::Symlink,
            )
            .map_err(InstallError::io(path))?;
            if let Some(text) = &info.caps {
                set_caps(path, text, &label)?;
            }
            staged.insert(info.path.clone(), rel_to(&self.root, path));
            Ok(())
        };
        let link = |content: &Path, member: &Path| {
            std::fs::hard_link(content, member).map_err(InstallError::io(member))
        };
        while let Some(mut file) = reader
            .next_file()
            .map_err(|e| bad(format!("cannot read the payload: {e}")))?
        {
            let raw = file.metadata.path().to_string_lossy().into_owned();
            let rel = package::safe_relative(&raw).map_err(|reason| InstallError::UnsafePath {
                package: label.clone(),
                path: raw.clone(),
                reason,
            })?;
            let Some(&i) = index.get(rel.as_str()) else {
                return Err(bad(format!(
                    "the payload holds {raw}, which the header does not list"
                )));
            };
            let info = &header.files[i];
            let out_path = staged_path(i);
            match info.kind {
                _ if info.is_ghost() => {}
                FileKind::Regular if !file.has_payload() => {
                    // A hard link whose content comes with another member of its set (or an
                    // empty file: rpm writes no data for size 0).
                    let set = header.link_sets[i];
                    match (set, set.and_then(|s| set_content.get(&s))) {
                        (_, Some(content)) => {
                            link(content, &out_path)?;
                            finish(i, &out_path)?;
                        }
                        (Some(s), None) => set_waiting.entry(s).or_default().push(i),
                        (None, None) => {
                            File::create(&out_path).map_err(InstallError::io(&out_path))?;
                            finish(i, &out_path)?;
                        }
                    }
                }
                FileKind::Regular => {
                    let mut out = File::create(&out_path).map_err(InstallError::io(&out_path))?;
                    // Never more than the header states (plus one byte to notice excess).
                    let mut content = (&mut file).take(info.size + 1);
                    let mut written = 0u64;
                    loop {
                        let n = content
                            .read(&mut buf)
                            .map_err(|e| bad(format!("cannot read the payload: {e}")))?;
                        if n == 0 {
                            break;
                        }
                        out.write_all(&buf[..n])
                            .map_err(InstallError::io(&out_path))?;
                        written += n as u64;
                    }
                    drop(out);
                    if written != info.size {
                        return Err(bad(format!(
                            "{raw}: the payload holds {}{written} bytes, the header says {}",
                            if written > info.size {
                                "more than "
                            } else {
                                ""
                            },
                            info.size
                        )));
                    }
                    finish(i, &out_path)?;
                    if let Some(s) = header.link_sets[i] {
                        for member in set_waiting.remove(&s).unwrap_or_default() {
                            let member_path = staged_path(member);
                            link(&out_path, &member_path)?;
                            finish(member, &member_path)?;
                        }
                        set_content.insert(s, out_path);
                    }
                }
                FileKind::Symlink => {
                    let target = info.link.as_deref().unwrap_or_default();
                    std::os::unix::fs::symlink(target, &out_path)
                        .map_err(InstallError::io(&out_path))?;
                    finish(i, &out_path)?;
                }
                FileKind::Dir | FileKind::Special => {}
            }
        }
        if let Some(members) = set_waiting.into_values().next() {
            return Err(bad(format!(
                "the hard-link set of /{} has no content in the payload",
                header.files[members[0]].path
            )));
        }
        // Empty files the header lists and the payload leaves out.
        for (i, f) in header.files.iter().enumerate() {
            if f.kind == FileKind::Regular && !f.is_ghost() && f.size == 0 {
                let p = staged_path(i);
                if p.symlink_metadata().is_err() {
                    File::create(&p).map_err(InstallError::io(&p))?;
                    finish(i, &p)?;
                }
            }
        }
        Ok(staged)
    }
}

/// The steps of one transaction as they are decided, path by path.
struct Planner<'a> {
    installer: &'a BuiltinInstaller,
    owners: Owners,
    /// Paths owned by packages the transaction leaves alone.
    kept_owner: HashMap<&'a str, (&'a str, &'a FileInfo)>,
    /// Paths the transaction's new packages have claimed so far.
    new_owner: HashMap<String, (String, FileInfo)>,
    /// Directories the transaction creates.
    made_dirs: BTreeSet<String>,
    /// Paths of replaced or removed packages already dealt with.
    gone: BTreeSet<String>,
    ops: Vec<Op>,
}

impl Planner<'_> {
    fn exists(&self, rel: &str) -> bool {
        self.installer.root.join(rel).symlink_metadata().is_ok()
    }

    /// Where the next step keeps what it replaces.
    fn backup_name(&self) -> String {
        format!("{STATE_DIR}/tx/backup/{}", self.ops.len())
    }

    fn script(&mut self, package: &str, which: &str, s: &Option<Script>, arg: u32, fatal: bool) {
        if let Some(script) = s {
            self.ops.push(Op::Script {
                package: package.to_owned(),
                which: which.to_owned(),
                script: script.clone(),
                arg,
                fatal,
            });
        }
    }

    /// Moves `path` aside to `to` (`.rpmsave`, `.rpmorig`), keeping an older `to`.
    fn move_aside(&mut self, path: &str, to: String) {
        if self.exists(&to) {
            let backup = self.backup_name();
            self.ops.push(Op::Delete {
                target: to.clone(),
                backup,
            });
        }
        self.ops.push(Op::Rename {
            target: path.to_owned(),
            to,
        });
    }

    /// Missing parents of `path`: created as rpm creates them (0755, root).
    fn missing_parents(&mut self, path: &str) {
        for parent in parents(path) {
            if !self.exists(&parent) && self.made_dirs.insert(parent.clone()) {
                self.ops.push(Op::MakeDir {
                    target: parent,
                    meta: Meta::IMPLICIT_DIR,
                });
            }
        }
    }

    /// A directory of a new package: created, or given the package's attributes.
    fn dir_entry(&mut self, label: &str, info: &FileInfo) -> Result<(), InstallError> {
        // A directory an earlier package of this transaction set up stays as that one left
        // it (rpm skips the later entries).
        if self.new_owner.contains_key(&info.path) {
            return Ok(());
        }
        self.new_owner
            .insert(info.path.clone(), (label.to_owned(), info.clone()));
        let meta = Meta::of_entry(info, &self.owners);
        if self.made_dirs.contains(&info.path) {
            // Created as another entry's parent: it gets this entry's attributes.
            if let Some(Op::MakeDir { meta: m, .. }) = self
                .ops
                .iter_mut()
                .rev()
                .find(|op| matches!(op, Op::MakeDir { target, .. } if *target == info.path))
            {
                *m = meta;
            }
            return Ok(());
        }
        match std::fs::symlink_metadata(self.installer.root.join(&info.path)) {
            Err(_) => {
                self.made_dirs.insert(info.path.clone());
                self.ops.push(Op::MakeDir {
                    target: info.path.clone(),
                    meta,
                });
            }
            Ok(m) if m.is_dir() => {
                let old = Meta::of_disk(&m);
                if old != meta {
                    self.ops.push(Op::SetDirMeta {
                        target: info.path.clone(),
                        new: meta,
                        old,
                    });
                }
            }
            // A symlink to a directory stands in for it (rpm follows it too).
            Ok(m) if m.file_type().is_symlink() => {}
            Ok(_) => {
                return Err(InstallError::UnsafePath {
                    package: label.to_owned(),
                    path: info.path.clone(),
                    reason: "a file is in the way of this directory".into(),
                });
            }
        }
        Ok(())
    }

    /// A file or link of a new package; `old` is the same path in the version it replaces.
    fn file_entry(
        &mut self,
        label: &str,
        info: &FileInfo,
        old: Option<&FileInfo>,
        staged: &HashMap<String, String>,
    ) -> Result<(), InstallError> {
        // Shared with another package: it must be identical, and it is already there (or
        // placed by the earlier new package).
        let other = match self.kept_owner.get(info.path.as_str()) {
            Some((owner, theirs)) => Some(((*owner).to_owned(), *theirs)),
            None => self
                .new_owner
                .get(&info.path)
                .map(|(owner, theirs)| (owner.clone(), theirs)),
        };
        if let Some((owner, theirs)) = other {
            if !info.same_as(theirs) {
                return Err(InstallError::Conflict {
                    path: info.path.clone(),
                    package: label.to_owned(),
                    owner,
                });
            }
            return Ok(());
        }
        self.new_owner
            .insert(info.path.clone(), (label.to_owned(), info.clone()));
        let target = self.installer.root.join(&info.path);
        // One look at what is there now (a symlink to a directory is not a directory here).
        let on_disk = std::fs::symlink_metadata(&target).ok();
        if on_disk.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(InstallError::UnsafePath {
                package: label.to_owned(),
                path: info.path.clone(),
                reason: "a directory is in the way".into(),
            });
        }
        let fate = match (info.is_config(), old) {
            (false, _) => Fate::Create,
            (true, Some(old)) => fate::upgrade(&target, old, info),
            (true, None) => fate::unowned(&target, info),
        };
        let staged = staged
            .get(&info.path)
            .cloned()
            .ok_or_else(|| InstallError::Package {
                package: label.to_owned(),
                reason: format!("the payload has no content for /{}", info.path),
            })?;
        let target = match fate {
            Fate::Skip => return Ok(()),
            Fate::Create => info.path.clone(),
            Fate::AltName => format!("{}.rpmnew", info.path),
            Fate::Save | Fate::Backup => {
                let suffix = if fate == Fate::Save {
                    "rpmsave"
                } else {
                    "rpmorig"
                };
                self.move_aside(&info.path, format!("{}.{suffix}", info.path));
                info.path.clone()
            }
        };
        // What is there (unless just moved aside) is kept for a rollback.
        let moved = matches!(fate, Fate::Save | Fate::Backup);
        let occupied = if target == info.path {
            on_disk.is_some()
        } else {
            self.exists(&target)
        };
        let backup = (!moved && occupied).then(|| self.backup_name());
        self.ops.push(Op::Place {
            target,
            staged,
            backup,
        });
        Ok(())
    }

    /// A replaced or removed package: `%preun`, its paths nothing owns any more (an edited
    /// config saved as `.rpmsave`), its empty directories, `%postun`.
    fn erase(&mut self, old: &InstalledRecord, arg: u32, new_paths: &BTreeSet<&str>) {
        let name = &old.package.id.name;
        self.script(name, "%preun", &old.scripts.preun, arg, true);
        let mut dirs = Vec::new();
        for f in &old.entries {
            if new_paths.contains(f.path.as_str())
                || self.kept_owner.contains_key(f.path.as_str())
                || !self.gone.insert(f.path.clone())
            {
                continue;
            }
            if f.kind == FileKind::Dir {
                dirs.push(f);
                continue;
            }
            let target = self.installer.root.join(&f.path);
            if target.symlink_metadata().is_err() || (target.is_dir() && !target.is_symlink()) {
                continue;
            }
            let edited_config = f.is_config()
                && !f.is_ghost()
                && f.kind == FileKind::Regular
                && !fate::disk_matches(&target, f);
            if edited_config {
                self.move_aside(&f.path, format!("{}.rpmsave", f.path));
            } else {
                let backup = self.backup_name();
                self.ops.push(Op::Delete {
                    target: f.path.clone(),
                    backup,
                });
            }
        }
        // Its directories, deepest first, when empty.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.matches('/').count()));
        for d in dirs {
            if let Ok(m) = std::fs::symlink_metadata(self.installer.root.join(&d.path))
                && m.is_dir()
            {
                self.ops.push(Op::RemoveDir {
                    target: d.path.clone(),
                    meta: Meta::of_disk(&m),
                });
            }
        }
        self.script(name, "%postun", &old.scripts.postun, arg, false);
    }
}

impl Meta {
    /// A parent directory rpm creates because a path needs it.
    const IMPLICIT_DIR: Meta = Meta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: None,
    };

    /// What a package entry asks for, names resolved in the root.
    fn of_entry(info: &FileInfo, owners: &Owners) -> Meta {
        Meta {
            mode: info.mode,
            uid: owners.uid(&info.user),
            gid: owners.gid(&info.group),
            mtime: Some(i64::from(info.mtime)),
        }
    }

    /// What a path on disk has.
    fn of_disk(m: &std::fs::Metadata) -> Meta {
        use std::os::unix::fs::MetadataExt;
        Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: Some(m.mtime()),
        }
    }
}

struct Element {
    label: String,
    item: TransactionPackage,
    header: Header,
    old: Option<InstalledRecord>,
}

struct Plan {
    ops: Vec<Op>,
    db: PackageDb,
}

/// rpm's order (`rpmtsOrder`) of `n` elements given in this order, where `after[i]` holds
/// the elements `i` must follow: ready elements wait in a queue where one that more elements
/// wait for goes first and, among equals, the later-given one goes first (so unrelated
/// packages go in the reverse of the order given, as with rpm). A loop is broken at the
/// first element given.
fn rpm_order(after: &[BTreeSet<usize>]) -> Vec<usize> {
    let n = after.len();
    let mut count: Vec<usize> = after.iter().map(BTreeSet::len).collect();
    let mut qcnt = vec![0usize; n];
    for deps in after {
        for &j in deps {
            qcnt[j] += 1;
        }
    }
    let mut queued = vec![false; n];
    let mut queue: Vec<usize> = Vec::new();
    let add = |queue: &mut Vec<usize>, p: usize| {
        let at = queue
            .iter()
            .position(|&q| qcnt[q] <= qcnt[p])
            .unwrap_or(queue.len());
        queue.insert(at, p);
    };
    for i in 0..n {
        if count[i] == 0 {
            queued[i] = true;
            add(&mut queue, i);
        }
    }
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        if queue.is_empty()
            && let Some(i) = (0..n).find(|&i| !queued[i])
        {
            queued[i] = true;
            queue.push(i);
        }
        let p = queue.remove(0);
        order.push(p);
        for i in 0..n {
            if !queued[i] && after[i].contains(&p) {
                count[i] -= 1;
                if count[i] == 0 {
                    queued[i] = true;
                    add(&mut queue, i);
                }
            }
        }
    }
    order
}

/// What one package requires, and what it provides besides its file paths.
struct Deps<'a> {
    requires: &'a [String],
    provides: &'a [String],
    files: &'a [FileInfo],
}

/// For each package, the others of the list it requires (a name, or a file path, that
/// another package of the list provides).
fn requirements(packages: &[Deps<'_>]) -> Vec<BTreeSet<usize>> {
    let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, p) in packages.iter().enumerate() {
        let paths = p.files.iter().map(|f| format!("/{}", f.path));
        for name in p.provides.iter().cloned().chain(paths) {
            providers.entry(name).or_default().push(i);
        }
    }
    packages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.requires
                .iter()
                .filter_map(|req| providers.get(req)?.iter().copied().find(|&j| j != i))
                .collect()
        })
        .collect()
}

/// Installs: a package after what it requires.
fn order_installs(elements: &mut Vec<Element>) {
    let deps: Vec<Deps<'_>> = elements
        .iter()
        .map(|e| Deps {
            requires: &e.header.requires,
            provides: &e.header.provides,
            files: &e.header.files,
        })
        .collect();
    let order = rpm_order(&requirements(&deps));
    let mut slots: Vec<Option<Element>> = std::mem::take(elements).into_iter().map(Some).collect();
    elements.extend(order.into_iter().filter_map(|i| slots[i].take()));
}

/// Removals: a package before what it requires.
fn order_erases(records: Vec<InstalledRecord>) -> Vec<InstalledRecord> {
    let deps: Vec<Deps<'_>> = records
        .iter()
        .map(|r| Deps {
            requires: &r.requires,
            provides: &r.provides,
            files: &r.entries,
        })
        .collect();
    let mut after = vec![BTreeSet::new(); records.len()];
    for (i, reqs) in requirements(&deps).iter().enumerate() {
        for &j in reqs {
            after[j].insert(i);
        }
    }
    let order = rpm_order(&after);
    let mut slots: Vec<Option<InstalledRecord>> = records.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Owner, mode (not for links) and times, in rpm's order (chown first: it clears setuid).
fn set_meta(path: &Path, meta: &Meta, symlink: bool) -> std::io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)) {
        Ok(()) => {}
        // Not root (tests, demo roots): files stay the agent's, as rpm does for users.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e),
    }
    if !symlink {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))?;
    }
    if let Some(t) = meta.mtime {
        let t = filetime::FileTime::from_unix_time(t, 0);
        filetime::set_symlink_file_times(path, t, t)?;
    }
    Ok(())
}

fn set_caps(path: &Path, text: &str, package: &str) -> Result<(), InstallError> {
    let value = caps::to_xattr(text).map_err(|reason| InstallError::Package {
        package: package.to_owned(),
        reason: format!("%caps({text}): {reason}"),
    })?;
    match xattr::set(path, "security.capability", &value) {
        Ok(()) => Ok(()),
        // A file system without extended attributes, or an agent without CAP_SETFCAP: rpm
        // fails here; we install the file without them and say so.
        Err(e)
            if [rustix::io::Errno::OPNOTSUPP, rustix::io::Errno::PERM]
                .iter()
                .any(|errno| e.raw_os_error() == Some(errno.raw_os_error())) =>
        {
            tracing::warn!("{}: file capabilities {text} not set: {e}", path.display());
            Ok(())
        }
        Err(e) => Err(InstallError::io(path)(e)),
    }
}

/// `a/b/c` → `a`, `a/b`.
fn parents(rel: &str) -> Vec<String> {
    let parts: Vec<&str> = rel.split('/').collect();
    (1..parts.len()).map(|i| parts[..i].join("/")).collect()
}

fn rel_to(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string_lossy().into_owned())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, InstallError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| InstallError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InstallError::io(path)(e)),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), InstallError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| InstallError::Corrupt(e.to_string()))?;
    Ok(durable_fs::write(path, &bytes)?)
}

/// Flushes the whole file system holding `path` (one `syncfs` instead of one fsync per
/// staged file and directory: the same durability at a fraction of the cost).
fn sync_fs(path: &Path) -> Result<(), InstallError> {
    let dir = File::open(path).map_err(InstallError::io(path))?;
    rustix::fs::syncfs(&dir).map_err(|e| InstallError::io(path)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_a_path() {
        assert_eq!(parents("a/b/c"), ["a", "a/b"]);
    }
}
