//! Whether a repository's files are what its index says (the precheck's consistency check):
//! every entry present, with its size and SHA-256. Each file is read once, streaming.

use std::path::{Component, Path, PathBuf};

use host_state::protocol::RepoIndex;

/// A package the index lists that the repository does not hold as listed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RepoProblem {
    /// The entry's path leaves the repository (the index is damaged or forged).
    #[error("{0}: the index names a path outside the repository")]
    UnsafePath(String),
    /// No file.
    #[error("{}: missing", .0.display())]
    Missing(PathBuf),
    /// The file cannot be read.
    #[error("{}: cannot be read: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another size than the index says.
    #[error("{}: {actual} bytes, the index says {expected}", path.display())]
    Size {
        /// The file.
        path: PathBuf,
        /// The index's size.
        expected: u64,
        /// The file's.
        actual: u64,
    },
    /// Other contents than the index says.
    #[error("{}: its SHA-256 is not the index's", .0.display())]
    Checksum(PathBuf),
}

/// Checks every entry of `index` against the files under `dir` (the repository root the
/// entries' paths are relative to).
pub fn check_repository(dir: &Path, index: &RepoIndex) -> Vec<RepoProblem> {
    index
        .packages
        .iter()
        .filter_map(|entry| check_entry(dir, &entry.path, entry.size, &entry.sha256))
        .collect()
}

fn check_entry(dir: &Path, relative: &str, size: u64, sha256: &str) -> Option<RepoProblem> {
    let rel = Path::new(relative);
    if relative.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Some(RepoProblem::UnsafePath(relative.to_owned()));
    }
    let path = dir.join(rel);
    let unreadable = |e: std::io::Error| RepoProblem::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(RepoProblem::Missing(path));
        }
        Err(e) => return Some(unreadable(e)),
    };
    let actual = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Some(unreadable(e)),
    };
    if actual != size {
        return Some(RepoProblem::Size {
            path,
            expected: size,
            actual,
        });
    }
    let digest = match patch_sign::sha256_of(&mut file) {
        Ok((_, digest)) => digest,
        Err(e) => return Some(unreadable(e)),
    };
    (!hex::encode(digest).eq_ignore_ascii_case(sha256)).then_some(RepoProblem::Checksum(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_state::protocol::IndexEntry;

    fn entry(path: &str, data: &[u8]) -> IndexEntry {
        IndexEntry {
            id: patch_format::PackageId::new("p", patch_format::Evr::new(0, "1", "1"), "x86_64"),
            size: data.len() as u64,
            sha256: hex::encode(patch_sign::sha256_of(data).unwrap().1),
            path: path.into(),
            patch: None,
            reboot_required: false,
            personalities: Vec::new(),
        }
    }

    #[test]
    fn each_kind_of_damage_is_named_and_a_sound_repository_passes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("Packages/x86_64")).unwrap();
        let write = |name: &str, data: &[u8]| {
            std::fs::write(dir.path().join("Packages/x86_64").join(name), data).unwrap()
        };
        write("good.rpm", b"good");
        write("short.rpm", b"sho");
        write("changed.rpm", b"chan9ed");
        let index = |packages| RepoIndex {
            release: "19.01".into(),
            op_counter: 1,
            packages,
            restart_scripts: Vec::new(),
        };
        assert!(
            check_repository(
                dir.path(),
                &index(vec![entry("Packages/x86_64/good.rpm", b"good")])
            )
            .is_empty()
        );
        let problems = check_repository(
            dir.path(),
            &index(vec![
                entry("Packages/x86_64/good.rpm", b"good"),
                entry("Packages/x86_64/gone.rpm", b"gone"),
                entry("Packages/x86_64/short.rpm", b"short"),
                entry("Packages/x86_64/changed.rpm", b"changed"),
                entry("../escape.rpm", b"x"),
            ]),
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{text:?}");
        assert!(text[0].ends_with("gone.rpm: missing"), "{text:?}");
        assert!(
            text[1].ends_with("short.rpm: 3 bytes, the index says 5"),
            "{text:?}"
        );
        assert!(
            text[2].ends_with("changed.rpm: its SHA-256 is not the index's"),
            "{text:?}"
        );
        assert!(text[3].contains("outside the repository"), "{text:?}");
    }
}
