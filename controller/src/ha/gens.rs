//! A replicated state directory: `<state>/current` is a symlink to one complete generation
//! `<state>/gen-<N>`. The standby builds generation N+1 beside it — unchanged files hard
//! linked from N, new content from blobs the active sent (each checked against its SHA-256)
//! — and swaps the symlink with one rename. A crash at any moment leaves `current` pointing
//! at a complete generation: the old one or the new one.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::manifest::{self, Manifest};

/// Why a state change from the peer could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GenError {
    /// File-system failure.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The peer sent something inconsistent.
    #[error("{0}")]
    Invalid(String),
}

impl From<durable_fs::Error> for GenError {
    fn from(e: durable_fs::Error) -> Self {
        GenError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenError + '_ {
    move |source| GenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The generations of one state directory.
pub(crate) struct Generations {
    root: PathBuf,
}

const CURRENT: &str = "current";
const INCOMING: &str = "incoming";
/// Entries of the state directory that are not part of any generation.
const OUTSIDE: &[&str] = &[CURRENT, INCOMING, "ha.json", "current.tmp"];

fn gen_name(n: u64) -> String {
    format!("gen-{n:08}")
}

fn gen_number(name: &str) -> Option<u64> {
    name.strip_prefix("gen-")?.parse().ok()
}

fn sync_dir(dir: &Path) -> Result<(), GenError> {
    Ok(durable_fs::sync_dir(dir)?)
}

impl Generations {
    /// Opens `root`, turning a plain state directory into generation 1 the first time (a
    /// crash half-way is finished on the next open), and removing generations a crash left
    /// behind.
    pub(crate) fn open(root: &Path) -> Result<Generations, GenError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let gens = Generations {
            root: root.to_owned(),
        };
        let current = root.join(CURRENT);
        if std::fs::symlink_metadata(&current).is_err() {
            // First start as a pair: everything already here becomes generation 1.
            let first = root.join(gen_name(1));
            std::fs::create_dir_all(&first).map_err(io(&first))?;
            for entry in std::fs::read_dir(root).map_err(io(root))? {
                let entry = entry.map_err(io(root))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if OUTSIDE.contains(&name.as_str()) || gen_number(&name).is_some() {
                    continue;
                }
                let to = first.join(&name);
                std::fs::rename(entry.path(), &to).map_err(io(&to))?;
            }
            sync_dir(&first)?;
            gens.point_current_at(1)?;
        }
        gens.remove_old()?;
        let _ = std::fs::remove_file(root.join("current.tmp"));
        Ok(gens)
    }

    /// The path the controller's state lives under (the `current` symlink).
    pub(crate) fn current(&self) -> PathBuf {
        self.root.join(CURRENT)
    }

    fn current_number(&self) -> Result<u64, GenError> {
        let link = self.current();
        let target = std::fs::read_link(&link).map_err(io(&link))?;
        target.to_str().and_then(gen_number).ok_or_else(|| {
            GenError::Invalid(format!("{} points at {}", link.display(), target.display()))
        })
    }

    fn point_current_at(&self, n: u64) -> Result<(), GenError> {
        let tmp = self.root.join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(gen_name(n), &tmp).map_err(io(&tmp))?;
        Ok(durable_fs::rename(&tmp, &self.current())?)
    }

    /// Where blobs for the next generation are staged.
    fn incoming(&self) -> PathBuf {
        self.root.join(INCOMING)
    }

    /// Whether a blob with this hash is staged.
    pub(crate) fn has_blob(&self, sha256: &str) -> bool {
        self.incoming().join(sha256).is_file()
    }

    /// Stages one blob from the peer, checking its hash and size as it streams in.
    pub(crate) fn stage_blob(
        &self,
        sha256: &str,
        size: u64,
        mut data: impl std::io::Read,
    ) -> Result<(), GenError> {
        if !manifest::is_sha256(sha256) {
            return Err(GenError::Invalid(format!("bad blob name {sha256:?}")));
        }
        // Written durably under its hash only once the hash and size match.
        let path = self.incoming().join(sha256);
        durable_fs::write_with(&path, |file| {
            let (got, received) = manifest::hash_copy(&mut data, file, size)?;
            if got != sha256 || received != size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("received {received} bytes hashing to {got}"),
                ));
            }
            Ok(())
        })
        .map_err(|e| {
            if e.source.kind() == std::io::ErrorKind::InvalidData {
                GenError::Invalid(format!("blob {sha256}: {}", e.source))
            } else {
                e.into()
            }
        })
    }

    /// The current generation's manifest (hashes cached by file identity, so this is a walk
    /// of `stat` calls once the content is known).
    pub(crate) fn current_manifest(&self, hasher: &manifest::Hasher) -> Result<Manifest, GenError> {
        let current = self.current();
        hasher.manifest(&current).map_err(io(&current))
    }

    /// The blobs `wanted` needs that neither the current generation nor the staging area has.
    pub(crate) fn missing(&self, wanted: &Manifest, have: &Manifest) -> Vec<String> {
        let held: std::collections::HashSet<&str> =
            have.files.values().map(|e| e.sha256.as_str()).collect();
        let mut missing: Vec<String> = wanted
            .files
            .values()
            .filter(|e| !held.contains(e.sha256.as_str()) && !self.has_blob(&e.sha256))
            .map(|e| e.sha256.clone())
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }

    /// Builds the generation `wanted` describes and makes it current. `have` is the current
    /// generation's manifest. The caller must reopen anything that holds files of the old
    /// generation, then call [`Generations::remove_old`].
    pub(crate) fn commit(&self, wanted: &Manifest, have: &Manifest) -> Result<(), GenError> {
        wanted.check().map_err(GenError::Invalid)?;
        let old = self.current_number()?;
        let next = old + 1;
        let old_dir = self.root.join(gen_name(old));
        let new_dir = self.root.join(gen_name(next));
        if new_dir.exists() {
            std::fs::remove_dir_all(&new_dir).map_err(io(&new_dir))?;
        }
        std::fs::create_dir_all(&new_dir).map_err(io(&new_dir))?;
        // Content already held: any current file with the same hash.
        let mut by_hash: HashMap<&str, PathBuf> = HashMap::new();
        for (rel, e) in &have.files {
            by_hash
                .entry(&e.sha256)
                .or_insert_with(|| old_dir.join(rel));
        }
        let mut dirs: Vec<&String> = wanted.dirs.iter().collect();
        dirs.sort();
        for rel in dirs {
            let d = new_dir.join(rel);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        let incoming = self.incoming();
        let mut touched_dirs = std::collections::BTreeSet::new();
        for (rel, e) in &wanted.files {
            let to = new_dir.join(rel);
            let from = by_hash
                .get(e.sha256.as_str())
                .cloned()
                .unwrap_or_else(|| incoming.join(&e.sha256));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
                touched_dirs.insert(parent.to_owned());
            }
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(|source| GenError::Io {
                    path: from.clone(),
                    source,
                })?;
                durable_fs::sync_file(&to)?;
            }
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(e.mode))
                .map_err(io(&to))?;
        }
        touched_dirs.insert(new_dir.clone());
        for d in &touched_dirs {
            sync_dir(d)?;
        }
        self.point_current_at(next)
    }

    /// Removes every generation but the current one, and the staged blobs.
    pub(crate) fn remove_old(&self) -> Result<(), GenError> {
        let live = self.current_number()?;
        for entry in std::fs::read_dir(&self.root).map_err(io(&self.root))? {
            let entry = entry.map_err(io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if gen_number(&name).is_some_and(|n| n != live) || name == INCOMING {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::manifest::Hasher;

    #[test]
    fn a_plain_directory_becomes_generation_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("metadata/applied")).unwrap();
        std::fs::write(dir.path().join("metadata/applied/P1"), "x").unwrap();
        std::fs::write(dir.path().join("ha.json"), "{}").unwrap();
        let gens = Generations::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(gens.current().join("metadata/applied/P1")).unwrap(),
            "x"
        );
        assert!(dir.path().join("ha.json").exists());
        // Reopening changes nothing.
        let gens = Generations::open(dir.path()).unwrap();
        assert_eq!(gens.current_number().unwrap(), 1);
    }

    #[test]
    fn a_commit_builds_the_peer_state_from_held_files_and_blobs() {
        let active = tempfile::tempdir().unwrap();
        let a = active.path();
        std::fs::create_dir_all(a.join("packages")).unwrap();
        std::fs::write(a.join("packages/a.rpm"), "rpm-a").unwrap();
        std::fs::write(a.join("packages/b.rpm"), "rpm-b").unwrap();
        std::fs::create_dir_all(a.join("empty")).unwrap();
        let hasher = Hasher::default();
        let wanted = hasher.manifest(a).unwrap();

        let standby = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(standby.path().join("packages")).unwrap();
        std::fs::write(standby.path().join("packages/a.rpm"), "rpm-a").unwrap();
        std::fs::write(standby.path().join("stale"), "gone").unwrap();
        let gens = Generations::open(standby.path()).unwrap();
        let have = gens.current_manifest(&hasher).unwrap();
        let missing = gens.missing(&wanted, &have);
        assert_eq!(missing, vec![wanted.files["packages/b.rpm"].sha256.clone()]);
        // A blob that does not match its hash is refused.
        assert!(gens.stage_blob(&missing[0], 5, &b"wrong"[..]).is_err());
        gens.stage_blob(&missing[0], 5, &b"rpm-b"[..]).unwrap();
        assert!(gens.missing(&wanted, &have).is_empty());
        gens.commit(&wanted, &have).unwrap();
        gens.remove_old().unwrap();
        let now = hasher.manifest(&gens.current()).unwrap();
        assert_eq!(now, wanted);
        assert_eq!(gens.current_manifest(&hasher).unwrap(), wanted);
        assert!(!gens.current().join("stale").exists());
    }

    #[test]
    fn unsafe_paths_from_the_peer_are_refused() {
        let standby = tempfile::tempdir().unwrap();
        let gens = Generations::open(standby.path()).unwrap();
        let mut wanted = Manifest::default();
        wanted.dirs.push("../escape".into());
        assert!(gens.commit(&wanted, &Manifest::default()).is_err());
    }
}
