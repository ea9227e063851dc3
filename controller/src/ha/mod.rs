//! Controller redundancy: two controller daemons, one active, one standby holding a full copy.
//!
//! - **Replication** is by state: after a mutation the active builds the manifest of its state
//!   directory (path → SHA-256), the standby answers which content it lacks, the active sends
//!   those blobs, and the standby builds the new generation and swaps it in atomically
//!   ([`gens`]). A mutating API call returns only after the standby confirmed (synchronous);
//!   a standby that is down is caught up by the same exchange when it returns, however many
//!   changes it missed (state transfer needs no journal replay).
//! - **Terms** order the actives: each swact raises the term, every message carries it, and
//!   a controller that sees a higher term steps down, so a stale active brought back can never
//!   overwrite the newer state.
//! - **Swact** hands over with the mutations and the strategy paused: final replication, the
//!   peer promoted at term + 1, then this controller becomes standby. A crash half-way leaves
//!   this side "handing over", which the next contact with the peer resolves either way.

pub(crate) mod gens;
pub(crate) mod manifest;
#[cfg(test)]
mod model_tests;
pub(crate) mod peer_api;
pub(crate) mod rules;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use gens::Generations;
use manifest::{Hasher, Manifest};
use rules::{PairRules, Rules};

/// What the replication layer needs of the controller whose state directory it copies —
/// nothing of the app, the strategy or the API: a way to pause the writers and callbacks for
/// the moments the state or the role changed under them.
pub(crate) trait StateOwner: Send + Sync {
    /// Runs `f` while nothing writes the store (the cut a replication round copies).
    fn with_store_paused(&self, f: &mut dyn FnMut());
    /// Runs `f` while no writer runs at all (a handover: the strategy, then the store).
    fn with_all_paused(&self, f: &mut dyn FnMut());
    /// The state directory was replaced by the active's: reopen everything from it.
    fn reopen(&self) -> Result<(), String>;
    /// This controller was promoted: what only the active runs should start now.
    fn became_active(&self);
    /// This controller handed over: whoever waits on it should look for the new active.
    fn handed_over(&self);
}

/// This controller's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Role {
    /// Serves mutations and runs the strategy.
    Active,
    /// Serves reads from its copy; takes the active's state.
    Standby,
    /// Was active and is promoting the peer; neither serves mutations until it is settled.
    HandingOver,
}

/// What `ha.json` holds (outside the replicated state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HaState {
    pub(crate) term: u64,
    pub(crate) role: Role,
    /// The active controller's host name, as far as this controller knows.
    pub(crate) active: String,
}

/// The URLs a controller serves, advertised to the peer (redirects point at them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Urls {
    pub(crate) api: Option<String>,
    pub(crate) agent: Option<String>,
    pub(crate) vim: Option<String>,
    pub(crate) web: Option<String>,
}

/// A controller's answer to `GET /ha/v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Status {
    pub(crate) host: String,
    pub(crate) term: u64,
    pub(crate) role: Role,
    pub(crate) active: String,
    /// Digest of the current state's manifest, when asked for (`?digest=true`): it costs a
    /// walk of the state, which the twice-a-second peer check does not need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) digest: Option<String>,
    pub(crate) urls: Urls,
}

/// How the last replication round ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RoundOutcome {
    /// The standby holds the state.
    Replicated,
    /// The standby could not be reached: the change stands here and is copied when it returns.
    PeerDown(String),
    /// The standby is up and refused or failed to take the change.
    Refused(String),
}

/// Why one exchange with the standby did not complete.
#[derive(Debug)]
enum PushError {
    /// The standby could not be reached.
    PeerDown(String),
    /// The standby refused or failed.
    Refused(String),
    /// The standby is at a newer term: this side is stale (it checks and steps down; not
    /// from inside the exchange, which may hold the transition lock).
    Stale(String),
    /// A file changed while it was being sent: the exchange starts over.
    Changed,
}

/// Runs `attempt` again while files change under it (at most 20 times; then `Changed`).
fn until_unchanged<T>(mut attempt: impl FnMut() -> Result<T, PushError>) -> Result<T, PushError> {
    for _ in 0..20 {
        match attempt() {
            Err(PushError::Changed) => continue,
            other => return other,
        }
    }
    Err(PushError::Changed)
}

#[derive(Default)]
struct Rounds {
    /// Rounds asked for (a barrier asks for the next one).
    requested: u64,
    /// The latest round that finished, and how.
    finished: u64,
    outcome: Option<RoundOutcome>,
    /// The digest the standby confirmed last.
    acked_digest: Option<String>,
    /// Rounds run, by outcome: replicated, peer down, refused.
    counts: [u64; 3],
    /// Since when a change has waited for the standby (none: it holds everything).
    behind_since: Option<Instant>,
}

/// How replication has gone since this controller started (for the metrics).
#[derive(Clone, Debug, Default)]
pub(crate) struct ReplicationStats {
    /// Rounds after which the standby held the state.
    pub(crate) replicated: u64,
    /// Rounds that found the standby unreachable.
    pub(crate) peer_down: u64,
    /// Rounds the standby refused or failed.
    pub(crate) refused: u64,
    /// How long the oldest change the standby lacks has waited.
    pub(crate) lag: Duration,
}

/// The redundancy of one controller.
pub(crate) struct Ha {
    pub(crate) host: String,
    peer: String,
    token: String,
    state_path: PathBuf,
    state: Mutex<HaState>,
    pub(crate) gens: Generations,
    hasher: Hasher,
    pub(crate) urls: OnceLock<Urls>,
    peer_status: Mutex<Option<Status>>,
    rounds: Mutex<Rounds>,
    rounds_changed: Condvar,
    /// Serializes what changes the local state's generation (commits, promotions, handover).
    pub(crate) transition: Mutex<()>,
    /// The manifest a `sync` announced (and its digest), waiting for its `commit`.
    pending: Mutex<Option<(String, Manifest)>>,
    /// Set while a swact hands over: the strategy does not advance meanwhile.
    pub(crate) handing_over: std::sync::atomic::AtomicBool,
    /// One exchange with the standby at a time.
    push_lock: Mutex<()>,
    /// Why the last swact a strategy started failed (its step fails with it).
    swact_failed: Mutex<Option<String>>,
    http: reqwest::blocking::Client,
    owner: OnceLock<Arc<dyn StateOwner>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Digest of a manifest (equal states, equal digests).
pub(crate) fn digest(m: &Manifest) -> String {
    let bytes = serde_json::to_vec(m).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// How long a mutating call waits for the standby's confirmation.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the pair checks on each other (and the active looks for unreplicated changes).
const TICK: Duration = Duration::from_millis(500);

/// Configuration of the pair, as far as this controller is concerned.
pub(crate) struct HaConfig {
    pub(crate) host: String,
    pub(crate) peer: String,
    pub(crate) token: String,
    pub(crate) initial_active: String,
    /// The CA bundle an `https://` peer's certificate must chain to.
    pub(crate) ca_bundle: Option<std::path::PathBuf>,
}

/// The largest answer read from the peer (a manifest of a large state is a few MiB; the
/// pair endpoint takes at most 64 MiB the other way).
const MAX_PEER_ANSWER: u64 = 64 << 20;

/// A peer's answer, read whole only up to [`MAX_PEER_ANSWER`].
fn bounded(response: reqwest::blocking::Response) -> Result<Vec<u8>, String> {
    durable_fs::read_at_most(response, MAX_PEER_ANSWER).map_err(|e| e.to_string())
}

impl Ha {
    /// Opens the state directory as generations and reads (or creates) `ha.json`.
    pub(crate) fn open(root: &Path, config: HaConfig) -> Result<Ha, String> {
        let gens = Generations::open(root).map_err(|e| e.to_string())?;
        let state_path = root.join("ha.json");
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice::<HaState>(&bytes)
                .map_err(|e| format!("{}: {e}", state_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let role = if config.host == config.initial_active {
                    Role::Active
                } else {
                    Role::Standby
                };
                HaState {
                    term: 1,
                    role,
                    active: config.initial_active.clone(),
                }
            }
            Err(e) => return Err(format!("{}: {e}", state_path.display())),
        };
        let mut http = reqwest::blocking::Client::builder();
        if let Some(bundle) = &config.ca_bundle {
            let tls = tls::Trust::CaBundle(bundle.clone())
                .client_config()
                .map_err(|e| format!("the peer's CA bundle: {e}"))?;
            http = http.tls_backend_preconfigured(tls);
        }
        let http = http
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let ha = Ha {
            host: config.host,
            peer: config.peer.trim_end_matches('/').to_owned(),
            token: config.token,
            state_path,
            state: Mutex::new(state.clone()),
            gens,
            hasher: Hasher::default(),
            urls: OnceLock::new(),
            peer_status: Mutex::new(None),
            rounds: Mutex::new(Rounds::default()),
            rounds_changed: Condvar::new(),
            transition: Mutex::new(()),
            pending: Mutex::new(None),
            handing_over: std::sync::atomic::AtomicBool::new(false),
            swact_failed: Mutex::new(None),
            push_lock: Mutex::new(()),
            http,
            owner: OnceLock::new(),
        };
        ha.persist(&state)
            .map_err(|e| format!("{}: {e}", ha.state_path.display()))?;
        Ok(ha)
    }

    /// Connects the controller that owns the state (after it was opened on
    /// [`Ha::data_dir`]).
    pub(crate) fn attach(&self, owner: Arc<dyn StateOwner>) {
        let _ = self.owner.set(owner);
    }

    fn owner(&self) -> Option<&Arc<dyn StateOwner>> {
        self.owner.get()
    }

    /// Where the controller's state lives (the current generation).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.gens.current()
    }

    fn persist(&self, state: &HaState) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        Ok(durable_fs::write(&self.state_path, &bytes)?)
    }

    /// Changes the role durably (the file first, then memory).
    fn set_state(&self, new: HaState) -> std::io::Result<()> {
        let mut state = lock(&self.state);
        if *state == new {
            return Ok(());
        }
        self.persist(&new)?;
        tracing::info!(host = %self.host, term = new.term, role = ?new.role, active = %new.active, "controller role");
        *state = new;
        Ok(())
    }

    pub(crate) fn state(&self) -> HaState {
        lock(&self.state).clone()
    }

    /// Whether this controller serves mutations now.
    pub(crate) fn is_active(&self) -> bool {
        lock(&self.state).role == Role::Active
    }

    /// Whether the strategy may advance here now.
    pub(crate) fn may_run_strategy(&self) -> bool {
        self.is_active() && !self.handing_over.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The peer as last seen.
    pub(crate) fn peer_status(&self) -> Option<Status> {
        lock(&self.peer_status).clone()
    }

    /// The refusal of a mutation on a controller that is not active: the words, and where
    /// the active one serves (`pick` chooses which of its URLs).
    pub(crate) fn not_active(
        &self,
        pick: fn(&Urls) -> Option<String>,
    ) -> Option<(String, Option<String>)> {
        let state = self.state();
        if state.role == Role::Active {
            return None;
        }
        // The peer's URLs as the background check last saw them (they do not change with
        // its role); never asked here, so a refusal costs no round trip to the peer.
        let url = self
            .peer_status()
            .as_ref()
            .filter(|p| p.host == state.active)
            .and_then(|p| pick(&p.urls));
        let message = match state.role {
            Role::HandingOver => format!(
                "{} is handing over to the other controller (swact in progress); retry in a moment",
                self.host
            ),
            _ => match &url {
                Some(u) => format!(
                    "{} is not active; active is {} at {u}",
                    self.host, state.active
                ),
                None => format!(
                    "{} is not active; active is {} (not reachable from here)",
                    self.host, state.active
                ),
            },
        };
        Some((message, url))
    }

    /// The peer's status asked now, with the digest of its state (compare with
    /// [`Ha::digest_now`]), or why it did not answer.
    pub(crate) fn peer_now(&self) -> Result<Status, String> {
        self.get_peer_status(true)
    }

    /// Whether the peer holds the same state as this controller now (`None` when it cannot
    /// be asked). Asks the peer: for `system show`, not for anything frequent.
    pub(crate) fn in_sync(&self) -> Option<bool> {
        let peer = self.get_peer_status(true).ok()?.digest?;
        Some(peer == self.digest_now())
    }

    /// Digest of this controller's state now.
    pub(crate) fn digest_now(&self) -> String {
        self.gens
            .current_manifest(&self.hasher)
            .map(|m| digest(&m))
            .unwrap_or_default()
    }

    pub(crate) fn status_now(&self, with_digest: bool) -> Status {
        let state = self.state();
        let digest = with_digest.then(|| self.digest_now());
        Status {
            host: self.host.clone(),
            term: state.term,
            role: state.role,
            active: state.active,
            digest,
            urls: self.urls.get().cloned().unwrap_or_default(),
        }
    }

    fn get_peer_status(&self, with_digest: bool) -> Result<Status, String> {
        let query = if with_digest { "?digest=true" } else { "" };
        let response = self
            .http
            .get(format!("{}/ha/v1/status{query}", self.peer))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(3))
            .send()
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("peer status: HTTP {}", response.status()));
        }
        serde_json::from_slice::<Status>(&bounded(response)?).map_err(|e| e.to_string())
    }

    /// One check on the peer: learn its state and settle roles by term.
    pub(crate) fn check_peer(&self) {
        let peer = match self.get_peer_status(false) {
            Ok(p) => p,
            Err(_) => {
                *lock(&self.peer_status) = None;
                return;
            }
        };
        *lock(&self.peer_status) = Some(peer.clone());
        let _transition = lock(&self.transition);
        let me = self.state();
        let result = match PairRules
            .on_peer_status(&me, &self.host, &peer.host, peer.term, peer.role)
        {
            Some(new) => {
                if new.role == Role::Standby && me.role == Role::Active && new.term == me.term {
                    tracing::error!("both controllers active at term {}: stepping down", me.term);
                }
                self.set_state(new)
            }
            None => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!("cannot record the controller role: {e}");
        }
    }

    /// Asks for a replication round and waits for it: `Ok` once the standby holds everything
    /// committed before the call (or it is down and will catch up), `Err` (in words) if not.
    pub(crate) fn barrier(&self) -> Result<(), String> {
        if !self.is_active() {
            return Ok(());
        }
        let mut rounds = lock(&self.rounds);
        rounds.requested += 1;
        rounds.behind_since.get_or_insert_with(Instant::now);
        let target = rounds.requested;
        self.rounds_changed.notify_all();
        let deadline = Instant::now() + BARRIER_TIMEOUT;
        while rounds.finished < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the standby controller did not confirm the change within {} s; it was made on {} and will be copied when the standby can take it",
                    BARRIER_TIMEOUT.as_secs(),
                    self.host
                ));
            }
            rounds = self
                .rounds_changed
                .wait_timeout(rounds, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        match &rounds.outcome {
            Some(RoundOutcome::Refused(why)) => Err(format!(
                "the change was made on {} but the standby controller could not take it: {why}",
                self.host
            )),
            Some(RoundOutcome::PeerDown(why)) => {
                tracing::warn!(
                    "standby unreachable ({why}): the change will be copied when it returns"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Replication rounds by outcome, and the lag (for the metrics).
    pub(crate) fn replication_stats(&self) -> ReplicationStats {
        let rounds = lock(&self.rounds);
        ReplicationStats {
            replicated: rounds.counts[0],
            peer_down: rounds.counts[1],
            refused: rounds.counts[2],
            lag: rounds.behind_since.map_or(Duration::ZERO, |t| t.elapsed()),
        }
    }

    /// The replication and peer-check loop (a thread of its own; returns when `stop` is set).
    pub(crate) fn run(self: &Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let mut last_check = Instant::now() - TICK;
        while !*stop.borrow() {
            if last_check.elapsed() >= TICK {
                self.check_peer();
                last_check = Instant::now();
            }
            let target = {
                let rounds = lock(&self.rounds);
                let (rounds, _) = self
                    .rounds_changed
                    .wait_timeout_while(rounds, TICK, |r| r.requested <= r.finished)
                    .unwrap_or_else(|p| p.into_inner());
                rounds.requested
            };
            if !self.is_active() || self.handing_over.load(std::sync::atomic::Ordering::Acquire) {
                // Nothing to send; a barrier on a controller that is not active passes.
                self.finish(target, RoundOutcome::Replicated, None);
                continue;
            }
            let (outcome, acked) = self.round();
            {
                let mut rounds = lock(&self.rounds);
                let slot = match outcome {
                    RoundOutcome::Replicated => 0,
                    RoundOutcome::PeerDown(_) => 1,
                    RoundOutcome::Refused(_) => 2,
                };
                rounds.counts[slot] += 1;
            }
            self.finish(target, outcome, acked);
        }
    }

    fn finish(&self, target: u64, outcome: RoundOutcome, acked: Option<String>) {
        let mut rounds = lock(&self.rounds);
        if acked.is_some() {
            rounds.acked_digest = acked;
        }
        rounds.finished = rounds.finished.max(target);
        if outcome == RoundOutcome::Replicated && rounds.finished >= rounds.requested {
            rounds.behind_since = None;
        }
        rounds.outcome = Some(outcome);
        self.rounds_changed.notify_all();
    }

    /// One replication round: the state's manifest (taken with the store held, so it is a
    /// consistent cut), then whatever the standby lacks, then its commit.
    fn round(&self) -> (RoundOutcome, Option<String>) {
        let Some(owner) = self.owner() else {
            return (RoundOutcome::PeerDown("starting".into()), None);
        };
        let dir = self.data_dir();
        // Files written outside the store (the strategy, host records) may change while they
        // are sent: then the round starts over from a fresh manifest.
        let sent = until_unchanged(|| {
            // The manifest with the store held (a consistent cut), before the push lock: a
            // swact takes the store first, then the push lock.
            let mut cut = None;
            owner.with_store_paused(&mut || cut = Some(self.hasher.manifest(&dir)));
            let manifest = cut
                .unwrap_or_else(|| Err(std::io::Error::other("the store was not paused")))
                .map_err(|e| PushError::Refused(format!("reading the state: {e}")))?;
            let wanted = digest(&manifest);
            let _push = lock(&self.push_lock);
            // Already held by the standby, or no longer active (a swact carried every change
            // made before it).
            if lock(&self.rounds).acked_digest.as_deref() == Some(wanted.as_str())
                || !self.is_active()
            {
                return Ok(None);
            }
            self.push(&dir, &manifest, &wanted)?;
            Ok(Some(wanted))
        });
        match sent {
            Ok(acked) => (RoundOutcome::Replicated, acked),
            Err(PushError::PeerDown(why)) => (RoundOutcome::PeerDown(why), None),
            Err(PushError::Refused(why)) => (RoundOutcome::Refused(why), None),
            Err(PushError::Stale(why)) => {
                self.check_peer();
                (RoundOutcome::Refused(why), None)
            }
            Err(PushError::Changed) => (
                RoundOutcome::Refused("the state kept changing while it was sent".into()),
                None,
            ),
        }
    }

    fn push(&self, dir: &Path, manifest: &Manifest, wanted: &str) -> Result<(), PushError> {
        let term = self.state().term;
        let down = |e: reqwest::Error| {
            if e.is_connect() || e.is_timeout() {
                PushError::PeerDown(e.to_string())
            } else {
                PushError::Refused(e.to_string())
            }
        };
        let response = self
            .http
            .post(format!("{}/ha/v1/sync", self.peer))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({"term": term, "host": self.host, "manifest": manifest}))
            .send()
            .map_err(down)?;
        let missing: Vec<String> = self.answer(response)?;
        for sha in &missing {
            let Some((rel, entry)) = manifest.files.iter().find(|(_, e)| &e.sha256 == sha) else {
                return Err(PushError::Refused(format!(
                    "the standby asked for unknown content {sha}"
                )));
            };
            let path = dir.join(rel);
            // Replaced since the manifest (every state file is replaced by rename): start over.
            let Ok(file) = std::fs::File::open(&path) else {
                return Err(PushError::Changed);
            };
            let same = file
                .metadata()
                .ok()
                .and_then(|m| self.hasher.hash_of(&m))
                .is_some_and(|h| h == entry.sha256);
            if !same {
                return Err(PushError::Changed);
            }
            let response = self
                .http
                .put(format!(
                    "{}/ha/v1/blob/{sha}?size={}",
                    self.peer, entry.size
                ))
                .bearer_auth(&self.token)
                .body(reqwest::blocking::Body::sized(file, entry.size))
                .send()
                .map_err(down)?;
            let _: serde_json::Value = self.answer(response)?;
        }
        let response = self
            .http
            .post(format!("{}/ha/v1/commit", self.peer))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({"term": term, "host": self.host, "digest": wanted}))
            .send()
            .map_err(down)?;
        let _: serde_json::Value = self.answer(response)?;
        Ok(())
    }

    /// A peer's answer: its JSON, or the refusal (`Stale` when the peer is at a newer term).
    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::blocking::Response,
    ) -> Result<T, PushError> {
        let status = response.status();
        let bytes =
            bounded(response).map_err(|e| PushError::Refused(format!("peer answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice::<T>(&bytes)
                .map_err(|e| PushError::Refused(format!("peer answer: {e}")));
        }
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = body
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("no reason given")
            .to_owned();
        let why = format!("HTTP {status}: {message}");
        Err(if status == reqwest::StatusCode::CONFLICT {
            PushError::Stale(why)
        } else {
            PushError::Refused(why)
        })
    }

    /// Reopens the controller's state after the generation changed under it.
    fn reload(&self) -> Result<(), String> {
        self.owner().map_or(Ok(()), |owner| owner.reopen())
    }

    /// Swact: hands the active role to the peer. Mutations wait meanwhile (the store is
    /// held), the strategy does not advance, and the peer must hold the final state before it
    /// is promoted.
    pub(crate) fn swact(&self) -> Result<String, String> {
        use std::sync::atomic::Ordering;
        if !self.is_active() {
            return Err(self
                .not_active(|u| u.api.clone())
                .map_or_else(|| "not active".into(), |(m, _)| m));
        }
        let peer = self
            .get_peer_status(false)
            .map_err(|e| format!("Cannot swact: the standby controller is not reachable ({e})."))?;
        if peer.role != Role::Standby {
            return Err(format!("Cannot swact: {} is not standby.", peer.host));
        }
        let Some(owner) = self.owner() else {
            return Err("Cannot swact: the controller is starting".into());
        };
        self.handing_over.store(true, Ordering::Release);
        let mut result = Err("Cannot swact: the writers could not be paused".to_owned());
        owner.with_all_paused(&mut || result = self.hand_over(&peer));
        self.handing_over.store(false, Ordering::Release);
        if let Ok(message) = &result {
            // Agents waiting for orders here go to the new active controller now.
            owner.handed_over();
            tracing::info!(target: "audit", "swact: {}", message.trim());
        }
        result
    }

    /// The handover itself, with every writer paused: the final state to the peer, then its
    /// promotion at a new term.
    fn hand_over(&self, peer: &Status) -> Result<String, String> {
        {
            let _push = lock(&self.push_lock);
            let _transition = lock(&self.transition);
            let dir = self.data_dir();
            // Host records may still change (agents report) while the final state is sent:
            // then it is sent again. (A stale term is settled by the next peer check, which
            // needs the transition lock held here.)
            let wanted = until_unchanged(|| {
                let manifest = self
                    .hasher
                    .manifest(&dir)
                    .map_err(|e| PushError::Refused(format!("reading the state: {e}")))?;
                let wanted = digest(&manifest);
                self.push(&dir, &manifest, &wanted)?;
                Ok(wanted)
            })
            .map_err(|e| match e {
                PushError::Changed => {
                    "Cannot swact: the state kept changing during the handover; try again".into()
                }
                PushError::PeerDown(why) | PushError::Refused(why) | PushError::Stale(why) => {
                    format!("Cannot swact: the standby could not take the final state: {why}")
                }
            })?;
            lock(&self.rounds).acked_digest = Some(wanted.clone());
            let me = self.state();
            let new_term = PairRules.swact_term(&me, peer.term);
            self.set_state(HaState {
                term: me.term,
                role: Role::HandingOver,
                active: self.host.clone(),
            })
            .map_err(|e| format!("Cannot swact: {e}"))?;
            let promoted = self
                .http
                .post(format!("{}/ha/v1/promote", self.peer))
                .bearer_auth(&self.token)
                .json(&serde_json::json!({"term": new_term, "host": self.host, "digest": wanted}))
                .send();
            match promoted {
                Ok(r) if r.status().is_success() => {
                    self.set_state(HaState {
                        term: new_term,
                        role: Role::Standby,
                        active: peer.host.clone(),
                    })
                    .map_err(|e| format!("swact: {e}"))?;
                    *lock(&self.peer_status) = Some(Status {
                        term: new_term,
                        role: Role::Active,
                        active: peer.host.clone(),
                        ..peer.clone()
                    });
                    Ok(format!(
                        "{} is now standby; {} is active.\n",
                        self.host, peer.host
                    ))
                }
                Ok(r) => {
                    let why = bounded(r)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    self.set_state(me).map_err(|e| format!("swact: {e}"))?;
                    Err(format!(
                        "Cannot swact: {} refused to take over: {why}",
                        peer.host
                    ))
                }
                // Unknown whether the promotion arrived: stay handing over until the peer
                // says (check_peer settles it).
                Err(e) => Err(format!(
                    "swact: the promotion of {} may not have arrived ({e}); the controllers settle it when they reach each other",
                    peer.host
                )),
            }
        }
    }

    /// A strategy's swact of this (active) controller: started in the background, since the
    /// handover waits for the strategy the caller holds. `Err` once it failed.
    pub(crate) fn start_swact(self: &Arc<Self>) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if let Some(why) = lock(&self.swact_failed).take() {
            return Err(why);
        }
        if self.handing_over.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let ha = self.clone();
        std::thread::spawn(move || {
            let result = ha.swact();
            // A swact refused before it began leaves the flag to this thread.
            ha.handing_over.store(false, Ordering::Release);
            if let Err(why) = result {
                tracing::error!("strategy swact failed: {why}");
                *lock(&ha.swact_failed) = Some(why);
            }
        });
        Ok(())
    }

    /// `host-swact --force` on a standby whose active is gone: take over at a new term. The
    /// changes the old active made after the last replication are lost (it steps down and
    /// takes this state when it returns).
    pub(crate) fn force_takeover(&self) -> Result<String, String> {
        if self.is_active() {
            return Err(format!("{} is already active.", self.host));
        }
        if let Ok(peer) = self.get_peer_status(false)
            && peer.role == Role::Active
        {
            return Err(format!(
                "{} is active and reachable: swact without --force (from {}).",
                peer.host, peer.host
            ));
        }
        let _transition = lock(&self.transition);
        let me = self.state();
        let taken =
            PairRules.takeover(&me, &self.host, self.peer_status().map_or(0, |p| p.term))?;
        let term = taken.term;
        self.set_state(taken).map_err(|e| e.to_string())?;
        tracing::warn!(target: "audit", "forced takeover by {} at term {term}", self.host);
        Ok(format!(
            "{} is now active (forced, term {term}).\n",
            self.host
        ))
    }

    // ---- the receiving side (peer API) ----

    /// Checks a message's term: `Err` (HTTP 409) if it is older than this controller's; a
    /// newer term makes this controller standby under `from`.
    fn accept_term(&self, term: u64, from: &str) -> Result<(), String> {
        if let Some(new) = PairRules.accept_term(&self.state(), &self.host, term, from)? {
            self.set_state(new).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn receive_sync(
        &self,
        term: u64,
        from: &str,
        manifest: Manifest,
    ) -> Result<Vec<String>, (u16, String)> {
        manifest.check().map_err(|e| (400, e))?;
        let _transition = lock(&self.transition);
        self.accept_term(term, from).map_err(|e| (409, e))?;
        let have = self
            .gens
            .current_manifest(&self.hasher)
            .map_err(|e| (500, e.to_string()))?;
        let missing = self.gens.missing(&manifest, &have);
        *lock(&self.pending) = Some((digest(&manifest), manifest));
        Ok(missing)
    }

    /// Whether the announced state holds content `sha256` of `size` bytes: only such blobs
    /// are staged (so a blob's size is the one its manifest announced).
    fn expects_blob(&self, sha256: &str, size: u64) -> bool {
        lock(&self.pending).as_ref().is_some_and(|(_, m)| {
            m.files
                .values()
                .any(|e| e.sha256 == sha256 && e.size == size)
        })
    }

    fn receive_commit(&self, term: u64, from: &str, wanted: &str) -> Result<(), (u16, String)> {
        let _transition = lock(&self.transition);
        self.accept_term(term, from).map_err(|e| (409, e))?;
        let Some((pending_digest, manifest)) = lock(&self.pending).take() else {
            return Err((400, "commit without sync".into()));
        };
        if pending_digest != wanted {
            return Err((400, "commit of a state that was not announced".into()));
        }
        let have = self
            .gens
            .current_manifest(&self.hasher)
            .map_err(|e| (500, e.to_string()))?;
        if digest(&have) != wanted {
            self.gens
                .commit(&manifest, &have)
                .map_err(|e| (500, e.to_string()))?;
            self.reload().map_err(|e| (500, e))?;
            self.gens.remove_old().map_err(|e| (500, e.to_string()))?;
        }
        Ok(())
    }

    fn receive_promote(&self, term: u64, from: &str, wanted: &str) -> Result<(), (u16, String)> {
        let _transition = lock(&self.transition);
        let me = self.state();
        // Only a newer term is worth the walk of the state.
        let holds = term > me.term
            && digest(
                &self
                    .gens
                    .current_manifest(&self.hasher)
                    .map_err(|e| (500, e.to_string()))?,
            ) == wanted;
        let promoted = PairRules
            .on_promote(&me, &self.host, term, from, holds)
            .map_err(|e| (409, e))?;
        self.set_state(promoted).map_err(|e| (500, e.to_string()))?;
        // Nothing to replicate until the old active confirms it became standby.
        lock(&self.rounds).acked_digest = None;
        if let Some(owner) = self.owner() {
            owner.became_active();
        }
        tracing::info!(target: "audit", "{} promoted by {from} at term {term}", self.host);
        Ok(())
    }
}
