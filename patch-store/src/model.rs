//! The store's data: repo states, package records, repository indexes, operation outcomes.

use patch_format::{PackageId, PatchMetadata};
use serde::{Deserialize, Serialize};

/// The repository's wire types live with the other agent ↔ controller messages.
pub use host_state::protocol::{IndexEntry, RepoIndex, RepoState, RestartScriptEntry};

/// One RPM the store holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// File name, `name-version-release.arch.rpm`.
    pub file_name: String,
    /// The package (serialized flat: name, epoch, version, release, arch).
    #[serde(flatten)]
    pub id: PackageId,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
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
