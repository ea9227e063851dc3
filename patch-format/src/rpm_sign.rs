//! OpenPGP signatures on the RPMs themselves (what `rpmsign --addsign` adds and
//! `rpmkeys --checksig` checks), through the `rpm` crate: signing a copy of an RPM, listing
//! who signed one, and verifying one against a directory of trusted public keys.

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, KeyType, SecretKeyParamsBuilder, SignedSecretKey};
use pgp::types::KeyDetails;

/// Why an RPM could not be signed or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum RpmSignError {
    /// The signing key could not be read.
    #[error("RPM signing key: {0} (expected an ASCII-armoured OpenPGP secret key)")]
    Key(String),
    /// A keyring file could not be read.
    #[error("RPM keyring {path}: {reason}")]
    Keyring {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The RPM could not be read or written.
    #[error("{path}: {reason}")]
    Rpm {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The RPM carries no OpenPGP signature.
    #[error("{0}: not signed")]
    Unsigned(String),
    /// No trusted key verifies the RPM's signature, or its contents do not match its digests.
    #[error("{name}: {reason}")]
    Untrusted {
        /// The RPM's file name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// Key generation failed.
    #[error("generating an RPM signing key: {0}")]
    Generate(String),
}

fn rpm_error(path: &Path) -> impl Fn(rpm::Error) -> RpmSignError + '_ {
    move |e| RpmSignError::Rpm {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// An OpenPGP secret key that signs RPMs.
pub struct RpmSigningKey {
    signer: rpm::signature::pgp::Signer,
    key_id: String,
}

impl std::fmt::Debug for RpmSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpmSigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A freshly generated key pair, both halves ASCII-armoured.
#[derive(Debug, Clone)]
pub struct GeneratedRpmKey {
    /// The secret key (keep it private).
    pub secret_asc: String,
    /// The public key (`rpmkeys --import` it; put it in keyrings).
    pub public_asc: String,
    /// Its key id, 16 lowercase hex digits (what `rpm -qi` shows as "Key ID").
    pub key_id: String,
}

impl RpmSigningKey {
    /// Reads an ASCII-armoured OpenPGP secret key (unprotected).
    pub fn from_asc(text: &[u8]) -> Result<Self, RpmSignError> {
        let text = std::str::from_utf8(text).map_err(|e| RpmSignError::Key(e.to_string()))?;
        let (key, _) =
            SignedSecretKey::from_string(text).map_err(|e| RpmSignError::Key(e.to_string()))?;
        let signer = rpm::signature::pgp::Signer::from_asc(text)
            .map_err(|e| RpmSignError::Key(e.to_string()))?;
        Ok(RpmSigningKey {
            signer,
            key_id: hex::encode(key.legacy_key_id()),
        })
    }

    /// Generates an RSA-3072 signing key for `user_id` (e.g. `Patch Signing <dev@example>`).
    pub fn generate(user_id: &str) -> Result<GeneratedRpmKey, RpmSignError> {
        let generate = |e: &dyn std::fmt::Display| RpmSignError::Generate(e.to_string());
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Rsa(3072))
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.to_owned())
            .passphrase(None)
            .preferred_hash_algorithms(
                [pgp::crypto::hash::HashAlgorithm::Sha256]
                    .into_iter()
                    .collect(),
            )
            .build()
            .map_err(|e| generate(&e))?;
        let key = params
            .generate(rand_08::rngs::OsRng)
            .map_err(|e| generate(&e))?;
        let secret_asc = key
            .to_armored_string(None.into())
            .map_err(|e| generate(&e))?;
        let public_asc = key
            .to_public_key()
            .to_armored_string(None.into())
            .map_err(|e| generate(&e))?;
        Ok(GeneratedRpmKey {
            secret_asc,
            public_asc,
            key_id: hex::encode(key.legacy_key_id()),
        })
    }

    /// The key id, 16 lowercase hex digits.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Writes a signed copy of `src` to `dst`: an OpenPGP signature over the header, which
    /// carries the payload's digest (what current `rpmsign --addsign` produces; the legacy
    /// header+payload signature is not added). `src` is never modified.
    pub fn sign_file(&self, src: &Path, dst: &Path) -> Result<(), RpmSignError> {
        let mut package = rpm::Package::open(src).map_err(rpm_error(src))?;
        package.sign(self.signer.clone()).map_err(rpm_error(src))?;
        package.write_file(dst).map_err(rpm_error(dst))
    }
}

impl RpmSigningKey {
    /// Writes signed copies of `inputs` into `out_dir` (same file names), several at once;
    /// returns their paths in input order. The inputs are never modified.
    pub fn sign_files(
        &self,
        inputs: &[PathBuf],
        out_dir: &Path,
    ) -> Result<Vec<PathBuf>, RpmSignError> {
        let mut outputs = Vec::with_capacity(inputs.len());
        for input in inputs {
            let name = input.file_name().ok_or_else(|| RpmSignError::Rpm {
                path: input.clone(),
                reason: "not a file name".into(),
            })?;
            let out = out_dir.join(name);
            if outputs.contains(&out) {
                return Err(RpmSignError::Rpm {
                    path: input.clone(),
                    reason: "given twice".into(),
                });
            }
            outputs.push(out);
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let pairs: Vec<(&PathBuf, &PathBuf)> = inputs.iter().zip(&outputs).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.min(pairs.len()))
                .map(|_| {
                    scope.spawn(|| -> Result<(), RpmSignError> {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((input, output)) = pairs.get(i) else {
                                return Ok(());
                            };
                            self.sign_file(input, output)?;
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.join().map_err(|_| RpmSignError::Rpm {
                    path: out_dir.to_owned(),
                    reason: "a signing thread panicked".into(),
                })??;
            }
            Ok(())
        })?;
        Ok(outputs)
    }
}

/// The key ids of the OpenPGP signatures an RPM carries (empty: unsigned).
pub fn rpm_signers(path: &Path) -> Result<Vec<String>, RpmSignError> {
    // The headers only: the payload is not needed to list signers.
    let metadata = rpm::PackageMetadata::open(path).map_err(rpm_error(path))?;
    let signatures = metadata.signatures().map_err(rpm_error(path))?;
    let mut ids: Vec<String> = signatures
        .iter()
        .filter_map(|s| {
            s.key_id().map(str::to_owned).or_else(|| {
                s.fingerprint()
                    .map(|f| f[f.len().saturating_sub(16)..].to_owned())
            })
        })
        .map(|id| id.to_lowercase())
        .collect();
    ids.dedup();
    Ok(ids)
}

/// Trusted public keys for RPM signatures: every `*.asc` file in a directory.
#[derive(Clone)]
pub struct RpmKeyring {
    keys: Vec<(String, rpm::signature::pgp::Verifier)>,
}

impl std::fmt::Debug for RpmKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(name, _)| name))
            .finish()
    }
}

impl RpmKeyring {
    /// Loads every `*.asc` public key in `dir`.
    pub fn load(dir: &Path) -> Result<Self, RpmSignError> {
        let keyring = |reason: String| RpmSignError::Keyring {
            path: dir.to_owned(),
            reason,
        };
        let mut keys = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| keyring(e.to_string()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "asc") && p.is_file())
            .collect();
        entries.sort();
        for path in entries {
            let text = std::fs::read(&path).map_err(|e| RpmSignError::Keyring {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let verifier = rpm::signature::pgp::Verifier::from_asc_bytes(&text).map_err(|e| {
                RpmSignError::Keyring {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            keys.push((file_name(&path), verifier));
        }
        Ok(RpmKeyring { keys })
    }

    /// Whether the keyring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks an RPM: its contents match its digests and a trusted key verifies its
    /// signature. Returns the name of the key file that verified it.
    pub fn verify_file(&self, path: &Path) -> Result<String, RpmSignError> {
        let name = file_name(path);
        let package = rpm::Package::open(path).map_err(|e| RpmSignError::Untrusted {
            name: name.clone(),
            reason: format!("unreadable: {e}"),
        })?;
        if package.signatures().map(|s| s.is_empty()).unwrap_or(true) {
            return Err(RpmSignError::Unsigned(name));
        }
        package
            .verify_digests()
            .map_err(|e| RpmSignError::Untrusted {
                name: name.clone(),
                reason: format!("contents do not match the signed digests ({e})"),
            })?;
        let mut last = String::from("no trusted RPM signing key");
        for (key, verifier) in &self.keys {
            match package.verify_signature(verifier.clone()) {
                Ok(()) => return Ok(key.clone()),
                Err(e) => last = format!("not signed by a trusted key ({e})"),
            }
        }
        Err(RpmSignError::Untrusted { name, reason: last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRpm;

    fn key_pair(dir: &Path, name: &str) -> RpmSigningKey {
        let generated =
            RpmSigningKey::generate(&format!("{name} <{name}@example.invalid>")).unwrap();
        std::fs::create_dir_all(dir.join("keyring")).unwrap();
        std::fs::write(
            dir.join("keyring").join(format!("{name}.asc")),
            &generated.public_asc,
        )
        .unwrap();
        let key = RpmSigningKey::from_asc(generated.secret_asc.as_bytes()).unwrap();
        assert_eq!(key.key_id(), generated.key_id);
        key
    }

    #[test]
    fn sign_verify_and_refuse_tampering_or_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = key_pair(dir.path(), "trusted");
        let rpm = TestRpm::new("sysinv", "1.0", "1")
            .file("/usr/lib/sysinv/api.py", "VERSION = 1\n".repeat(100))
            .build(dir.path());
        let original = std::fs::read(&rpm).unwrap();
        let signed = dir.path().join("signed.rpm");
        trusted.sign_file(&rpm, &signed).unwrap();
        assert_eq!(std::fs::read(&rpm).unwrap(), original, "input untouched");
        assert_eq!(rpm_signers(&signed).unwrap(), [trusted.key_id()]);
        assert!(rpm_signers(&rpm).unwrap().is_empty());

        let stranger_dir = tempfile::tempdir().unwrap();
        let stranger = key_pair(stranger_dir.path(), "stranger");
        let keyring = RpmKeyring::load(&dir.path().join("keyring")).unwrap();
        assert_eq!(keyring.verify_file(&signed).unwrap(), "trusted.asc");
        assert!(matches!(
            keyring.verify_file(&rpm),
            Err(RpmSignError::Unsigned(_))
        ));
        let foreign = dir.path().join("foreign.rpm");
        stranger.sign_file(&rpm, &foreign).unwrap();
        let err = keyring.verify_file(&foreign).unwrap_err().to_string();
        assert!(err.contains("not signed by a trusted key"), "{err}");

        // A flipped byte at the end of the payload.
        let mut bytes = std::fs::read(&signed).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0x40;
        let tampered = dir.path().join("tampered.rpm");
        std::fs::write(&tampered, bytes).unwrap();
        assert!(keyring.verify_file(&tampered).is_err());
    }

    #[test]
    fn bad_keys_are_clear_errors() {
        let err = RpmSigningKey::from_asc(b"not a key")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ASCII-armoured OpenPGP secret key"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk.asc"), "junk").unwrap();
        assert!(RpmKeyring::load(dir.path()).is_err());
        assert!(RpmKeyring::load(&dir.path().join("missing")).is_err());
    }
}
