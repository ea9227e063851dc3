use std::path::PathBuf;

use patch_sign::SignError;

/// Everything that can be wrong with a patch, its metadata or its RPMs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// `metadata.xml` is malformed or holds an invalid value.
    #[error("metadata.xml: <{element}>: {reason}")]
    Metadata {
        /// The element at fault, e.g. `patch/personality`.
        element: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The patch metadata given to the writer is not valid.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// An RPM file could not be read or does not agree with its name.
    #[error("RPM {file}: {reason}")]
    Rpm {
        /// The RPM's file name.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The archive is not a well-formed patch (structure, not signatures).
    #[error("{0}")]
    Archive(String),
    /// A limit on untrusted input was exceeded.
    #[error(
        "patch exceeds a safety limit: {0} (raise the limit if the patch is trusted and really this large)"
    )]
    LimitExceeded(String),
    /// A member name is unsafe (absolute, `..`, directory) or unknown.
    #[error("unsafe or unexpected member {name:?} in {archive}: {reason}")]
    UnsafeMember {
        /// Which archive (outer patch, software.tar, …).
        archive: String,
        /// The member's name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A signature check failed.
    #[error("Signature check failed: {0}")]
    Signature(#[from] SignError),
    /// `contents` in metadata.xml and the RPMs in software.tar differ.
    #[error("metadata.xml <contents> does not match software.tar: {0}")]
    ContentsMismatch(String),
    /// An I/O error, with the file involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An I/O error while reading or writing the archive stream.
    #[error("{context}: {source}")]
    Stream {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl FormatError {
    pub(crate) fn metadata(element: impl Into<String>, reason: impl Into<String>) -> Self {
        FormatError::Metadata {
            element: element.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| FormatError::Io { path, source }
    }

    pub(crate) fn stream(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| {
            // Limit errors travel through io::Error from the limiting readers; surface them
            // as the typed error they are.
            if let Some(limit) = source
                .get_ref()
                .and_then(|e| e.downcast_ref::<crate::limits::LimitError>())
            {
                return FormatError::LimitExceeded(limit.0.clone());
            }
            FormatError::Stream { context, source }
        }
    }
}
