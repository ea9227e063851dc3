//! What a controller's state directory holds, file by file: path → content hash, size and
//! mode. Two controllers hold the same state when their manifests are equal; the difference
//! is what replication sends. Hashes are cached by (path, size, mtime, inode): every state
//! file is replaced by rename, never rewritten in place, so a file whose stat is unchanged
//! has unchanged content.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One file of the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// SHA-256 of the content, hex.
    pub(crate) sha256: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Permission bits (semantic scripts are executable).
    pub(crate) mode: u32,
}

/// Every file (and directory) of a state directory, by relative path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) files: BTreeMap<String, Entry>,
    pub(crate) dirs: Vec<String>,
}

impl Manifest {
    /// Checks a manifest from the peer: every path safe to create under a state directory,
    /// every hash a SHA-256 in hex (hashes name staged blobs).
    pub(crate) fn check(&self) -> Result<(), String> {
        for rel in self.files.keys().chain(self.dirs.iter()) {
            if !safe_relative(rel) {
                return Err(format!("unsafe path {rel:?}"));
            }
        }
        match self.files.values().find(|e| !is_sha256(&e.sha256)) {
            Some(e) => Err(format!("bad content hash {:?}", e.sha256)),
            None => Ok(()),
        }
    }
}

/// Whether `s` is a SHA-256 in lower-case hex.
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Names that are never state: locks, scratch space, half-written temporaries, and the
/// standby's own bookkeeping.
pub(crate) fn excluded(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    rel == "tmp" || rel.starts_with("tmp/") || name == ".lock" || name.starts_with(".tmp")
}

/// What identifies a file's content without reading it: size, mtime and inode.
pub(crate) type StatKey = (u64, i64, i64, u64);

/// The identity of an open file.
pub(crate) fn stat_key(meta: &std::fs::Metadata) -> StatKey {
    (meta.size(), meta.mtime(), meta.mtime_nsec(), meta.ino())
}

/// A manifest builder that remembers hashes between builds, by file identity (device and
/// inode): hard links — the store links packages into the repository — are hashed once.
#[derive(Default)]
pub(crate) struct Hasher {
    cache: Mutex<HashMap<(u64, u64), (StatKey, String)>>,
}

/// A file found by the walk.
struct Found {
    rel: String,
    path: PathBuf,
    meta: std::fs::Metadata,
}

impl Hasher {
    /// The manifest of `root` (following nothing outside it: symlinks are refused). Content
    /// not hashed before is hashed on every core.
    pub(crate) fn manifest(&self, root: &Path) -> std::io::Result<Manifest> {
        let mut manifest = Manifest::default();
        let mut found = Vec::new();
        walk(root, root, &mut manifest, &mut found)?;
        manifest.dirs.sort();
        let unknown: Vec<usize> = (0..found.len())
            .filter(|&i| self.hash_of(&found[i].meta).is_none())
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(unknown.len().max(1));
        let hashed: Vec<Vec<(usize, std::io::Result<Hashed>)>> = std::thread::scope(|scope| {
            let jobs: Vec<_> = (0..workers)
                .map(|w| {
                    let (unknown, found) = (&unknown, &found);
                    scope.spawn(move || {
                        (w..unknown.len())
                            .step_by(workers)
                            .map(|k| (unknown[k], hash_open(&found[unknown[k]].path)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|j| {
                    j.join()
                        .map_err(|_| std::io::Error::other("a hashing thread panicked"))
                })
                .collect::<std::io::Result<_>>()
        })?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for (i, result) in hashed.into_iter().flatten() {
            match result {
                // The hash belongs to the file that was opened; if the path was replaced since
                // the walk, that is the newer file, and the manifest says so.
                Ok(Hashed { meta, sha256 }) => {
                    cache.insert((meta.dev(), meta.ino()), (stat_key(&meta), sha256));
                    found[i].meta = meta;
                }
                // Removed while we walked (a concurrent rename): not part of this state.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for f in &found {
            let id = (f.meta.dev(), f.meta.ino());
            let Some((key, sha256)) = cache.get(&id) else {
                continue;
            };
            if *key != stat_key(&f.meta) {
                continue;
            }
            seen.insert(id);
            manifest.files.insert(
                f.rel.clone(),
                Entry {
                    sha256: sha256.clone(),
                    size: f.meta.size(),
                    mode: f.meta.permissions().mode() & 0o777,
                },
            );
        }
        cache.retain(|id, _| seen.contains(id));
        Ok(manifest)
    }

    /// The hash of an open file's content, if it is the content last hashed (same inode,
    /// size and mtime: state files are replaced, never rewritten in place).
    pub(crate) fn hash_of(&self, meta: &std::fs::Metadata) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&(meta.dev(), meta.ino()))
            .filter(|(k, _)| *k == stat_key(meta))
            .map(|(_, h)| h.clone())
    }
}

/// A file's hash, with the identity of the very file that was read.
struct Hashed {
    meta: std::fs::Metadata,
    sha256: String,
}

fn hash_open(path: &Path) -> std::io::Result<Hashed> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let (sha256, _) = hash_copy(file, std::io::sink(), u64::MAX)?;
    Ok(Hashed { meta, sha256 })
}

fn walk(
    root: &Path,
    dir: &Path,
    manifest: &mut Manifest,
    found: &mut Vec<Found>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let rel = relative(root, &path);
        if excluded(&rel) {
            continue;
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            manifest.dirs.push(rel);
            walk(root, &path, manifest, found)?;
        } else if meta.is_file() {
            found.push(Found { rel, path, meta });
        }
        // Symlinks, sockets and the like are not state.
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Copies `from` into `to`, hashing on the way: SHA-256 (hex) and the size. More than `limit`
/// bytes is an `InvalidData` error (a peer sending more than it announced).
pub(crate) fn hash_copy(
    mut from: impl Read,
    mut to: impl std::io::Write,
    limit: u64,
) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("longer than its {limit} bytes"),
            ));
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Whether a relative path from a peer is safe to create under a state directory.
fn safe_relative(rel: &str) -> bool {
    !rel.is_empty()
        && rel.len() < 4096
        && !rel.starts_with('/')
        && !rel.contains('\0')
        && !rel.contains('\\')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !excluded(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_state_and_skips_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("metadata/applied")).unwrap();
        std::fs::create_dir_all(d.join("tmp/upload")).unwrap();
        std::fs::write(d.join("metadata/applied/P1-metadata.xml"), "<patch/>").unwrap();
        std::fs::write(d.join("tmp/upload/x"), "scratch").unwrap();
        std::fs::write(d.join(".lock"), "").unwrap();
        std::fs::write(d.join("metadata/.tmp-abc"), "half").unwrap();
        let hasher = Hasher::default();
        let m = hasher.manifest(d).unwrap();
        assert_eq!(
            m.files.keys().collect::<Vec<_>>(),
            vec!["metadata/applied/P1-metadata.xml"]
        );
        assert_eq!(m.dirs, vec!["metadata", "metadata/applied"]);
        let e = &m.files["metadata/applied/P1-metadata.xml"];
        assert_eq!(e.size, 8);
        assert_eq!(
            e.sha256,
            hash_open(&d.join("metadata/applied/P1-metadata.xml"))
                .unwrap()
                .sha256
        );
        // A replaced file (new inode) is rehashed.
        std::fs::write(d.join("new"), "<patch>v2</patch>").unwrap();
        std::fs::rename(d.join("new"), d.join("metadata/applied/P1-metadata.xml")).unwrap();
        let m2 = hasher.manifest(d).unwrap();
        assert_ne!(m2.files["metadata/applied/P1-metadata.xml"], *e);
    }

    #[test]
    fn manifests_from_the_peer_are_checked() {
        let entry = |sha256: &str| Entry {
            sha256: sha256.into(),
            size: 1,
            mode: 0o644,
        };
        let mut m = Manifest::default();
        m.files.insert("a".into(), entry(&"0".repeat(64)));
        assert_eq!(m.check(), Ok(()));
        m.files.insert("b".into(), entry("../../etc/shadow"));
        assert!(m.check().unwrap_err().contains("bad content hash"));
        let mut m = Manifest::default();
        m.dirs.push("a/../..".into());
        assert!(m.check().unwrap_err().contains("unsafe path"));
    }

    #[test]
    fn peer_paths_are_checked() {
        assert!(safe_relative("packages/19.01/a.rpm"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a//b",
            "tmp/x",
            "a/.lock",
            "a\\b",
        ] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }
}
