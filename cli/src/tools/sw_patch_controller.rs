//! `sw-patch-controller`: the controller daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use controller::{Controller, ControllerConfig};

/// The stx-patch controller: keeps the patch store and the software repository, and serves
/// the patching REST API.
#[derive(Parser, Debug)]
#[command(
    name = "sw-patch-controller",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file; flags override its values
    #[arg(long, env = "STX_PATCH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// State directory (patches, packages, repositories)
    #[arg(long, env = "STX_PATCH_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Directory of trusted public keys/certificates for uploads
    #[arg(long, env = "STX_PATCH_KEYRING", value_name = "DIR")]
    keyring: Option<PathBuf>,
    /// The running release, e.g. 19.01
    #[arg(long, env = "STX_PATCH_RELEASE")]
    release: Option<String>,
    /// Unauthenticated patching API address [default: 127.0.0.1:5487]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Authenticated patching API address (X-Auth-Token), e.g. 0.0.0.0:5491
    #[arg(long, value_name = "ADDR")]
    auth_listen: Option<String>,
    /// File of accepted API tokens, one per line
    #[arg(long, value_name = "FILE")]
    auth_tokens_file: Option<PathBuf>,
    /// Agent endpoint address (hosts report and download packages here), e.g. 0.0.0.0:5488
    #[arg(long, value_name = "ADDR")]
    agent_listen: Option<String>,
    /// File holding the agents' token
    #[arg(long, value_name = "FILE")]
    agent_token_file: Option<PathBuf>,
    /// Seconds of silence after which a host shows offline [default: 30]
    #[arg(long, value_name = "SECS")]
    host_offline_after: Option<u64>,
    /// Largest accepted upload in bytes
    #[arg(long, value_name = "BYTES")]
    max_upload_bytes: Option<u64>,
    /// Orchestration and alarm API address, or `off` [default: 0.0.0.0:4545 with auth
    /// tokens, 127.0.0.1:4545 without]
    #[arg(long, value_name = "ADDR")]
    vim_listen: Option<String>,
    /// Web dashboard address (operators log in with an API token); `--web-listen` alone
    /// serves it on 0.0.0.0:8080 [default: off]
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "0.0.0.0:8080")]
    web_listen: Option<String>,
    /// On a distributed cloud's system controller: the dcmanager API the dashboard's
    /// Distributed Cloud page reads (with --dcmanager-token-file)
    #[arg(long, value_name = "URL")]
    dcmanager_url: Option<String>,
    /// File holding an operator token of that dcmanager API
    #[arg(long, value_name = "FILE")]
    dcmanager_token_file: Option<PathBuf>,
    /// This controller's host name in a controller pair (with --peer), e.g. controller-0
    #[arg(long, value_name = "HOST")]
    host_name: Option<String>,
    /// The other controller's pair endpoint, e.g. http://controller-1:5490
    #[arg(long, value_name = "URL")]
    peer: Option<String>,
    /// This controller's pair endpoint address, e.g. 0.0.0.0:5490
    #[arg(long, value_name = "ADDR")]
    peer_listen: Option<String>,
    /// File holding the token the two controllers present to each other
    #[arg(long, value_name = "FILE")]
    peer_token_file: Option<PathBuf>,
    /// The controller that is active when the pair first starts [default: controller-0]
    #[arg(long, value_name = "HOST")]
    initial_active: Option<String>,
    /// Host name or address clients and the peer reach this controller at (redirects)
    #[arg(long, value_name = "HOST")]
    advertise_host: Option<String>,
    /// The controller host this daemon runs on (a strategy patches it last, after a swact)
    #[arg(long, value_name = "HOST")]
    local_controller: Option<String>,
    /// Single-controller (all-in-one simplex) system
    #[arg(long)]
    single_controller: bool,
    /// How often a running strategy advances, in milliseconds [default: 1000]
    #[arg(long, value_name = "MS")]
    strategy_audit_ms: Option<u64>,
    /// Refuse uploads whose RPMs are not all signed by a key in --rpm-keyring
    #[arg(long)]
    require_signed_rpms: bool,
    /// Directory of trusted RPM signing keys (*.asc OpenPGP public keys)
    #[arg(long, value_name = "DIR")]
    rpm_keyring: Option<PathBuf>,
    /// TLS certificate chain (PEM) for every listener but the loopback plain API; reloaded
    /// on SIGHUP
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) the peer controller's certificate must chain to
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Serve non-loopback listeners over plain HTTP (tokens cross the network in clear)
    #[arg(long)]
    insecure_plain_http: bool,
    /// Print the bound addresses as JSON on stdout once listening (for scripts and tests)
    #[arg(long)]
    print_addresses: bool,
    /// Log as plain text (journald-friendly) or one JSON object a line
    #[arg(long, env = "STX_PATCH_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::LogFormat,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Create a development CA and a server certificate signed by it in DIR (ca.pem,
    /// ca-key.pem, server.pem, server-key.pem); never overwrites existing files
    TlsInit {
        /// Directory to create the files in
        dir: PathBuf,
        /// Extra DNS name or IP address the server certificate is valid for (repeatable;
        /// localhost, 127.0.0.1 and ::1 are always included)
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
    },
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
        if let Some(Command::TlsInit { dir, names }) = &args.command {
            let ca = tls::dev_ca::create(dir, names)?;
            println!(
                "Development CA created (for labs and tests; bring your own CA in production):\n  CA certificate (clients' --os-cacert / OS_CACERT, agents' --cacert): {}\n  server certificate (--tls-cert): {}\n  server key (--tls-key): {}\n  CA key (keep private): {}",
                ca.ca_cert.display(),
                ca.server_cert.display(),
                ca.server_key.display(),
                ca.ca_key.display()
            );
            return Ok(());
        }
        let config = config_from(args.config.as_deref(), &args)?;
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(async {
            let controller = Controller::start(config).await?;
            if args.print_addresses {
                println!(
                    "{}",
                    serde_json::json!({
                        "api": controller.api_addr.to_string(),
                        "auth_api": controller.auth_api_addr.map(|a| a.to_string()),
                        "agent_api": controller.agent_addr.map(|a| a.to_string()),
                        "vim_api": controller.vim_addr.map(|a| a.to_string()),
                        "web": controller.web_addr.map(|a| a.to_string()),
                        "peer": controller.peer_addr.map(|a| a.to_string()),
                    })
                );
            }
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("listening for SIGHUP")?;
            // Every listener is bound and serving from here on.
            crate::service_manager::ready();
            crate::service_manager::spawn_watchdog();
            let stop = crate::shutdown_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = hangup.recv() => {
                        crate::service_manager::reloading();
                        match controller.reload_tls() {
                            Ok(true) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                            Ok(false) => tracing::info!("SIGHUP: no TLS certificate configured"),
                            Err(e) => tracing::error!("SIGHUP: TLS certificate not reloaded, the previous one stays: {e}"),
                        }
                        crate::service_manager::ready();
                    }
                }
            }
            tracing::info!("shutting down");
            crate::service_manager::stopping();
            controller.stop().await;
            Ok(())
        })
    })
}

fn config_from(file: Option<&std::path::Path>, args: &Args) -> anyhow::Result<ControllerConfig> {
    let mut config = match file {
        Some(path) => ControllerConfig::from_file(path)?,
        None => {
            let state_dir = args
                .state_dir
                .clone()
                .context("--state-dir is required (or state_dir in --config)")?;
            let release = args
                .release
                .clone()
                .context("--release is required (or release in --config)")?;
            ControllerConfig::new(state_dir, release)
        }
    };
    if let Some(v) = &args.state_dir {
        config.state_dir = v.clone();
    }
    if let Some(v) = &args.release {
        config.release = v.clone();
    }
    if let Some(v) = &args.keyring {
        config.keyring = Some(v.clone());
    }
    if let Some(v) = &args.listen {
        config.listen = v.clone();
    }
    if let Some(v) = &args.auth_listen {
        config.auth_listen = Some(v.clone());
    }
    if let Some(v) = &args.auth_tokens_file {
        config.auth_tokens_file = Some(v.clone());
    }
    if let Some(v) = &args.agent_listen {
        config.agent_listen = Some(v.clone());
    }
    if let Some(v) = &args.agent_token_file {
        config.agent_token_file = Some(v.clone());
    }
    if let Some(v) = args.host_offline_after {
        config.host_offline_after_secs = v;
    }
    if let Some(v) = args.max_upload_bytes {
        config.max_upload_bytes = v;
    }
    if let Some(v) = &args.vim_listen {
        config.vim_listen = Some(v.clone());
    }
    // The daemon serves the strategy API by default, like the original VIM: on every address
    // when callers must authenticate, on loopback only when they need not.
    if config.vim_listen.is_none() {
        let authenticated = !config.auth_tokens.is_empty() || config.auth_tokens_file.is_some();
        config.vim_listen = Some(
            if authenticated {
                "0.0.0.0:4545"
            } else {
                "127.0.0.1:4545"
            }
            .to_owned(),
        );
    }
    if config.vim_listen.as_deref() == Some("off") {
        config.vim_listen = None;
    }
    if let Some(v) = &args.web_listen {
        config.web_listen = Some(v.clone());
    }
    if config.web_listen.as_deref() == Some("off") {
        config.web_listen = None;
    }
    if let Some(v) = &args.dcmanager_url {
        config.dcmanager_url = Some(v.clone());
    }
    if let Some(v) = &args.dcmanager_token_file {
        config.dcmanager_token_file = Some(v.clone());
    }
    if let Some(v) = &args.host_name {
        config.host_name = Some(v.clone());
    }
    if let Some(v) = &args.peer {
        config.peer = Some(v.clone());
    }
    if let Some(v) = &args.peer_listen {
        config.peer_listen = Some(v.clone());
    }
    if let Some(v) = &args.peer_token_file {
        config.peer_token_file = Some(v.clone());
    }
    if let Some(v) = &args.initial_active {
        config.initial_active = v.clone();
    }
    if let Some(v) = &args.advertise_host {
        config.advertise_host = Some(v.clone());
    }
    if let Some(v) = &args.local_controller {
        config.local_controller = Some(v.clone());
    }
    if args.single_controller {
        config.single_controller = true;
    }
    if let Some(v) = args.strategy_audit_ms {
        config.strategy_audit_ms = v;
    }
    if args.require_signed_rpms {
        config.require_signed_rpms = true;
    }
    if let Some(v) = &args.rpm_keyring {
        config.rpm_keyring = Some(v.clone());
    }
    if let Some(v) = &args.tls_cert {
        config.tls_cert = Some(v.clone());
    }
    if let Some(v) = &args.tls_key {
        config.tls_key = Some(v.clone());
    }
    if let Some(v) = &args.tls_ca {
        config.tls_ca = Some(v.clone());
    }
    if args.insecure_plain_http {
        config.insecure_plain_http = true;
    }
    Ok(config)
}
