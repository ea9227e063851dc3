//! Start-up, one unit per concern: the store's configuration, the pair's state, the app and
//! the strategy service over it, the listeners, and the background loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use patch_store::{Store, StoreConfig, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, ControllerConfig};
use crate::orchestration::{self, Orchestration};
use crate::service::Service;
use crate::state::App;
use crate::{agent_api, api, auth, ha, hosts, vim_api, web};

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
    /// A state file could not be read (the message names it and what to do).
    #[error("{0}")]
    State(String),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// The store's configuration: the release, limits and keyrings.
pub(crate) fn store_config(config: &ControllerConfig) -> Result<StoreConfig, StartError> {
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
    Ok(StoreConfig {
        root: config.state_dir.clone(),
        running_release: config.release.clone(),
        keyring,
        limits: config.limits(),
        rpm_keyring,
    })
}

/// One of a pair: the state lives in generations under the state directory (the store and
/// the rest of the state move there), and this controller is the "local controller" the
/// strategy patches last.
pub(crate) async fn open_pair(
    config: &mut ControllerConfig,
    store_config: &mut StoreConfig,
) -> Result<Option<Arc<ha::Ha>>, StartError> {
    let (Some(host), Some(peer)) = (&config.host_name, &config.peer) else {
        return Ok(None);
    };
    let root = config.state_dir.clone();
    let ha_config = ha::HaConfig {
        host: host.clone(),
        peer: peer.clone(),
        token: config.peer_token()?,
        initial_active: config.initial_active.clone(),
        ca_bundle: config.tls_ca.clone(),
    };
    store_config.root = root.join("current");
    let opened = tokio::task::spawn_blocking(move || ha::Ha::open(&root, ha_config))
        .await
        .map_err(|e| ConfigError::Invalid(format!("pair state task failed: {e}")))?
        .map_err(|e| StoreError::Corrupt(format!("pair state: {e}")))?;
    let ha = Arc::new(opened);
    config.state_dir = ha.data_dir();
    config.local_controller = Some(host.clone());
    Ok(Some(ha))
}

/// Opens the store (recovering from a crash) and the host registry.
pub(crate) async fn open_app(
    config: &ControllerConfig,
    store_config: StoreConfig,
    ha: Option<Arc<ha::Ha>>,
) -> Result<Arc<App>, StartError> {
    let store = tokio::task::spawn_blocking(move || Store::open(store_config))
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))??;
    let hosts_dir = config.state_dir.join("hosts");
    let hosts = hosts::HostRegistry::load(&hosts_dir).map_err(|e| StoreError::Io {
        path: hosts_dir.clone(),
        source: e,
    })?;
    // What a crash mid-upload left in the vault (no upload runs yet).
    crate::vault::Vault::new(&config.state_dir).sweep();
    let app =
        App::new(store, hosts, config.clone(), ha).map_err(|e| StartError::State(e.to_string()))?;
    // The repository signing key is made once, by the active controller; a standby gets it
    // by replication.
    if app.is_active() {
        let key = app.repo_signer.key_file();
        if key
            .create_if_missing()
            .map_err(|e| StartError::State(format!("repository signing key: {e}")))?
        {
            tracing::info!(
                "created the repository signing key; agents pin {}",
                key.public().display()
            );
        }
    }
    Ok(Arc::new(app))
}

/// The strategy service: a saved strategy resumes on the first audit.
pub(crate) fn open_orchestration(app: &Arc<App>) -> Result<Arc<Orchestration>, StartError> {
    let strategy_file = app
        .config
        .state_dir
        .join("orchestration")
        .join("strategy.json");
    let orch = Orchestration::open(app.clone()).map_err(|e| StoreError::Io {
        path: strategy_file,
        source: e,
    })?;
    Ok(Arc::new(orch))
}

/// Where the listeners ended up.
pub(crate) struct Addrs {
    pub(crate) api: SocketAddr,
    pub(crate) auth_api: Option<SocketAddr>,
    pub(crate) agent: Option<SocketAddr>,
    pub(crate) vim: Option<SocketAddr>,
    pub(crate) web: Option<SocketAddr>,
}

/// `router` with its requests counted for the metrics, as `listener`.
fn counted(router: axum::Router, app: &Arc<App>, listener: &'static str) -> axum::Router {
    let counting = crate::metrics::RequestCounting {
        metrics: app.metrics.clone(),
        listener,
        actions: api::ACTIONS,
    };
    router.layer(axum::middleware::from_fn_with_state(
        counting,
        crate::metrics::count_requests,
    ))
}

/// The certificate the remote listeners serve, if TLS is configured.
pub(crate) fn load_tls(
    config: &ControllerConfig,
) -> Result<Option<Arc<tls::ServerTls>>, StartError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(Arc::new(tls::ServerTls::load(cert, key)?))),
        _ => Ok(None),
    }
}

/// The servers started so far, all stopping on one signal.
pub(crate) struct Servers {
    stop: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    tls: Option<Arc<tls::ServerTls>>,
    limits: crate::config::ListenerLimits,
}

impl Servers {
    pub(crate) fn new(
        stop: watch::Receiver<bool>,
        tls: Option<Arc<tls::ServerTls>>,
        limits: crate::config::ListenerLimits,
    ) -> Servers {
        Servers {
            stop,
            tasks: Vec::new(),
            tls,
            limits,
        }
    }

    pub(crate) fn into_tasks(self) -> Vec<JoinHandle<()>> {
        self.tasks
    }

    /// The URL scheme of the remote listeners.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Binds `addr` and serves `router` there, over TLS when it is configured and the
    /// listener is `remote` (every one but the loopback plain API).
    async fn serve_on(
        &mut self,
        addr: &str,
        router: axum::Router,
        remote: bool,
    ) -> Result<SocketAddr, StartError> {
        let (listener, bound) = bind(addr).await?;
        let serving = crate::listener::Serving {
            router,
            tls: if remote { self.tls.clone() } else { None },
            limits: self.limits.clone(),
        };
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(crate::listener::serve(
            listener, serving, stop,
        )));
        Ok(bound)
    }

    /// A remote listener.
    async fn serve(&mut self, addr: &str, router: axum::Router) -> Result<SocketAddr, StartError> {
        self.serve_on(addr, router, true).await
    }

    /// Every listener the configuration asks for.
    pub(crate) async fn listen(
        &mut self,
        config: &ControllerConfig,
        app: &Arc<App>,
        orch: &Arc<Orchestration>,
    ) -> Result<Addrs, StartError> {
        let service = Service::new(app.clone(), orch.clone());
        let api = self
            .serve_on(
                &config.listen,
                counted(api::router(service.clone(), None), app, "api"),
                false,
            )
            .await?;
        // The operators' tokens, read only when a listener needs them.
        let tokens = if config.auth_listen.is_some()
            || config.vim_listen.is_some()
            || config.web_listen.is_some()
        {
            config.operators()?
        } else {
            auth::Operators::default()
        };
        let auth_api = match &config.auth_listen {
            Some(addr) => {
                let router = api::router(service.clone(), Some(Arc::new(tokens.clone())));
                Some(self.serve(addr, counted(router, app, "auth-api")).await?)
            }
            None => None,
        };
        // The agent endpoint is on by default (0.0.0.0:5488, the original's port) once
        // agents have a token to present.
        let agent_listen = config.agent_listen.clone().or_else(|| {
            config
                .agent_token_file
                .is_some()
                .then(|| crate::config::DEFAULT_AGENT_LISTEN.to_owned())
        });
        let agent = match &agent_listen {
            Some(addr) => {
                let router = agent_api::router(service.clone(), config.agent_token()?);
                Some(self.serve(addr, counted(router, app, "agent")).await?)
            }
            None => None,
        };
        let vim = match &config.vim_listen {
            Some(addr) => {
                let vim_tokens = (!tokens.is_empty()).then(|| Arc::new(tokens.clone()));
                Some(
                    self.serve(
                        addr,
                        counted(vim_api::router(service.clone(), vim_tokens), app, "vim"),
                    )
                    .await?,
                )
            }
            None => None,
        };
        let web = match &config.web_listen {
            Some(addr) => {
                let router = web::router(service.clone(), tokens.clone(), self.tls.is_some());
                Some(self.serve(addr, counted(router, app, "web")).await?)
            }
            None => None,
        };
        Ok(Addrs {
            api,
            auth_api,
            agent,
            vim,
            web,
        })
    }

    /// The pair endpoint and the replication thread: the URLs clients are sent to are
    /// published, and the peer's term is learnt before serving as active (a stale active
    /// steps down).
    pub(crate) async fn serve_pair(
        &mut self,
        ha: &Arc<ha::Ha>,
        config: &ControllerConfig,
        addrs: &Addrs,
    ) -> Result<SocketAddr, StartError> {
        let addr = config.peer_listen.clone().unwrap_or_default();
        let bound = self.serve(&addr, ha::peer_api::router(ha.clone())).await?;
        let scheme = self.scheme();
        let advertise = |a: Option<SocketAddr>| {
            a.map(|a| {
                let host = match (&config.advertise_host, a.ip().is_unspecified()) {
                    (Some(h), _) => h.clone(),
                    (None, true) => "127.0.0.1".to_owned(),
                    (None, false) => a.ip().to_string(),
                };
                format!("{scheme}://{host}:{}", a.port())
            })
        };
        let _ = ha.urls.set(ha::Urls {
            // The plain API is loopback-only and never TLS: a client on this host is sent
            // to the other controller's plain API by its own host's address.
            api: advertise(Some(addrs.api)).map(|u| u.replacen("https://", "http://", 1)),
            agent: advertise(addrs.agent),
            vim: advertise(addrs.vim),
            web: advertise(addrs.web),
        });
        let first = ha.clone();
        let _ = tokio::task::spawn_blocking(move || first.check_peer()).await;
        let (runner, stop) = (ha.clone(), self.stop.clone());
        std::thread::Builder::new()
            .name("replication".into())
            .spawn(move || runner.run(stop))
            .map_err(|e| StartError::Bind { addr, source: e })?;
        Ok(bound)
    }
}

/// The strategy loop: audits every `audit_ms`, or at the running step's timer if sooner;
/// while a strategy runs, a host change wakes it early (briefly batched). Only the active
/// controller of a pair advances the strategy.
pub(crate) fn spawn_strategy_audit(
    orch: Arc<Orchestration>,
    audit_ms: u64,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let audit_every = Duration::from_millis(audit_ms);
    tokio::spawn(async move {
        loop {
            let o = orch.clone();
            let may_run = o.app.ha.as_ref().is_none_or(|ha| ha.may_run_strategy());
            let (running, timer) = if may_run {
                tokio::task::spawn_blocking(move || o.audit())
                    .await
                    .unwrap_or((false, None))
            } else {
                (false, None)
            };
            let until_timer =
                timer.map(|at| Duration::from_millis(at.saturating_sub(orchestration::now_ms())));
            let sleep = until_timer.map_or(audit_every, |t| t.min(audit_every));
            let host_change = async {
                if running {
                    orch.app.host_changes.notified().await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
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
    })
}

/// Hosts that stop reporting go offline, and are aged out after an hour; the refresh runs
/// every few seconds so the heartbeat ages shown stay within 5 s.
pub(crate) fn spawn_host_aging(
    app: Arc<App>,
    offline_after: u64,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(offline_after.clamp(1, 5))) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let app = app.clone();
            if !app.is_active() {
                continue;
            }
            let _ = tokio::task::spawn_blocking(move || {
                app.with_hosts(|h| {
                    h.age(offline_after);
                    ((), true)
                })
            })
            .await;
        }
    })
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
