//! `dc-controller`: the distributed cloud system controller daemon (the dcmanager API and
//! the subclouds' patching audit).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dc_controller::{Access, DcConfig, DcController};

/// The system controller of a distributed cloud: keeps the subclouds and their groups in a
/// database, audits each managed subcloud's patches against this system controller's own,
/// and serves the dcmanager API.
#[derive(Parser, Debug)]
#[command(name = "dc-controller", version)]
struct Args {
    /// dcmanager API address (loopback only)
    #[arg(long, default_value = dc_controller::DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// State directory (the SQLite database, when no --database-url)
    #[arg(
        long,
        env = "STX_PATCH_DC_STATE_DIR",
        default_value = "/var/lib/stx-patch/dc"
    )]
    state_dir: PathBuf,
    /// Database: sqlite://PATH or postgres://USER@HOST:PORT/DB [default: SQLite in the state
    /// directory]
    #[arg(long, env = "STX_PATCH_DC_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    /// This system controller's own patching API (what subclouds are compared with)
    #[arg(long, default_value = "http://127.0.0.1:5487", value_name = "URL")]
    system_controller_url: String,
    /// File holding a token of this system controller's patching API (none for its
    /// loopback API)
    #[arg(long, value_name = "FILE")]
    system_controller_token_file: Option<PathBuf>,
    /// CA (PEM) of this system controller's patching API, for an https:// URL
    #[arg(long, value_name = "FILE")]
    system_controller_ca: Option<PathBuf>,
    /// File of the operators' tokens for the dcmanager API, one per line
    #[arg(long, value_name = "FILE")]
    tokens_file: PathBuf,
    /// Seconds between audits of the subclouds
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    audit_interval: u64,
    /// Milliseconds between the strategy runner's looks at the strategy and at each
    /// subcloud's own strategy
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    strategy_poll_ms: u64,
    /// Seconds a subcloud may not answer during a strategy before its step fails as offline
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    offline_grace: u64,
    /// Print the bound address as JSON on stdout once listening (for scripts and tests)
    #[arg(long)]
    print_addresses: bool,
    /// Log as plain text (journald-friendly) or one JSON object a line
    #[arg(long, env = "STX_PATCH_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::LogFormat,
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
        let database_url = match &args.database_url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&args.state_dir)
                    .with_context(|| format!("creating {}", args.state_dir.display()))?;
                format!(
                    "sqlite://{}?mode=rwc",
                    args.state_dir.join("dc.sqlite").display()
                )
            }
        };
        let token = match &args.system_controller_token_file {
            Some(path) => crate::read_secret(path)?,
            None => String::new(),
        };
        let ca_pem = match &args.system_controller_ca {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => None,
        };
        let config = DcConfig {
            listen: args.listen.clone(),
            database_url,
            system_controller: Access {
                url: args.system_controller_url.clone(),
                token,
                ca_pem,
                vim_url: None,
            },
            tokens: crate::read_secrets(&args.tokens_file)?,
            audit_interval: Duration::from_secs(args.audit_interval.max(1)),
            strategy_timing: dc_controller::orchestrate::Timing {
                poll: Duration::from_millis(args.strategy_poll_ms.max(10)),
                offline_grace: Duration::from_secs(args.offline_grace),
                ..Default::default()
            },
        };
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(async {
            let dc = DcController::start(config).await?;
            tracing::info!("dcmanager API on http://{}", dc.addr());
            if args.print_addresses {
                println!("{}", serde_json::json!({ "api": dc.addr().to_string() }));
            }
            crate::service_manager::ready();
            crate::service_manager::spawn_watchdog();
            crate::shutdown_signal().await;
            crate::service_manager::stopping();
            dc.stop().await;
            Ok(())
        })
    })
}
