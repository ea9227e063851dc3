//! The agent loop: report, long-poll orders, install, reboot. Talking to the controller is
//! in [`link`], carrying out an install in [`install`].

mod health;
mod install;
mod link;
mod metrics;
mod script_run;

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
    /// On `/` without a reboot command, reboots only change the boot id: for tests and
    /// demos, said explicitly (see [`AgentConfig::check_reboot`]).
    pub simulated_reboot: bool,
    /// How long a patch's restart script may run before it is killed (the install is then
    /// reported failed).
    pub script_timeout: Duration,
    /// Use the system's `rpm` tool instead of the builtin installer.
    pub use_rpm_tool: bool,
    /// The workload hook (none: the host runs no workloads the strategy must handle).
    pub workload_hook: Option<String>,
    /// Trusted RPM signing keys (`*.asc`): when set, every RPM must verify before an install
    /// touches the root.
    pub rpm_keyring: Option<PathBuf>,
    /// The CA bundle (PEM) an `https://` controller's certificate must chain to (none: the
    /// system's trust store).
    pub ca_bundle: Option<PathBuf>,
    /// The controller's repository signing key (PEM) to pin (none: pinned on first contact).
    pub repo_key: Option<PathBuf>,
    /// Health checks run after an in-service install that brought patches: `required.d/`
    /// must pass (else the host rolls back from those patches), `wanted.d/` may warn.
    pub health_dir: Option<PathBuf>,
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
            simulated_reboot: false,
            script_timeout: DEFAULT_SCRIPT_TIMEOUT,
            use_rpm_tool: false,
            workload_hook: None,
            rpm_keyring: None,
            ca_bundle: None,
            repo_key: None,
            health_dir: None,
        }
    }
}

/// The agent's HTTP client, verifying an `https://` controller against the CA bundle.
fn http_builder(config: &AgentConfig) -> Result<reqwest::ClientBuilder, AgentError> {
    let builder = reqwest::Client::builder();
    let Some(bundle) = &config.ca_bundle else {
        return Ok(builder);
    };
    let tls = tls::Trust::CaBundle(bundle.clone())
        .client_config()
        .map_err(|e| AgentError::State {
            path: bundle.clone(),
            reason: e.to_string(),
        })?;
    Ok(builder.tls_backend_preconfigured(tls))
}

impl AgentConfig {
    /// Refuses a daemon on the real root (`/`) that could not reboot its host: a
    /// reboot-required patch would then be reported installed without the reboot it needs.
    /// A simulated reboot must be asked for.
    pub fn check_reboot(&self) -> Result<(), AgentError> {
        if self.root == Path::new("/") && self.reboot_command.is_none() && !self.simulated_reboot {
            return Err(AgentError::NoRebootCommand);
        }
        Ok(())
    }
}

/// How long a restart script may run unless configured otherwise.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// The serial of the last signed index accepted, per index: an older one is a replay.
    #[serde(default)]
    index_serials: repo_sign::Serials,
    /// Patches this host is held back from (rolled back), as the last install order said:
    /// kept, so a boot-time install does not bring them back.
    #[serde(default)]
    held_patches: std::collections::BTreeSet<String>,
    /// The last health check outcome (reported).
    #[serde(default)]
    health: Option<host_state::protocol::HealthReport>,
    /// Health checks due once the host has rebooted into a reboot-required install.
    #[serde(default)]
    health_after_boot: Option<BootHealth>,
}

/// Health checks due after the next boot.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BootHealth {
    /// The boot the install happened in: the checks run in any later one.
    boot_id: String,
    /// The patches the install brought (rolled back from if a required check fails).
    patches: std::collections::BTreeSet<String>,
    /// How long the checks must keep passing.
    soak_secs: u64,
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
    /// The controller key repository indexes must be signed by, once known.
    repo_key: Mutex<Option<repo_sign::Verifier>>,
    /// This host's own credential, once enrolled.
    credential: Mutex<Option<String>>,
    /// Installs and reports counted for `/metrics`.
    metrics: metrics::AgentMetrics,
}

/// Where the agent keeps its credential (readable by its owner only).
pub(crate) const CREDENTIAL_FILE: &str = "credential";

/// Where the agent keeps the repository key it pinned on first contact.
pub(crate) const PINNED_REPO_KEY: &str = "repo-key.pem";

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
    /// On `/` without a way to reboot the host.
    #[error(
        "the root is / and no reboot command is set: give --reboot-command (e.g. \"systemctl reboot\"), or --simulated-reboot for a test or demo host"
    )]
    NoRebootCommand,
    /// The operating system's random number generator failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh random id (an agent instance, a simulated boot) from the OS's CSPRNG.
fn new_boot_id() -> Result<String, AgentError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| AgentError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
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
        // Missing is a first start; unreadable is an error, never a reset (the delivery
        // counter in it keeps an order from being carried out twice).
        let unreadable = |reason: String| AgentError::State {
            path: path.clone(),
            reason: format!("{reason}; repair the file, or remove it to start this agent afresh"),
        };
        let mut state: AgentState = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AgentState::default(),
            Err(e) => return Err(unreadable(e.to_string())),
        };
        // On the real root each boot has the kernel's id (read afresh: a reboot is how the
        // controller sees a reboot-required install take effect); a test root keeps its own.
        let kernel_boot_id = (config.root == Path::new("/"))
            .then(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok())
            .flatten()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        if let Some(id) = kernel_boot_id {
            state.boot_id = id;
        } else if state.boot_id.is_empty() {
            state.boot_id = new_boot_id()?;
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
        let repo_key = match &config.repo_key {
            Some(path) => Some(repo_sign::Verifier::new(
                repo_sign::PublicKey::load(path).map_err(|e| AgentError::State {
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        let agent = Agent {
            repo_key: Mutex::new(repo_key),
            credential: Mutex::new(None),
            metrics: metrics::AgentMetrics::default(),
            rpm_keyring,
            instance: new_boot_id()?,
            http: http_builder(&config)?
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

    fn installed(
        &self,
    ) -> Result<std::collections::BTreeMap<host_state::PackageKey, InstalledPackage>, InstallError>
    {
        match self.installer.lock() {
            Ok(i) => i.installed(),
            Err(p) => p.into_inner().installed(),
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut op_counter = 0;
        // Checks a reboot-required install left due, before the host reports in.
        self.after_boot().await;
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
                Ok(AgentOrder::Install {
                    force,
                    seq,
                    locked,
                    held,
                    soak_secs,
                }) => {
                    {
                        let mut state = self.state.lock().await;
                        if state.held_patches != held {
                            state.held_patches = held;
                            self.save(&state);
                        }
                    }
                    // Tell the controller at once that the install started.
                    self.set_state(InstallState::Installing, None).await;
                    let _ = self.report(op_counter).await;
                    // The outcome is reported (install state and last error) by the next report.
                    let soak = Duration::from_secs(soak_secs);
                    let _ = self.install_soaking(force, locked, seq, soak).await;
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
    /// pending reboot cleared, what is pending installed, the health checks due run).
    pub async fn reboot(&self) {
        if !self.restart_host("into the installed patches").await {
            return;
        }
        // The boot path: install whatever is pending before the host comes up (as the
        // original's sw-patch-init does); it is active from this boot on. A failure is in
        // the install state and last error the next report carries.
        let _ = self.install(true, true, 0).await;
        {
            let mut state = self.state.lock().await;
            state.reboot_pending = false;
            self.save(&state);
        }
        self.after_boot().await;
    }

    /// Restarts the host: runs the reboot command on a real host (this process ends with
    /// it; returns false), or starts a new simulated boot (new boot id, the pending reboot
    /// cleared; returns true).
    async fn restart_host(&self, why: &str) -> bool {
        if self.config.root == Path::new("/")
            && let Some(command) = &self.config.reboot_command
        {
            tracing::info!("rebooting {why} with {command}");
            let _ = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .status()
                .await;
            return false;
        }
        let boot_id = match new_boot_id() {
            Ok(id) => id,
            Err(e) => {
                tracing::error!("soft reboot not done: {e}");
                return false;
            }
        };
        let mut state = self.state.lock().await;
        state.boot_id = boot_id;
        state.reboot_pending = false;
        self.save(&state);
        tracing::info!("simulated reboot {why}: new boot id {}", state.boot_id);
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: &Path) -> AgentConfig {
        AgentConfig::new(
            "http://127.0.0.1:9",
            "t",
            "compute-0",
            Personality::Worker,
            "19.01",
            root,
        )
    }

    /// The agent's saved state is never reset because it cannot be read: its delivery
    /// counter is what keeps an order from being carried out twice.
    #[test]
    fn an_unreadable_agent_state_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let config = config(root.path());
        std::fs::create_dir_all(&config.state_dir).unwrap();
        std::fs::write(config.state_dir.join("agent.json"), b"{\"received\": ").unwrap();
        let err = Agent::open(config)
            .err()
            .expect("an unreadable state is refused");
        let text = err.to_string();
        assert!(text.contains("agent.json"), "{text}");
        assert!(text.contains("repair the file"), "{text}");
    }

    #[test]
    fn the_real_root_needs_a_way_to_reboot() {
        let mut config = config(Path::new("/"));
        assert!(matches!(
            config.check_reboot(),
            Err(AgentError::NoRebootCommand)
        ));
        config.simulated_reboot = true;
        assert!(config.check_reboot().is_ok());
        config.simulated_reboot = false;
        config.reboot_command = Some("systemctl reboot".into());
        assert!(config.check_reboot().is_ok());
        // A test root always simulates.
        assert!(config_ok_elsewhere());
    }

    fn config_ok_elsewhere() -> bool {
        config(Path::new("/tmp/some-root")).check_reboot().is_ok()
    }

    #[test]
    fn boot_ids_are_random() {
        let a = new_boot_id().unwrap();
        let b = new_boot_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
