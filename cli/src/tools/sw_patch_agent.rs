//! `sw-patch-agent`: the host agent daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent::{Agent, AgentConfig};
use anyhow::Context;
use clap::Parser;
use patch_format::Personality;

/// The stx-patch host agent: reports this host to the controller and installs or removes
/// packages in its root file system when ordered.
#[derive(Parser, Debug)]
#[command(name = "sw-patch-agent", version)]
struct Args {
    /// TOML file with any of these settings (flags override it)
    #[arg(long, env = "STX_PATCH_AGENT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Controller agent-endpoint URL (repeatable, or comma-separated: the first that answers)
    #[arg(long = "controller", value_delimiter = ',')]
    controllers: Vec<String>,
    /// File holding the agent token
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// This host's name
    #[arg(long)]
    hostname: Option<String>,
    /// Node type: controller, worker, storage, worker-lowlatency, controller-worker,
    /// controller-worker-lowlatency
    #[arg(long)]
    personality: Option<String>,
    /// Release the host runs
    #[arg(long)]
    release: Option<String>,
    /// Root file system to install into [default: /]
    #[arg(long)]
    root: Option<PathBuf>,
    /// Agent state directory [default: <root>/var/lib/stx-patch/agent]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Installer: builtin (payloads extracted by stx-patch, journalled) or rpm (the system's
    /// rpm tool with --root) [default: builtin]
    #[arg(long, value_parser = ["builtin", "rpm"])]
    installer: Option<String>,
    /// Management address reported to the controller [default: 127.0.0.1]
    #[arg(long)]
    ip: Option<String>,
    /// Seconds between reports [default: 10]
    #[arg(long)]
    heartbeat: Option<u64>,
    /// Command that reboots the host (needed when --root is /)
    #[arg(long)]
    reboot_command: Option<String>,
    /// Without a reboot command on /, reboots only change the boot id (test and demo hosts)
    #[arg(long)]
    simulated_reboot: bool,
    /// Seconds a patch's restart script may run before it is killed [default: 600]
    #[arg(long, value_name = "SECS")]
    script_timeout: Option<u64>,
    /// Workload hook: `HOOK list` prints the host's workloads as JSON; `HOOK stop|start|migrate
    /// NAME` and `HOOK disable-services|enable-services HOST` act (exit 0: done)
    #[arg(long, value_name = "COMMAND")]
    workload_hook: Option<String>,
    /// Directory of trusted RPM signing keys (*.asc): every RPM must verify before an
    /// install touches the root
    #[arg(long, value_name = "DIR")]
    rpm_keyring: Option<PathBuf>,
    /// CA bundle (PEM) an https:// controller's certificate must chain to
    #[arg(long, env = "OS_CACERT", value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// The controller's repository signing key (PEM, the controller's
    /// <state>/repo-signing/public.pem) to pin; without it the key is pinned on first contact
    #[arg(long, value_name = "FILE")]
    repo_key: Option<PathBuf>,
    /// Health checks after an in-service install: executables in DIR/required.d must pass
    /// (else the host rolls back from the patches it just installed), DIR/wanted.d may warn
    #[arg(long, value_name = "DIR")]
    health_dir: Option<PathBuf>,
    /// Log as plain text (journald-friendly) or one JSON object a line
    #[arg(long, env = "STX_PATCH_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::LogFormat,
    /// Boot-time install: bring the host to its desired packages once, then exit
    #[arg(long)]
    install_local: bool,
    /// Serve Prometheus metrics at GET /metrics on this loopback address (e.g.
    /// 127.0.0.1:5489; port 0 picks one and logs it)
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

/// The agent's TOML configuration file (every key is also a flag).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    controllers: Vec<String>,
    token_file: Option<PathBuf>,
    hostname: Option<String>,
    personality: Option<String>,
    release: Option<String>,
    root: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    installer: Option<String>,
    ip: Option<String>,
    heartbeat: Option<u64>,
    reboot_command: Option<String>,
    #[serde(default)]
    simulated_reboot: bool,
    script_timeout: Option<u64>,
    workload_hook: Option<String>,
    rpm_keyring: Option<PathBuf>,
    cacert: Option<PathBuf>,
    repo_key: Option<PathBuf>,
    health_dir: Option<PathBuf>,
    metrics_listen: Option<String>,
}

/// The tool's command line (for its man page and shell completions).
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Runs the tool on `args` (the first one is the program name, as `std::env::args_os`).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    crate::init_logging(args.log_format);
    crate::run(|| {
        let file: FileConfig = match &args.config {
            Some(path) => toml::from_str(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("{} is not a valid agent configuration", path.display()))?,
            None => FileConfig::default(),
        };
        let controllers = if args.controllers.is_empty() {
            file.controllers.clone()
        } else {
            args.controllers.clone()
        };
        if controllers.is_empty() {
            anyhow::bail!("--controller is required (or controllers in --config)");
        }
        let need = |flag: Option<String>, from_file: Option<String>, name: &str| {
            flag.or(from_file)
                .with_context(|| format!("--{name} is required (or {name} in --config)"))
        };
        let hostname = need(args.hostname.clone(), file.hostname.clone(), "hostname")?;
        let personality: Personality = need(
            args.personality.clone(),
            file.personality.clone(),
            "personality",
        )?
        .parse()?;
        let release = need(args.release.clone(), file.release.clone(), "release")?;
        let token_file = args
            .token_file
            .clone()
            .or(file.token_file.clone())
            .context("--token-file is required (or token_file in --config)")?;
        let root = args
            .root
            .clone()
            .or(file.root.clone())
            .unwrap_or_else(|| PathBuf::from("/"));
        let installer = args
            .installer
            .clone()
            .or(file.installer.clone())
            .unwrap_or_else(|| "builtin".into());
        if installer != "builtin" && installer != "rpm" {
            anyhow::bail!("installer must be builtin or rpm, not {installer:?}");
        }
        let token = crate::read_secret(&token_file)?;
        let state_dir = args
            .state_dir
            .clone()
            .or(file.state_dir.clone())
            .unwrap_or_else(|| root.join("var/lib/stx-patch/agent"));
        let config = AgentConfig {
            controllers,
            token,
            hostname,
            ip: args
                .ip
                .clone()
                .or(file.ip.clone())
                .unwrap_or_else(|| "127.0.0.1".into()),
            personality,
            release,
            root,
            state_dir,
            heartbeat: Duration::from_secs(args.heartbeat.or(file.heartbeat).unwrap_or(10).max(1)),
            reboot_command: args.reboot_command.clone().or(file.reboot_command.clone()),
            simulated_reboot: args.simulated_reboot || file.simulated_reboot,
            script_timeout: args
                .script_timeout
                .or(file.script_timeout)
                .map_or(agent::DEFAULT_SCRIPT_TIMEOUT, |s| {
                    Duration::from_secs(s.max(1))
                }),
            use_rpm_tool: installer == "rpm",
            workload_hook: args.workload_hook.clone().or(file.workload_hook.clone()),
            rpm_keyring: args.rpm_keyring.clone().or(file.rpm_keyring.clone()),
            ca_bundle: args.cacert.clone().or(file.cacert.clone()),
            repo_key: args.repo_key.clone().or(file.repo_key.clone()),
            health_dir: args.health_dir.clone().or(file.health_dir.clone()),
        };
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        if !args.install_local {
            config.check_reboot()?;
        }
        runtime.block_on(async {
            let agent = Arc::new(Agent::open(config)?);
            if args.install_local {
                let installed = agent.install(true, true, 0).await;
                let _ = agent.report(0).await;
                // A boot-time install that failed must not look like one that worked.
                return installed.map_err(|e| anyhow::anyhow!("boot-time install failed: {e}"));
            }
            let (stop, rx) = tokio::sync::watch::channel(false);
            if let Some(addr) = args.metrics_listen.as_ref().or(file.metrics_listen.as_ref()) {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("metrics_listen {addr}"))?;
                let bound = listener.local_addr()?;
                if !bound.ip().is_loopback() {
                    anyhow::bail!(
                        "metrics_listen {addr} is not a loopback address: the agent's metrics have no authentication (scrape them with a node-local Prometheus agent)"
                    );
                }
                tracing::info!("metrics on http://{bound}/metrics");
                let served = agent.clone().serve_metrics(listener, rx.clone());
                tokio::spawn(async move {
                    if let Err(e) = served.await {
                        tracing::error!("metrics endpoint: {e}");
                    }
                });
            }
            let running = tokio::spawn(agent.clone().run(rx));
            // Its state is loaded (an interrupted install recovered): it serves from here.
            crate::service_manager::ready();
            crate::service_manager::spawn_watchdog();
            crate::shutdown_signal().await;
            crate::service_manager::stopping();
            let _ = stop.send(true);
            let _ = running.await;
            Ok(())
        })
    })
}
