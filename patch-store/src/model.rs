//! The store's data: repo states, package records, repository indexes, operation outcomes.

use std::fmt;

use patch_format::{Evr, PatchMetadata, Personality};
use serde::{Deserialize, Serialize};

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

/// One RPM the store holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// File name, `name-version-release.arch.rpm`.
    pub file_name: String,
    /// Package name.
    pub name: String,
    /// Epoch (0 = none).
    pub epoch: u32,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture.
    pub arch: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

impl PackageRecord {
    /// The package's epoch-version-release.
    pub fn evr(&self) -> Evr {
        Evr::new(self.epoch, &self.version, &self.release)
    }
}

/// A patch in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchRecord {
    /// Its metadata.
    pub metadata: PatchMetadata,
    /// Which directory it is in.
    pub repo_state: RepoState,
    /// Its RPMs, as stored under `packages/<sw_version>/`.
    pub packages: Vec<PackageRecord>,
}

/// One package of a repository's `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Package name.
    pub name: String,
    /// Epoch.
    pub epoch: u32,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture.
    pub arch: String,
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

/// What a successful operation reports (`info` and `warning` of the REST result).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Informational lines, e.g. "P1 is now in the repo".
    pub info: Vec<String>,
    /// Warnings, e.g. "Patch P1 is not removable" when forced.
    pub warning: Vec<String>,
}

impl Outcome {
    pub(crate) fn info(&mut self, line: impl Into<String>) {
        self.info.push(line.into());
    }

    pub(crate) fn warn(&mut self, line: impl Into<String>) {
        self.warning.push(line.into());
    }
}
