//! The builtin installer: RPM payloads into a root directory, transactionally.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use host_state::{InstalledPackage, PackageKey};
use rpm::FileType;
use serde::{Deserialize, Serialize};

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
    /// Files and symlinks it placed, relative to the root.
    pub files: Vec<String>,
    /// Directories its installs created, relative to the root (removed when empty).
    pub dirs: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PackageDb {
    /// The last committed transaction.
    last_tx: u64,
    /// Keyed `name.arch`.
    packages: BTreeMap<String, InstalledRecord>,
}

/// One reversible step on the root (paths relative to the root).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Op {
    MakeDir {
        target: String,
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
    RemoveDir {
        target: String,
        mode: u32,
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

/// Installs RPM packages into a root directory; see the crate docs.
#[derive(Debug)]
pub struct BuiltinInstaller {
    root: PathBuf,
    canonical_root: PathBuf,
    db: PackageDb,
}

fn key_name(key: &PackageKey) -> String {
    format!("{}.{}", key.0, key.1)
}

impl BuiltinInstaller {
    /// Opens the installer on `root`, finishing or rolling back an interrupted transaction.
    pub fn open(root: &Path) -> Result<(Self, Recovery), InstallError> {
        let state = root.join(STATE_DIR);
        std::fs::create_dir_all(&state).map_err(InstallError::io(&state))?;
        let canonical_root = root.canonicalize().map_err(InstallError::io(root))?;
        let db = read_json::<PackageDb>(&state.join("packages.json"))?.unwrap_or_default();
        let installer = BuiltinInstaller {
            root: root.to_owned(),
            canonical_root,
            db,
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
        Ok((installer, recovery))
    }

    /// The installed packages.
    pub fn installed(&self) -> BTreeMap<PackageKey, InstalledPackage> {
        self.db
            .packages
            .values()
            .map(|r| {
                (
                    (r.package.name.clone(), r.package.arch.clone()),
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
        let work = self.work();
        let replaced: BTreeSet<String> = tx
            .install
            .iter()
            .map(|p| key_name(&(p.package.name.clone(), p.package.arch.clone())))
            .chain(tx.remove.iter().map(key_name))
            .collect();
        let reinstalled: BTreeSet<String> = tx
            .install
            .iter()
            .map(|p| key_name(&(p.package.name.clone(), p.package.arch.clone())))
            .collect();
        // Files owned by packages that stay.
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for (name, record) in &self.db.packages {
            if !replaced.contains(name) {
                for f in &record.files {
                    owner.insert(f.clone(), name.clone());
                }
            }
        }

        // 1. Stage every new package's payload (nothing under the root changes yet).
        let mut ops = Vec::new();
        let mut new_db = self.db.clone();
        let mut placed: BTreeSet<String> = BTreeSet::new();
        let mut made_dirs: BTreeSet<String> = BTreeSet::new();
        for (index, item) in tx.install.iter().enumerate() {
            let key = (item.package.name.clone(), item.package.arch.clone());
            let label = key_name(&key);
            let staged_dir = work.join("staged").join(index.to_string());
            let entries = self.stage(item, &staged_dir)?;
            let mut files = Vec::new();
            let mut dirs: BTreeSet<String> = self
                .db
                .packages
                .get(&label)
                .map(|r| r.dirs.iter().cloned().collect())
                .unwrap_or_default();
            for entry in entries {
                if let Some(other) = owner.get(&entry.rel) {
                    return Err(InstallError::Conflict {
                        path: entry.rel.clone(),
                        package: label.clone(),
                        owner: other.clone(),
                    });
                }
                for parent in parents(&entry.rel) {
                    if !self.root.join(&parent).exists() && made_dirs.insert(parent.clone()) {
                        ops.push(Op::MakeDir {
                            target: parent.clone(),
                        });
                        dirs.insert(parent);
                    }
                }
                match entry.staged {
                    None => {
                        if !self.root.join(&entry.rel).exists()
                            && made_dirs.insert(entry.rel.clone())
                        {
                            ops.push(Op::MakeDir {
                                target: entry.rel.clone(),
                            });
                            dirs.insert(entry.rel.clone());
                        }
                    }
                    Some(staged) => {
                        if !placed.insert(entry.rel.clone()) {
                            continue;
                        }
                        let target = self.root.join(&entry.rel);
                        if target.is_dir() && !target.is_symlink() {
                            return Err(InstallError::UnsafePath {
                                package: label.clone(),
                                path: entry.rel.clone(),
                                reason: "a directory is in the way".into(),
                            });
                        }
                        let exists = target.symlink_metadata().is_ok();
                        ops.push(Op::Place {
                            target: entry.rel.clone(),
                            staged: rel_to(&self.root, &staged),
                            backup: exists.then(|| format!("{STATE_DIR}/tx/backup/{}", ops.len())),
                        });
                        files.push(entry.rel.clone());
                    }
                }
            }
            new_db.packages.insert(
                label,
                InstalledRecord {
                    package: item.package.clone(),
                    files,
                    dirs: dirs.into_iter().collect(),
                },
            );
        }
        // 2. Files of replaced or removed packages that nothing new places: delete them.
        let mut emptied_dirs: BTreeSet<String> = BTreeSet::new();
        for name in &replaced {
            let Some(old) = self.db.packages.get(name) else {
                continue;
            };
            for f in &old.files {
                if !placed.contains(f) && self.root.join(f).symlink_metadata().is_ok() {
                    ops.push(Op::Delete {
                        target: f.clone(),
                        backup: format!("{STATE_DIR}/tx/backup/{}", ops.len()),
                    });
                }
            }
            if !reinstalled.contains(name) {
                emptied_dirs.extend(old.dirs.iter().cloned());
                new_db.packages.remove(name);
            }
        }
        for key in &tx.remove {
            new_db.packages.remove(&key_name(key));
        }
        // Directories the removed packages created, deepest first, if nothing else lives there.
        let still_used: BTreeSet<String> = new_db
            .packages
            .values()
            .flat_map(|r| {
                r.files
                    .iter()
                    .flat_map(|f| parents(f))
                    .chain(r.dirs.iter().cloned())
            })
            .collect();
        let mut dirs: Vec<String> = emptied_dirs
            .into_iter()
            .filter(|d| !still_used.contains(d))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        for dir in dirs {
            let mode = std::fs::symlink_metadata(self.root.join(&dir))
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o755);
            ops.push(Op::RemoveDir { target: dir, mode });
        }

        // 3. Journal, then the root.
        let journal = Journal {
            tx: txid,
            ops: ops.clone(),
        };
        write_json(&self.state().join("journal.json"), &journal)?;
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        for (step, op) in ops.iter().enumerate() {
            hook(step);
            self.run(op)?;
            if let Op::Place { target, .. } | Op::Delete { target, .. } = op
                && let Some(parent) = self.root.join(target).parent()
            {
                touched.insert(parent.to_owned());
            }
        }
        hook(ops.len());
        for dir in touched {
            // A directory emptied and removed by this transaction: sync where it was.
            let existing = dir.ancestors().find(|d| d.is_dir()).unwrap_or(&self.root);
            sync_dir(existing)?;
        }
        // 4. Commit point: the database names this transaction.
        new_db.last_tx = txid;
        write_json(&self.state().join("packages.json"), &new_db)?;
        self.db = new_db;
        hook(ops.len() + 1);
        Ok(())
    }

    fn run(&self, op: &Op) -> Result<(), InstallError> {
        match op {
            Op::MakeDir { target } => {
                let path = self.root.join(target);
                self.check_inside(&path, target)?;
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(InstallError::io(&path)(e)),
                }
                self.check_inside(&path, target)?;
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
            Op::RemoveDir { target, .. } => {
                let path = self.root.join(target);
                // Only if empty: something else may have put files there.
                let _ = std::fs::remove_dir(&path);
            }
        }
        Ok(())
    }

    /// Reverses `ops` (any prefix of them may have happened). Idempotent.
    fn undo(&self, ops: &[Op]) -> Result<(), InstallError> {
        for op in ops.iter().rev() {
            match op {
                Op::MakeDir { target } => {
                    let _ = std::fs::remove_dir(self.root.join(target));
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
                Op::RemoveDir { target, mode } => {
                    let path = self.root.join(target);
                    if !path.exists() {
                        std::fs::create_dir(&path).map_err(InstallError::io(&path))?;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                            .map_err(InstallError::io(&path))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the journal and the work area.
    fn cleanup(&self) -> Result<(), InstallError> {
        let work = self.work();
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(InstallError::io(&work))?;
        }
        let journal = self.state().join("journal.json");
        match std::fs::remove_file(&journal) {
            Ok(()) => sync_dir(&self.state()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(InstallError::io(journal)(e)),
        }
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

    /// Extracts one package's payload under `dir`; returns its entries (relative paths;
    /// `staged` is `None` for directories).
    fn stage(
        &self,
        item: &TransactionPackage,
        dir: &Path,
    ) -> Result<Vec<StagedEntry>, InstallError> {
        let label = item.package.name.clone();
        let bad = |reason: String| InstallError::Package {
            package: label.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(InstallError::io(dir))?;
        let package = std::panic::catch_unwind(|| rpm::Package::open(&item.rpm))
            .map_err(|_| bad("malformed RPM".into()))?
            .map_err(|e| bad(format!("cannot read {}: {e}", item.rpm.display())))?;
        let files = package
            .files()
            .map_err(|e| bad(format!("cannot read the payload: {e}")))?;
        let mut entries = Vec::new();
        for (n, file) in files.enumerate() {
            let file = file.map_err(|e| bad(format!("cannot read the payload: {e}")))?;
            let meta = &file.metadata;
            let raw = meta.path().to_string_lossy().into_owned();
            let rel = safe_relative(&raw).map_err(|reason| InstallError::UnsafePath {
                package: label.clone(),
                path: raw.clone(),
                reason,
            })?;
            if rel.starts_with(STATE_DIR) {
                return Err(InstallError::UnsafePath {
                    package: label.clone(),
                    path: raw,
                    reason: "it is the installer's own state directory".into(),
                });
            }
            if meta.flags().contains(rpm::FileFlags::GHOST) {
                continue;
            }
            let staged = dir.join(n.to_string());
            match meta.file_type() {
                FileType::Dir => {
                    entries.push(StagedEntry { rel, staged: None });
                }
                FileType::Regular => {
                    let content = file.content().unwrap_or(&[]);
                    let mut out = File::create(&staged).map_err(InstallError::io(&staged))?;
                    out.write_all(content).map_err(InstallError::io(&staged))?;
                    out.sync_all().map_err(InstallError::io(&staged))?;
                    std::fs::set_permissions(
                        &staged,
                        std::fs::Permissions::from_mode(u32::from(meta.permissions()) & 0o7777),
                    )
                    .map_err(InstallError::io(&staged))?;
                    entries.push(StagedEntry {
                        rel,
                        staged: Some(staged),
                    });
                }
                FileType::SymbolicLink => {
                    let target = meta.linkto().unwrap_or("");
                    std::os::unix::fs::symlink(target, &staged)
                        .map_err(InstallError::io(&staged))?;
                    entries.push(StagedEntry {
                        rel,
                        staged: Some(staged),
                    });
                }
                other => {
                    return Err(InstallError::UnsafePath {
                        package: label.clone(),
                        path: raw,
                        reason: format!(
                            "{other:?} entries (devices, fifos, sockets) are not installed"
                        ),
                    });
                }
            }
        }
        Ok(entries)
    }
}

struct StagedEntry {
    rel: String,
    staged: Option<PathBuf>,
}

/// An RPM path (`/usr/bin/x`) as a path relative to the root, refusing `..`, `.` and anything
/// that is not a plain name.
fn safe_relative(raw: &str) -> Result<String, String> {
    let path = Path::new(raw);
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => {
                let name = name.to_str().ok_or("the path is not UTF-8")?;
                parts.push(name.to_owned());
            }
            Component::ParentDir => {
                return Err("it contains '..' (it would escape the root)".into());
            }
            Component::CurDir | Component::Prefix(_) => {
                return Err("it is not a plain absolute path".into());
            }
        }
    }
    if parts.is_empty() {
        return Err("it names the root itself".into());
    }
    if !raw.starts_with('/') {
        return Err("it is not absolute".into());
    }
    Ok(parts.join("/"))
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
    let dir = path.parent().unwrap_or(Path::new("."));
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| InstallError::Corrupt(e.to_string()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(InstallError::io(dir))?;
    temp.write_all(&bytes)
        .map_err(InstallError::io(temp.path()))?;
    temp.as_file()
        .sync_all()
        .map_err(InstallError::io(temp.path()))?;
    temp.persist(path)
        .map_err(|e| InstallError::io(path)(e.error))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(InstallError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_kept_inside() {
        assert_eq!(safe_relative("/usr/bin/x").unwrap(), "usr/bin/x");
        for bad in ["/../etc/passwd", "/usr/../../x", "relative/x", "/"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
        assert_eq!(parents("a/b/c"), ["a", "a/b"]);
    }
}
