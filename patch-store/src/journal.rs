//! The intent journal: a multi-step mutation first records what it is about to do, so that a
//! crash at any point is finished (or, for an import, undone) when the store is next opened.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{RepoState, StoreError};

/// File name of the journal in the state directory.
pub(crate) const JOURNAL: &str = "journal.json";

/// One pending operation. Every step it implies is idempotent; paths are relative to the
/// state directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Journal {
    /// A new patch is being imported. Its metadata file is written last: if it exists the
    /// import completed, otherwise every listed file is removed (rolled back).
    Import {
        metadata_file: String,
        files: Vec<String>,
        counter: u64,
    },
    /// Metadata files move between repo-state directories (apply, remove, commit), then the
    /// listed files are deleted (commit's superseded RPMs); always rolled forward.
    Transition {
        moves: Vec<(String, RepoState, RepoState)>,
        remove: Vec<String>,
        counter: u64,
    },
    /// Files and directories are deleted (delete, del-release); always rolled forward. The
    /// metadata files come first in `remove`, so the patch disappears before its RPMs.
    Remove { remove: Vec<String>, counter: u64 },
}

impl Journal {
    /// The operation counter the store has once this operation is complete.
    pub(crate) fn counter(&self) -> u64 {
        match self {
            Journal::Import { counter, .. }
            | Journal::Transition { counter, .. }
            | Journal::Remove { counter, .. } => *counter,
        }
    }

    pub(crate) fn write(&self, root: &Path) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode the journal: {e}")))?;
        Ok(durable_fs::write(&root.join(JOURNAL), &json)?)
    }

    pub(crate) fn read(root: &Path) -> Result<Option<Journal>, StoreError> {
        let path = root.join(JOURNAL);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                StoreError::Corrupt(format!("{} cannot be read: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path)(e)),
        }
    }

    pub(crate) fn clear(root: &Path) -> Result<(), StoreError> {
        durable_fs::remove_file(&root.join(JOURNAL))?;
        Ok(())
    }

    /// Carries out (again) whatever of the operation may not have happened. Safe to run any
    /// number of times.
    pub(crate) fn replay(&self, root: &Path) -> Result<(), StoreError> {
        match self {
            Journal::Import {
                metadata_file,
                files,
                ..
            } => {
                if !root.join(metadata_file).exists() {
                    for file in files {
                        remove_path(&root.join(file))?;
                    }
                }
            }
            Journal::Transition { moves, remove, .. } => {
                for (id, from, to) in moves {
                    let src = metadata_path(root, *from, id);
                    let dst = metadata_path(root, *to, id);
                    if src.exists() {
                        durable_fs::rename(&src, &dst)?;
                    }
                }
                for file in remove {
                    remove_path(&root.join(file))?;
                }
            }
            Journal::Remove { remove, .. } => {
                for file in remove {
                    remove_path(&root.join(file))?;
                }
            }
        }
        Ok(())
    }
}

/// `metadata/<state>/<ID>-metadata.xml`.
pub(crate) fn metadata_path(root: &Path, state: RepoState, id: &str) -> std::path::PathBuf {
    root.join("metadata")
        .join(state.dir_name())
        .join(format!("{id}-metadata.xml"))
}

fn remove_path(path: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(path).map_err(StoreError::io(path))?;
            if let Some(parent) = path.parent() {
                durable_fs::sync_dir(parent)?;
            }
            Ok(())
        }
        Ok(_) => Ok(durable_fs::remove_file(path).map(|_| ())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path)(e)),
    }
}
