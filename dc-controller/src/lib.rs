//! The distributed cloud system controller: the subclouds it knows (each a full cluster
//! with its own `sw-patch-controller`), their groups, and whether each one's patches equal
//! the system controller's, kept in a database ([`db`]), refreshed by an audit ([`audit`])
//! and served as the original dcmanager's REST API.
#![forbid(unsafe_code)]

mod api;
mod api_shared;
pub mod audit;
pub mod client;
pub mod db;
mod db_strategy;
pub mod model;
pub mod orchestrate;
pub mod prestage;
pub mod remote;
mod strategy_api;
pub mod sw_update;
#[cfg(any(test, feature = "test-support"))]
pub mod test_postgres;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use api::{group_json, subcloud_json};
pub use db::{AuditResult, Backend, Db, DbError, GroupUpdate};
pub use db_strategy::OptionsUpdate;
pub use model::{
    Access, ApplyType, Availability, DEFAULT_GROUP, Group, Management, NewSubcloud, Subcloud,
    SyncStatus,
};
pub use sw_update::{step_json, strategy_json};

/// The original dcmanager API's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8119";

/// How the system controller runs.
#[derive(Clone, Debug)]
pub struct DcConfig {
    /// Where the API listens (loopback only: see [`DcError::NotLoopback`]).
    pub listen: String,
    /// `sqlite://PATH?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// The system controller's own patching API (the reference the subclouds are
    /// compared with).
    pub system_controller: Access,
    /// The operators' tokens (`X-Auth-Token`).
    pub tokens: Vec<String>,
    /// How often the subclouds are audited.
    pub audit_interval: Duration,
    /// How the subcloud strategy runner paces itself.
    pub strategy_timing: orchestrate::Timing,
}

/// Why the system controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum DcError {
    /// The database could not be opened.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The API would be reachable from other hosts without TLS.
    #[error(
        "listen {0} is not a loopback address: the dcmanager API is served on loopback only (it has no TLS yet); reach it through the host"
    )]
    NotLoopback(String),
    /// No operator token is configured.
    #[error("no operator token: give at least one (tokens file) so the API can be used")]
    NoTokens,
}

/// A running system controller.
pub struct DcController {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    db: Db,
}

impl DcController {
    /// Opens the database, starts the audit and serves the API.
    pub async fn start(config: DcConfig) -> Result<DcController, DcError> {
        if config.tokens.iter().all(String::is_empty) {
            return Err(DcError::NoTokens);
        }
        let db = Db::open(&config.database_url).await?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| DcError::Bind {
                addr: config.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| DcError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        if !addr.ip().is_loopback() {
            return Err(DcError::NotLoopback(config.listen));
        }
        let (stop, stopped) = watch::channel(false);
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let router = api::router(
            db.clone(),
            config.tokens.clone(),
            config.system_controller.clone(),
            wake.clone(),
        );
        let mut serve_stop = stopped.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = serve_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("dcmanager API: {e}");
            }
        });
        let auditor = tokio::spawn(audit_loop(
            db.clone(),
            config.system_controller.clone(),
            config.audit_interval,
            stopped.clone(),
        ));
        let runner = tokio::spawn(orchestrate::run(
            db.clone(),
            config.system_controller.clone(),
            config.strategy_timing.clone(),
            wake,
            stopped,
        ));
        Ok(DcController {
            addr,
            stop,
            tasks: vec![server, auditor, runner],
            db,
        })
    }

    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and auditing.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.db.close().await;
    }
}

async fn audit_loop(
    db: Db,
    reference: Access,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = audit::audit_once(&db, &reference).await {
            tracing::warn!("audit: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
