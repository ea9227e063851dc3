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

/// A manifest builder that remembers hashes between builds.
#[derive(Default)]
pub(crate) struct Hasher {
    cache: Mutex<HashMap<PathBuf, (StatKey, String)>>,
}

impl Hasher {
    /// The manifest of `root` (following nothing outside it: symlinks are refused).
    pub(crate) fn manifest(&self, root: &Path) -> std::io::Result<Manifest> {
        let mut manifest = Manifest::default();
        let mut seen = Vec::new();
        self.walk(root, root, &mut manifest, &mut seen)?;
        manifest.dirs.sort();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|p, _| seen.contains(p));
        Ok(manifest)
    }

    /// The identity a path had when it was last hashed.
    pub(crate) fn hashed_as(&self, path: &Path) -> Option<StatKey> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(path).map(|(k, _)| *k)
    }

    fn walk(
        &self,
        root: &Path,
        dir: &Path,
        manifest: &mut Manifest,
        seen: &mut Vec<PathBuf>,
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
                // Removed while we walked (a concurrent rename): not part of this state.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                manifest.dirs.push(rel);
                self.walk(root, &path, manifest, seen)?;
            } else if meta.is_file() {
                let key = stat_key(&meta);
                let cached = {
                    let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    cache
                        .get(&path)
                        .filter(|(k, _)| *k == key)
                        .map(|(_, h)| h.clone())
                };
                let sha256 = match cached {
                    Some(h) => h,
                    None => match hash_file(&path) {
                        Ok((h, _)) => h,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    },
                };
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(path.clone(), (key, sha256.clone()));
                seen.push(path);
                manifest.files.insert(
                    rel,
                    Entry {
                        sha256,
                        size: meta.size(),
                        mode: meta.permissions().mode() & 0o777,
                    },
                );
            }
            // Symlinks, sockets and the like are not state.
        }
        Ok(())
    }
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// SHA-256 (hex) and size of a file, in one streaming pass.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Whether a relative path from a peer is safe to create under a state directory.
pub(crate) fn safe_relative(rel: &str) -> bool {
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
            hash_file(&d.join("metadata/applied/P1-metadata.xml"))
                .unwrap()
                .0
        );
        // A replaced file (new inode) is rehashed.
        std::fs::write(d.join("new"), "<patch>v2</patch>").unwrap();
        std::fs::rename(d.join("new"), d.join("metadata/applied/P1-metadata.xml")).unwrap();
        let m2 = hasher.manifest(d).unwrap();
        assert_ne!(m2.files["metadata/applied/P1-metadata.xml"], *e);
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
