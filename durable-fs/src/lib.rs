//! Crash-safe file-system writes, the one way every stx-patch crate changes a state file, and
//! bounded reads: of a small file (a key, a certificate, an index), or of any stream whose
//! size is not trusted (an HTTP answer).
//!
//! A write goes to a temporary file beside the target (named `.tmp-…`, so [`sweep_temp`] can
//! clear what a crash left), is fsynced, renamed over the target, and then the directory is
//! fsynced so the rename itself survives a power cut. After a `kill -9` or a crash at any
//! instant, the target holds the old or the new contents, never a mix, and never nothing.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The prefix of every temporary file this crate makes.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A file-system operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct Error {
    /// The file or directory the operation failed on.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

impl From<Error> for std::io::Error {
    /// Keeps the kind; the message names the path.
    fn from(e: Error) -> Self {
        std::io::Error::new(e.source.kind(), e.to_string())
    }
}

/// The result of a durable operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Reads `path` whole unless it is larger than `limit` bytes: then an `InvalidData` error
/// saying so, without reading past the limit (a file that should be small never fills memory).
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(at(path))?;
    read_at_most(file, limit).map_err(at(path))
}

/// Reads `reader` to its end unless it holds more than `limit` bytes: then an `InvalidData`
/// error, having read at most one byte past the limit (an HTTP answer, a pipe).
pub fn read_at_most(reader: impl std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Turns an `io::Error` on `path` into an [`Error`].
pub fn at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error {
        path: path.to_owned(),
        source,
    }
}

/// Replaces `path` with `bytes`, atomically and durably (creating its directory if needed).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |file| file.write_all(bytes))
}

/// Replaces `path` with whatever `fill` writes to the temporary file (streamed writers), then
/// makes it durable as [`write`] does. Nothing changes at `path` if `fill` fails.
pub fn write_with<T>(path: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<T>) -> Result<T> {
    place(path, None, fill)
}

/// Creates `path` with `bytes` and permission bits `mode`, durably; fails if it exists
/// (keys and other files that must never be overwritten).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    place(path, Some(mode), |file| file.write_all(bytes))
}

/// The one way a file appears: a temporary file beside it, filled, fsynced, renamed over
/// `path` (or, with a `mode`, created there only if nothing is), and the directory fsynced.
fn place<T>(
    path: &Path,
    new_with_mode: Option<u32>,
    fill: impl FnOnce(&mut File) -> std::io::Result<T>,
) -> Result<T> {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    if let Some(mode) = new_with_mode {
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    let mut temp = builder.tempfile_in(dir).map_err(at(dir))?;
    let value = fill(temp.as_file_mut()).map_err(at(temp.path()))?;
    temp.as_file().sync_all().map_err(at(temp.path()))?;
    if new_with_mode.is_some() {
        temp.persist_noclobber(path)
    } else {
        temp.persist(path)
    }
    .map_err(|e| at(path)(e.error))?;
    sync_dir(dir)?;
    Ok(value)
}

/// Renames durably: both directories are fsynced (the target's is created if needed).
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    let to_dir = parent(to);
    std::fs::create_dir_all(to_dir).map_err(at(to_dir))?;
    std::fs::rename(from, to).map_err(at(from))?;
    sync_dir(to_dir)?;
    let from_dir = parent(from);
    if from_dir != to_dir {
        sync_dir(from_dir)?;
    }
    Ok(())
}

/// Removes a file if present, durably; returns whether it was there.
pub fn remove_file(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(parent(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(at(path)(e)),
    }
}

/// Places a copy of `src` at `dst` atomically: a hard link when possible (same file system,
/// no data copied), else a full fsynced copy; either way through a temporary name, a rename
/// and an fsync of the directory.
pub fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    let dir = parent(dst);
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let temp = dir.join(format!(
        "{TEMP_PREFIX}link-{}",
        dst.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&temp);
    if std::fs::hard_link(src, &temp).is_err() {
        std::fs::copy(src, &temp).map_err(at(src))?;
        sync_file(&temp)?;
    }
    std::fs::rename(&temp, dst).map_err(at(dst))?;
    sync_dir(dir)
}

/// Copies `src` over `dst` atomically and durably, with `src`'s permission bits (always a
/// copy, never a link: the copy must not change when `src` does).
pub fn copy(src: &Path, dst: &Path) -> Result<()> {
    let mut from = File::open(src).map_err(at(src))?;
    let permissions = from.metadata().map_err(at(src))?.permissions();
    write_with(dst, |to| {
        std::io::copy(&mut from, to)?;
        to.set_permissions(permissions)
    })
}

/// fsyncs a file's contents.
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(at(path))
}

/// fsyncs a directory (its entries: creations, renames, removals).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

/// Removes leftover temporary files (and directories) named `.tmp-*` under `dir`, at any
/// depth, that a crash mid-write left; returns how many.
pub fn sweep_temp(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for entry in entries {
        let entry = entry.map_err(at(dir))?;
        let name = entry.file_name();
        let path = entry.path();
        if name.to_string_lossy().starts_with(TEMP_PREFIX) {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(at(&path))?;
            } else {
                std::fs::remove_file(&path).map_err(at(&path))?;
            }
            removed += 1;
        } else if path.is_dir() {
            removed += sweep_temp(&path)?;
        }
    }
    Ok(removed)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bounded_reads_up_to_the_limit_and_refuses_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"12345");
        let err = read_bounded(&path, 4).unwrap_err();
        assert_eq!(err.source.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("larger than 4 bytes"), "{err}");
        let missing = read_bounded(&dir.path().join("none"), 4).unwrap_err();
        assert_eq!(missing.source.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn write_replaces_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_failing_writer_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"old").unwrap();
        let err = write_with(&path, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(sweep_temp(dir.path()).unwrap(), 0);
    }

    #[test]
    fn write_new_refuses_to_overwrite_and_sets_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_new(&path, b"secret", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = write_new(&path, b"other", 0o600).unwrap_err();
        assert_eq!(err.source.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    }

    #[test]
    fn sweep_removes_what_a_crash_left_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/.tmp-dir")).unwrap();
        std::fs::write(dir.path().join("a/.tmp-x"), b"torn").unwrap();
        std::fs::write(dir.path().join("a/keep"), b"whole").unwrap();
        assert_eq!(sweep_temp(dir.path()).unwrap(), 2);
        assert!(dir.path().join("a/keep").exists());
    }

    #[test]
    fn copy_and_link_or_copy_place_whole_files_and_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"data").unwrap();
        std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        copy(&src, &dir.path().join("c/copy")).unwrap();
        let mode = std::fs::metadata(dir.path().join("c/copy"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o644
        );
        link_or_copy(&src, &dir.path().join("l/link")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("c/copy")).unwrap(), b"data");
        assert_eq!(std::fs::read(dir.path().join("l/link")).unwrap(), b"data");
        assert!(remove_file(&dir.path().join("c/copy")).unwrap());
        assert!(!remove_file(&dir.path().join("c/copy")).unwrap());
        let missing = dir.path().join("missing");
        let err = copy(&missing, &dir.path().join("x")).unwrap_err();
        assert!(err.to_string().starts_with(&missing.display().to_string()));
    }
}
