use std::path::PathBuf;

/// Everything that can go wrong with keys and signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The `signature` member is not a hexadecimal number of at most 128 bits.
    #[error("the md5 signature is not a hex number of at most 32 digits: {0:?}")]
    Md5SignatureSyntax(String),
    /// The md5 combination does not match the inner tars.
    #[error("Patch failed verification: the md5 signature does not match the archive contents")]
    Md5Mismatch,
    /// No trusted key verifies `signature.v2`.
    #[error(
        "Signature check failed: signature.v2 does not verify with any of the {trusted} trusted key(s)"
    )]
    NoTrustedKeyMatched {
        /// How many keys were tried.
        trusted: usize,
    },
    /// `signature.v2` verifies, but only with a key in the keyring's `revoked/` folder.
    #[error("Signature check failed: the patch is signed by revoked key {0}")]
    RevokedKey(String),
    /// A PEM or DER document could not be read as the expected key type.
    #[error("{what} in {origin} could not be parsed: {reason}")]
    KeyParse {
        /// What was expected ("private key", "public key or certificate").
        what: &'static str,
        /// Where it came from (a path, or "input").
        origin: String,
        /// Why it failed.
        reason: String,
    },
    /// The key's size is not supported.
    #[error("unsupported RSA key size {0} bits: use 2048, 3072 or 4096")]
    UnsupportedKeySize(usize),
    /// An RSA operation failed.
    #[error("RSA {op} failed: {reason}")]
    Rsa {
        /// The operation ("signing", "key generation").
        op: &'static str,
        /// The library's reason.
        reason: String,
    },
    /// A key file or keyring directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The keyring holds no usable key.
    #[error(
        "the keyring {0} holds no public keys or certificates: add the signer's public key (PEM) to it"
    )]
    EmptyKeyring(PathBuf),
}
