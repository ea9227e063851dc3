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
    /// Controller agent-endpoint URL (repeatable, or comma-separated: the first that answers)
    #[arg(long = "controller", required = true, value_delimiter = ',')]
    controllers: Vec<String>,
    /// File holding the agent token
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// This host's name
    #[arg(long)]
    hostname: String,
    /// Node type: controller, worker, storage, worker-lowlatency, controller-worker,
    /// controller-worker-lowlatency
    #[arg(long)]
    personality: String,
    /// Release the host runs
    #[arg(long)]
    release: String,
    /// Root file system to install into
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Agent state directory [default: <root>/var/lib/stx-patch/agent]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Installer: builtin (payloads extracted by stx-patch, journalled) or rpm (the system's
    /// rpm tool with --root)
    #[arg(long, default_value = "builtin", value_parser = ["builtin", "rpm"])]
    installer: String,
    /// Management address reported to the controller
    #[arg(long, default_value = "127.0.0.1")]
    ip: String,
    /// Seconds between reports
    #[arg(long, default_value_t = 10)]
    heartbeat: u64,
    /// Command that reboots the host (used when --root is /)
    #[arg(long)]
    reboot_command: Option<String>,
    /// Boot-time install: bring the host to its desired packages once, then exit
    #[arg(long)]
    install_local: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STX_PATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    stx_patch_cli::run(|| {
        let args = Args::parse();
        let personality: Personality = args.personality.parse()?;
        let token = std::fs::read_to_string(&args.token_file)
            .with_context(|| format!("reading {}", args.token_file.display()))?
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .context("the token file holds no token")?;
        let state_dir = args
            .state_dir
            .clone()
            .unwrap_or_else(|| args.root.join("var/lib/stx-patch/agent"));
        let config = AgentConfig {
            controllers: args.controllers.clone(),
            token,
            hostname: args.hostname.clone(),
            ip: args.ip.clone(),
            personality,
            release: args.release.clone(),
            root: args.root.clone(),
            state_dir,
            heartbeat: Duration::from_secs(args.heartbeat.max(1)),
            reboot_command: args.reboot_command.clone(),
            use_rpm_tool: args.installer == "rpm",
        };
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(async {
            let agent = Arc::new(Agent::open(config)?);
            if args.install_local {
                agent.install(true, true, 0).await;
                let _ = agent.report(0).await;
                return Ok(());
            }
            let (stop, rx) = tokio::sync::watch::channel(false);
            let running = tokio::spawn(agent.clone().run(rx));
            stx_patch_cli::shutdown_signal().await;
            let _ = stop.send(true);
            let _ = running.await;
            Ok(())
        })
    })
}
