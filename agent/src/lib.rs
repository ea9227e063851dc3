//! The host agent as a library.
//!
//! [`BuiltinInstaller`] installs and removes RPM packages in a root directory as one
//! transaction: payloads are extracted (with the `rpm` crate) into a staging area under the
//! root, then renamed into place; a journal records every step so that a crash or an error at
//! any point rolls the root back to exactly its previous content when the installer is next
//! opened. Its package database lives under the root.
#![forbid(unsafe_code)]

mod builtin;
mod daemon;
mod error;
mod installer;
mod rpm_tool;
mod workloads;

pub use builtin::{
    BuiltinInstaller, FileInfo, FileKind, InstalledRecord, RPMDB_PATH, Recovery, Script, Scripts,
    Transaction, TransactionPackage,
};
pub use daemon::{
    Agent, AgentConfig, AgentError, ControllerError, DEFAULT_SCRIPT_TIMEOUT, subfunctions,
};
pub use error::InstallError;
pub use installer::Installer;
pub use rpm_tool::RpmToolInstaller;
