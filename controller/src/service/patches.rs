//! Patch operations: the store's changes (upload, apply, remove, delete, commit, releases)
//! and the reads (query, show, dependencies), with each patch's derived state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use host_state::PatchState;
use patch_format::Personality;
use patch_store::{ChangeOptions, CommitPlan, Outcome, PatchRecord, RepoState, StoreError};

use super::{Service, ServiceError, blocking};
use crate::channel_reader::ChannelReader;
use crate::state::Snapshot;

/// Which patches a query lists (`sw-patch query --show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ShowFilter {
    /// Every patch.
    #[default]
    All,
    /// Those whose repository state is this one.
    Repo(RepoState),
}

/// The options of a remove.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RemoveOptions {
    pub(crate) skip_semantic: bool,
    pub(crate) skip_app_check: bool,
    pub(crate) remove_unremovable: bool,
}

/// One patch as queries see it: its record and derived state.
#[derive(Clone, Copy)]
pub(crate) struct PatchView<'a> {
    pub(crate) record: &'a PatchRecord,
    pub(crate) state: PatchState,
}

impl PatchView<'_> {
    /// The patch id.
    pub(crate) fn id(&self) -> &str {
        &self.record.metadata.id
    }

    /// Why an apply would do nothing now, in a few words (the dashboard greys its button):
    /// the store answers an apply of a patch in the repository with "already in the repo".
    pub(crate) fn apply_refusal(&self) -> Option<&'static str> {
        match self.record.repo_state {
            RepoState::Available => None,
            RepoState::Committed => Some("Committed patches stay applied."),
            _ => Some("Already applied."),
        }
    }

    /// Why a remove would be refused now (the store's rule), or would do nothing.
    pub(crate) fn remove_refusal(&self) -> Option<&'static str> {
        if let Some(refusal) = self.record.remove_refusal(false) {
            return Some(refusal.short());
        }
        (self.record.repo_state == RepoState::Available).then_some("Not applied.")
    }

    /// Why a delete would be refused now (the store's rule).
    pub(crate) fn delete_refusal(&self) -> Option<&'static str> {
        self.record
            .delete_refusal(Some(self.state))
            .map(|refusal| refusal.short())
    }

    /// Whether a commit would take it: applied in the repository and on every host.
    pub(crate) fn committable(&self) -> bool {
        self.record.repo_state == RepoState::Applied && self.state == PatchState::Applied
    }

    /// Whether it is in the state asked about; without host reports the repository state
    /// stands for the patch state.
    fn is(&self, wanted: PatchState, wanted_repo: RepoState) -> bool {
        match self.state {
            PatchState::NotApplicable => self.record.repo_state == wanted_repo,
            state => state == wanted,
        }
    }
}

/// The patches at one moment (a snapshot: later changes do not show).
pub(crate) struct Patches {
    snapshot: Arc<Snapshot>,
}

impl Patches {
    /// Every patch, by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = PatchView<'_>> {
        self.snapshot.patches().values().map(|record| PatchView {
            record,
            state: self.snapshot.patch_state(record),
        })
    }

    /// The patches a query lists.
    pub(crate) fn filtered<'a>(
        &'a self,
        show: ShowFilter,
        release: Option<&'a str>,
    ) -> impl Iterator<Item = PatchView<'a>> {
        self.iter().filter(move |p| {
            let state_ok = match show {
                ShowFilter::All => true,
                ShowFilter::Repo(repo) => p.record.repo_state == repo,
            };
            state_ok && release.is_none_or(|r| r == p.record.metadata.sw_version)
        })
    }

    /// One patch, or the original's "is unrecognized".
    pub(crate) fn get(&self, id: &str) -> Result<PatchView<'_>, ServiceError> {
        match self.snapshot.patches().get(id) {
            Some(record) => Ok(PatchView {
                record,
                state: self.snapshot.patch_state(record),
            }),
            None => Err(ServiceError::Unrecognized(id.to_owned())),
        }
    }

    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.snapshot.patches().len()
    }

    /// Whether every one of `ids` (at least one) is applied (`true`) or available (`false`).
    pub(crate) fn all_in(&self, ids: &[String], applied: bool) -> bool {
        let (wanted, wanted_repo) = if applied {
            (PatchState::Applied, RepoState::Applied)
        } else {
            (PatchState::Available, RepoState::Available)
        };
        !ids.is_empty()
            && ids
                .iter()
                .all(|id| self.get(id).is_ok_and(|p| p.is(wanted, wanted_repo)))
    }
}

/// How much of a refused upload is still read and discarded, so that a client still sending
/// gets the answer instead of a broken connection.
const DRAIN_AFTER_REFUSAL: u64 = 1 << 30;

impl Service {
    /// The patches now.
    pub(crate) fn patches(&self) -> Patches {
        Patches {
            snapshot: self.app.snapshot(),
        }
    }

    /// Which applications depend on which patches.
    pub(crate) fn app_dependencies(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.app.snapshot().store.app_deps.clone()
    }

    /// Runs a store change (off the async threads), then waits for the standby.
    async fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::state::App) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        self.must_be_active()?;
        let app = self.app.clone();
        let result = blocking(move || f(&app)).await;
        self.settled(result).await
    }

    /// Applies patches (`all`: every available one of the running release).
    pub(crate) async fn apply(
        &self,
        ids: Vec<String>,
        all: bool,
        skip_semantic: bool,
    ) -> Result<Outcome, ServiceError> {
        self.change(move |app| {
            let snapshot = no_host_installing(app)?;
            let options = ChangeOptions {
                skip_semantic,
                patch_states: snapshot.patch_states(),
                semantic_timeout: Some(semantic_timeout(app)),
                ..ChangeOptions::default()
            };
            Ok(app.mutate(|s| s.apply(&ids, all, &options))?)
        })
        .await
    }

    /// Removes patches.
    pub(crate) async fn remove(
        &self,
        ids: Vec<String>,
        options: RemoveOptions,
    ) -> Result<Outcome, ServiceError> {
        self.change(move |app| {
            let snapshot = no_host_installing(app)?;
            let options = ChangeOptions {
                skip_semantic: options.skip_semantic,
                skip_app_check: options.skip_app_check,
                remove_unremovable: options.remove_unremovable,
                patch_states: snapshot.patch_states(),
                semantic_timeout: Some(semantic_timeout(app)),
            };
            Ok(app.mutate(|s| s.remove(&ids, &options))?)
        })
        .await
    }

    /// Deletes available patches from the store.
    pub(crate) async fn delete(&self, ids: Vec<String>) -> Result<Outcome, ServiceError> {
        self.change(move |app| {
            let states = app.snapshot().patch_states();
            let outcome = app.mutate(|s| s.delete(&ids, &states))?;
            let vault = crate::vault::Vault::new(&app.config.state_dir);
            let snapshot = app.snapshot();
            for id in &ids {
                if !snapshot.patches().contains_key(id) {
                    vault.remove(id);
                }
            }
            Ok(outcome)
        })
        .await
    }

    /// What a commit of `ids` would do.
    pub(crate) async fn commit_plan(&self, ids: Vec<String>) -> Result<CommitPlan, ServiceError> {
        let app = self.app.clone();
        blocking(move || {
            let states = app.snapshot().patch_states();
            Ok(app.with_store(|s| s.commit_plan(&ids, &states))?)
        })
        .await
    }

    /// Commits patches (and what they require).
    pub(crate) async fn commit(&self, ids: Vec<String>) -> Result<Outcome, ServiceError> {
        self.change(move |app| {
            let states = app.snapshot().patch_states();
            Ok(app.mutate(|s| s.commit(&ids, &states))?.1)
        })
        .await
    }

    /// Which patches require these.
    pub(crate) async fn what_requires(&self, ids: Vec<String>) -> Result<Outcome, ServiceError> {
        let app = self.app.clone();
        blocking(move || Ok(app.with_store(|s| s.what_requires(&ids))?)).await
    }

    /// What these patches require (`recursive`: all the way down).
    pub(crate) async fn query_dependencies(
        &self,
        ids: Vec<String>,
        recursive: bool,
    ) -> Result<Vec<String>, ServiceError> {
        let app = self.app.clone();
        blocking(move || Ok(app.with_store(|s| s.query_dependencies(&ids, recursive))?)).await
    }

    /// Records which patches an application depends on.
    pub(crate) async fn report_app_dependencies(
        &self,
        app_name: String,
        ids: Vec<String>,
    ) -> Result<(), ServiceError> {
        self.change(move |app| Ok(app.mutate(|s| s.report_app_dependencies(&app_name, &ids))?))
            .await
    }

    /// Adds a release: its base-load feed and the packages only some node types install.
    pub(crate) async fn init_release(
        &self,
        release: String,
        feed: Option<PathBuf>,
        personalities: BTreeMap<Personality, BTreeSet<String>>,
    ) -> Result<Outcome, ServiceError> {
        self.change(move |app| {
            Ok(app.mutate(|s| s.init_release(&release, feed.as_deref(), &personalities))?)
        })
        .await
    }

    /// Deletes a release that is not running.
    pub(crate) async fn del_release(&self, release: String) -> Result<Outcome, ServiceError> {
        self.change(move |app| Ok(app.mutate(|s| s.del_release(&release))?))
            .await
    }

    /// Uploads every `*.patch` in these server-side directories: one result per file, or
    /// why nothing was uploaded.
    pub(crate) async fn upload_dir(
        &self,
        dirs: Vec<PathBuf>,
    ) -> Result<Vec<Result<Outcome, ServiceError>>, ServiceError> {
        self.change(move |app| {
            let mut files = Vec::new();
            for dir in &dirs {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "patch") && path.is_file() {
                        files.push(path);
                    }
                }
            }
            files.sort();
            files.dedup();
            if files.is_empty() {
                return Err(ServiceError::NoPatchesFound);
            }
            Ok(files
                .iter()
                .map(|path| {
                    let name = basename(&path.to_string_lossy());
                    let outcome = app.mutate(|s| s.import(path, &name))?;
                    keep_copy(app, path, &name);
                    Ok(outcome)
                })
                .collect())
        })
        .await
    }

    /// Uploads one patch file as it arrives: it streams into the verifying reader on a
    /// blocking thread (never whole in memory, never staged as a second copy), bounded by
    /// `max_upload_bytes`; then it is imported under the store lock. `declared_len` is the
    /// body's Content-Length when the body is the patch: one larger than the limit is refused
    /// before a byte is read, and the verifier refuses members declaring more than that length
    /// could expand to.
    pub(crate) async fn upload(
        &self,
        stream: impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Unpin,
        name: String,
        declared_len: Option<u64>,
    ) -> Result<Outcome, ServiceError> {
        let mut stream = stream;
        if let Err(e) = self.must_be_active() {
            drain(&mut stream, DRAIN_AFTER_REFUSAL).await;
            return Err(e);
        }
        let started = std::time::Instant::now();
        let result = self.import_stream(stream, name, declared_len).await;
        let result = self.settled(result.map_err(ServiceError::from)).await;
        self.app.metrics.upload_finished(started, result.is_ok());
        result
    }

    async fn import_stream(
        &self,
        mut stream: impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Unpin,
        name: String,
        declared_len: Option<u64>,
    ) -> Result<Outcome, StoreError> {
        let app = &self.app;
        let (base, id) = (
            name.clone(),
            name.strip_suffix(".patch").unwrap_or(&name).to_owned(),
        );
        if !base.ends_with(".patch") && !app.snapshot().patches().contains_key(&id) {
            drain(&mut stream, DRAIN_AFTER_REFUSAL).await;
            return Err(StoreError::Refused(format!(
                "File must end in .patch extension: {base}"
            )));
        }
        let max = app.config.max_upload_bytes;
        if let Some(len) = declared_len.filter(|len| *len > max) {
            // A client that will send no more than the drain takes gets to read the answer;
            // one announcing more gets it at once (it could not be read after the drain).
            if len <= DRAIN_AFTER_REFUSAL {
                drain(&mut stream, DRAIN_AFTER_REFUSAL).await;
            }
            return Err(too_big(max));
        }
        let Ok(_slot) = app.upload_slots.clone().try_acquire_owned() else {
            drain(&mut stream, DRAIN_AFTER_REFUSAL).await;
            return Err(StoreError::Refused(format!(
                "{} uploads are in progress (max_concurrent_uploads); try again when one has finished",
                app.config.max_concurrent_uploads
            )));
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(32);
        let verifier = app.verifier.clone();
        // A thread of its own, not the shared blocking pool: the verifier waits on the
        // client's pace, and slow clients must not starve the store, reports and queries.
        let (done, reader) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("upload".into())
            .spawn(move || {
                let _ = done.send(verifier.verify(
                    ChannelReader {
                        rx,
                        current: axum::body::Bytes::new(),
                    },
                    &name,
                    declared_len,
                ));
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the upload thread: {e}")))?;
        // The signed file as it came, for the vault (a system controller passes it on).
        let vault = crate::vault::Vault::new(&app.config.state_dir);
        let kept = vault
            .temp()
            .map_err(|e| StoreError::Corrupt(format!("the patch vault: {e}")))?;
        let mut copy = tokio::fs::File::from_std(
            kept.reopen()
                .map_err(|e| StoreError::Corrupt(format!("the patch vault: {e}")))?,
        );
        let mut copy_failed = None;
        let mut received = 0u64;
        let mut over_limit = false;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx
                        .send(Err(std::io::Error::other(format!(
                            "upload interrupted: {e}"
                        ))))
                        .await;
                    break;
                }
            };
            received += chunk.len() as u64;
            if received > max {
                over_limit = true;
                let _ = tx
                    .send(Err(std::io::Error::other(format!(
                        "larger than the {max}-byte upload limit"
                    ))))
                    .await;
                break;
            }
            if copy_failed.is_none()
                && let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut copy, &chunk).await
            {
                copy_failed = Some(e);
            }
            if tx.send(Ok(chunk)).await.is_err() {
                // The reader stopped early (the patch was refused); it will say why.
                break;
            }
        }
        drop(tx);
        drain(&mut stream, DRAIN_AFTER_REFUSAL).await;
        let verified = reader
            .await
            .map_err(|e| StoreError::Corrupt(format!("verification task failed: {e}")))?;
        if over_limit {
            return Err(too_big(max));
        }
        let upload = verified?;
        if let Some(e) = copy_failed {
            return Err(StoreError::Corrupt(format!(
                "the patch vault: writing the upload failed: {e}"
            )));
        }
        let _ = tokio::io::AsyncWriteExt::flush(&mut copy).await;
        drop(copy);
        let id = upload.id().to_owned();
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = app.mutate(|s| s.import_verified(upload))?;
            vault.keep(kept, &id).map_err(|e| {
                StoreError::Corrupt(format!("{id} was imported but not kept in the vault: {e}"))
            })?;
            Ok(outcome)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("import task failed: {e}")))?
    }
}

/// Keeps a server-side file just imported in the vault (a copy: the file is the
/// operator's). A failure is logged: the patch is imported, only passing it on to
/// subclouds needs the copy, and that says so.
fn keep_copy(app: &crate::state::App, path: &std::path::Path, name: &str) {
    let id = name.strip_suffix(".patch").unwrap_or(name);
    let vault = crate::vault::Vault::new(&app.config.state_dir);
    let kept = vault.temp().and_then(|mut temp| {
        std::io::copy(&mut std::fs::File::open(path)?, &mut temp)?;
        Ok(temp)
    });
    let result = kept
        .map_err(|e| e.to_string())
        .and_then(|temp| vault.keep(temp, id));
    if let Err(e) = result {
        tracing::warn!("{id} was imported but not kept in the vault: {e}");
    }
}

/// The file of an imported patch, as it was uploaded (for a system controller to pass on).
impl super::Service {
    pub(crate) fn patch_file(&self, id: &str) -> Result<std::path::PathBuf, ServiceError> {
        let patches = self.patches();
        patches.get(id)?;
        crate::vault::Vault::new(&self.app.config.state_dir)
            .file(id)
            .ok_or_else(|| {
                ServiceError::from(StoreError::Refused(format!(
                    "{id} was imported before this controller kept uploaded files: upload it again to pass it on"
                )))
            })
    }
}

/// The refusal of an upload larger than `max_upload_bytes`.
fn too_big(max: u64) -> StoreError {
    StoreError::Refused(format!(
        "the upload is larger than the {max}-byte limit (max_upload_bytes)"
    ))
}

/// The snapshot an apply or remove starts from, unless a host is installing (the original
/// refuses both meanwhile).
fn no_host_installing(app: &crate::state::App) -> Result<Arc<Snapshot>, ServiceError> {
    let snapshot = app.snapshot();
    if snapshot.any_installing() {
        return Err(ServiceError::Installing);
    }
    Ok(snapshot)
}

/// How long a semantic check may run (`semantic_check_timeout_secs`).
fn semantic_timeout(app: &crate::state::App) -> std::time::Duration {
    std::time::Duration::from_secs(app.config.semantic_check_timeout_secs)
}

/// The final component of a client-side path (the original client sends what the user typed).
pub(crate) fn basename(name: &str) -> String {
    std::path::Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn drain(
    stream: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Unpin),
    limit: u64,
) {
    let mut drained = 0u64;
    while drained < limit {
        match stream.next().await {
            Some(Ok(chunk)) => drained += chunk.len() as u64,
            _ => break,
        }
    }
}
