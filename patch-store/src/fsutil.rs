//! Durable file-system primitives: every state change is a temp file + fsync + rename + fsync
//! of the directory, so a crash leaves the old or the new version, never a torn one.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::StoreError;

/// Writes `data` to `path` atomically and durably.
pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(StoreError::io(dir))?;
    temp.write_all(data).map_err(StoreError::io(temp.path()))?;
    temp.as_file()
        .sync_all()
        .map_err(StoreError::io(temp.path()))?;
    temp.persist(path)
        .map_err(|e| StoreError::io(path)(e.error))?;
    sync_dir(dir)
}

/// Renames durably (both directories fsynced).
pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    let to_dir = parent(to);
    std::fs::create_dir_all(to_dir).map_err(StoreError::io(to_dir))?;
    std::fs::rename(from, to).map_err(StoreError::io(from))?;
    sync_dir(to_dir)?;
    let from_dir = parent(from);
    if from_dir != to_dir {
        sync_dir(from_dir)?;
    }
    Ok(())
}

/// Removes a file if present, durably.
pub(crate) fn remove_file(path: &Path) -> Result<bool, StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(parent(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path)(e)),
    }
}

/// Places a copy of `src` at `dst` atomically: a hard link when possible (same file system,
/// no data copied), else a full copy; either way through a temporary name and a rename.
pub(crate) fn link_or_copy(src: &Path, dst: &Path) -> Result<(), StoreError> {
    let dir = parent(dst);
    std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
    let temp = dir.join(format!(
        ".tmp-link-{}",
        dst.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&temp);
    if std::fs::hard_link(src, &temp).is_err() {
        std::fs::copy(src, &temp).map_err(StoreError::io(src))?;
        File::open(&temp)
            .and_then(|f| f.sync_all())
            .map_err(StoreError::io(&temp))?;
    }
    std::fs::rename(&temp, dst).map_err(StoreError::io(dst))?;
    sync_dir(dir)
}

/// fsyncs a directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Removes leftover `.tmp-*` files in `dir` (from a crash mid-write); returns how many.
pub(crate) fn sweep_temp(dir: &Path) -> Result<usize, StoreError> {
    let mut removed = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with(".tmp-") {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(StoreError::io(&path))?;
            } else {
                std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
            }
            removed += 1;
        } else if path.is_dir() {
            removed += sweep_temp(&path)?;
        }
    }
    Ok(removed)
}
