//! The controller's patch store.
//!
//! One state directory holds everything (the original's `/opt/patching` layout, extended):
//!
//! ```text
//! metadata/{available,applied,committed}/<ID>-metadata.xml   repo state = directory
//! patches/<ID>.json                                            the patch's RPM records (sha256, …)
//! packages/<release>/<rpm>                                     every uploaded RPM
//! semantics/{pre-apply,pre-remove}/<ID>, patch-scripts/<name>  scripts
//! feed/rel-<release>/Packages/<arch>/<rpm> + index.json        the base load
//! repo/rel-<release>/Packages/<arch>/<rpm> + index.json        applied patches' RPMs, for hosts
//! controller.state, app_dependencies.json, journal.json, tmp/
//! ```
//!
//! Every mutation goes through an intent journal and durable renames, so that after a crash
//! ([`Store::open`] replays or rolls back) the store is in the state before or after the
//! operation, never between; [`Store::check_invariants`] states what "consistent" means.
//!
//! ```no_run
//! use patch_store::{Store, StoreConfig, ChangeOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keyring = patch_sign::Keyring::load("/etc/stx-patch/keyring".as_ref())?;
//! let mut store = Store::open(StoreConfig {
//!     root: "/opt/patching".into(),
//!     running_release: "19.01".into(),
//!     keyring,
//!     limits: Default::default(),
//!     rpm_keyring: None,
//! })?;
//! store.import("/scratch/P1.patch".as_ref(), "P1.patch")?;
//! store.apply(&["P1".into()], false, &ChangeOptions::default())?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod deps;
mod error;
mod journal;
mod model;
mod ops;
mod release;
mod repo_check;
mod semantic;
mod store;

pub use error::StoreError;
pub use model::{
    DeleteRefusal, IndexEntry, Outcome, PackageRecord, PatchRecord, RemoveRefusal, RepoIndex,
    RepoState, RestartScriptEntry,
};
pub use ops::{ChangeOptions, CommitPlan, UploadVerifier, VerifiedUpload};
pub use repo_check::{RepoProblem, check_repository};
pub use semantic::DEFAULT_SEMANTIC_TIMEOUT;
pub use store::{SERIAL_FILE, Store, StoreConfig, index_serial};
