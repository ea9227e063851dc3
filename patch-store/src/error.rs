use std::path::PathBuf;

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The operation is refused by a patching rule. The message is the original's wording
    /// (e.g. "Patch X does not exist"), shown to the operator as is.
    #[error("{0}")]
    Refused(String),
    /// Another process owns the state directory.
    #[error("the state directory {0} is in use by another process (its lock is held)")]
    Locked(PathBuf),
    /// The uploaded patch did not validate (format or signature).
    #[error("Patch validation failed for {id}:\n{reason}")]
    Validation {
        /// The patch ID (from the file name).
        id: String,
        /// What failed.
        reason: String,
    },
    /// The state directory holds something it should not (corruption, manual edits).
    #[error("the patch store is inconsistent: {0}")]
    Corrupt(String),
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }

    pub(crate) fn refused(message: impl Into<String>) -> StoreError {
        StoreError::Refused(message.into())
    }

    /// True for refusals and validation failures (the caller's input), false for store faults.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Refused(_) | StoreError::Validation { .. })
    }
}

impl From<durable_fs::Error> for StoreError {
    fn from(e: durable_fs::Error) -> Self {
        StoreError::Io {
            path: e.path,
            source: e.source,
        }
    }
}
