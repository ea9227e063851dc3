//! The patching operations, with the original's rules and messages (reference §7).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use host_state::PatchState;
use patch_format::{Evr, PatchReader, SemanticAction, Status};

use crate::journal::Journal;
use crate::semantic::run_semantic_checks;
use crate::store::Store;
use crate::{Outcome, PackageRecord, RemoveRefusal, RepoState, StoreError};

/// Reads and verifies uploaded patches against the store's keyring and limits, extracting into
/// the store's scratch directory. Holds no reference to the store.
#[derive(Clone, Debug)]
pub struct UploadVerifier {
    keyring: patch_sign::Keyring,
    limits: patch_format::Limits,
    tmp: std::path::PathBuf,
    rpm_keyring: Option<std::sync::Arc<patch_format::RpmKeyring>>,
}

/// An upload whose signatures and contents verified, ready for [`Store::import_verified`].
#[derive(Debug)]
pub struct VerifiedUpload {
    base: String,
    patch: patch_format::VerifiedPatch,
}

impl VerifiedUpload {
    /// The patch ID.
    pub fn id(&self) -> &str {
        &self.patch.metadata.id
    }
}

impl UploadVerifier {
    /// Reads an upload from a stream (it is never held whole in memory) and checks that its
    /// file name names its `<id>`. `compressed_len`, when the upload's length is known (a
    /// file's size, a Content-Length), lets members declaring more than it could expand to be
    /// refused before they are read.
    pub fn verify(
        &self,
        input: impl std::io::Read,
        file_name: &str,
        compressed_len: Option<u64>,
    ) -> Result<VerifiedUpload, StoreError> {
        let (base, file_id) = split_file_name(file_name);
        let limits = match compressed_len {
            Some(len) => self.limits.clone().for_compressed_size(len),
            None => self.limits.clone(),
        };
        let patch = PatchReader::new(&self.keyring)
            .limits(limits)
            .temp_root(&self.tmp)
            .read(input)
            .map_err(|e| StoreError::Validation {
                id: file_id.clone(),
                reason: validation_reason(&e),
            })?;
        if patch.metadata.id != file_id {
            return Err(StoreError::Validation {
                id: file_id.clone(),
                reason: format!(
                    "the file name says {file_id} but the patch metadata says {}: rename the file {}.patch",
                    patch.metadata.id, patch.metadata.id
                ),
            });
        }
        if let Some(rpm_keyring) = &self.rpm_keyring {
            for rpm in &patch.rpms {
                rpm_keyring
                    .verify_file(&rpm.path)
                    .map_err(|e| StoreError::Validation {
                        id: file_id.clone(),
                        reason: format!(
                            "RPM signatures are required and {e}: sign the RPMs with patch-build --sign-rpms"
                        ),
                    })?;
            }
        }
        Ok(VerifiedUpload { base, patch })
    }
}

/// The base name of an uploaded file and the patch ID it implies (`<ID>.patch`).
fn split_file_name(file_name: &str) -> (String, String) {
    let base = Path::new(file_name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = base.strip_suffix(".patch").unwrap_or(&base).to_owned();
    (base, id)
}

/// Options of `apply` and `remove`.
#[derive(Clone, Debug, Default)]
pub struct ChangeOptions {
    /// Skip the pre-apply / pre-remove semantic checks (`--skip-semantic`).
    pub skip_semantic: bool,
    /// Remove even unremovable patches (`--removeunremovable`).
    pub remove_unremovable: bool,
    /// Remove even if applications depend on the patch (`--skipappcheck`).
    pub skip_app_check: bool,
    /// Current patch states, passed to semantic scripts as `-p ID=state`.
    pub patch_states: BTreeMap<String, PatchState>,
    /// How long a semantic check may run (none: [`crate::DEFAULT_SEMANTIC_TIMEOUT`]).
    pub semantic_timeout: Option<std::time::Duration>,
}

/// What a commit would do (dry run) or did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitPlan {
    /// The patches committed (the closure of `requires`).
    pub patches: Vec<String>,
    /// RPM files removed as superseded.
    pub superseded: Vec<String>,
    /// Bytes freed.
    pub bytes_freed: u64,
}

impl Store {
    /// A verifier for uploads that needs no access to the store (so a long upload can be
    /// read and checked while other operations go on).
    pub fn upload_verifier(&self) -> UploadVerifier {
        UploadVerifier {
            keyring: self.config.keyring.clone(),
            limits: self.config.limits.clone(),
            tmp: self.root().join("tmp"),
            rpm_keyring: self.config.rpm_keyring.clone(),
        }
    }

    /// Imports an uploaded `.patch` file. `file_name` is the name the user gave it (the
    /// original takes the patch ID from it); it must agree with the metadata's `<id>`.
    pub fn import(&mut self, path: &Path, file_name: &str) -> Result<Outcome, StoreError> {
        let (base, file_id) = split_file_name(file_name);
        if let Some(existing) = self.patches.get(&file_id)
            && existing.repo_state == RepoState::Committed
        {
            let mut outcome = Outcome::default();
            outcome.info(format!("{file_id} is committed. Metadata not updated"));
            return Ok(outcome);
        }
        if !self.patches.contains_key(&file_id) && !base.ends_with(".patch") {
            return Err(StoreError::refused(format!(
                "File must end in .patch extension: {base}"
            )));
        }
        let file = std::fs::File::open(path)
            .map_err(|_| StoreError::refused(format!("File does not exist: {}", path.display())))?;
        let len = file.metadata().ok().map(|m| m.len());
        let upload = self.upload_verifier().verify(file, file_name, len)?;
        self.import_verified(upload)
    }

    /// Imports a patch that [`UploadVerifier::verify`] accepted.
    pub fn import_verified(&mut self, upload: VerifiedUpload) -> Result<Outcome, StoreError> {
        let VerifiedUpload { base, patch } = upload;
        let mut outcome = Outcome::default();
        let meta = &patch.metadata;
        let id = meta.id.clone();
        if let Some(existing) = self.patches.get(&id)
            && existing.repo_state == RepoState::Committed
        {
            outcome.info(format!("{id} is committed. Metadata not updated"));
            return Ok(outcome);
        }
        if !self.patches.contains_key(&id) && !base.ends_with(".patch") {
            return Err(StoreError::refused(format!(
                "File must end in .patch extension: {base}"
            )));
        }

        // Known ID: a metadata-only re-import.
        if let Some(existing) = self.patches.get(&id) {
            if existing.metadata.contents != meta.contents {
                return Err(StoreError::refused(format!(
                    "Contents of {id} do not match re-imported patch"
                )));
            }
            let state = existing.repo_state;
            let xml = patch_format::metadata_xml(meta);
            durable_fs::write(&self.metadata_abs(state, &id), xml.as_bytes())?;
            self.finish(Journal::Transition {
                moves: Vec::new(),
                remove: Vec::new(),
                counter: self.next_counter(),
            })?;
            outcome.info(format!("{id} is already imported. Updated metadata only"));
            return Ok(outcome);
        }

        let release = meta.sw_version.clone();
        if !self.release_installed(&release) {
            return Err(StoreError::refused(format!(
                "Patch {id} software release ({release}) is not installed"
            )));
        }
        let feed = self.feed_index(&release)?;
        let mut records = Vec::new();
        for rpm in &patch.rpms {
            if !rpm
                .info
                .arch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(StoreError::Validation {
                    id: id.clone(),
                    reason: format!(
                        "{} has an invalid architecture {:?}",
                        rpm.file_name, rpm.info.arch
                    ),
                });
            }
            for base_pkg in feed
                .packages
                .iter()
                .filter(|p| p.id.name == rpm.info.name && p.id.arch == rpm.info.arch)
            {
                let base_evr = Evr::new(
                    base_pkg.id.evr.epoch,
                    &base_pkg.id.evr.version,
                    &base_pkg.id.evr.release,
                );
                if rpm.info.evr <= base_evr {
                    return Err(StoreError::refused(format!(
                        "RPM {} in patch {id} must be higher version than original ({base_evr})",
                        rpm.file_name
                    )));
                }
            }
            for other in self.patches.values() {
                if other.metadata.sw_version != release {
                    continue;
                }
                if other.packages.iter().any(|p| {
                    p.file_name == rpm.file_name
                        || (p.id.name == rpm.info.name
                            && p.id.arch == rpm.info.arch
                            && p.id.evr == rpm.info.evr)
                }) {
                    return Err(StoreError::refused(format!(
                        "Patch {id} contains rpm {}, which is already provided by patch {}",
                        rpm.file_name, other.metadata.id
                    )));
                }
            }
            records.push(PackageRecord {
                file_name: rpm.file_name.clone(),
                id: rpm.info.clone(),
                size: rpm.size,
                sha256: rpm.sha256.clone(),
            });
        }

        // Journal first: if we crash before the metadata file exists, every file below is
        // removed again on restart.
        let mut files: Vec<String> = records
            .iter()
            .map(|r| format!("packages/{release}/{}", r.file_name))
            .collect();
        for action in patch.semantics.keys() {
            files.push(format!("semantics/{}/{id}", action.as_str()));
        }
        if let Some(script) = &meta.restart_script {
            files.push(format!("patch-scripts/{}", script.name));
        }
        files.push(format!("patches/{id}.json"));
        let journal = Journal::Import {
            metadata_file: Store::metadata_rel(RepoState::Available, &id),
            files,
            counter: self.next_counter(),
        };
        journal.write(self.root())?;

        for rpm in &patch.rpms {
            durable_fs::rename(&rpm.path, &self.package_path(&release, &rpm.file_name))?;
        }
        for (action, script) in &patch.semantics {
            let dst = self
                .root()
                .join("semantics")
                .join(action.as_str())
                .join(&id);
            set_mode(script, 0o544)?;
            durable_fs::rename(script, &dst)?;
        }
        if let (Some(script), Some(path)) = (&meta.restart_script, &patch.restart_script) {
            set_mode(path, 0o700)?;
            durable_fs::rename(path, &self.root().join("patch-scripts").join(&script.name))?;
        }
        let info = serde_json::to_vec_pretty(&records)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode package records: {e}")))?;
        durable_fs::write(
            &self.root().join("patches").join(format!("{id}.json")),
            &info,
        )?;
        // The commit point.
        let xml = patch_format::metadata_xml(meta);
        durable_fs::write(
            &self.metadata_abs(RepoState::Available, &id),
            xml.as_bytes(),
        )?;
        self.finish(journal)?;
        outcome.info(format!("{id} is now available"));
        Ok(outcome)
    }

    fn require_known(&self, ids: &[String]) -> Result<(), StoreError> {
        for id in ids {
            if !self.patches.contains_key(id) {
                return Err(StoreError::refused(format!("Patch {id} does not exist")));
            }
        }
        Ok(())
    }

    /// Applies patches (puts them in the software repository). `ids` empty with `all` set:
    /// every Available patch.
    pub fn apply(
        &mut self,
        ids: &[String],
        all: bool,
        options: &ChangeOptions,
    ) -> Result<Outcome, StoreError> {
        let ids: Vec<String> = if all {
            self.patches
                .values()
                .filter(|p| p.repo_state == RepoState::Available)
                .map(|p| p.metadata.id.clone())
                .collect()
        } else {
            dedup(ids)
        };
        self.require_known(&ids)?;
        let targets: BTreeSet<&String> = ids.iter().collect();
        for id in &ids {
            let p = &self.patches[id];
            if p.metadata.sw_version != self.config.running_release
                && p.metadata.apply_active_release_only
            {
                return Err(StoreError::refused(format!(
                    "{id} cannot be applied in an upgrade"
                )));
            }
        }
        // Requires: every required patch must exist and be in the repo (or applied now).
        let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for id in &ids {
            for req in &self.patches[id].metadata.requires {
                if targets.contains(req) {
                    continue;
                }
                let ok = self
                    .patches
                    .get(req)
                    .is_some_and(|r| r.repo_state.in_repo());
                if !ok {
                    missing.entry(req.clone()).or_default().insert(id.clone());
                }
            }
        }
        if !missing.is_empty() {
            let lines: Vec<String> = missing
                .iter()
                .map(|(req, by)| format!("{req} is required by: {}", join(by)))
                .collect();
            return Err(StoreError::refused(lines.join("\n")));
        }
        if !options.skip_semantic {
            for id in &ids {
                if self.patches[id].repo_state == RepoState::Available {
                    run_semantic_checks(
                        self.root(),
                        SemanticAction::PreApply,
                        id,
                        &options.patch_states,
                        options
                            .semantic_timeout
                            .unwrap_or(crate::DEFAULT_SEMANTIC_TIMEOUT),
                    )?;
                }
            }
        }
        self.move_patches(
            &ids,
            RepoState::Available,
            RepoState::Applied,
            Outcome::default(),
            |id| format!("{id} is now in the repo"),
            |id| format!("{id} is already in the repo"),
        )
    }

    /// Moves every patch of `ids` that is in `from` to `to` in one journalled transition;
    /// reports `moved` for those and `unchanged` for the others.
    fn move_patches(
        &mut self,
        ids: &[String],
        from: RepoState,
        to: RepoState,
        mut outcome: Outcome,
        moved: impl Fn(&str) -> String,
        unchanged: impl Fn(&str) -> String,
    ) -> Result<Outcome, StoreError> {
        let mut moves = Vec::new();
        for id in ids {
            if self.patches[id].repo_state == from {
                moves.push((id.clone(), from, to));
                outcome.info(moved(id));
            } else {
                outcome.info(unchanged(id));
            }
        }
        if !moves.is_empty() {
            self.finish(Journal::Transition {
                moves,
                remove: Vec::new(),
                counter: self.next_counter(),
            })?;
        }
        Ok(outcome)
    }

    /// Removes patches from the software repository.
    pub fn remove(
        &mut self,
        ids: &[String],
        options: &ChangeOptions,
    ) -> Result<Outcome, StoreError> {
        let ids = dedup(ids);
        self.require_known(&ids)?;
        let mut outcome = Outcome::default();
        for id in &ids {
            let p = &self.patches[id];
            if let Some(refusal) = p.remove_refusal(options.remove_unremovable) {
                return Err(StoreError::refused(refusal.message(id)));
            }
            if p.metadata.unremovable {
                // Forced: said as a warning.
                outcome.warn(RemoveRefusal::Unremovable.message(id));
            }
        }
        let targets: BTreeSet<&String> = ids.iter().collect();
        let mut lines = Vec::new();
        for id in &ids {
            let by: BTreeSet<String> = self
                .patches
                .values()
                .filter(|p| {
                    !targets.contains(&p.metadata.id)
                        && p.repo_state.in_repo()
                        && p.metadata.requires.contains(id)
                })
                .map(|p| p.metadata.id.clone())
                .collect();
            if !by.is_empty() {
                lines.push(format!("{id} is required by: {}", join(&by)));
            }
        }
        if !lines.is_empty() {
            return Err(StoreError::refused(lines.join("\n")));
        }
        if !options.skip_app_check {
            let mut lines = Vec::new();
            for id in &ids {
                let apps: BTreeSet<String> = self
                    .app_deps
                    .iter()
                    .filter(|(_, patches)| patches.contains(id))
                    .map(|(app, _)| app.clone())
                    .collect();
                if !apps.is_empty() {
                    lines.push(format!(
                        "{id} is required by application(s): {}",
                        join(&apps)
                    ));
                }
            }
            if !lines.is_empty() {
                return Err(StoreError::refused(lines.join("\n")));
            }
        }
        if !options.skip_semantic {
            for id in &ids {
                if self.patches[id].repo_state.in_repo() {
                    run_semantic_checks(
                        self.root(),
                        SemanticAction::PreRemove,
                        id,
                        &options.patch_states,
                        options
                            .semantic_timeout
                            .unwrap_or(crate::DEFAULT_SEMANTIC_TIMEOUT),
                    )?;
                }
            }
        }
        // Committed patches were refused above, so everything in the repo is Applied.
        self.move_patches(
            &ids,
            RepoState::Applied,
            RepoState::Available,
            outcome,
            |id| format!("{id} has been removed from the repo"),
            |id| format!("{id} is not in the repo"),
        )
    }

    /// Deletes Available patches from the store. `patch_states` are the derived states; a
    /// patch must be Available (or n/a) there too.
    pub fn delete(
        &mut self,
        ids: &[String],
        patch_states: &BTreeMap<String, PatchState>,
    ) -> Result<Outcome, StoreError> {
        let ids = dedup(ids);
        self.require_known(&ids)?;
        for id in &ids {
            let state = patch_states.get(id).copied();
            if let Some(refusal) = self.patches[id].delete_refusal(state) {
                return Err(StoreError::refused(refusal.message(id)));
            }
        }
        let mut remove = Vec::new();
        let mut outcome = Outcome::default();
        for id in &ids {
            let p = &self.patches[id];
            remove.push(Store::metadata_rel(RepoState::Available, id));
            remove.push(format!("patches/{id}.json"));
            for pkg in &p.packages {
                remove.push(format!(
                    "packages/{}/{}",
                    p.metadata.sw_version, pkg.file_name
                ));
            }
            for action in SemanticAction::ALL {
                remove.push(format!("semantics/{}/{id}", action.as_str()));
            }
            if let Some(script) = &p.metadata.restart_script {
                remove.push(format!("patch-scripts/{}", script.name));
            }
            outcome.info(format!("{id} has been deleted"));
        }
        self.finish(Journal::Remove {
            remove,
            counter: self.next_counter(),
        })?;
        Ok(outcome)
    }

    /// Plans a commit of `ids` and everything they require (recursively): every patch in the
    /// system must be REL and the whole closure Applied (or already Committed).
    pub fn commit_plan(
        &self,
        ids: &[String],
        patch_states: &BTreeMap<String, PatchState>,
    ) -> Result<CommitPlan, StoreError> {
        let ids = dedup(ids);
        self.require_known(&ids)?;
        let not_rel: Vec<String> = self
            .patches
            .values()
            .filter(|p| p.metadata.status != Status::Released)
            .map(|p| p.metadata.id.clone())
            .collect();
        if !not_rel.is_empty() {
            return Err(StoreError::refused(format!(
                "A commit cannot be performed with non-REL status patches in the system:\n{}",
                not_rel.join("\n")
            )));
        }
        let closure = self.dependency_closure(&ids, true)?;
        let not_applied: Vec<String> = closure
            .iter()
            .filter(|id| {
                let p = &self.patches[*id];
                let derived = patch_states.get(*id);
                let ok = match p.repo_state {
                    RepoState::Committed => true,
                    RepoState::Applied => derived.is_none_or(|s| {
                        matches!(s, PatchState::Applied | PatchState::NotApplicable)
                    }),
                    RepoState::Available => false,
                };
                !ok
            })
            .cloned()
            .collect();
        if !not_applied.is_empty() {
            return Err(StoreError::refused(format!(
                "The following patches are not applied and cannot be committed:\n{}",
                not_applied.join("\n")
            )));
        }
        // Superseded: among all committed patches after this commit, every lower version of a
        // (release, name, arch).
        let committed: Vec<&crate::PatchRecord> = self
            .patches
            .values()
            .filter(|p| p.repo_state == RepoState::Committed || closure.contains(&p.metadata.id))
            .collect();
        let mut best: BTreeMap<(String, String, String), Evr> = BTreeMap::new();
        for p in &committed {
            for pkg in &p.packages {
                let key = (
                    p.metadata.sw_version.clone(),
                    pkg.id.name.clone(),
                    pkg.id.arch.clone(),
                );
                let evr = pkg.id.evr.clone();
                if best.get(&key).is_none_or(|b| evr > *b) {
                    best.insert(key, evr);
                }
            }
        }
        let mut plan = CommitPlan {
            patches: closure.iter().cloned().collect(),
            ..CommitPlan::default()
        };
        for p in &committed {
            for pkg in &p.packages {
                let key = (
                    p.metadata.sw_version.clone(),
                    pkg.id.name.clone(),
                    pkg.id.arch.clone(),
                );
                if best.get(&key).is_some_and(|b| pkg.id.evr < *b)
                    && self
                        .package_path(&p.metadata.sw_version, &pkg.file_name)
                        .exists()
                {
                    plan.superseded.push(format!(
                        "packages/{}/{}",
                        p.metadata.sw_version, pkg.file_name
                    ));
                    plan.bytes_freed += pkg.size;
                }
            }
        }
        Ok(plan)
    }

    /// Commits: the plan's patches move to committed, superseded RPMs are deleted. Irreversible.
    pub fn commit(
        &mut self,
        ids: &[String],
        patch_states: &BTreeMap<String, PatchState>,
    ) -> Result<(CommitPlan, Outcome), StoreError> {
        let plan = self.commit_plan(ids, patch_states)?;
        let moves = plan
            .patches
            .iter()
            .filter(|id| self.patches[*id].repo_state == RepoState::Applied)
            .map(|id| (id.clone(), RepoState::Applied, RepoState::Committed))
            .collect();
        self.finish(Journal::Transition {
            moves,
            remove: plan.superseded.clone(),
            counter: self.next_counter(),
        })?;
        let mut outcome = Outcome::default();
        outcome.info("The patches have been committed.");
        Ok((plan, outcome))
    }

    /// Records which patches an application depends on; an empty list removes the entry.
    pub fn report_app_dependencies(&mut self, app: &str, ids: &[String]) -> Result<(), StoreError> {
        if app.is_empty() {
            return Err(StoreError::refused(
                "An application name is required (app=NAME)",
            ));
        }
        let mut deps = self.app_deps.clone();
        if ids.is_empty() {
            deps.remove(app);
        } else {
            deps.insert(app.to_owned(), ids.iter().cloned().collect());
        }
        self.write_app_deps(&deps)?;
        self.app_deps = deps;
        Ok(())
    }

    /// `is_applied`: every ID exists and `state_of` says Applied.
    pub fn all_in_state(
        &self,
        ids: &[String],
        wanted: &str,
        state_of: impl Fn(&str) -> String,
    ) -> bool {
        !ids.is_empty()
            && ids
                .iter()
                .all(|id| self.patches.contains_key(id) && state_of(id) == wanted)
    }
}

fn validation_reason(e: &patch_format::FormatError) -> String {
    match e {
        // The original's wording on the first line; why, on the next.
        patch_format::FormatError::Signature(detail) => {
            format!("Signature check failed\n{detail}")
        }
        other => other.to_string(),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(StoreError::io(path))
}

fn dedup(ids: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    ids.iter()
        .filter(|id| seen.insert((*id).clone()))
        .cloned()
        .collect()
}

pub(crate) fn join(items: &BTreeSet<String>) -> String {
    items
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
