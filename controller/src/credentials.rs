//! Per-host credentials: a host enrols once with the shared enrolment token and gets a token
//! of its own; from then on a credential acts only for its own host (its reports, its
//! orders), and `drop-host` revokes it. Only SHA-256 hashes are kept, in
//! `<state>/host-credentials.json` (replicated with the rest of the state).
//!
//! Why tokens and not client certificates: a token needs no CA on the controller and no
//! certificate renewal on thousands of hosts, rides inside the TLS channel the agent already
//! verifies, and is revoked by deleting one line; mutual TLS would add a second PKI for the
//! same guarantee.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file, under the state directory.
pub(crate) const FILE: &str = "host-credentials.json";

/// Why a credential operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    /// The host holds a credential already.
    #[error(
        "{0} is enrolled already; to enrol it again (a reinstalled host), drop it first: sw-patch drop-host {0}"
    )]
    Enrolled(String),
    /// The file cannot be read or written.
    #[error(
        "{path}: {reason}; the controller cannot tell hosts apart without it: restore it from the standby or a backup, or move it aside to make every host enrol again"
    )]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// As many hosts as the controller takes are enrolled.
    #[error(
        "{0} hosts are enrolled, the most this controller takes (max_hosts); drop hosts that are gone (sw-patch drop-host HOST) or raise max_hosts"
    )]
    Full(usize),
    /// No randomness for a new token.
    #[error("cannot draw randomness for a host credential: {0}")]
    Random(String),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// Host name → SHA-256 (hex) of its token.
    hosts: BTreeMap<String, String>,
}

/// The enrolled hosts.
#[derive(Debug)]
pub(crate) struct HostCredentials {
    path: PathBuf,
    stored: Stored,
    /// Token hash → host: every agent request is looked up here. A lookup by the SHA-256 of
    /// the presented token needs no constant-time scan: its timing can only tell an attacker
    /// about hashes of guesses, never about a stored token.
    by_hash: HashMap<String, String>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl HostCredentials {
    /// Reads the file under `state_dir` (none yet: no host enrolled). A file that cannot be
    /// read is an error, never "no hosts".
    pub(crate) fn load(state_dir: &Path) -> Result<HostCredentials, CredentialError> {
        let path = state_dir.join(FILE);
        let failed = |reason: String| CredentialError::File {
            path: path.clone(),
            reason,
        };
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(failed(e.to_string())),
        };
        let by_hash = stored
            .hosts
            .iter()
            .map(|(host, hash)| (hash.clone(), host.clone()))
            .collect();
        Ok(HostCredentials {
            path,
            stored,
            by_hash,
        })
    }

    fn save(&self) -> Result<(), CredentialError> {
        let bytes = serde_json::to_vec_pretty(&self.stored).map_err(|e| CredentialError::File {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        durable_fs::write(&self.path, &bytes).map_err(|e| CredentialError::File {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// A new credential for `host`, which must not hold one.
    pub(crate) fn enrol(
        &mut self,
        host: &str,
        max_hosts: usize,
    ) -> Result<String, CredentialError> {
        if self.stored.hosts.contains_key(host) {
            return Err(CredentialError::Enrolled(host.to_owned()));
        }
        if self.stored.hosts.len() >= max_hosts {
            return Err(CredentialError::Full(max_hosts));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| CredentialError::Random(e.to_string()))?;
        let token = hex::encode(bytes);
        let hashed = hash(&token);
        self.stored.hosts.insert(host.to_owned(), hashed.clone());
        if let Err(e) = self.save() {
            self.stored.hosts.remove(host);
            return Err(e);
        }
        self.by_hash.insert(hashed, host.to_owned());
        Ok(token)
    }

    /// Revokes `host`'s credential; whether it had one.
    pub(crate) fn revoke(&mut self, host: &str) -> Result<bool, CredentialError> {
        let Some(old) = self.stored.hosts.remove(host) else {
            return Ok(false);
        };
        if let Err(e) = self.save() {
            self.stored.hosts.insert(host.to_owned(), old);
            return Err(e);
        }
        self.by_hash.remove(&old);
        Ok(true)
    }

    /// The host a presented token belongs to.
    pub(crate) fn host_of(&self, presented: &str) -> Option<String> {
        if presented.is_empty() {
            return None;
        }
        self.by_hash.get(&hash(presented)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_names_its_own_host_until_revoked_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut creds = HostCredentials::load(dir.path()).unwrap();
        let a = creds.enrol("compute-0", 10).unwrap();
        let b = creds.enrol("compute-1", 10).unwrap();
        assert_ne!(a, b);
        assert!(matches!(
            creds.enrol("compute-0", 10),
            Err(CredentialError::Enrolled(_))
        ));
        assert_eq!(creds.host_of(&a).as_deref(), Some("compute-0"));
        assert_eq!(creds.host_of(&b).as_deref(), Some("compute-1"));
        assert_eq!(creds.host_of("guess"), None);
        assert_eq!(creds.host_of(""), None);
        // Only hashes are on disk.
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(!text.contains(&a) && text.contains(&hash(&a)));

        let reopened = HostCredentials::load(dir.path()).unwrap();
        assert_eq!(reopened.host_of(&a).as_deref(), Some("compute-0"));
        assert!(creds.revoke("compute-0").unwrap());
        assert!(!creds.revoke("compute-0").unwrap());
        assert_eq!(creds.host_of(&a), None);
        assert!(creds.enrol("compute-0", 10).is_ok());
    }

    #[test]
    fn enrolment_stops_at_the_host_cap_until_a_host_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut creds = HostCredentials::load(dir.path()).unwrap();
        for i in 0..3 {
            creds.enrol(&format!("compute-{i}"), 3).unwrap();
        }
        let err = creds.enrol("compute-3", 3).unwrap_err();
        assert!(matches!(err, CredentialError::Full(3)));
        assert!(err.to_string().contains("drop-host"), "{err}");
        assert!(creds.revoke("compute-0").unwrap());
        assert!(creds.enrol("compute-3", 3).is_ok());
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it_never_no_hosts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "{not json").unwrap();
        let err = HostCredentials::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE) && err.contains("restore it"), "{err}");
    }
}
