//! The runner of the subcloud patch strategy: every tick it reads the strategy and its steps
//! from the database, lets [`crate::sw_update::decide`] say which subclouds run, and gives
//! each running subcloud a task that walks its step through the original's states:
//! updating patches → creating VIM patch strategy → applying VIM patch strategy → deleting
//! VIM patch strategy → finishing patch strategy → complete (or failed, with the reason the
//! subcloud's own strategy gives).
//!
//! Every state is stored before its action, and every action first looks at the subcloud,
//! so a system controller killed at any instant resumes where it was: a subcloud's strategy
//! is only created when the subcloud has none, and one found in "creating" is the one made
//! before the crash, adopted rather than made again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::audit::{compare, counts};
use crate::client::{PatchSet, QUERY_TIMEOUT, client_for};
use crate::db::{AuditResult, Db, DbError};
use crate::db_strategy::StepWrite;
use crate::model::{Access, Availability, SyncStatus};
use crate::remote::{Remote, RemoteError};
use crate::sw_update::{StepState, StrategyState, decide};

/// How the runner paces itself.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Between looks at the strategy and at each subcloud's own strategy.
    pub poll: Duration,
    /// How long a subcloud may not answer before its step fails as offline.
    pub offline_grace: Duration,
    /// How long a subcloud's strategy may take to build, and its hosts to settle before.
    pub build_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            poll: Duration::from_secs(10),
            offline_grace: Duration::from_secs(120),
            build_timeout: Duration::from_secs(300),
        }
    }
}

/// Step writes from every task, committed together: each task still waits until its own
/// write is durable before it acts, but the writes of a hundred tasks moving at once share a
/// commit (SQLite has one writer, and each commit is an fsync).
#[derive(Clone)]
struct Writer {
    queue: mpsc::UnboundedSender<(StepWrite, oneshot::Sender<Result<bool, String>>)>,
}

impl Writer {
    fn start(db: Db) -> Writer {
        let (queue, mut pending) =
            mpsc::unbounded_channel::<(StepWrite, oneshot::Sender<Result<bool, String>>)>();
        tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let mut batch = vec![first];
                while batch.len() < 1024 {
                    match pending.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let writes: Vec<StepWrite> = batch.iter().map(|(w, _)| w.clone()).collect();
                match db.write_steps(&writes).await {
                    Ok(taken) => {
                        for ((_, done), took) in batch.into_iter().zip(taken) {
                            let _ = done.send(Ok(took));
                        }
                    }
                    Err(e) => {
                        let why = e.to_string();
                        for (_, done) in batch {
                            let _ = done.send(Err(why.clone()));
                        }
                    }
                }
            }
        });
        Writer { queue }
    }

    /// Writes `write` durably; whether it took.
    async fn write(&self, write: StepWrite) -> Result<bool, DbError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send((write, done))
            .map_err(|_| DbError::Write("the step writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbError::Write("the step writer has stopped".into()))?
            .map_err(DbError::Write)
    }

    async fn set(&self, id: i64, state: StepState, details: &str) -> Result<(), DbError> {
        self.write(StepWrite::Set(id, state, details.to_owned()))
            .await
            .map(|_| ())
    }
}

/// What every step task shares.
struct Ctx {
    db: Db,
    /// Every step change goes through it.
    writer: Writer,
    reference: Access,
    /// The system controller's own patching API, as a client made once.
    reference_api: Remote,
    /// Its patches as last read, and when that read began: the hundred steps a look starts
    /// share one read instead of asking twice each.
    reference_cache: tokio::sync::Mutex<Option<(Instant, PatchSet)>>,
    /// A client fetching the system controller's patch files (no overall timeout: files
    /// may be large).
    files: reqwest::Client,
    timing: Timing,
    /// Wakes the runner (a step ended: the next stage may start at once).
    wake: Arc<Notify>,
}

/// Runs strategies until `stop`; `wake` makes it look at once (after an API action).
pub(crate) async fn run(
    db: Db,
    reference: Access,
    timing: Timing,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let clients = Remote::new(&reference, "the system controller", QUERY_TIMEOUT)
        .and_then(|api| Ok((api, client_for(&reference, "the system controller", None)?)));
    let (reference_api, files) = match clients {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("subcloud strategies cannot run: the system controller's API: {e}");
            return;
        }
    };
    let ctx = Arc::new(Ctx {
        writer: Writer::start(db.clone()),
        db,
        reference,
        reference_api,
        reference_cache: tokio::sync::Mutex::new(None),
        files,
        timing,
        wake: wake.clone(),
    });
    let mut in_flight: HashMap<i64, JoinHandle<()>> = HashMap::new();
    loop {
        if let Err(e) = tick(&ctx, &mut in_flight).await {
            tracing::warn!("subcloud strategy: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.timing.poll) => {}
            _ = wake.notified() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    for (_, task) in in_flight {
        task.abort();
    }
}

/// One look: starts the tasks the rules call for and moves the strategy on once nothing
/// runs.
async fn tick(ctx: &Arc<Ctx>, in_flight: &mut HashMap<i64, JoinHandle<()>>) -> Result<(), DbError> {
    in_flight.retain(|_, task| !task.is_finished());
    let Some(strategy) = ctx.db.strategy().await? else {
        return Ok(());
    };
    if !strategy.state.is_active() {
        return Ok(());
    }
    let steps = ctx.db.step_statuses().await?;
    let decision = decide(&strategy, &steps);
    if !decision.abort.is_empty() {
        let why = if strategy.state == StrategyState::AbortRequested {
            "not started: the strategy was aborted".to_owned()
        } else {
            let failed = steps
                .iter()
                .filter(|s| s.state == StepState::Failed)
                .count();
            format!("not started: the strategy stopped after {failed} failed subcloud(s)")
        };
        ctx.db.abort_steps(&decision.abort, &why).await?;
    }
    // What the steps started now sync to: the system controller's patches as of this look
    // or later, never a read from before (a patch applied there just before this strategy
    // was made must reach every subcloud).
    let since = Instant::now();
    for id in decision.run {
        in_flight.entry(id).or_insert_with(|| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Err(e) = drive(&ctx, id, since).await {
                    tracing::warn!("subcloud {id}'s step: {e} (retried at the next look)");
                }
                ctx.wake.notify_one();
            })
        });
    }
    if let Some(then) = decision.then
        && in_flight.is_empty()
        && ctx.db.move_strategy(&[strategy.state], then, None).await?
    {
        tracing::info!(target: "audit", "subcloud patch strategy {then}");
    }
    Ok(())
}

/// Walks one subcloud's step to its end, storing each state before acting on it; it syncs
/// the subcloud to the system controller's patches as read at `since` or later.
async fn drive(ctx: &Ctx, id: i64, since: Instant) -> Result<(), DbError> {
    let subcloud = ctx.db.subcloud(&id.to_string()).await?;
    let name = subcloud.name;
    let access = ctx.db.access(id).await?;
    let Some(strategy) = ctx.db.strategy().await? else {
        return Ok(());
    };
    let mut state = ctx.db.step(&name).await?.state;
    if state == StepState::Initial {
        if !ctx.writer.write(StepWrite::Start(id)).await? {
            return Ok(());
        }
        state = StepState::UpdatingPatches;
        tracing::info!("subcloud {name}: {state}");
    }
    let remote = match Remote::new(&access, &name, QUERY_TIMEOUT) {
        Ok(r) => r,
        Err(e) => {
            return ctx
                .writer
                .set(id, StepState::Failed, &format!("cannot reach it: {e}"))
                .await;
        }
    };
    while !state.is_terminal() {
        let outcome = match state {
            StepState::UpdatingPatches => {
                update_patches(ctx, &remote, strategy.spec.upload_only, since).await
            }
            StepState::CreatingStrategy => create_strategy(ctx, &remote, &name).await,
            StepState::ApplyingStrategy => apply_strategy(ctx, &remote, id).await,
            StepState::DeletingStrategy => retry(ctx, || remote.delete_strategy())
                .await
                .map(|()| (StepState::Finishing, String::new())),
            StepState::Finishing => finish(ctx, &remote, id, since).await,
            StepState::Initial | StepState::Complete | StepState::Failed | StepState::Aborted => {
                break;
            }
        };
        let (next, details) = match outcome {
            Ok(next) => next,
            Err(why) => (StepState::Failed, why),
        };
        ctx.writer.set(id, next, &details).await?;
        if next == StepState::Failed {
            tracing::warn!(target: "audit", "subcloud {name}: failed: {details}");
        } else {
            tracing::info!("subcloud {name}: {next}");
        }
        state = next;
    }
    Ok(())
}

/// A step's next state and details, or why it failed.
type Outcome = Result<(StepState, String), String>;

/// Runs `op` until the subcloud answers: one that does not answer for the offline grace
/// fails the step as offline; a refusal fails it at once.
async fn retry<T, F, Fut>(ctx: &Ctx, mut op: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RemoteError>>,
{
    let mut since: Option<Instant> = None;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(RemoteError::Unreachable(why)) => {
                let first = *since.get_or_insert_with(Instant::now);
                if first.elapsed() >= ctx.timing.offline_grace {
                    return Err(format!("offline: {why}"));
                }
                tokio::time::sleep(ctx.timing.poll).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The system controller's own patches, from a read that began at `since` or later.
async fn reference_patches(ctx: &Ctx, since: Instant) -> Result<PatchSet, String> {
    // Held while reading, so the steps that ask at once wait for one read.
    let mut cache = ctx.reference_cache.lock().await;
    if let Some((began, patches)) = cache.as_ref()
        && *began >= since
    {
        return Ok(patches.clone());
    }
    let began = Instant::now();
    let patches = ctx
        .reference_api
        .patches()
        .await
        .map_err(|e| format!("the system controller's patches cannot be read: {e}"))?;
    *cache = Some((began, patches.clone()));
    Ok(patches)
}

/// Uploads what the subcloud lacks and applies and removes to match the system controller;
/// a finished strategy of its own is cleared, one under way fails the step.
async fn update_patches(ctx: &Ctx, remote: &Remote, upload_only: bool, since: Instant) -> Outcome {
    let ours = reference_patches(ctx, since).await?;
    let theirs = retry(ctx, || remote.patches()).await?;
    let wanted: Vec<&String> = ours
        .iter()
        .filter(|(_, state)| counts(state))
        .map(|(id, _)| id)
        .collect();
    let mut uploaded = Vec::new();
    for id in wanted.iter().filter(|id| !theirs.contains_key(id.as_str())) {
        remote
            .upload_from(&ctx.reference, &ctx.files, id)
            .await
            .map_err(|why| format!("cannot upload {id}: {why}"))?;
        uploaded.push(id.as_str());
    }
    if upload_only {
        return Ok((
            StepState::Complete,
            if uploaded.is_empty() {
                "nothing to upload".to_owned()
            } else {
                format!("uploaded {}", uploaded.join(", "))
            },
        ));
    }
    let to_apply: Vec<String> = wanted
        .iter()
        .filter(|id| !theirs.get(id.as_str()).is_some_and(|s| counts(s)))
        .map(|id| (*id).clone())
        .collect();
    let to_remove: Vec<String> = theirs
        .iter()
        .filter(|(id, state)| state.as_str() == "Applied" && !wanted.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    if !to_remove.is_empty() {
        retry(ctx, || remote.patch_action("remove", &to_remove))
            .await
            .map_err(|why| format!("cannot remove {}: {why}", to_remove.join(", ")))?;
    }
    if !to_apply.is_empty() {
        retry(ctx, || remote.patch_action("apply", &to_apply))
            .await
            .map_err(|why| format!("cannot apply {}: {why}", to_apply.join(", ")))?;
    }
    // A strategy of its own left from before is cleared; one under way is not ours to touch.
    if let Some(existing) = retry(ctx, || remote.strategy()).await? {
        let state = existing["state"].as_str().unwrap_or_default();
        if matches!(state, "initial" | "building" | "applying" | "aborting") {
            return Err(format!(
                "the subcloud has a patch strategy of its own that is {state}: let it finish or delete it there"
            ));
        }
        retry(ctx, || remote.delete_strategy()).await?;
    }
    let changed = !to_apply.is_empty() || !to_remove.is_empty();
    if !changed {
        let hosts = retry(ctx, || remote.hosts()).await?;
        if hosts.iter().all(|h| h["patch_current"] == true) {
            return Ok((
                StepState::Finishing,
                "no patches need to be installed".to_owned(),
            ));
        }
    }
    let mut done = Vec::new();
    if !uploaded.is_empty() {
        done.push(format!("uploaded {}", uploaded.join(", ")));
    }
    if !to_apply.is_empty() {
        done.push(format!("applied {}", to_apply.join(", ")));
    }
    if !to_remove.is_empty() {
        done.push(format!("removed {}", to_remove.join(", ")));
    }
    Ok((StepState::CreatingStrategy, done.join("; ")))
}

/// Adopts the subcloud's strategy if one exists (made before a crash), else creates it once
/// its hosts have settled; then waits for it to be built.
async fn create_strategy(ctx: &Ctx, remote: &Remote, name: &str) -> Outcome {
    let deadline = Instant::now() + ctx.timing.build_timeout;
    let mut strategy = retry(ctx, || remote.strategy()).await?;
    if strategy.is_none() {
        // The subcloud's controller refuses to build while hosts have not re-reported since
        // an apply or remove. Settled means seen settled on two looks a poll apart (a host
        // can be marked pending just after the apply's answer).
        let mut settled_looks = 0;
        while settled_looks < 2 {
            tokio::time::sleep(ctx.timing.poll).await;
            let hosts = retry(ctx, || remote.hosts()).await?;
            if hosts.iter().all(|h| h["interim_state"] != true) {
                settled_looks += 1;
            } else {
                settled_looks = 0;
            }
            if Instant::now() >= deadline {
                return Err("its hosts did not settle after the patches were applied".into());
            }
        }
        let options = ctx
            .db
            .options_for(Some(name))
            .await
            .map_err(|e| e.to_string())?;
        let body = options.vim_create_body();
        loop {
            match remote.create_strategy(&body).await {
                Ok(s) => {
                    tracing::info!(target: "audit", "subcloud {name}: patch strategy created");
                    strategy = Some(s);
                }
                // Made by a request whose answer was lost (or seen late on a pair's
                // standby): it is ours, once it shows.
                Err(RemoteError::Unreachable(_)) => {}
                Err(RemoteError::Refused {
                    status: 409,
                    message,
                }) if message.contains("already exists") => {}
                // A refusal that passes by itself (a pair's standby catching up with the
                // patches just applied): asked again until the build deadline.
                Err(RemoteError::Refused {
                    status: 409,
                    message,
                }) if is_transient(&message) && Instant::now() < deadline => {
                    tokio::time::sleep(ctx.timing.poll).await;
                    continue;
                }
                Err(e) => return Err(format!("cannot create its patch strategy: {e}")),
            }
            break;
        }
    }
    loop {
        let state = strategy
            .as_ref()
            .and_then(|s| s["state"].as_str())
            .unwrap_or("building")
            .to_owned();
        match state.as_str() {
            "ready-to-apply" => return Ok((StepState::ApplyingStrategy, String::new())),
            "build-failed" | "build-timeout" => {
                let reason = strategy
                    .as_ref()
                    .and_then(|s| s["build-phase"]["reason"].as_str())
                    .unwrap_or_default();
                if is_transient(reason) && Instant::now() < deadline {
                    // Built before its hosts re-reported: never applied, so it is deleted and
                    // made again once they have (logged: the one deliberate second create).
                    tracing::warn!(
                        target: "audit",
                        "subcloud {name}: patch strategy rebuilt: {reason}"
                    );
                    retry(ctx, || remote.delete_strategy()).await?;
                    tokio::time::sleep(ctx.timing.poll).await;
                    return Ok((StepState::CreatingStrategy, format!("rebuilding: {reason}")));
                }
                return Err(format!("its patch strategy {state}: {reason}"));
            }
            "initial" | "building" => {}
            other => {
                // Already further (adopted after a crash): the apply state sorts it out.
                return Ok((StepState::ApplyingStrategy, format!("found {other}")));
            }
        }
        if Instant::now() >= deadline {
            return Err("its patch strategy was not built in time".into());
        }
        tokio::time::sleep(ctx.timing.poll).await;
        strategy = retry(ctx, || remote.strategy()).await?;
        if strategy.is_none() {
            // Not made after all (the create's answer was lost before it got there).
            return Ok((StepState::CreatingStrategy, "creating again".to_owned()));
        }
    }
}

/// Whether a subcloud's refusal to create or build its strategy passes by itself: its
/// precheck's check of a pair's replication, and hosts that have not re-reported since the
/// patches were applied.
fn is_transient(message: &str) -> bool {
    message.contains("controllers-in-sync fail") || message.contains("pending patch current")
}

/// The reason a subcloud's strategy gives for failing.
fn failure_reason(strategy: &Value) -> String {
    let state = strategy["state"].as_str().unwrap_or_default();
    let reason = ["apply-phase", "abort-phase"]
        .iter()
        .filter_map(|p| strategy[p]["reason"].as_str())
        .find(|r| !r.is_empty())
        .unwrap_or_default();
    if reason.is_empty() {
        format!("its patch strategy is {state}")
    } else {
        format!("its patch strategy is {state}: {reason}")
    }
}

/// Applies the subcloud's strategy (unless under way) and waits for it to end, keeping the
/// step's details at its progress.
async fn apply_strategy(ctx: &Ctx, remote: &Remote, id: i64) -> Outcome {
    let mut shown = String::new();
    loop {
        let Some(strategy) = retry(ctx, || remote.strategy()).await? else {
            return Err("its patch strategy is gone (deleted on the subcloud?)".into());
        };
        match strategy["state"].as_str().unwrap_or_default() {
            "ready-to-apply" => retry(ctx, || remote.apply_strategy()).await?,
            "applied" => return Ok((StepState::DeletingStrategy, String::new())),
            "apply-failed" | "apply-timeout" | "aborted" | "abort-failed" | "build-failed"
            | "build-timeout" => return Err(failure_reason(&strategy)),
            _ => {
                let progress = format!(
                    "{} {}%",
                    strategy["state"].as_str().unwrap_or_default(),
                    strategy["current-phase-completion-percentage"]
                );
                if progress != shown {
                    ctx.writer
                        .set(id, StepState::ApplyingStrategy, &progress)
                        .await
                        .map_err(|e| e.to_string())?;
                    shown = progress;
                }
            }
        }
        tokio::time::sleep(ctx.timing.poll).await;
    }
}

/// Complete when the subcloud is in sync and every host is patch-current; its sync status is
/// recorded at once.
async fn finish(ctx: &Ctx, remote: &Remote, id: i64, since: Instant) -> Outcome {
    let ours = reference_patches(ctx, since).await?;
    let theirs = retry(ctx, || remote.patches()).await?;
    let (sync_status, sync_detail) = compare(&ours, &theirs);
    let recorded = AuditResult {
        availability: Availability::Online,
        sync_status,
        sync_detail: sync_detail.clone(),
    };
    if let Err(e) = ctx.writer.write(StepWrite::Audit(id, recorded)).await {
        tracing::warn!("recording subcloud {id}'s sync: {e}");
    }
    if sync_status != SyncStatus::InSync {
        return Err(format!("still out of sync: {sync_detail}"));
    }
    let hosts = retry(ctx, || remote.hosts()).await?;
    let behind: Vec<&str> = hosts
        .iter()
        .filter(|h| h["patch_current"] != true)
        .filter_map(|h| h["hostname"].as_str())
        .collect();
    if !behind.is_empty() {
        return Err(format!("hosts not patch-current: {}", behind.join(", ")));
    }
    Ok((StepState::Complete, String::new()))
}
