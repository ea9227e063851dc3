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
mod credentials;
mod ha;
mod hosts;
mod http;
mod inventory;
mod json;
mod listener;
mod metrics;
mod openapi;
mod orchestration;
mod pair;
mod service;
mod startup;
mod state;
mod vault;
mod vim_api;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{ConfigError, ControllerConfig};
pub use startup::StartError;
use tokio::task::JoinHandle;

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
    tls: Option<Arc<tls::ServerTls>>,
}

impl Controller {
    /// Reads the TLS certificate and key again (on SIGHUP): connections made afterwards get
    /// the new pair; on an error the one in use stays. `Ok(false)` without TLS.
    pub fn reload_tls(&self) -> Result<bool, tls::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Opens the store (recovering from any crash) and starts serving. Binding port 0 picks a
    /// free port; the chosen addresses are in the result.
    pub async fn start(mut config: ControllerConfig) -> Result<Controller, StartError> {
        config.validate()?;
        let mut store_config = startup::store_config(&config)?;
        let ha = startup::open_pair(&mut config, &mut store_config).await?;
        let reopen_config = store_config.clone();
        let app = startup::open_app(&config, store_config, ha.clone()).await?;
        let orch = startup::open_orchestration(&app)?;
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let tls = startup::load_tls(&config)?;
        listener::raise_open_files_limit();
        let mut servers =
            startup::Servers::new(rx.clone(), tls.clone(), config.connections.clone());
        let addrs = servers.listen(&config, &app, &orch).await?;
        let peer_addr = match &ha {
            Some(ha) => {
                ha.attach(Arc::new(pair::PairOwner::new(&app, &orch, reopen_config)));
                Some(servers.serve_pair(ha, &config, &addrs).await?)
            }
            None => None,
        };
        let mut tasks = servers.into_tasks();
        tasks.push(startup::spawn_strategy_audit(
            orch,
            config.strategy_audit_ms,
            rx.clone(),
        ));
        tasks.push(startup::spawn_host_aging(
            app,
            config.host_offline_after_secs,
            rx,
        ));
        tracing::info!(
            api_addr = %addrs.api,
            auth_api_addr = ?addrs.auth_api,
            agent_addr = ?addrs.agent,
            vim_addr = ?addrs.vim,
            web_addr = ?addrs.web,
            release = %config.release,
            "controller started"
        );
        Ok(Controller {
            api_addr: addrs.api,
            auth_api_addr: addrs.auth_api,
            agent_addr: addrs.agent,
            vim_addr: addrs.vim,
            web_addr: addrs.web,
            peer_addr,
            shutdown,
            tasks,
            tls,
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
