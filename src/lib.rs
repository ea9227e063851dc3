//! stx-patch: StarlingX software patching in Rust.
//!
//! This facade re-exports the workspace's crates so that build tooling can depend on one
//! crate:
//!
//! * [`patch_sign`] — keys, keyrings, the md5 and RSA signatures of a patch;
//! * [`patch_format`] — `metadata.xml`, the streaming `.patch` writer and verifying reader;
//! * [`patch_store`], [`host_state`], [`orchestrator`], [`controller`], [`agent`] — the
//!   controller's store, host model, orchestration and daemons.
//!
//! See `examples/embed_patch_format.rs` for building and verifying a patch in a few lines.
#![forbid(unsafe_code)]

pub use agent;
pub use controller;
pub use host_state;
pub use orchestrator;
pub use patch_format;
pub use patch_sign;
pub use patch_store;
