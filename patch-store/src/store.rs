//! The store: opening (lock, crash recovery, load), queries, and the machinery every mutation
//! goes through.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use patch_format::{Limits, PackageId, PatchMetadata, Personality, parse_metadata_xml};
use patch_sign::Keyring;

use crate::journal::{JOURNAL, Journal, metadata_path};
use crate::{IndexEntry, PackageRecord, PatchRecord, RepoIndex, RepoState, StoreError};

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The state directory (the original's `/opt/patching`).
    pub root: PathBuf,
    /// The release the controller runs, e.g. `19.01`.
    pub running_release: String,
    /// Keys trusted to sign uploaded patches.
    pub keyring: Keyring,
    /// Limits on uploaded archives.
    pub limits: Limits,
    /// When set, every RPM of an upload must carry an OpenPGP signature these keys verify
    /// (the controller's `require_signed_rpms`).
    pub rpm_keyring: Option<std::sync::Arc<patch_format::RpmKeyring>>,
}

/// The controller's patch store. One process owns a state directory at a time (an exclusive
/// lock on `<root>/.lock`); every mutation is journalled so that a crash at any instant leaves
/// the old state or the new one once the store is opened again.
#[derive(Debug)]
pub struct Store {
    pub(crate) config: StoreConfig,
    _lock: File,
    pub(crate) patches: BTreeMap<String, PatchRecord>,
    pub(crate) op_counter: u64,
    pub(crate) app_deps: BTreeMap<String, BTreeSet<String>>,
}

const STATE_FILE: &str = "controller.state";
const APP_DEPS: &str = "app_dependencies.json";

impl Store {
    /// Opens (creating if needed) the state directory: takes the lock, finishes or rolls back
    /// any operation a crash interrupted, removes temporary debris, and loads every patch.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let root = config.root.clone();
        for dir in [
            "metadata/available",
            "metadata/applied",
            "metadata/committed",
            "packages",
            "semantics/pre-apply",
            "semantics/pre-remove",
            "patch-scripts",
            "patches",
            "feed",
            "repo",
            "tmp",
        ] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(StoreError::io(&path))?;
        }
        let lock_path = root.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(root)),
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path)(e)),
        }
        let mut store = Store {
            config,
            _lock: lock,
            patches: BTreeMap::new(),
            op_counter: 0,
            app_deps: BTreeMap::new(),
        };
        store.op_counter = store.read_counter()?;
        let journal = Journal::read(&root)?;
        // Anything under tmp/ belongs to an operation that did not finish.
        let tmp = root.join("tmp");
        std::fs::remove_dir_all(&tmp).map_err(StoreError::io(&tmp))?;
        std::fs::create_dir_all(&tmp).map_err(StoreError::io(&tmp))?;
        durable_fs::sweep_temp(&root)?;
        match journal {
            Some(journal) => store.finish(journal)?,
            None => store.reload()?,
        }
        Ok(store)
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// The release the controller runs.
    pub fn running_release(&self) -> &str {
        &self.config.running_release
    }

    /// The keyring uploads are verified against.
    pub fn keyring(&self) -> &Keyring {
        &self.config.keyring
    }

    /// Rises by one on every change to patches, packages or repositories.
    pub fn op_counter(&self) -> u64 {
        self.op_counter
    }

    /// Every patch, by ID.
    pub fn patches(&self) -> impl Iterator<Item = &PatchRecord> {
        self.patches.values()
    }

    /// One patch.
    pub fn patch(&self, id: &str) -> Option<&PatchRecord> {
        self.patches.get(id)
    }

    /// Application → patch IDs it depends on.
    pub fn app_dependencies(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.app_deps
    }

    /// Releases whose base load is installed (`feed/rel-<R>` exists), sorted.
    pub fn releases(&self) -> Vec<String> {
        release_dirs(&self.root().join("feed"))
            .into_iter()
            .collect()
    }

    /// Whether release `r`'s base load is installed.
    pub fn release_installed(&self, r: &str) -> bool {
        self.feed_dir(r).join("index.json").is_file()
    }

    /// `feed/rel-<R>`: the base load.
    pub fn feed_dir(&self, r: &str) -> PathBuf {
        self.root().join("feed").join(format!("rel-{r}"))
    }

    /// `repo/rel-<R>`: the software repository of applied patches.
    pub fn repo_dir(&self, r: &str) -> PathBuf {
        self.root().join("repo").join(format!("rel-{r}"))
    }

    /// The base load's index.
    pub fn feed_index(&self, r: &str) -> Result<RepoIndex, StoreError> {
        read_index(&self.feed_dir(r).join("index.json"))
    }

    /// The software repository's index.
    pub fn repo_index(&self, r: &str) -> Result<RepoIndex, StoreError> {
        read_index(&self.repo_dir(r).join("index.json"))
    }

    /// `packages/<R>/<file>`.
    pub(crate) fn package_path(&self, release: &str, file: &str) -> PathBuf {
        self.root().join("packages").join(release).join(file)
    }

    fn read_counter(&self) -> Result<u64, StoreError> {
        let path = self.root().join(STATE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .find_map(|l| l.trim().strip_prefix("patch_op_counter"))
                .and_then(|v| v.trim().trim_start_matches('=').trim().parse().ok())
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("{} has no patch_op_counter", path.display()))
                }),
            // The original starts at 1.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
            Err(e) => Err(StoreError::io(path)(e)),
        }
    }

    /// Records and carries out a journalled operation, then brings the counter, the in-memory
    /// view and every repository index up to date. Used by every mutation and by recovery.
    pub(crate) fn finish(&mut self, journal: Journal) -> Result<(), StoreError> {
        let root = self.root().to_owned();
        if !root.join(JOURNAL).exists() {
            journal.write(&root)?;
        }
        journal.replay(&root)?;
        self.reload()?;
        self.op_counter = self.op_counter.max(journal.counter());
        // The original's INI layout, so its tools can read the counter.
        durable_fs::write(
            &root.join(STATE_FILE),
            format!("[runtime]\npatch_op_counter = {}\n", self.op_counter).as_bytes(),
        )?;
        for release in self.repo_releases() {
            self.rebuild_repo(&release)?;
        }
        Journal::clear(&root)
    }

    /// The next counter value, for a journal entry.
    pub(crate) fn next_counter(&self) -> u64 {
        self.op_counter + 1
    }

    /// Re-reads every patch and the application dependencies from disk.
    pub(crate) fn reload(&mut self) -> Result<(), StoreError> {
        let mut patches = BTreeMap::new();
        for state in RepoState::ALL {
            let dir = self.root().join("metadata").join(state.dir_name());
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(StoreError::io(&dir))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with("-metadata.xml"))
                .collect();
            entries.sort();
            for path in entries {
                let text = std::fs::read_to_string(&path).map_err(StoreError::io(&path))?;
                let metadata = parse_metadata_xml(&text)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
                let id = metadata.id.clone();
                if patches.contains_key(&id) {
                    return Err(StoreError::Corrupt(format!(
                        "patch {id} is in two repo states"
                    )));
                }
                let packages = self.load_packages(&metadata)?;
                patches.insert(
                    id,
                    PatchRecord {
                        metadata,
                        repo_state: state,
                        packages,
                    },
                );
            }
        }
        self.patches = patches;
        let deps = self.root().join(APP_DEPS);
        self.app_deps = match std::fs::read(&deps) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", deps.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(StoreError::io(deps)(e)),
        };
        Ok(())
    }

    /// A patch's package records: from `patches/<ID>.json`, or — for a store first written by
    /// the original, which has no such file — from the RPM files themselves.
    fn load_packages(&self, metadata: &PatchMetadata) -> Result<Vec<PackageRecord>, StoreError> {
        let info = self
            .root()
            .join("patches")
            .join(format!("{}.json", metadata.id));
        if let Ok(bytes) = std::fs::read(&info) {
            return serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", info.display())));
        }
        let mut records = Vec::new();
        for file in &metadata.contents {
            let path = self.package_path(&metadata.sw_version, file);
            if !path.exists() {
                // Superseded by a commit and deleted.
                continue;
            }
            records.push(package_record(&path, file, &self.config.limits)?);
        }
        Ok(records)
    }

    /// Releases that have a repository directory.
    fn repo_releases(&self) -> Vec<String> {
        let mut out = release_dirs(&self.root().join("repo"));
        for patch in self.patches.values() {
            if patch.repo_state.in_repo() {
                out.insert(patch.metadata.sw_version.clone());
            }
        }
        out.into_iter().collect()
    }

    /// Makes `repo/rel-<R>` hold exactly the RPMs of the applied and committed patches of R
    /// (those still in the package store), and writes its `index.json`. New files are linked
    /// in before the index is replaced and stale ones removed after, so a host reading the
    /// index at any moment finds every file it lists.
    pub(crate) fn rebuild_repo(&self, release: &str) -> Result<(), StoreError> {
        let repo = self.repo_dir(release);
        let mut entries = Vec::new();
        let mut wanted = BTreeSet::new();
        for patch in self.patches.values() {
            if !patch.repo_state.in_repo() || patch.metadata.sw_version != release {
                continue;
            }
            for pkg in &patch.packages {
                let src = self.package_path(release, &pkg.file_name);
                if !src.exists() {
                    continue;
                }
                let rel_path = format!("Packages/{}/{}", pkg.id.arch, pkg.file_name);
                let dst = repo.join(&rel_path);
                if !dst.exists() {
                    durable_fs::link_or_copy(&src, &dst)?;
                }
                let personalities: Vec<Personality> = patch
                    .metadata
                    .personalities
                    .iter()
                    .filter(|(_, names)| names.contains(&pkg.id.name))
                    .map(|(p, _)| *p)
                    .collect();
                wanted.insert(rel_path.clone());
                entries.push(IndexEntry {
                    id: pkg.id.clone(),
                    size: pkg.size,
                    sha256: pkg.sha256.clone(),
                    path: rel_path,
                    patch: Some(patch.metadata.id.clone()),
                    reboot_required: patch.metadata.reboot_required,
                    personalities,
                });
            }
        }
        sort_entries(&mut entries);
        // Restart scripts of applied in-service patches, published beside the packages.
        let mut scripts = Vec::new();
        let mut wanted_scripts = BTreeSet::new();
        for patch in self.patches.values() {
            if !patch.repo_state.in_repo() || patch.metadata.sw_version != release {
                continue;
            }
            if let Some(script) = &patch.metadata.restart_script {
                let src = self.root().join("patch-scripts").join(&script.name);
                let dst = repo.join("scripts").join(&script.name);
                if src.exists() {
                    if !dst.exists() {
                        durable_fs::link_or_copy(&src, &dst)?;
                    }
                    wanted_scripts.insert(script.name.clone());
                    scripts.push(crate::RestartScriptEntry {
                        patch: patch.metadata.id.clone(),
                        name: script.name.clone(),
                        sha256: script.sha256.clone(),
                    });
                }
            }
        }
        let index = RepoIndex {
            release: release.to_owned(),
            op_counter: self.op_counter,
            packages: entries,
            restart_scripts: scripts,
        };
        write_index(&repo.join("index.json"), &index)?;
        for file in std::fs::read_dir(repo.join("scripts"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if !wanted_scripts.contains(&file.file_name().to_string_lossy().into_owned()) {
                durable_fs::remove_file(&file.path())?;
            }
        }
        let packages = repo.join("Packages");
        for arch in std::fs::read_dir(&packages).into_iter().flatten().flatten() {
            let arch_name = arch.file_name().to_string_lossy().into_owned();
            let mut remaining = 0;
            for file in std::fs::read_dir(arch.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let rel = format!(
                    "Packages/{arch_name}/{}",
                    file.file_name().to_string_lossy()
                );
                if wanted.contains(&rel) {
                    remaining += 1;
                } else {
                    durable_fs::remove_file(&file.path())?;
                }
            }
            if remaining == 0 {
                let _ = std::fs::remove_dir(arch.path());
            }
        }
        Ok(())
    }

    /// Checks the store's invariants; returns every violation found (empty = consistent):
    /// each patch in exactly one repo state, every repository holding exactly the applied and
    /// committed RPMs, each index matching its files, no journal and no temporary debris.
    pub fn check_invariants(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.root().join(JOURNAL).exists() {
            problems.push("an unfinished journal is present".to_owned());
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for state in RepoState::ALL {
            let dir = self.root().join("metadata").join(state.dir_name());
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                match name.strip_suffix("-metadata.xml") {
                    Some(id) => *seen.entry(id.to_owned()).or_default() += 1,
                    None => problems.push(format!("stray file {}", entry.path().display())),
                }
            }
        }
        for (id, count) in &seen {
            if *count != 1 {
                problems.push(format!("patch {id} is in {count} repo states"));
            }
            if !self.patches.contains_key(id) {
                problems.push(format!("patch {id} is on disk but not loaded"));
            }
        }
        for release in self.repo_releases() {
            let index = match self.repo_index(&release) {
                Ok(index) => index,
                Err(e) => {
                    problems.push(format!("release {release}: {e}"));
                    continue;
                }
            };
            let mut expected = BTreeSet::new();
            for patch in self.patches.values() {
                if patch.repo_state.in_repo() && patch.metadata.sw_version == release {
                    for pkg in &patch.packages {
                        if self.package_path(&release, &pkg.file_name).exists() {
                            expected.insert(format!("Packages/{}/{}", pkg.id.arch, pkg.file_name));
                        }
                    }
                }
            }
            let listed: BTreeSet<String> = index.packages.iter().map(|p| p.path.clone()).collect();
            if listed != expected {
                problems.push(format!(
                    "repo rel-{release}: index lists {listed:?}, applied patches provide {expected:?}"
                ));
            }
            let repo = self.repo_dir(&release);
            let mut on_disk = BTreeSet::new();
            for arch in std::fs::read_dir(repo.join("Packages"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for file in std::fs::read_dir(arch.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    on_disk.insert(format!(
                        "Packages/{}/{}",
                        arch.file_name().to_string_lossy(),
                        file.file_name().to_string_lossy()
                    ));
                }
            }
            if on_disk != listed {
                problems.push(format!(
                    "repo rel-{release}: files {on_disk:?} differ from the index {listed:?}"
                ));
            }
            for entry in &index.packages {
                let size = std::fs::metadata(repo.join(&entry.path))
                    .map(|m| m.len())
                    .ok();
                if size != Some(entry.size) {
                    problems.push(format!(
                        "repo rel-{release}: {} has the wrong size",
                        entry.path
                    ));
                }
            }
        }
        let mut debris = Vec::new();
        find_debris(self.root(), &mut debris);
        for path in debris {
            problems.push(format!("temporary debris {}", path.display()));
        }
        if std::fs::read_dir(self.root().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            != 0
        {
            problems.push("tmp/ is not empty".to_owned());
        }
        problems
    }

    /// `metadata/<state>/<ID>-metadata.xml`, relative to the root.
    pub(crate) fn metadata_rel(state: RepoState, id: &str) -> String {
        format!("metadata/{}/{id}-metadata.xml", state.dir_name())
    }

    /// The absolute metadata path.
    pub(crate) fn metadata_abs(&self, state: RepoState, id: &str) -> PathBuf {
        metadata_path(self.root(), state, id)
    }

    /// Writes the application dependencies file.
    pub(crate) fn write_app_deps(
        &self,
        deps: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(deps)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode app dependencies: {e}")))?;
        Ok(durable_fs::write(&self.root().join(APP_DEPS), &json)?)
    }
}

/// The releases `R` with a `rel-R` directory in `dir`.
fn release_dirs(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("rel-")
                .map(str::to_owned)
        })
        .collect()
}

fn find_debris(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".tmp-") {
            out.push(entry.path());
        } else if entry.path().is_dir() {
            find_debris(&entry.path(), out);
        }
    }
}

/// Sorted by name, arch, then version (rpm order), then path.
pub(crate) fn sort_entries(entries: &mut [IndexEntry]) {
    entries.sort_by(|a, b| {
        (a.id.name.as_str(), a.id.arch.as_str())
            .cmp(&(b.id.name.as_str(), b.id.arch.as_str()))
            .then_with(|| a.id.evr.cmp(&b.id.evr))
            .then_with(|| a.path.cmp(&b.path))
    });
}

/// The file beside each `index.json` that holds its serial.
pub const SERIAL_FILE: &str = "index.serial";

/// Writes an index and, first, its serial: the time in ms, but always above the serial it
/// replaces. The serial is a file in the state directory, so a controller pair's standby
/// holds the active's serial as it holds the index (a serial taken from each file's own
/// modification time differs between the two, and hosts refuse an index whose serial went
/// back after a swact). Written before the index, so a reader that reads the index and then
/// the serial never pairs a new index with an older serial.
pub(crate) fn write_index(path: &Path, index: &RepoIndex) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(index)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {}: {e}", path.display())))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let serial = match index_serial(path) {
        Ok(previous) => now.max(previous + 1),
        Err(_) => now,
    };
    durable_fs::write(
        &path.with_file_name(SERIAL_FILE),
        serial.to_string().as_bytes(),
    )?;
    Ok(durable_fs::write(path, &json)?)
}

/// The serial of the index at `path`: the number in its [`SERIAL_FILE`], or for an index
/// written before serial files, its modification time in ms.
pub fn index_serial(path: &Path) -> std::io::Result<u64> {
    match std::fs::read_to_string(path.with_file_name(SERIAL_FILE)) {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: not a serial number",
                    path.with_file_name(SERIAL_FILE).display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(std::fs::metadata(path)?
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)),
        Err(e) => Err(e),
    }
}

fn read_index(path: &Path) -> Result<RepoIndex, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RepoIndex::default()),
        Err(e) => Err(StoreError::io(path)(e)),
    }
}

/// Reads an RPM's header and hashes it (one pass over the file for the hash).
pub(crate) fn package_record(
    path: &Path,
    file_name: &str,
    limits: &Limits,
) -> Result<PackageRecord, StoreError> {
    let info = PackageId::inspect(path, limits).map_err(|e| StoreError::refused(e.to_string()))?;
    let file = File::open(path).map_err(StoreError::io(path))?;
    let (size, sha256) = patch_sign::sha256_of(file).map_err(StoreError::io(path))?;
    Ok(PackageRecord {
        file_name: file_name.to_owned(),
        id: info,
        size,
        sha256: hex::encode(sha256),
    })
}

#[cfg(test)]
mod serial_tests {
    use super::*;

    #[test]
    fn an_index_serial_only_goes_up_and_travels_with_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        // Written before serial files: its modification time.
        std::fs::write(&path, b"{}").unwrap();
        let before = index_serial(&path).unwrap();
        assert!(before > 1_700_000_000_000, "{before}");
        write_index(&path, &RepoIndex::default()).unwrap();
        let first = index_serial(&path).unwrap();
        assert!(first > before || first == before + 1, "{before} {first}");
        // A serial ahead of this clock (another controller's) is never gone back on.
        let ahead = first + 3_600_000;
        std::fs::write(dir.path().join(SERIAL_FILE), ahead.to_string()).unwrap();
        write_index(&path, &RepoIndex::default()).unwrap();
        assert_eq!(index_serial(&path).unwrap(), ahead + 1);
        // A copy (a pair's standby) has the same serial, whatever its files' times.
        let copy = tempfile::tempdir().unwrap();
        for name in ["index.json", SERIAL_FILE] {
            std::fs::copy(dir.path().join(name), copy.path().join(name)).unwrap();
        }
        assert_eq!(
            index_serial(&copy.path().join("index.json")).unwrap(),
            ahead + 1
        );
        std::fs::write(copy.path().join(SERIAL_FILE), "x").unwrap();
        assert!(index_serial(&copy.path().join("index.json")).is_err());
    }
}
