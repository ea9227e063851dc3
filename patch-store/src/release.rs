//! Releases: importing a base load (`init-release`) and deleting a release (`del-release`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use patch_format::Personality;

use crate::journal::Journal;
use crate::store::{Store, package_record, sort_entries, write_index};
use crate::{IndexEntry, Outcome, RepoIndex, StoreError};

impl Store {
    /// Imports release `release`'s base load from `feed` (a directory of RPMs; none = an empty
    /// base load, for an incoming upgrade release). Every package is for all node types unless
    /// `personalities` lists it for some. The running release can be initialized only while it
    /// has no base load.
    pub fn init_release(
        &mut self,
        release: &str,
        feed: Option<&Path>,
        personalities: &BTreeMap<Personality, BTreeSet<String>>,
    ) -> Result<Outcome, StoreError> {
        patch_format::validate_patch_id(release)
            .map_err(|e| StoreError::refused(format!("Invalid release {release:?}: {e}")))?;
        if self.release_installed(release) {
            return Err(StoreError::refused(if release == self.running_release() {
                format!("Release {release} is the running release and is already initialized")
            } else {
                format!("Release {release} is already initialized")
            }));
        }
        let staging = self.root().join("tmp").join(format!("feed-{release}"));
        let mut entries = Vec::new();
        if let Some(feed) = feed {
            let mut files: Vec<_> = std::fs::read_dir(feed)
                .map_err(StoreError::io(feed))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "rpm") && p.is_file())
                .collect();
            files.sort();
            for path in files {
                let file_name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let record = package_record(&path, &file_name, &self.config.limits)?;
                let rel_path = format!("Packages/{}/{}", record.id.arch, file_name);
                durable_fs::link_or_copy(&path, &staging.join(&rel_path))?;
                let listed: Vec<Personality> = personalities
                    .iter()
                    .filter(|(_, names)| names.contains(&record.id.name))
                    .map(|(p, _)| *p)
                    .collect();
                entries.push(IndexEntry {
                    id: record.id,
                    size: record.size,
                    sha256: record.sha256,
                    path: rel_path,
                    patch: None,
                    reboot_required: false,
                    personalities: if listed.is_empty() {
                        Personality::ALL.to_vec()
                    } else {
                        listed
                    },
                });
            }
        }
        sort_entries(&mut entries);
        let index = RepoIndex {
            release: release.to_owned(),
            op_counter: self.next_counter(),
            packages: entries,
            restart_scripts: Vec::new(),
        };
        write_index(&staging.join("index.json"), &index)?;
        // One rename publishes the whole base load.
        durable_fs::rename(&staging, &self.feed_dir(release))?;
        std::fs::create_dir_all(self.repo_dir(release))
            .map_err(StoreError::io(self.repo_dir(release)))?;
        self.finish(Journal::Transition {
            moves: Vec::new(),
            remove: Vec::new(),
            counter: self.next_counter(),
        })?;
        let mut outcome = Outcome::default();
        outcome.info(format!("Release {release} has been initialized"));
        Ok(outcome)
    }

    /// Deletes release `release`: its patches, packages, base load and repository. The running
    /// release cannot be deleted.
    pub fn del_release(&mut self, release: &str) -> Result<Outcome, StoreError> {
        if release == self.running_release() {
            return Err(StoreError::refused(format!(
                "Cannot delete the running release ({release})"
            )));
        }
        if !self.release_installed(release) && !self.repo_dir(release).exists() {
            return Err(StoreError::refused(format!(
                "Release {release} is not installed"
            )));
        }
        let mut remove = Vec::new();
        for p in self
            .patches
            .values()
            .filter(|p| p.metadata.sw_version == release)
        {
            let id = &p.metadata.id;
            remove.push(Store::metadata_rel(p.repo_state, id));
            remove.push(format!("patches/{id}.json"));
            for action in patch_format::SemanticAction::ALL {
                remove.push(format!("semantics/{}/{id}", action.as_str()));
            }
            if let Some(script) = &p.metadata.restart_script {
                remove.push(format!("patch-scripts/{}", script.name));
            }
        }
        remove.push(format!("packages/{release}"));
        remove.push(format!("repo/rel-{release}"));
        remove.push(format!("feed/rel-{release}"));
        self.finish(Journal::Remove {
            remove,
            counter: self.next_counter(),
        })?;
        let mut outcome = Outcome::default();
        outcome.info(format!("Release {release} has been deleted"));
        Ok(outcome)
    }
}
