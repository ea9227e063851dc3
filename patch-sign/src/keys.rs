//! RSA keys: private keys for signing, public keys (or certificates) for verifying.

use std::fmt;
use std::path::Path;

use base64ct::{Base64, Encoding};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;

use sha2::{Digest, Sha256};
use x509_cert::der::Decode;

use crate::SignError;

/// Largest key file we read; real PEM keys and certificates are a few KiB.
const MAX_KEY_FILE: u64 = 1 << 20;

/// Key sizes offered for new keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyBits {
    /// 2048 bits, as the original's dev and formal keys.
    #[default]
    Rsa2048,
    /// 3072 bits.
    Rsa3072,
    /// 4096 bits.
    Rsa4096,
}

impl KeyBits {
    /// The size in bits.
    pub fn bits(self) -> usize {
        match self {
            KeyBits::Rsa2048 => 2048,
            KeyBits::Rsa3072 => 3072,
            KeyBits::Rsa4096 => 4096,
        }
    }
}

impl TryFrom<usize> for KeyBits {
    type Error = SignError;
    fn try_from(bits: usize) -> Result<Self, SignError> {
        match bits {
            2048 => Ok(KeyBits::Rsa2048),
            3072 => Ok(KeyBits::Rsa3072),
            4096 => Ok(KeyBits::Rsa4096),
            other => Err(SignError::UnsupportedKeySize(other)),
        }
    }
}

/// An RSA private key used to sign patches.
#[derive(Clone)]
pub struct PrivateKey {
    pub(crate) inner: rsa::PrivateKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey({} bits, {})",
            self.inner.size() * 8,
            self.public_key().fingerprint()
        )
    }
}

impl PrivateKey {
    /// Generates a new key of `bits` (2048, 3072 or 4096) from the operating system's RNG.
    pub fn generate(bits: usize) -> Result<Self, SignError> {
        let bits = KeyBits::try_from(bits)?;
        let mut rng = rand::rngs::SysRng;
        let inner = rsa::PrivateKey::new(&mut rng, bits.bits()).map_err(|e| SignError::Rsa {
            op: "key generation",
            reason: e.to_string(),
        })?;
        Ok(Self { inner })
    }

    /// Reads a PEM private key: PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, as
    /// pycryptodome's `RSA.importKey` accepts. Leading whitespace on lines is tolerated.
    pub fn from_pem(text: &str) -> Result<Self, SignError> {
        Self::from_pem_named(text, "input")
    }

    /// Reads a PEM private key from a file.
    pub fn from_pem_file(path: &Path) -> Result<Self, SignError> {
        let text = read_key_file(path)?;
        Self::from_pem_named(&text, &path.display().to_string())
    }

    fn from_pem_named(text: &str, origin: &str) -> Result<Self, SignError> {
        let err = |reason: String| SignError::KeyParse {
            what: "private key",
            origin: origin.to_owned(),
            reason,
        };
        let blocks = pem_blocks(text);
        let Some(block) = blocks.first() else {
            return Err(err(
                "no PEM block found (expected -----BEGIN PRIVATE KEY-----)".into(),
            ));
        };
        let der = block.der().map_err(err)?;
        let inner = match block.label.as_str() {
            "PRIVATE KEY" => {
                rsa::PrivateKey::from_pkcs8_der(&der).map_err(|e| err(e.to_string()))?
            }
            "RSA PRIVATE KEY" => {
                rsa::PrivateKey::from_pkcs1_der(&der).map_err(|e| err(e.to_string()))?
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(err(
                    "encrypted private keys are not supported: decrypt it first (openssl pkey)"
                        .into(),
                ));
            }
            other => return Err(err(format!("unexpected PEM label {other:?}"))),
        };
        Ok(Self { inner })
    }

    /// The PKCS#8 PEM encoding of this key.
    pub fn to_pkcs8_pem(&self) -> Result<String, SignError> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map(|s| s.to_string())
            .map_err(|e| SignError::Rsa {
                op: "private key encoding",
                reason: e.to_string(),
            })
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.inner.to_public_key())
    }

    /// Key size in bits.
    pub fn bits(&self) -> usize {
        self.inner.size() * 8
    }
}

/// An RSA public key trusted to verify `signature.v2`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub(crate) inner: rsa::PublicKey,
    fingerprint: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

impl PublicKey {
    fn new(inner: rsa::PublicKey) -> Self {
        let der = inner
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let fingerprint = format!("SHA256:{}", hex::encode(&Sha256::digest(&der)[..16]));
        Self { inner, fingerprint }
    }

    /// `SHA256:` and the first 16 bytes (hex) of the SHA-256 of the key's SubjectPublicKeyInfo
    /// DER: a stable name for the key whatever container it came in.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Key size in bits.
    pub fn bits(&self) -> usize {
        self.inner.size() * 8
    }

    /// The SPKI PEM encoding of this key.
    pub fn to_spki_pem(&self) -> Result<String, SignError> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SignError::Rsa {
                op: "public key encoding",
                reason: e.to_string(),
            })
    }

    /// Reads every public key in a PEM document: SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`,
    /// or X.509 `CERTIFICATE` used only as a container for its key (no chain or expiry check, as
    /// the original). Lines may carry leading whitespace, as the original's embedded
    /// certificates do. A DER certificate or SPKI (binary file) is accepted too.
    pub fn all_from_pem(text: &str) -> Result<Vec<Self>, SignError> {
        Self::all_from_bytes(text.as_bytes(), "input")
    }

    /// Reads the first public key of a PEM document (see [`PublicKey::all_from_pem`]).
    pub fn from_pem(text: &str) -> Result<Self, SignError> {
        Self::all_from_pem(text)?
            .into_iter()
            .next()
            .ok_or_else(|| SignError::KeyParse {
                what: "public key or certificate",
                origin: "input".into(),
                reason: "no PEM block found".into(),
            })
    }

    /// Reads every public key in a file (see [`PublicKey::all_from_pem`]).
    pub fn all_from_file(path: &Path) -> Result<Vec<Self>, SignError> {
        let bytes = read_key_bytes(path)?;
        Self::all_from_bytes(&bytes, &path.display().to_string())
    }

    fn all_from_bytes(bytes: &[u8], origin: &str) -> Result<Vec<Self>, SignError> {
        let err = |reason: String| SignError::KeyParse {
            what: "public key or certificate",
            origin: origin.to_owned(),
            reason,
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            return public_key_from_der(bytes).map(|k| vec![k]).map_err(err);
        };
        let blocks = pem_blocks(text);
        if blocks.is_empty() {
            return Err(err(
                "no PEM block found (expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)".into(),
            ));
        }
        let mut keys = Vec::new();
        for block in blocks {
            let der = block.der().map_err(err)?;
            let key = match block.label.as_str() {
                "PUBLIC KEY" => rsa::PublicKey::from_public_key_der(&der)
                    .map_err(|e| err(format!("PUBLIC KEY: {e}")))?,
                "RSA PUBLIC KEY" => rsa::PublicKey::from_pkcs1_der(&der)
                    .map_err(|e| err(format!("RSA PUBLIC KEY: {e}")))?,
                "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                    certificate_key(&der).map_err(|e| err(format!("CERTIFICATE: {e}")))?
                }
                // Private keys and other blocks in a keyring file are not trust anchors.
                _ => continue,
            };
            keys.push(PublicKey::new(key));
        }
        if keys.is_empty() {
            return Err(err("no public key or certificate block in the file".into()));
        }
        Ok(keys)
    }
}

fn public_key_from_der(der: &[u8]) -> Result<PublicKey, String> {
    if let Ok(key) = certificate_key(der) {
        return Ok(PublicKey::new(key));
    }
    rsa::PublicKey::from_public_key_der(der)
        .or_else(|_| rsa::PublicKey::from_pkcs1_der(der))
        .map(PublicKey::new)
        .map_err(|_| "not a PEM document, nor a DER certificate or public key".to_owned())
}

/// The RSA key inside a certificate's SubjectPublicKeyInfo.
fn certificate_key(der: &[u8]) -> Result<rsa::PublicKey, String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    let spki_der = x509_cert::der::Encode::to_der(spki).map_err(|e| e.to_string())?;
    rsa::PublicKey::from_public_key_der(&spki_der).map_err(|e| format!("not an RSA key: {e}"))
}

/// One `-----BEGIN label----- … -----END label-----` block.
struct PemBlock {
    label: String,
    body: String,
}

impl PemBlock {
    fn der(&self) -> Result<Vec<u8>, String> {
        Base64::decode_vec(&self.body)
            .map_err(|e| format!("{} block is not valid base64: {e}", self.label))
    }
}

/// Splits a PEM document into blocks. Every line is trimmed first, so indented PEM (as in the
/// original's `certificates.py`) and CRLF line ends are fine; RFC 1421 header lines
/// (`Proc-Type: …`) inside a block are skipped.
fn pem_blocks(text: &str) -> Vec<PemBlock> {
    let mut blocks = Vec::new();
    let mut current: Option<PemBlock> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some(PemBlock {
                label: label.to_owned(),
                body: String::new(),
            });
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if let Some(block) = current.take()
                && block.label == label
            {
                blocks.push(block);
            }
        } else if let Some(block) = &mut current
            && !line.contains(':')
        {
            block.body.push_str(line);
        }
    }
    blocks
}

fn read_key_bytes(path: &Path) -> Result<Vec<u8>, SignError> {
    use std::io::Read;
    let io_err = |source| SignError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(SignError::KeyParse {
            what: "key file",
            origin: path.display().to_string(),
            reason: format!("larger than {MAX_KEY_FILE} bytes"),
        });
    }
    Ok(bytes)
}

fn read_key_file(path: &Path) -> Result<String, SignError> {
    let bytes = read_key_bytes(path)?;
    String::from_utf8(bytes).map_err(|_| SignError::KeyParse {
        what: "private key",
        origin: path.display().to_string(),
        reason: "not a text (PEM) file".into(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use std::sync::OnceLock;

    /// One 2048-bit key shared by the crate's tests (generation is the slow part).
    pub(crate) fn test_key() -> &'static PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate(2048).unwrap())
    }

    fn indent(pem: &str) -> String {
        pem.lines().map(|l| format!("        {l}\r\n")).collect()
    }

    #[test]
    fn private_key_pkcs8_and_pkcs1_read_back() {
        let key = test_key();
        let pkcs8 = key.to_pkcs8_pem().unwrap();
        let pkcs1 = key.inner.to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
        for pem in [pkcs8.clone(), pkcs1, indent(&pkcs8)] {
            let back = PrivateKey::from_pem(&pem).unwrap();
            assert_eq!(back.public_key(), key.public_key());
        }
    }

    #[test]
    fn public_key_spki_pkcs1_and_indented_read_back() {
        let public = test_key().public_key();
        let spki = public.to_spki_pem().unwrap();
        let pkcs1 = public.inner.to_pkcs1_pem(LineEnding::LF).unwrap();
        for pem in [spki.clone(), pkcs1, indent(&spki)] {
            assert_eq!(PublicKey::from_pem(&pem).unwrap(), public);
        }
        assert!(public.fingerprint().starts_with("SHA256:"));
        assert_eq!(public.bits(), 2048);
    }

    #[test]
    fn junk_is_refused_with_a_reason() {
        for junk in [
            "",
            "hello",
            "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            let e = PublicKey::from_pem(junk).unwrap_err();
            assert!(matches!(e, SignError::KeyParse { .. }), "{junk:?}: {e}");
        }
        assert!(
            PrivateKey::from_pem(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"
            )
            .is_err()
        );
        assert!(matches!(
            PrivateKey::generate(1024),
            Err(SignError::UnsupportedKeySize(1024))
        ));
    }
}

#[cfg(test)]
mod certificate_tests {
    use super::tests::test_key;
    use super::*;
    use std::process::Command;

    /// A self-signed X.509 certificate over the test key, made by the `openssl` tool (the way
    /// the original's certificates were made), then indented like `certificates.py`'s.
    #[test]
    fn x509_certificate_is_a_public_key_container() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        let cert_path = dir.path().join("cert.pem");
        std::fs::write(&key_path, test_key().to_pkcs8_pem().unwrap()).unwrap();
        let status = Command::new("openssl")
            .args(["req", "-new", "-x509", "-sha256", "-days", "3650", "-subj"])
            .arg("/C=CA/ST=Ontario/O=Wind River Systems, Inc.")
            .arg("-key")
            .arg(&key_path)
            .arg("-out")
            .arg(&cert_path)
            .status()
            .expect(
                "the openssl tool is needed to make a test certificate (apt-get install openssl)",
            );
        assert!(status.success());
        let pem = std::fs::read_to_string(&cert_path).unwrap();
        let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        for text in [pem.clone(), indented] {
            let keys = PublicKey::all_from_pem(&text).unwrap();
            assert_eq!(keys, vec![test_key().public_key()]);
        }
        // DER form too.
        let der_path = dir.path().join("cert.der");
        let status = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert_path)
            .arg("-out")
            .arg(&der_path)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            PublicKey::all_from_file(&der_path).unwrap(),
            vec![test_key().public_key()]
        );
    }
}
