use std::path::PathBuf;

/// Why an install transaction did not happen (the root is unchanged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// An RPM could not be read or its payload is malformed.
    #[error("package {package}: {reason}")]
    Package {
        /// The package (file name or name).
        package: String,
        /// What is wrong.
        reason: String,
    },
    /// A path in a package would land outside the root or is otherwise unsafe.
    #[error("package {package}: unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The package.
        package: String,
        /// The path as the package states it.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// Two packages claim the same file.
    #[error("file {path} of {package} conflicts with the installed package {owner}")]
    Conflict {
        /// The file.
        path: String,
        /// The package being installed.
        package: String,
        /// The package that owns it.
        owner: String,
    },
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A scriptlet cannot run in the root or failed (the transaction was rolled back).
    #[error("package {package}: {scriptlet} scriptlet: {reason}")]
    Script {
        /// The package.
        package: String,
        /// Which scriptlet (`%pre`, …).
        scriptlet: String,
        /// Why.
        reason: String,
    },
    /// The root's rpm database could not be read, updated or restored.
    #[error("the rpm database: {0}")]
    RpmDb(String),
    /// The package database or journal is unreadable.
    #[error("the package database is corrupt: {0}")]
    Corrupt(String),
}

impl InstallError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> InstallError {
        let path = path.into();
        move |source| InstallError::Io { path, source }
    }
}

impl From<durable_fs::Error> for InstallError {
    fn from(e: durable_fs::Error) -> Self {
        InstallError::Io {
            path: e.path,
            source: e.source,
        }
    }
}
