//! The agent loop: report, long-poll orders, install, reboot. Talking to the controller is
//! in [`link`], carrying out an install in [`install`].

mod install;
mod link;

pub use link::ControllerError;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use host_state::protocol::AgentOrder;
use host_state::{InstallState, InstalledPackage};
use patch_format::Personality;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{BuiltinInstaller, InstallError, Installer, Recovery, RpmToolInstaller};

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
