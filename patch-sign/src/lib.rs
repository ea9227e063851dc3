//! Keys, keyrings and the two signatures carried by a StarlingX `.patch` file.
//!
//! A patch carries two signatures over its inner tars (`metadata.tar`, `software.tar` and, when
//! present, `semantics.tar`, in that order):
//!
//! * `signature` — the "md5 combination": all-ones XOR the MD5 of each inner tar, written as
//!   lowercase hex without leading zeros ([`Md5Combination`]). Integrity only.
//! * `signature.v2` — RSA over the SHA-256 of the inner tars concatenated, PSS (MGF1-SHA256,
//!   salt 32) when we sign; PSS or PKCS#1 v1.5 accepted when we verify ([`sign_v2`],
//!   [`Keyring::verify_v2`]).
//!
//! Both are computed by [`InnerDigests`] while the tars stream past, so no file is read twice.
//!
//! ```
//! use patch_sign::{InnerDigests, PrivateKey, Keyring};
//! # fn main() -> Result<(), patch_sign::SignError> {
//! let key = PrivateKey::generate(2048)?;
//! let mut digests = InnerDigests::new();
//! digests.member("metadata.tar").update(b"metadata bytes");
//! digests.member("software.tar").update(b"software bytes");
//! let sums = digests.finish();
//! let v2 = patch_sign::sign_v2(&key, &sums.sha256)?;
//!
//! let keyring = Keyring::from_keys(vec![("dev".into(), key.public_key())]);
//! let signer = keyring.verify_v2(&sums.sha256, &v2)?;
//! assert_eq!(signer.name, "dev");
//! assert!(sums.md5_combination().verify_text(&sums.md5_combination().to_string()).is_ok());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod digest;
mod error;
mod keyring;
mod keys;
mod md5sig;
mod v2;

pub use digest::{
    DigestingReader, DigestingWriter, InnerDigestSums, InnerDigests, MemberDigest, sha256_of,
};
pub use error::SignError;
pub use keyring::{Keyring, SignerIdentity};
pub use keys::{KeyBits, PrivateKey, PublicKey};
pub use md5sig::Md5Combination;
pub use v2::{SignatureScheme, sign_v2, sign_v2_pkcs1v15, verify_v2_with};
