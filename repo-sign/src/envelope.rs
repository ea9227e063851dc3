//! The signed envelope around an index, and the agent's rules for accepting one.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier as _};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::keys::parse_header;
use crate::{FORMAT, PublicKey, SignError, Signer};

/// What the controller signs: the index and what it is for, when it was signed and until
/// when it may be used.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// [`FORMAT`].
    pub format: String,
    /// `feed` or `repo`.
    pub area: String,
    /// The release the index is for.
    pub release: String,
    /// The index's version: a later index has a larger serial (the same index signed again
    /// keeps its serial).
    pub serial: u64,
    /// Milliseconds since the epoch after which the envelope is refused.
    pub expires: u64,
    /// The index document, verbatim.
    pub index: Box<RawValue>,
}

impl Envelope {
    /// Wraps `index` (a JSON document) for `area` and `release` as version `serial` (larger
    /// for a later index: the controller uses the index file's modification time in ms),
    /// signed now and valid for `validity_ms`: the body to send and its
    /// [`crate::SIGNATURE_HEADER`] value.
    pub fn seal(
        signer: &Signer,
        (area, release): (&str, &str),
        index: &str,
        serial: u64,
        validity_ms: u64,
    ) -> Result<(Vec<u8>, String), SignError> {
        let envelope = Envelope {
            format: FORMAT.to_owned(),
            area: area.to_owned(),
            release: release.to_owned(),
            serial,
            expires: crate::now_ms().saturating_add(validity_ms),
            index: RawValue::from_string(index.to_owned())
                .map_err(|e| SignError::Invalid(format!("the index is not JSON: {e}")))?,
        };
        let body = serde_json::to_vec(&envelope)
            .map_err(|e| SignError::Invalid(format!("cannot encode the envelope: {e}")))?;
        let header = signer.sign(&body)?;
        Ok((body, header))
    }
}

/// An envelope that passed every check.
#[derive(Debug)]
pub struct Accepted {
    /// Its serial (to remember with [`Serials::accept`]).
    pub serial: u64,
    /// The index document.
    pub index: Box<RawValue>,
}

/// The agent's side: the pinned key and the checks.
#[derive(Clone, Debug)]
pub struct Verifier {
    pinned: PublicKey,
}

impl Verifier {
    /// Accepts only envelopes signed by `pinned`.
    pub fn new(pinned: PublicKey) -> Verifier {
        Verifier { pinned }
    }

    /// The pinned key.
    pub fn pinned(&self) -> &PublicKey {
        &self.pinned
    }

    /// Checks an answer to a request for `area`'s index of `release`: the signature (from the
    /// header) over the exact body, then what the envelope says, against `now` (ms) and the
    /// last serial accepted for the same index.
    pub fn check(
        &self,
        body: &[u8],
        header: Option<&str>,
        area: &str,
        release: &str,
        now: u64,
        last_serial: Option<u64>,
    ) -> Result<Accepted, SignError> {
        let header = header.ok_or(SignError::Unsigned)?;
        let (signature, key_id) = parse_header(header)?;
        let pinned_id = self.pinned.id();
        if key_id != pinned_id {
            return Err(SignError::OtherKey {
                found: key_id,
                pinned: pinned_id,
            });
        }
        self.pinned
            .verifying_key()
            .verify(body, &Signature::from_bytes(&signature))
            .map_err(|_| SignError::BadSignature)?;
        // Only signed bytes are parsed.
        let envelope: Envelope = serde_json::from_slice(body)
            .map_err(|e| SignError::Invalid(format!("not an index envelope: {e}")))?;
        if envelope.format != FORMAT {
            return Err(SignError::Invalid(format!(
                "format {:?}, expected {FORMAT:?}",
                envelope.format
            )));
        }
        if envelope.area != area || envelope.release != release {
            return Err(SignError::Invalid(format!(
                "it is the {} index of release {}, not the {area} index of release {release}",
                envelope.area, envelope.release
            )));
        }
        if envelope.expires <= now {
            return Err(SignError::Expired {
                expires: envelope.expires,
                now,
            });
        }
        if let Some(last) = last_serial
            && envelope.serial < last
        {
            return Err(SignError::Replayed {
                serial: envelope.serial,
                last,
            });
        }
        Ok(Accepted {
            serial: envelope.serial,
            index: envelope.index,
        })
    }
}

/// The last serial accepted per index (`area/release`), kept in the agent's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Serials(BTreeMap<String, u64>);

impl Serials {
    fn key(area: &str, release: &str) -> String {
        format!("{area}/{release}")
    }

    /// The last serial accepted for `area`'s index of `release`.
    pub fn last(&self, area: &str, release: &str) -> Option<u64> {
        self.0.get(&Serials::key(area, release)).copied()
    }

    /// Records an accepted serial (never moving backwards).
    pub fn accept(&mut self, area: &str, release: &str, serial: u64) {
        let entry = self.0.entry(Serials::key(area, release)).or_insert(serial);
        *entry = (*entry).max(serial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_signer;

    const INDEX: &str = r#"{"packages":[{"name":"sysinv","sha256":"ab"}]}"#;

    #[test]
    fn a_sealed_index_is_accepted_once_and_every_tampering_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let signer = test_signer(dir.path());
        let verifier = Verifier::new(signer.public_key().unwrap());
        let (body, header) = Envelope::seal(&signer, ("repo", "19.01"), INDEX, 7, 60_000).unwrap();
        let now = crate::now_ms();
        let ok = verifier
            .check(&body, Some(&header), "repo", "19.01", now, None)
            .unwrap();
        assert_eq!(ok.index.get(), INDEX);

        // Unsigned, malformed, changed on the way.
        assert!(matches!(
            verifier.check(&body, None, "repo", "19.01", now, None),
            Err(SignError::Unsigned)
        ));
        assert!(matches!(
            verifier.check(&body, Some("ed25519=!!; key=x"), "repo", "19.01", now, None),
            Err(SignError::Malformed(_))
        ));
        let mut tampered = body.clone();
        let at = tampered.windows(6).position(|w| w == b"sysinv").unwrap();
        tampered[at] = b'S';
        assert!(matches!(
            verifier.check(&tampered, Some(&header), "repo", "19.01", now, None),
            Err(SignError::BadSignature)
        ));
        // Another key, even with a valid signature of its own.
        let other_dir = tempfile::tempdir().unwrap();
        let other = test_signer(other_dir.path());
        let (body2, header2) = Envelope::seal(&other, ("repo", "19.01"), INDEX, 7, 60_000).unwrap();
        assert!(matches!(
            verifier.check(&body2, Some(&header2), "repo", "19.01", now, None),
            Err(SignError::OtherKey { .. })
        ));
        // Same key id claimed, other key's signature.
        let forged = header2.replace(&other.public_key().unwrap().id(), &verifier.pinned().id());
        assert!(matches!(
            verifier.check(&body2, Some(&forged), "repo", "19.01", now, None),
            Err(SignError::BadSignature)
        ));
        // The feed's index offered as the repo's, or another release's.
        assert!(matches!(
            verifier.check(&body, Some(&header), "feed", "19.01", now, None),
            Err(SignError::Invalid(_))
        ));
        assert!(matches!(
            verifier.check(&body, Some(&header), "repo", "20.06", now, None),
            Err(SignError::Invalid(_))
        ));
        // Expired, and replayed after a newer one was accepted.
        assert!(matches!(
            verifier.check(&body, Some(&header), "repo", "19.01", now + 60_001, None),
            Err(SignError::Expired { .. })
        ));
        assert!(matches!(
            verifier.check(
                &body,
                Some(&header),
                "repo",
                "19.01",
                now,
                Some(ok.serial + 1)
            ),
            Err(SignError::Replayed { .. })
        ));
        // The same envelope again is not older than itself.
        assert!(
            verifier
                .check(&body, Some(&header), "repo", "19.01", now, Some(ok.serial))
                .is_ok()
        );
    }

    #[test]
    fn serials_never_move_backwards() {
        let mut serials = Serials::default();
        serials.accept("repo", "19.01", 10);
        serials.accept("repo", "19.01", 5);
        serials.accept("feed", "19.01", 3);
        assert_eq!(serials.last("repo", "19.01"), Some(10));
        assert_eq!(serials.last("feed", "19.01"), Some(3));
        assert_eq!(serials.last("repo", "20.06"), None);
    }

    #[test]
    fn the_key_pair_is_made_once_private_to_its_owner_and_reread_when_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = crate::KeyFile::new(dir.path().join("repo-signing"));
        assert!(file.create_if_missing().unwrap());
        assert!(!file.create_if_missing().unwrap());
        let mode = std::fs::metadata(file.private())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let signer = Signer::new(file.clone());
        let first = signer.public_key().unwrap();
        assert_eq!(PublicKey::load(&file.public()).unwrap(), first);

        // Replication brings the active's key: the signer uses it from then on.
        let other = tempfile::tempdir().unwrap();
        let replacement = crate::KeyFile::new(other.path());
        replacement.create_if_missing().unwrap();
        std::fs::copy(replacement.private(), file.private()).unwrap();
        let now = signer.public_key().unwrap();
        assert_ne!(now, first);
        assert_eq!(now, PublicKey::load(&replacement.public()).unwrap());

        std::fs::write(file.private(), "garbage").unwrap();
        let err = signer.sign(b"x").unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
    }
}
