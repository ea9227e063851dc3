//! What happens to a path a package installs when something is already there: rpm's rules
//! for `%config` files (`rpmfilesDecideFate` and the non-overlapped config case), so that an
//! administrator's edits survive exactly as they survive `rpm -U`.

use std::io::Read;
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::package::{FLAG_NOREPLACE, FileInfo, FileKind};

/// The action for one new file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Install it (replacing what is there).
    Create,
    /// Leave what is on disk; do not install.
    Skip,
    /// Keep what is on disk; install the new one as `<path>.rpmnew`.
    AltName,
    /// Move what is on disk to `<path>.rpmsave`, then install.
    Save,
    /// Move what is on disk to `<path>.rpmorig`, then install (no package owned it).
    Backup,
}

/// The digest of a file on disk with rpm's algorithm number; `None` if unreadable or an
/// algorithm this build does not know.
pub(crate) fn disk_digest(path: &Path, algo: u32) -> Option<String> {
    fn hash<D: Digest>(path: &Path) -> Option<String> {
        let mut file = std::fs::File::open(path).ok()?;
        let mut hasher = D::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Some(hex::encode(hasher.finalize()))
    }
    match algo {
        1 => hash::<Md5>(path),
        8 => hash::<Sha256>(path),
        9 => hash::<Sha384>(path),
        10 => hash::<Sha512>(path),
        11 => hash::<Sha224>(path),
        _ => None,
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum What {
    Reg,
    Dir,
    Link,
    Other,
}

fn what_on_disk(path: &Path) -> Option<What> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let t = meta.file_type();
    Some(if t.is_symlink() {
        What::Link
    } else if t.is_dir() {
        What::Dir
    } else if t.is_file() {
        What::Reg
    } else {
        What::Other
    })
}

fn what(kind: FileKind) -> What {
    match kind {
        FileKind::Regular => What::Reg,
        FileKind::Dir => What::Dir,
        FileKind::Symlink => What::Link,
        FileKind::Special => What::Other,
    }
}

/// Whether the file on disk at `path` is what `info` describes (content or link target).
pub(crate) fn disk_matches(path: &Path, info: &FileInfo) -> bool {
    disk_matches_any(path, &[info])
}

/// Whether the file on disk at `path` is what one of `infos` describes. The file is read
/// once per digest algorithm, not once per candidate (an edited config compared with the old
/// and the new version is hashed once).
fn disk_matches_any(path: &Path, infos: &[&FileInfo]) -> bool {
    let mut digests: Vec<(u32, Option<String>)> = Vec::new();
    let mut link = None;
    infos.iter().any(|info| match info.kind {
        FileKind::Regular => match &info.digest {
            Some((algo, want)) => {
                let on_disk = match digests.iter().find(|(a, _)| a == algo) {
                    Some((_, d)) => d.clone(),
                    None => {
                        let d = disk_digest(path, *algo);
                        digests.push((*algo, d.clone()));
                        d
                    }
                };
                on_disk.as_deref() == Some(want.as_str())
            }
            None => false,
        },
        FileKind::Symlink => {
            let target = link.get_or_insert_with(|| {
                std::fs::read_link(path)
                    .ok()
                    .and_then(|t| t.to_str().map(str::to_owned))
            });
            *target == info.link
        }
        _ => true,
    })
}

/// A config file `new` that the package's previous version `old` also had (rpm's
/// `rpmfilesDecideFate`).
pub(crate) fn upgrade(path: &Path, old: &FileInfo, new: &FileInfo) -> Fate {
    let save = if new.flags & FLAG_NOREPLACE != 0 {
        Fate::AltName
    } else {
        Fate::Save
    };
    let Some(disk) = what_on_disk(path) else {
        return Fate::Create;
    };
    let (db, nw) = (what(old.kind), what(new.kind));
    if nw == What::Dir {
        return Fate::Create;
    }
    if (disk != nw && db != What::Reg && db != What::Link) || (nw != db && disk != db) {
        return save;
    } else if db != nw || (db != What::Link && db != What::Reg) {
        return Fate::Create;
    }
    if db == What::Reg {
        // Unmodified since the old package installed it, or already what the new one
        // brings: replace.
        if disk == What::Reg && disk_matches_any(path, &[old, new]) {
            return Fate::Create;
        }
        if nw == What::Reg && old.digest.is_some() && old.digest == new.digest {
            return Fate::Skip;
        }
        return save;
    }
    // Symbolic links.
    if disk == What::Link && disk_matches_any(path, &[old, new]) {
        return Fate::Create;
    }
    if nw == What::Link && old.link.is_some() && old.link == new.link {
        return Fate::Skip;
    }
    save
}

/// A config file `new` where something is on disk that no package owns.
pub(crate) fn unowned(path: &Path, new: &FileInfo) -> Fate {
    if new.is_ghost() || new.kind == FileKind::Dir {
        return Fate::Create;
    }
    let Some(disk) = what_on_disk(path) else {
        return Fate::Create;
    };
    if disk == what(new.kind) && disk_matches(path, new) {
        return Fate::Create;
    }
    if new.flags & FLAG_NOREPLACE != 0 {
        Fate::AltName
    } else {
        Fate::Backup
    }
}

#[cfg(test)]
mod tests {
    use super::super::package::FLAG_CONFIG;
    use super::*;

    fn conf(content: &str, noreplace: bool) -> FileInfo {
        FileInfo {
            path: "etc/x.conf".into(),
            kind: FileKind::Regular,
            mode: 0o644,
            user: "root".into(),
            group: "root".into(),
            mtime: 0,
            size: content.len() as u64,
            flags: FLAG_CONFIG | if noreplace { FLAG_NOREPLACE } else { 0 },
            digest: Some((8, hex::encode(Sha256::digest(content.as_bytes())))),
            link: None,
            caps: None,
        }
    }

    #[test]
    fn rpms_config_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.conf");
        let (old, new) = (conf("v1\n", true), conf("v2\n", true));
        assert_eq!(upgrade(&path, &old, &new), Fate::Create, "missing: create");
        std::fs::write(&path, "v1\n").unwrap();
        assert_eq!(
            upgrade(&path, &old, &new),
            Fate::Create,
            "unchanged: replace"
        );
        std::fs::write(&path, "edited\n").unwrap();
        assert_eq!(
            upgrade(&path, &old, &new),
            Fate::AltName,
            "edited noreplace: .rpmnew"
        );
        let (old_plain, new_plain) = (conf("v1\n", false), conf("v2\n", false));
        assert_eq!(
            upgrade(&path, &old_plain, &new_plain),
            Fate::Save,
            "edited: .rpmsave"
        );
        assert_eq!(
            upgrade(&path, &old, &conf("v1\n", true)),
            Fate::Skip,
            "package unchanged: keep edit"
        );
        std::fs::write(&path, "v2\n").unwrap();
        assert_eq!(
            upgrade(&path, &old, &new),
            Fate::Create,
            "already the new content"
        );
        std::fs::write(&path, "mine\n").unwrap();
        assert_eq!(unowned(&path, &new), Fate::AltName);
        assert_eq!(unowned(&path, &new_plain), Fate::Backup);
        std::fs::write(&path, "v2\n").unwrap();
        assert_eq!(unowned(&path, &new_plain), Fate::Create);
    }
}
