//! The uploaded `.patch` files, kept byte for byte as they came (`<state>/vault/<ID>.patch`):
//! the store keeps a patch's parts, not its signed file, and a distributed cloud's system
//! controller passes the signed file on to subclouds, whose controllers verify it as any
//! upload. Written through a temporary file and a durable rename; a crash leaves at worst a
//! `.tmp-*` file, swept when the controller starts.

use std::path::{Path, PathBuf};

/// The vault of a state directory.
#[derive(Clone, Debug)]
pub(crate) struct Vault {
    dir: PathBuf,
}

impl Vault {
    pub(crate) fn new(state_dir: &Path) -> Vault {
        Vault {
            dir: state_dir.join("vault"),
        }
    }

    /// A new temporary file in the vault, for an upload as it arrives.
    pub(crate) fn temp(&self) -> std::io::Result<tempfile::NamedTempFile> {
        std::fs::create_dir_all(&self.dir)?;
        tempfile::Builder::new()
            .prefix(durable_fs::TEMP_PREFIX)
            .tempfile_in(&self.dir)
    }

    /// Keeps a finished upload as `<id>.patch` (replacing an older one of the same id).
    pub(crate) fn keep(&self, temp: tempfile::NamedTempFile, id: &str) -> Result<(), String> {
        let path = self
            .path(id)
            .ok_or_else(|| format!("bad patch id {id:?}"))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| format!("{}: {e}", temp.path().display()))?;
        temp.persist(&path)
            .map_err(|e| format!("{}: {}", path.display(), e.error))?;
        durable_fs::sync_dir(&self.dir).map_err(|e| e.to_string())
    }

    /// Where `id`'s file is (or would be); none for an id that is not a patch id.
    pub(crate) fn path(&self, id: &str) -> Option<PathBuf> {
        patch_format::validate_patch_id(id).ok()?;
        Some(self.dir.join(format!("{id}.patch")))
    }

    /// `id`'s file, if kept.
    pub(crate) fn file(&self, id: &str) -> Option<PathBuf> {
        self.path(id).filter(|p| p.is_file())
    }

    /// Forgets `id`'s file (the patch was deleted).
    pub(crate) fn remove(&self, id: &str) {
        if let Some(path) = self.path(id)
            && let Err(e) = durable_fs::remove_file(&path)
        {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }

    /// Removes what a crash mid-upload left (only while no upload runs: it removes every
    /// temporary file).
    pub(crate) fn sweep(&self) {
        if let Err(e) = durable_fs::sweep_temp(&self.dir) {
            tracing::warn!("cannot sweep {}: {e}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn kept_files_replace_older_ones_and_bad_ids_have_no_path() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path());
        for content in [&b"first"[..], b"second"] {
            let mut temp = vault.temp().unwrap();
            temp.write_all(content).unwrap();
            vault.keep(temp, "P1").unwrap();
        }
        assert_eq!(std::fs::read(vault.file("P1").unwrap()).unwrap(), b"second");
        assert!(vault.path("../etc/passwd").is_none());
        let stray = vault.temp().unwrap().into_temp_path().keep().unwrap();
        vault.sweep();
        assert!(!stray.exists());
        vault.remove("P1");
        assert!(vault.file("P1").is_none());
    }
}
