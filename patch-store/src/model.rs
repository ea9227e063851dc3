//! The store's data: repo states, package records, repository indexes, operation outcomes.

use host_state::PatchState;
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

/// Why a patch cannot be removed: the rule [`crate::Store::remove`] enforces, and the one a
/// dashboard greys its Remove button by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveRefusal {
    /// Marked unremovable (only `--removeunremovable` takes it out).
    Unremovable,
    /// Committed patches stay.
    Committed,
}

impl RemoveRefusal {
    /// The store's refusal, as the original words it.
    pub fn message(self, id: &str) -> String {
        match self {
            RemoveRefusal::Unremovable => format!("Patch {id} is not removable"),
            RemoveRefusal::Committed => format!("Patch {id} is committed and cannot be removed"),
        }
    }

    /// The same in a few words (a button's tooltip).
    pub fn short(self) -> &'static str {
        match self {
            RemoveRefusal::Unremovable => "This patch is unremovable.",
            RemoveRefusal::Committed => "Committed patches cannot be removed.",
        }
    }
}

/// Why a patch cannot be deleted: the rule [`crate::Store::delete`] enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteRefusal {
    /// It is in the repository (applied or committed): remove it first.
    InRepository,
    /// Removed from the repository, but hosts still have it installed.
    StillInstalled,
}

impl DeleteRefusal {
    /// The store's refusal, as the original words it.
    pub fn message(self, id: &str) -> String {
        format!("Patch {id} not in Available state")
    }

    /// The same in a few words (a button's tooltip).
    pub fn short(self) -> &'static str {
        match self {
            DeleteRefusal::InRepository => "Remove the patch before deleting it.",
            DeleteRefusal::StillInstalled => {
                "Hosts still have this patch installed; install them first."
            }
        }
    }
}

impl PatchRecord {
    /// Whether a remove is refused (`remove_unremovable`: `--removeunremovable` was given).
    pub fn remove_refusal(&self, remove_unremovable: bool) -> Option<RemoveRefusal> {
        if self.metadata.unremovable && !remove_unremovable {
            Some(RemoveRefusal::Unremovable)
        } else if self.repo_state == RepoState::Committed {
            Some(RemoveRefusal::Committed)
        } else {
            None
        }
    }

    /// Whether a delete is refused, given the patch state derived from host reports (`None`
    /// without one).
    pub fn delete_refusal(&self, patch_state: Option<PatchState>) -> Option<DeleteRefusal> {
        if self.repo_state != RepoState::Available {
            Some(DeleteRefusal::InRepository)
        } else if patch_state
            .is_some_and(|s| !matches!(s, PatchState::Available | PatchState::NotApplicable))
        {
            Some(DeleteRefusal::StillInstalled)
        } else {
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(repo_state: RepoState, unremovable: bool) -> PatchRecord {
        let mut metadata = PatchMetadata::new("P1", "19.01");
        metadata.unremovable = unremovable;
        PatchRecord {
            metadata,
            repo_state,
            packages: Vec::new(),
        }
    }

    #[test]
    fn remove_and_delete_refusals_follow_the_states() {
        let applied = record(RepoState::Applied, false);
        assert_eq!(applied.remove_refusal(false), None);
        assert_eq!(
            record(RepoState::Applied, true).remove_refusal(false),
            Some(RemoveRefusal::Unremovable)
        );
        assert_eq!(record(RepoState::Applied, true).remove_refusal(true), None);
        assert_eq!(
            record(RepoState::Committed, true).remove_refusal(true),
            Some(RemoveRefusal::Committed)
        );
        assert_eq!(
            RemoveRefusal::Unremovable.message("P1"),
            "Patch P1 is not removable"
        );
        let available = record(RepoState::Available, false);
        assert_eq!(available.delete_refusal(None), None);
        assert_eq!(
            available.delete_refusal(Some(PatchState::NotApplicable)),
            None
        );
        assert_eq!(
            available.delete_refusal(Some(PatchState::PartialRemove)),
            Some(DeleteRefusal::StillInstalled)
        );
        assert_eq!(
            applied.delete_refusal(Some(PatchState::Available)),
            Some(DeleteRefusal::InRepository)
        );
        assert_eq!(
            DeleteRefusal::StillInstalled.message("P1"),
            "Patch P1 not in Available state"
        );
    }
}
