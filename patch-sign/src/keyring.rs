//! A directory of trusted public keys, with a `revoked/` folder of refused ones.

use std::path::{Path, PathBuf};

use crate::v2::verify_v2_with;
use crate::{PublicKey, SignError, SignatureScheme};

/// Which trusted key verified a signature, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerIdentity {
    /// The key's name: its file name in the keyring directory (or the name given to
    /// [`Keyring::from_keys`]), with `#N` appended for the N-th key of a multi-key file.
    pub name: String,
    /// The key's fingerprint ([`PublicKey::fingerprint`]).
    pub fingerprint: String,
    /// The padding the signature used.
    pub scheme: SignatureScheme,
}

/// The set of public keys trusted to sign patches.
///
/// On disk it is a directory: every regular file in it holds one or more public keys or
/// X.509 certificates (PEM or DER). Keys in its `revoked/` subfolder are refused even when the
/// same key also sits in the main folder — moving a key file into `revoked/` (or copying it
/// there) is how a key is withdrawn.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    trusted: Vec<(String, PublicKey)>,
    revoked: Vec<(String, PublicKey)>,
}

impl Keyring {
    /// A keyring from keys in memory, none revoked.
    pub fn from_keys(trusted: Vec<(String, PublicKey)>) -> Self {
        Self {
            trusted,
            revoked: Vec::new(),
        }
    }

    /// Adds a trusted key (revocations still apply to it).
    pub fn trust(&mut self, name: String, key: PublicKey) {
        self.trusted.push((name, key));
    }

    /// Adds a revoked key.
    pub fn revoke(&mut self, name: String, key: PublicKey) {
        self.revoked.push((name, key));
    }

    /// Loads a keyring directory. Hidden files are skipped; an unreadable or unparsable file is
    /// an error (a silently skipped key would be a surprise at upload time). A directory with
    /// no trusted key at all is refused.
    pub fn load(dir: &Path) -> Result<Self, SignError> {
        let trusted = load_dir(dir)?;
        let revoked_dir = dir.join("revoked");
        let revoked = if revoked_dir.is_dir() {
            load_dir(&revoked_dir)?
        } else {
            Vec::new()
        };
        if trusted.is_empty() {
            return Err(SignError::EmptyKeyring(dir.to_owned()));
        }
        Ok(Self { trusted, revoked })
    }

    /// The trusted keys (revoked ones included if they are also in the main folder).
    pub fn trusted(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.trusted.iter().map(|(n, k)| (n.as_str(), k))
    }

    /// Whether a key is revoked.
    pub fn is_revoked(&self, key: &PublicKey) -> bool {
        self.revoked.iter().any(|(_, k)| k == key)
    }

    /// Verifies `signature.v2` over the inner tars' SHA-256. Succeeds with the first trusted,
    /// non-revoked key that verifies it; a signature made by a revoked key is refused with
    /// [`SignError::RevokedKey`] so the operator learns why.
    pub fn verify_v2(
        &self,
        sha256: &[u8; 32],
        signature: &[u8],
    ) -> Result<SignerIdentity, SignError> {
        for (name, key) in &self.trusted {
            if self.is_revoked(key) {
                continue;
            }
            if let Some(scheme) = verify_v2_with(key, sha256, signature) {
                return Ok(SignerIdentity {
                    name: name.clone(),
                    fingerprint: key.fingerprint().to_owned(),
                    scheme,
                });
            }
        }
        for (name, key) in &self.revoked {
            if verify_v2_with(key, sha256, signature).is_some() {
                return Err(SignError::RevokedKey(format!(
                    "{name} ({})",
                    key.fingerprint()
                )));
            }
        }
        Err(SignError::NoTrustedKeyMatched {
            trusted: self.trusted.len(),
        })
    }
}

fn load_dir(dir: &Path) -> Result<Vec<(String, PublicKey)>, SignError> {
    let io_err = |path: &Path, source| SignError::Io {
        path: path.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        // Follows symlinks on purpose: keyrings are often links to /etc/pki files.
        let meta = std::fs::metadata(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
        if meta.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    let mut keys = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = PublicKey::all_from_file(&path)?;
        let several = found.len() > 1;
        for (i, key) in found.into_iter().enumerate() {
            let name = if several {
                format!("{name}#{}", i + 1)
            } else {
                name.clone()
            };
            keys.push((name, key));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::test_key;
    use crate::{PrivateKey, sign_v2};

    #[test]
    fn directory_keyring_verifies_and_revokes() {
        let dir = tempfile::tempdir().unwrap();
        let key = test_key();
        let other = PrivateKey::generate(2048).unwrap();
        std::fs::write(
            dir.path().join("dev.pem"),
            key.public_key().to_spki_pem().unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("other.pem"),
            other.public_key().to_spki_pem().unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden"), "junk").unwrap();

        let digest = [7u8; 32];
        let sig = sign_v2(key, &digest).unwrap();
        let ring = Keyring::load(dir.path()).unwrap();
        let who = ring.verify_v2(&digest, &sig).unwrap();
        assert_eq!(who.name, "dev.pem");
        assert_eq!(who.fingerprint, key.public_key().fingerprint());
        assert_eq!(who.scheme, SignatureScheme::Pss);

        // Revoke by copying the key into revoked/: present in both, refused.
        std::fs::create_dir(dir.path().join("revoked")).unwrap();
        std::fs::copy(
            dir.path().join("dev.pem"),
            dir.path().join("revoked/dev.pem"),
        )
        .unwrap();
        let ring = Keyring::load(dir.path()).unwrap();
        assert!(matches!(
            ring.verify_v2(&digest, &sig),
            Err(SignError::RevokedKey(_))
        ));

        // A signature by a key nobody trusts.
        let stranger = sign_v2(&PrivateKey::generate(2048).unwrap(), &digest).unwrap();
        assert!(matches!(
            ring.verify_v2(&digest, &stranger),
            Err(SignError::NoTrustedKeyMatched { trusted: 2 })
        ));
    }

    #[test]
    fn empty_or_broken_keyrings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Keyring::load(dir.path()),
            Err(SignError::EmptyKeyring(_))
        ));
        std::fs::write(dir.path().join("broken.pem"), "not a key").unwrap();
        assert!(matches!(
            Keyring::load(dir.path()),
            Err(SignError::KeyParse { .. })
        ));
        assert!(Keyring::load(&dir.path().join("missing")).is_err());
    }
}
