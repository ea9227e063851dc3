//! The StarlingX `.patch` format.
//!
//! * [`PatchMetadata`] — every element of `metadata.xml`, read tolerantly
//!   ([`parse_metadata_xml`]) and written byte-compatible with the original ([`metadata_xml`]).
//! * [`PatchWriter`] — builds a signed `<id>.patch` in one streaming pass.
//! * [`PatchReader`] — verifies both signatures of an untrusted patch against a
//!   [`Keyring`](patch_sign::Keyring) before returning anything, within [`Limits`].
//! * [`PackageId`] / [`Evr`] — package identity (from RPM headers) and `rpmvercmp` ordering.
#![forbid(unsafe_code)]

mod error;
mod limits;
mod metadata;
mod reader;
mod rpm_info;
mod rpm_sign;
mod tar_stream;
mod tario;
mod writer;

pub use error::FormatError;
pub use limits::Limits;
pub use metadata::{
    NameError, PatchMetadata, Personality, RestartScript, SemanticAction, Status, metadata_xml,
    parse_metadata_xml, validate_patch_id, validate_rpm_file_name,
};
pub use reader::{ExtractedRpm, PatchReader, VerifiedPatch};
pub use rpm_info::{Evr, PackageId, RpmFileName};
pub use rpm_sign::{GeneratedRpmKey, RpmKeyring, RpmSignError, RpmSigningKey, rpm_signers};
pub use writer::{BuildSummary, PatchBuilder};

#[cfg(feature = "test-support")]
pub mod testing;
