//! The controller's signature on the repository indexes (`feed` and `repo` `index.json`)
//! agents install from, so a host installs only what its controller published, as it was
//! published, recently.
//!
//! The controller answers an index request with an *envelope*: a JSON document naming the
//! area, release, a serial (the index's version: its file's modification time in
//! milliseconds) and an expiry around the index,
//! and an Ed25519 signature over the envelope's exact bytes in the [`SIGNATURE_HEADER`]
//! header. It signs per request, so every answer is fresh and the expiry can be short.
//!
//! The agent pins the controller's public key and accepts an envelope only if the signature
//! verifies with that key, it is for the area and release asked for, it has not expired, and
//! its serial is not older than the last one accepted for the same index (a replayed older
//! index would roll the host back).

#![forbid(unsafe_code)]

mod envelope;
mod keys;

pub use envelope::{Accepted, Envelope, Serials, Verifier};
pub use keys::{KeyFile, PublicKey, Signer};

/// The response header that carries an envelope's signature: `ed25519=<base64>; key=<id>`.
pub const SIGNATURE_HEADER: &str = "x-stx-signature";

/// The envelope format this crate writes and reads.
pub const FORMAT: &str = "stx-patch-signed-index/1";

/// Why an index was refused, or a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The answer carries no signature.
    #[error(
        "the repository index is not signed (no {SIGNATURE_HEADER} header); is the controller older than this agent, or is something answering in its place?"
    )]
    Unsigned,
    /// The signature header cannot be parsed.
    #[error("the repository index's signature header is malformed: {0}")]
    Malformed(String),
    /// Signed, but by a key other than the pinned one.
    #[error(
        "the repository index is signed by key {found}, not by the pinned controller key {pinned}; refusing it (if the controller's key was replaced on purpose, pin the new one)"
    )]
    OtherKey {
        /// The key id in the header.
        found: String,
        /// The pinned key's id.
        pinned: String,
    },
    /// The signature does not verify over the bytes received.
    #[error("the repository index's signature does not verify: it was changed on the way")]
    BadSignature,
    /// The envelope is not what was asked for, or not an envelope.
    #[error("the signed repository index is not valid: {0}")]
    Invalid(String),
    /// Past its expiry.
    #[error(
        "the repository index expired at {expires} ms (now {now} ms): a frozen or replayed answer; the controller signs a fresh one on every request"
    )]
    Expired {
        /// When it expired (ms since the epoch).
        expires: u64,
        /// Now.
        now: u64,
    },
    /// Older than one already accepted.
    #[error(
        "the repository index (serial {serial}) is older than the one accepted before (serial {last}): a replayed index would roll the host back"
    )]
    Replayed {
        /// This envelope's serial.
        serial: u64,
        /// The last serial accepted for the same index.
        last: u64,
    },
    /// A key file could not be read, parsed or written.
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// No randomness for a new key.
    #[error("cannot draw randomness for the signing key: {0}")]
    Random(String),
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
