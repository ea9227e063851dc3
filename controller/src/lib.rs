//! The controller daemon as a library.
//!
//! [`Controller::start`] opens the patch store and serves the patching REST API — the
//! original's `/v1/<action>/<ids…>` (and `/patch/…`) paths, query-string options and JSON
//! shapes, so that both `sw-patch` and the original Python client drive it — on a loopback
//! listener without authentication and, optionally, an authenticated listener that requires
//! `X-Auth-Token`.
//!
//! Mutations are serialized on one store; queries answer from a snapshot that is replaced
//! after every mutation, so a long upload or import never blocks them.
#![forbid(unsafe_code)]

mod agent_api;
mod alarms;
mod api;
mod auth;
mod channel_reader;
mod config;
mod ha;
mod hosts;
mod http;
mod inventory;
mod json;
mod orchestration;
mod pair;
mod state;
mod vim_api;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{ConfigError, ControllerConfig};
use patch_store::{Store, StoreConfig, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The keyring could not be loaded.
    #[error("keyring: {0}")]
    Keyring(#[from] patch_sign::SignError),
    /// The store could not be opened.
    #[error("patch store: {0}")]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// A running controller: its bound addresses and a way to stop it.
pub struct Controller {
    /// Address of the unauthenticated patching API.
    pub api_addr: SocketAddr,
    /// Address of the authenticated patching API, if enabled.
    pub auth_api_addr: Option<SocketAddr>,
    /// Address of the agent endpoint, if enabled.
    pub agent_addr: Option<SocketAddr>,
    /// Address of the orchestration and alarm API, if enabled.
    pub vim_addr: Option<SocketAddr>,
    /// Address of the web dashboard, if enabled.
    pub web_addr: Option<SocketAddr>,
    /// Address of the pair endpoint, if this controller is one of two.
    pub peer_addr: Option<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Opens the store (recovering from any crash) and starts serving. Binding port 0 picks a
    /// free port; the chosen addresses are in the result.
    pub async fn start(mut config: ControllerConfig) -> Result<Controller, StartError> {
        config.validate()?;
        let keyring = match &config.keyring {
            Some(dir) => patch_sign::Keyring::load(dir)?,
            None => patch_sign::Keyring::default(),
        };
        let rpm_keyring = match (&config.rpm_keyring, config.require_signed_rpms) {
            (Some(dir), true) => {
                let keyring = patch_format::RpmKeyring::load(dir)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
                if keyring.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "rpm_keyring {} holds no *.asc key",
                        dir.display()
                    ))
                    .into());
                }
                Some(Arc::new(keyring))
            }
            _ => None,
        };
        let mut store_config = StoreConfig {
            root: config.state_dir.clone(),
            running_release: config.release.clone(),
            keyring,
            limits: config.limits(),
            rpm_keyring,
        };
        // One of a pair: the state lives in generations under the state directory, and this
        // controller is the "local controller" the strategy patches last.
        let ha = match (&config.host_name, &config.peer) {
            (Some(host), Some(peer)) => {
                let root = config.state_dir.clone();
                let ha_config = ha::HaConfig {
                    host: host.clone(),
                    peer: peer.clone(),
                    token: config.peer_token()?,
                    initial_active: config.initial_active.clone(),
                };
                store_config.root = root.join("current");
                let opened = {
                    tokio::task::spawn_blocking(move || ha::Ha::open(&root, ha_config))
                        .await
                        .map_err(|e| ConfigError::Invalid(format!("pair state task failed: {e}")))?
                        .map_err(|e| StoreError::Corrupt(format!("pair state: {e}")))?
                };
                let ha = Arc::new(opened);
                config.state_dir = ha.data_dir();
                config.local_controller = Some(host.clone());
                Some(ha)
            }
            _ => None,
        };
        let reopen_config = store_config.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(store_config))
            .await
            .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))??;
        let hosts_dir = config.state_dir.join("hosts");
        let hosts = hosts::HostRegistry::load(&hosts_dir).map_err(|e| StoreError::Io {
            path: hosts_dir.clone(),
            source: e,
        })?;
        let app = Arc::new(state::App::new(store, hosts, config.clone(), ha.clone()));
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();

        let (api, api_addr) = bind(&config.listen).await?;
        tasks.push(serve(api, api::router(app.clone(), None), rx.clone()));

        let auth_api_addr = match &config.auth_listen {
            Some(addr) => {
                let (listener, bound) = bind(addr).await?;
                let tokens = Arc::new(auth::Secrets::from(&config.auth_tokens()?));
                tasks.push(serve(
                    listener,
                    api::router(app.clone(), Some(tokens)),
                    rx.clone(),
                ));
                Some(bound)
            }
            None => None,
        };
        // The agent endpoint is on by default (0.0.0.0:5488, the original's port) once agents
        // have a token to present.
        let agent_listen = config.agent_listen.clone().or_else(|| {
            config
                .agent_token_file
                .is_some()
                .then(|| "0.0.0.0:5488".to_owned())
        });
        let agent_addr = match &agent_listen {
            Some(addr) => {
                let token = config.agent_token()?;
                let (listener, bound) = bind(addr).await?;
                tasks.push(serve(
                    listener,
                    agent_api::router(app.clone(), token),
                    rx.clone(),
                ));
                Some(bound)
            }
            None => None,
        };
        // The strategy service: a saved strategy resumes on the first audit.
        let orch_dir = config.state_dir.join("orchestration");
        let orch = Arc::new(
            orchestration::Orchestration::open(app.clone()).map_err(|e| StoreError::Io {
                path: orch_dir,
                source: e,
            })?,
        );
        let vim_addr = match &config.vim_listen {
            Some(addr) => {
                let (listener, bound) = bind(addr).await?;
                let tokens = auth::Secrets::from(&config.auth_tokens()?);
                let tokens = (!tokens.is_empty()).then(|| Arc::new(tokens));
                tasks.push(serve(
                    listener,
                    vim_api::router(orch.clone(), tokens),
                    rx.clone(),
                ));
                Some(bound)
            }
            None => None,
        };
        let web_addr = match &config.web_listen {
            Some(addr) => {
                let (listener, bound) = bind(addr).await?;
                tasks.push(serve(
                    listener,
                    web::router(
                        app.clone(),
                        orch.clone(),
                        auth::Secrets::from(&config.auth_tokens()?),
                    ),
                    rx.clone(),
                ));
                Some(bound)
            }
            None => None,
        };
        let peer_addr = match &ha {
            Some(ha) => {
                ha.attach(Arc::new(pair::PairOwner::new(&app, &orch, reopen_config)));
                let addr = config.peer_listen.clone().unwrap_or_default();
                let (listener, bound) = bind(&addr).await?;
                tasks.push(serve(
                    listener,
                    ha::peer_api::router(ha.clone()),
                    rx.clone(),
                ));
                let advertise = |a: Option<SocketAddr>| {
                    a.map(|a| {
                        let host = match (&config.advertise_host, a.ip().is_unspecified()) {
                            (Some(h), _) => h.clone(),
                            (None, true) => "127.0.0.1".to_owned(),
                            (None, false) => a.ip().to_string(),
                        };
                        format!("http://{host}:{}", a.port())
                    })
                };
                let _ = ha.urls.set(ha::Urls {
                    api: advertise(Some(api_addr)),
                    agent: advertise(agent_addr),
                    vim: advertise(vim_addr),
                    web: advertise(web_addr),
                });
                // Learn the peer's term before serving as active (a stale active steps down).
                let first = ha.clone();
                let _ = tokio::task::spawn_blocking(move || first.check_peer()).await;
                let (runner, stop) = (ha.clone(), rx.clone());
                std::thread::Builder::new()
                    .name("replication".into())
                    .spawn(move || runner.run(stop))
                    .map_err(|e| StartError::Bind {
                        addr: addr.clone(),
                        source: e,
                    })?;
                Some(bound)
            }
            None => None,
        };
        let audit_every = std::time::Duration::from_millis(config.strategy_audit_ms);
        let mut stop = rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let o = orch.clone();
                // Only the active controller of a pair advances the strategy.
                let may_run = o.app.ha.as_ref().is_none_or(|ha| ha.may_run_strategy());
                let (running, timer) = if may_run {
                    tokio::task::spawn_blocking(move || o.audit())
                        .await
                        .unwrap_or((false, None))
                } else {
                    (false, None)
                };
                // Sleep until the next audit, or until the running step's timer if sooner;
                // while a strategy runs, a host change wakes it early (briefly batched).
                let until_timer = timer.map(|at| {
                    std::time::Duration::from_millis(at.saturating_sub(orchestration::now_ms()))
                });
                let sleep = until_timer.map_or(audit_every, |t| t.min(audit_every));
                let host_change = async {
                    if running {
                        orch.app.host_changes.notified().await;
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {}
                    _ = host_change => {}
                    _ = orch.wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }));
        // Hosts that stop reporting go offline, and are aged out after an hour.
        let aging = app.clone();
        let offline_after = config.host_offline_after_secs;
        let mut stop = rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(offline_after.clamp(1, 5))) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let app = aging.clone();
                if !app.is_active() {
                    continue;
                }
                // Always refresh, so the heartbeat ages shown stay within 5 s.
                let _ = tokio::task::spawn_blocking(move || {
                    app.with_hosts(|h| {
                        h.age(offline_after);
                        ((), true)
                    })
                })
                .await;
            }
        }));
        tracing::info!(%api_addr, ?auth_api_addr, ?agent_addr, ?vim_addr, ?web_addr, release = %config.release, "controller started");
        Ok(Controller {
            api_addr,
            auth_api_addr,
            agent_addr,
            vim_addr,
            web_addr,
            peer_addr,
            shutdown,
            tasks,
        })
    }

    /// Stops serving (in-flight requests finish) and waits for the servers to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A listener on `addr`, and the address it got (port 0 picks one).
async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |e| StartError::Bind {
        addr: addr.to_owned(),
        source: e,
    };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("server error: {e}");
        }
    })
}
