//! The controller's signing key on disk, and the public key agents pin.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64ct::{Base64, Encoding};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{SIGNATURE_HEADER, SignError};

/// Key files are a few hundred bytes; anything larger is not one.
const KEY_FILE_LIMIT: u64 = 64 * 1024;

fn read_small(path: &Path) -> Result<String, SignError> {
    let failed = |reason: String| SignError::Key {
        path: path.to_owned(),
        reason,
    };
    let bytes =
        durable_fs::read_bounded(path, KEY_FILE_LIMIT).map_err(|e| failed(e.source.to_string()))?;
    String::from_utf8(bytes).map_err(|_| failed("not text".into()))
}

/// A public key agents pin (PEM SubjectPublicKeyInfo, Ed25519).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads a PEM public key.
    pub fn load(path: &Path) -> Result<PublicKey, SignError> {
        PublicKey::from_pem(&read_small(path)?).map_err(|reason| SignError::Key {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses a PEM public key.
    pub fn from_pem(pem: &str) -> Result<PublicKey, String> {
        VerifyingKey::from_public_key_pem(pem)
            .map(PublicKey)
            .map_err(|e| format!("not an Ed25519 public key in PEM form: {e}"))
    }

    /// The PEM text.
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 public key always encodes")
    }

    /// A short id: the first 16 hex digits of the SHA-256 of the raw key.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

/// Where the controller keeps its key pair: `key.pem` (private, 0600) and `public.pem`
/// beside it, under a directory of the replicated state, so both controllers of a pair sign
/// with the same key.
#[derive(Clone, Debug)]
pub struct KeyFile {
    /// The directory.
    pub dir: PathBuf,
}

impl KeyFile {
    /// The key pair in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> KeyFile {
        KeyFile { dir: dir.into() }
    }

    /// The private key file.
    pub fn private(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The public key file (what agents pin with `--repo-key`).
    pub fn public(&self) -> PathBuf {
        self.dir.join("public.pem")
    }

    /// Creates a new key pair unless one exists; `Ok(true)` when it made one.
    pub fn create_if_missing(&self) -> Result<bool, SignError> {
        if self.private().exists() {
            return Ok(false);
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SignError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        let failed = |path: PathBuf| move |e: String| SignError::Key { path, reason: e };
        let private = key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| failed(self.private())(e.to_string()))?;
        let public = PublicKey(key.verifying_key()).to_pem();
        // The public half first: a crash in between leaves no private key without it, and
        // the next start writes both again.
        durable_fs::write(&self.public(), public.as_bytes())
            .map_err(|e| failed(self.public())(e.to_string()))?;
        durable_fs::write_new(&self.private(), private.as_bytes(), 0o600)
            .map_err(|e| failed(self.private())(e.to_string()))?;
        Ok(true)
    }
}

/// What tells a key file's content apart without reading it (device, inode, mtime): key
/// files are replaced, by rename or by replication.
type FileIdentity = (u64, u64, i64, i64);

/// Signs envelopes with the key in a [`KeyFile`], reading the file again when it changes (a
/// standby that takes over signs with the key replication brought it).
#[derive(Debug)]
pub struct Signer {
    file: KeyFile,
    cached: Mutex<Option<(FileIdentity, SigningKey)>>,
}

impl Signer {
    /// A signer over `file` (read on first use).
    pub fn new(file: KeyFile) -> Signer {
        Signer {
            file,
            cached: Mutex::new(None),
        }
    }

    /// The key files.
    pub fn key_file(&self) -> &KeyFile {
        &self.file
    }

    fn key(&self) -> Result<SigningKey, SignError> {
        let path = self.file.private();
        let failed = |reason: String| SignError::Key {
            path: path.clone(),
            reason,
        };
        let meta = std::fs::metadata(&path).map_err(|e| failed(e.to_string()))?;
        let identity = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec());
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, key)) = cached.as_ref()
            && *seen == identity
        {
            return Ok(key.clone());
        }
        let key = SigningKey::from_pkcs8_pem(&read_small(&path)?)
            .map_err(|e| failed(format!("not an Ed25519 private key in PEM form: {e}")))?;
        *cached = Some((identity, key.clone()));
        Ok(key)
    }

    /// The public key of the key in use.
    pub fn public_key(&self) -> Result<PublicKey, SignError> {
        Ok(PublicKey(self.key()?.verifying_key()))
    }

    /// The signature header value for `body`.
    pub fn sign(&self, body: &[u8]) -> Result<String, SignError> {
        let key = self.key()?;
        let signature = key.sign(body);
        Ok(format!(
            "ed25519={}; key={}",
            Base64::encode_string(&signature.to_bytes()),
            PublicKey(key.verifying_key()).id()
        ))
    }
}

/// The parts of a [`SIGNATURE_HEADER`] value.
pub(crate) fn parse_header(value: &str) -> Result<([u8; 64], String), SignError> {
    let mut signature = None;
    let mut key = None;
    for part in value.split(';').map(str::trim) {
        match part.split_once('=') {
            Some(("ed25519", b64)) => {
                let bytes = Base64::decode_vec(b64)
                    .map_err(|e| SignError::Malformed(format!("signature: {e}")))?;
                signature = Some(<[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| {
                    SignError::Malformed("an Ed25519 signature is 64 bytes".into())
                })?);
            }
            Some(("key", id)) => key = Some(id.to_owned()),
            _ => {}
        }
    }
    match (signature, key) {
        (Some(s), Some(k)) => Ok((s, k)),
        _ => Err(SignError::Malformed(format!(
            "{SIGNATURE_HEADER} needs ed25519=<base64> and key=<id>"
        ))),
    }
}

#[cfg(test)]
pub(crate) fn test_signer(dir: &Path) -> Signer {
    let file = KeyFile::new(dir);
    file.create_if_missing().unwrap();
    Signer::new(file)
}
