//! The agent loop: report, long-poll orders, install, reboot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use host_state::protocol::RepoIndex;
use host_state::protocol::{AgentOrder, Delivery, HostReport, ReportReply};
use host_state::{HostDiff, InstallState, InstalledPackage, PackageChange, desired_packages};
use patch_format::Personality;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::{
    BuiltinInstaller, InstallError, Installer, Recovery, RpmToolInstaller, Transaction,
    TransactionPackage,
};

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Controller agent-endpoint URLs, e.g. `http://192.168.204.2:5488` (the first that
    /// answers is used).
    pub controllers: Vec<String>,
    /// The agent token.
    pub token: String,
    /// This host's name.
    pub hostname: String,
    /// This host's management address (reported only).
    pub ip: String,
    /// Node type.
    pub personality: Personality,
    /// Release the host runs.
    pub release: String,
    /// The root file system packages are installed into (`/` in production).
    pub root: PathBuf,
    /// Where the agent keeps its own state and download cache.
    pub state_dir: PathBuf,
    /// Seconds between reports (and the long-poll length).
    pub heartbeat: Duration,
    /// Command that reboots the host when the root is `/` (none: soft reboot).
    pub reboot_command: Option<String>,
    /// Use the system's `rpm` tool instead of the builtin installer.
    pub use_rpm_tool: bool,
    /// The workload hook (none: the host runs no workloads the strategy must handle).
    pub workload_hook: Option<String>,
    /// Trusted RPM signing keys (`*.asc`): when set, every RPM must verify before an install
    /// touches the root.
    pub rpm_keyring: Option<PathBuf>,
}

impl AgentConfig {
    /// A host running `release` at `root`, reporting to `controller` with `token`; the
    /// rest defaulted: state under `<root>/var/lib/stx-patch/agent`, address 127.0.0.1, a
    /// 10 s heartbeat, the builtin installer, soft reboots, no hooks, no RPM keyring.
    pub fn new(
        controller: impl Into<String>,
        token: impl Into<String>,
        hostname: impl Into<String>,
        personality: Personality,
        release: impl Into<String>,
        root: impl Into<PathBuf>,
    ) -> AgentConfig {
        let root = root.into();
        AgentConfig {
            controllers: vec![controller.into()],
            token: token.into(),
            hostname: hostname.into(),
            ip: "127.0.0.1".into(),
            personality,
            release: release.into(),
            state_dir: root.join("var/lib/stx-patch/agent"),
            root,
            heartbeat: Duration::from_secs(10),
            reboot_command: None,
            use_rpm_tool: false,
            workload_hook: None,
            rpm_keyring: None,
        }
    }
}

/// What the agent persists across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AgentState {
    boot_id: String,
    reboot_pending: bool,
    install_done: u64,
    install_state: InstallState,
    last_error: Option<String>,
    /// Set while an install runs: found set after a restart, the install was interrupted.
    installing: bool,
    /// The workload hook disabled this host's compute services.
    #[serde(default)]
    services_disabled: bool,
    /// The install order being worked on (recorded as soon as it arrives).
    #[serde(default)]
    in_progress: u64,
    /// The last order delivery received (acknowledged in the next poll; recorded before it is
    /// acted on, so a delivery handed over again is not acted on twice).
    #[serde(default)]
    received: u64,
    rejected_at: Option<u64>,
}

/// The agent.
pub struct Agent {
    config: AgentConfig,
    instance: String,
    http: reqwest::Client,
    installer: Arc<std::sync::Mutex<Installer>>,
    state: Mutex<AgentState>,
    controllers: failover::Controllers,
    /// The workloads the hook listed last (kept when a listing fails).
    workloads: Mutex<Vec<host_state::protocol::Workload>>,
    /// Keys every RPM must be signed by (none: signatures are not checked).
    rpm_keyring: Option<patch_format::RpmKeyring>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The installer could not be opened.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// Local state could not be read or written.
    #[error("agent state {path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Packages downloaded in parallel during an install.
const DOWNLOADS_AT_ONCE: usize = 4;

/// How long an install keeps retrying a fetch that failed for a reason that may pass.
pub const FETCH_RETRY: Duration = Duration::from_secs(120);

/// A request to the controller that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// No controller served it (unreachable, standby, handing over).
    #[error(transparent)]
    Unreachable(#[from] failover::FailoverError),
    /// The controller answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The request's URL.
        url: String,
        /// The status.
        status: u16,
        /// The answer's text.
        body: String,
    },
    /// The answer could not be read or understood.
    #[error("{what}: {reason}")]
    BadAnswer {
        /// What was asked for.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl ControllerError {
    /// Whether asking again later may succeed (a controller restarting or swacting).
    fn may_pass(&self) -> bool {
        match self {
            ControllerError::Unreachable(_) => true,
            ControllerError::Status { status, .. } => {
                // A server error, or every controller refusing as a standby.
                *status >= 500 || *status == 307
            }
            ControllerError::BadAnswer { .. } => false,
        }
    }
}

impl From<ControllerError> for Fetch {
    fn from(e: ControllerError) -> Fetch {
        if e.may_pass() {
            Fetch::Retry(e.to_string())
        } else {
            Fetch::Fail(e.to_string())
        }
    }
}

/// A failed fetch from the controller (or of what it sent).
enum Fetch {
    /// It may succeed later (connection refused or cut, server error).
    Retry(String),
    /// It will not (refused, corrupt).
    Fail(String),
}

impl From<Fetch> for String {
    fn from(f: Fetch) -> String {
        match f {
            Fetch::Retry(m) | Fetch::Fail(m) => m,
        }
    }
}

fn new_boot_id() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    hex::encode(bytes)
}

impl Agent {
    /// Opens the agent: recovers an interrupted install (rolled back; the host then reports
    /// install-failed) and loads its state.
    pub fn open(config: AgentConfig) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| AgentError::State {
            path: config.state_dir.clone(),
            reason: e.to_string(),
        })?;
        let (installer, recovery) = if config.use_rpm_tool {
            (
                Installer::Rpm(RpmToolInstaller::open(&config.root)?),
                Recovery::Clean,
            )
        } else {
            let (builtin, recovery) = BuiltinInstaller::open(&config.root)?;
            (Installer::Builtin(builtin), recovery)
        };
        let path = config.state_dir.join("agent.json");
        let mut state: AgentState = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if state.boot_id.is_empty() {
            state.boot_id = if config.root == Path::new("/") {
                std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| new_boot_id())
            } else {
                new_boot_id()
            };
        }
        if state.installing
            || recovery == Recovery::RolledBack
            || state.in_progress > state.install_done
        {
            state.installing = false;
            state.install_done = state.install_done.max(state.in_progress);
            state.install_state = InstallState::InstallFailed;
            state.last_error = Some("the install was interrupted and rolled back; retry it".into());
        }
        let rpm_keyring = match &config.rpm_keyring {
            None => None,
            Some(dir) => {
                let keyring =
                    patch_format::RpmKeyring::load(dir).map_err(|e| AgentError::State {
                        path: dir.clone(),
                        reason: e.to_string(),
                    })?;
                if keyring.is_empty() {
                    return Err(AgentError::State {
                        path: dir.clone(),
                        reason: "the RPM keyring holds no *.asc key".into(),
                    });
                }
                Some(keyring)
            }
        };
        let agent = Agent {
            rpm_keyring,
            instance: new_boot_id(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                // A standby controller answers 307 towards the active one: the agent moves
                // to the next controller URL itself rather than follow it request by request.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| AgentError::State {
                    path: PathBuf::new(),
                    reason: format!("HTTP client: {e}"),
                })?,
            installer: Arc::new(std::sync::Mutex::new(installer)),
            state: Mutex::new(state),
            controllers: failover::Controllers::new(&config.controllers),
            workloads: Mutex::new(Vec::new()),
            config,
        };
        Ok(agent)
    }

    fn save(&self, state: &AgentState) {
        let path = self.config.state_dir.join("agent.json");
        let saved = serde_json::to_vec_pretty(state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| Ok(durable_fs::write(&path, &bytes)?));
        if let Err(e) = saved {
            tracing::error!("cannot save agent state: {e}");
        }
    }

    fn installed(&self) -> std::collections::BTreeMap<host_state::PackageKey, InstalledPackage> {
        match self.installer.lock() {
            Ok(i) => i.installed(),
            Err(p) => p.into_inner().installed(),
        }
    }

    /// Sends a request to the active controller (every agent request is idempotent, so one
    /// without an answer is sent again); an error status is an error.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ControllerError> {
        let response = self
            .controllers
            .send(failover::Resend::Always, |base| {
                build(&self.http, base).bearer_auth(&self.config.token)
            })
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let url = response.url().to_string();
        let body = response.text().await.unwrap_or_default();
        Err(ControllerError::Status {
            url,
            status: status.as_u16(),
            body: body.trim().to_owned(),
        })
    }

    /// Runs a fetch, retrying transient failures (a controller restarting or swacting) for
    /// up to [`FETCH_RETRY`].
    async fn retrying<T, Fut>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, String>
    where
        Fut: std::future::Future<Output = Result<T, Fetch>>,
    {
        let deadline = Instant::now() + FETCH_RETRY;
        // A restarting controller is usually back within a fraction of a second: retry soon,
        // then back off to the heartbeat (at most 2 s).
        let mut delay = Duration::from_millis(100);
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(Fetch::Fail(message)) => return Err(message),
                Err(Fetch::Retry(message)) if Instant::now() >= deadline => return Err(message),
                Err(Fetch::Retry(message)) => {
                    tracing::warn!("{what}: {message}; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.heartbeat.min(Duration::from_secs(2)));
                }
            }
        }
    }

    /// Sends a report; returns the controller's reply.
    pub async fn report(&self, op_counter: u64) -> Result<ReportReply, ControllerError> {
        let workloads = match &self.config.workload_hook {
            None => Vec::new(),
            Some(hook) => {
                let mut last = self.workloads.lock().await;
                match crate::workloads::list(hook).await {
                    Ok(list) => *last = list,
                    Err(e) => tracing::warn!("{e}; reporting the last list"),
                }
                last.clone()
            }
        };
        let state = self.state.lock().await.clone();
        let report = HostReport {
            hostname: self.config.hostname.clone(),
            ip: self.config.ip.clone(),
            personality: self.config.personality,
            subfunctions: subfunctions(self.config.personality),
            sw_version: self.config.release.clone(),
            install_state: state.install_state,
            last_error: state.last_error.clone(),
            reboot_pending: state.reboot_pending,
            boot_id: state.boot_id.clone(),
            installed: self.installed().into_values().collect(),
            op_counter,
            install_done: state.install_done,
            instance: self.instance.clone(),
            workloads,
            workload_actions: self.config.workload_hook.is_some(),
            services_disabled: state.services_disabled,
        };
        let bad = |reason: String| ControllerError::BadAnswer {
            what: "report".into(),
            reason,
        };
        let body = serde_json::to_vec(&report).map_err(|e| bad(e.to_string()))?;
        let response = self
            .send(|http, base| {
                http.post(format!("{base}/agent/v1/report"))
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await?;
        let bytes = response.bytes().await.map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("bad reply: {e}")))
    }

    /// Waits for the next order, acknowledging the last delivery received. A delivery already
    /// received (handed over again because the acknowledgement was lost) is recorded as
    /// nothing to do; a new one is recorded before it is returned, with its install order
    /// number, so a crash from here on is reported as a failed install of it.
    async fn poll(&self) -> Result<AgentOrder, ControllerError> {
        let wait = self.config.heartbeat.as_secs().max(1);
        let host = self.config.hostname.clone();
        let received = self.state.lock().await.received;
        let response = self
            .send(|http, base| {
                http.get(format!("{base}/agent/v1/orders"))
                    .query(&[
                        ("hostname", host.as_str()),
                        ("wait", &wait.to_string()),
                        ("received", &received.to_string()),
                    ])
                    .timeout(Duration::from_secs(wait + 10))
            })
            .await?;
        let bad = |reason: String| ControllerError::BadAnswer {
            what: "order".into(),
            reason,
        };
        let bytes = response.bytes().await.map_err(|e| bad(e.to_string()))?;
        let delivery: Delivery = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if delivery.order == AgentOrder::None {
            return Ok(AgentOrder::None);
        }
        let mut state = self.state.lock().await;
        if delivery.delivery <= state.received {
            tracing::info!("delivery {} already received", delivery.delivery);
            return Ok(AgentOrder::None);
        }
        state.received = delivery.delivery;
        if let AgentOrder::Install { seq, .. } = delivery.order {
            state.in_progress = seq;
        }
        self.save(&state);
        Ok(delivery.order)
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut op_counter = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let locked = match self.report(op_counter).await {
                Ok(reply) => {
                    op_counter = reply.op_counter;
                    reply.locked
                }
                Err(e) => {
                    tracing::warn!("report failed: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.heartbeat) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
            };
            self.reset_rejection(locked).await;
            let order = tokio::select! {
                o = self.poll() => o,
                _ = shutdown.changed() => return,
            };
            match order {
                Ok(AgentOrder::None) => {}
                Ok(AgentOrder::Install { force, seq, locked }) => {
                    // Tell the controller at once that the install started.
                    self.set_state(InstallState::Installing, None).await;
                    let _ = self.report(op_counter).await;
                    self.install(force, locked, seq).await;
                }
                Ok(AgentOrder::Reboot) => self.reboot().await,
                Ok(AgentOrder::Workload { verb, target }) => self.workload(verb, &target).await,
                Err(e) => {
                    tracing::warn!("order poll failed: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.heartbeat) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    /// Runs a workload order through the hook; the next report shows the outcome.
    async fn workload(&self, verb: host_state::protocol::WorkloadVerb, target: &str) {
        use host_state::protocol::WorkloadVerb;
        let Some(hook) = &self.config.workload_hook else {
            tracing::warn!(
                "workload order {} {target} but no workload hook is configured",
                verb.as_str()
            );
            return;
        };
        match crate::workloads::act(hook, verb, target).await {
            Ok(()) => {
                tracing::info!("workload hook: {} {target} done", verb.as_str());
                let disabled = match verb {
                    WorkloadVerb::DisableServices => Some(true),
                    WorkloadVerb::EnableServices => Some(false),
                    _ => None,
                };
                if let Some(disabled) = disabled {
                    let mut state = self.state.lock().await;
                    state.services_disabled = disabled;
                    self.save(&state);
                }
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    async fn set_state(&self, install_state: InstallState, error: Option<String>) {
        let mut state = self.state.lock().await;
        state.install_state = install_state;
        state.last_error = error;
        self.save(&state);
    }

    /// install-rejected goes back to idle once the host is locked, or after 60 s.
    async fn reset_rejection(&self, locked: bool) {
        let mut state = self.state.lock().await;
        if state.install_state == InstallState::InstallRejected
            && (locked
                || state
                    .rejected_at
                    .is_some_and(|t| now().saturating_sub(t) >= 60))
        {
            state.install_state = InstallState::Idle;
            state.last_error = None;
            state.rejected_at = None;
            self.save(&state);
        }
    }

    /// Brings the host to its desired package set; records the outcome.
    pub async fn install(&self, force: bool, locked: bool, seq: u64) {
        let started = Instant::now();
        let outcome = self.install_inner(force, locked).await;
        let mut state = self.state.lock().await;
        state.installing = false;
        state.install_done = state.install_done.max(seq);
        match outcome {
            Ok(rebooting) => {
                state.install_state = InstallState::Idle;
                state.last_error = None;
                state.reboot_pending |= rebooting;
                tracing::info!("install finished in {:?}", started.elapsed());
            }
            Err((install_state, message)) => {
                tracing::warn!("install {}: {message}", install_state.as_str());
                if install_state == InstallState::InstallRejected {
                    state.rejected_at = Some(now());
                }
                state.install_state = install_state;
                state.last_error = Some(message);
            }
        }
        self.save(&state);
    }

    async fn install_inner(
        &self,
        force: bool,
        locked: bool,
    ) -> Result<bool, (InstallState, String)> {
        let failed = |m: String| (InstallState::InstallFailed, m);
        let release = &self.config.release;
        let feed_path = format!("feed/rel-{release}/index.json");
        let feed: RepoIndex = self
            .retrying(&feed_path, || self.fetch_json(&feed_path))
            .await
            .map_err(failed)?;
        let repo_path = format!("repo/rel-{release}/index.json");
        let repo: RepoIndex = self
            .retrying(&repo_path, || self.fetch_json(&repo_path))
            .await
            .map_err(failed)?;
        let installed = self.installed();
        let desired = desired_packages(self.config.personality, &feed, &repo, &installed);
        let diff = HostDiff::compute(&installed, &desired);
        if diff.is_empty() {
            return Ok(false);
        }
        let rr = diff.requires_reboot();
        if rr && !locked && !force {
            return Err((InstallState::InstallRejected, "Node must be locked.".into()));
        }
        {
            let mut state = self.state.lock().await;
            state.installing = true;
            self.save(&state);
        }
        let cache = self.config.state_dir.join("cache");
        let _ = tokio::fs::remove_dir_all(&cache).await;
        tokio::fs::create_dir_all(&cache)
            .await
            .map_err(|e| failed(format!("{}: {e}", cache.display())))?;
        let mut tx = Transaction::default();
        let mut downloads = Vec::new();
        for (n, change) in diff.changes.iter().enumerate() {
            let to = match change {
                PackageChange::Missing(to)
                | PackageChange::Upgrade { to, .. }
                | PackageChange::Downgrade { to, .. } => to,
                PackageChange::Remove(from) => {
                    tx.remove.push((from.id.name.clone(), from.id.arch.clone()));
                    continue;
                }
            };
            let area = if to.from_base { "feed" } else { "repo" };
            // Numbered, not named after the package: names come from the controller's index
            // and must never choose a path on this host.
            let file = cache.join(format!("{n}.rpm"));
            let path = format!("{area}/rel-{release}/{}", to.path);
            downloads.push((
                to.id.name.clone(),
                to.size,
                to.sha256.clone(),
                path,
                file.clone(),
            ));
            tx.install.push(TransactionPackage {
                package: InstalledPackage {
                    id: to.id.clone(),
                    patch: to.patch.clone(),
                    reboot_required: to.reboot_required,
                },
                rpm: file,
            });
        }
        // A few downloads at a time: one stream rarely fills the link or the controller's disk.
        let fetches: Vec<_> = downloads
            .into_iter()
            .map(|(name, size, sha256, path, file)| async move {
                self.retrying(&path, || self.download(&path, &file, size, &sha256))
                    .await
                    .map_err(|e| failed(format!("{name}: {e}")))
            })
            .collect();
        let mut pending = futures_util::stream::iter(fetches).buffer_unordered(DOWNLOADS_AT_ONCE);
        while let Some(result) = pending.next().await {
            result?;
        }
        drop(pending);
        if let Some(keyring) = &self.rpm_keyring {
            // Every package proves itself before anything is written to the root.
            let keyring = keyring.clone();
            let files: Vec<(String, PathBuf)> = tx
                .install
                .iter()
                .map(|p| (p.package.id.name.clone(), p.rpm.clone()))
                .collect();
            tokio::task::spawn_blocking(move || {
                for (name, file) in &files {
                    keyring
                        .verify_file(file)
                        .map_err(|e| format!("package {name}: RPM signature check failed: {e}"))?;
                }
                Ok::<(), String>(())
            })
            .await
            .map_err(|e| failed(format!("signature check: {e}")))?
            .map_err(failed)?;
        }
        let installer = self.installer.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut installer = match installer.lock() {
                Ok(i) => i,
                Err(p) => p.into_inner(),
            };
            installer.apply(&tx)
        })
        .await
        .map_err(|e| failed(format!("install task: {e}")))?;
        let _ = tokio::fs::remove_dir_all(&cache).await;
        result.map_err(|e| failed(e.to_string()))?;
        if !rr {
            // In-service patches whose packages this install changed run their restart
            // script now; a failing script fails the install.
            let involved: std::collections::BTreeSet<&str> = diff
                .changes
                .iter()
                .filter_map(|c| match c {
                    PackageChange::Missing(to)
                    | PackageChange::Upgrade { to, .. }
                    | PackageChange::Downgrade { to, .. } => to.patch.as_deref(),
                    PackageChange::Remove(_) => None,
                })
                .collect();
            for script in repo
                .restart_scripts
                .iter()
                .filter(|s| involved.contains(s.patch.as_str()))
            {
                self.run_restart_script(release, script)
                    .await
                    .map_err(failed)?;
            }
        }
        Ok(rr)
    }

    /// Downloads a restart script, checks it against the signed sha256, runs it with the
    /// root in `STX_PATCH_ROOT`.
    async fn run_restart_script(
        &self,
        release: &str,
        script: &host_state::protocol::RestartScriptEntry,
    ) -> Result<(), String> {
        let dir = self.config.state_dir.join("scripts");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| e.to_string())?;
        if script.name.contains('/') || script.name.starts_with('.') {
            return Err(format!("bad restart script name {:?}", script.name));
        }
        let path = dir.join(&script.name);
        let remote = format!("repo/rel-{release}/scripts/{}", script.name);
        let bytes = self
            .retrying(&remote, || async {
                let response = self
                    .send(|http, base| http.get(format!("{base}/agent/v1/{remote}")))
                    .await?;
                response
                    .bytes()
                    .await
                    .map_err(|e| Fetch::Retry(format!("{remote}: {e}")))
            })
            .await?;
        if hex::encode(Sha256::digest(&bytes)) != script.sha256 {
            return Err(format!(
                "restart script {} does not match its signed sha256",
                script.name
            ));
        }
        tokio::fs::write(&path, &bytes)
            .await
            .map_err(|e| e.to_string())?;
        let output = tokio::process::Command::new("sh")
            .arg(&path)
            .env("STX_PATCH_ROOT", &self.config.root)
            .env("STX_PATCH_ID", &script.patch)
            .current_dir(&self.config.root)
            .output()
            .await
            .map_err(|e| format!("cannot run restart script {}: {e}", script.name))?;
        let _ = tokio::fs::remove_file(&path).await;
        if output.status.success() {
            tracing::info!(
                "restart script {} of {} succeeded",
                script.name,
                script.patch
            );
            Ok(())
        } else {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let tail = crate::builtin::output_tail(&text, 500);
            Err(format!(
                "restart script {} of {} failed ({}): {}",
                script.name,
                script.patch,
                output.status,
                tail.trim()
            ))
        }
    }

    async fn fetch_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, Fetch> {
        let response = self
            .send(|http, base| http.get(format!("{base}/agent/v1/{path}")))
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Fetch::Retry(format!("{path}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| Fetch::Fail(format!("{path}: {e}")))
    }

    /// Downloads to `file`, checking size and SHA-256 as the bytes arrive.
    async fn download(
        &self,
        path: &str,
        file: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), Fetch> {
        let mut response = self
            .send(|http, base| http.get(format!("{base}/agent/v1/{path}")))
            .await?;
        let local = |e: std::io::Error| Fetch::Fail(format!("{}: {e}", file.display()));
        // Large writes: each write of a tokio file is a trip through the blocking pool.
        let mut out = tokio::io::BufWriter::with_capacity(
            1024 * 1024,
            tokio::fs::File::create(file).await.map_err(local)?,
        );
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Fetch::Retry(format!("download interrupted: {e}")))?
        {
            got += chunk.len() as u64;
            if got > size {
                return Err(Fetch::Fail(format!(
                    "the download is larger than the {size} bytes the index states"
                )));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(local)?;
        }
        out.flush().await.map_err(local)?;
        // A complete response of the wrong size is the controller's file, not the network:
        // retrying would fetch the same bytes (a connection cut mid-body errors above).
        if got != size {
            return Err(Fetch::Fail(format!(
                "the download is {got} bytes, the index states {size} (truncated?)"
            )));
        }
        let actual = hex::encode(hasher.finalize());
        if actual != sha256 {
            return Err(Fetch::Fail(format!(
                "sha256 {actual} does not match the index ({sha256}); refusing it"
            )));
        }
        Ok(())
    }

    /// Reboots: the configured command on a real host; otherwise a soft reboot (new boot id,
    /// pending reboot cleared).
    pub async fn reboot(&self) {
        if self.config.root == Path::new("/")
            && let Some(command) = &self.config.reboot_command
        {
            tracing::info!("rebooting with {command}");
            let _ = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .status()
                .await;
            return;
        }
        {
            let mut state = self.state.lock().await;
            state.boot_id = new_boot_id();
            state.reboot_pending = false;
            self.save(&state);
            tracing::info!("soft reboot: new boot id {}", state.boot_id);
        }
        // The boot path: install whatever is pending before the host comes up (as the
        // original's sw-patch-init does); it is active from this boot on.
        self.install(true, true, 0).await;
        let mut state = self.state.lock().await;
        state.reboot_pending = false;
        self.save(&state);
    }
}

/// The subfunctions of a node type, as the original reports them.
pub fn subfunctions(personality: Personality) -> Vec<String> {
    personality
        .as_str()
        .split('-')
        .filter(|s| *s != "lowlatency")
        .map(str::to_owned)
        .chain(
            personality
                .as_str()
                .ends_with("lowlatency")
                .then(|| "lowlatency".to_owned()),
        )
        .collect()
}
