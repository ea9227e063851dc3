//! The agent's few metrics (`GET /metrics` on `--metrics-listen`, loopback only): installs
//! and reports counted as they happen, the host's state read at each scrape. They are
//! described in `docs/METRICS.md`.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Agent;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

fn outcome(succeeded: bool) -> OutcomeLabel {
    OutcomeLabel {
        outcome: if succeeded { "success" } else { "failure" },
    }
}

/// Seconds, from a tenth of a second to about an hour and a half.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// What the agent counts.
#[derive(Debug)]
pub(crate) struct AgentMetrics {
    registry: Registry,
    installs: Family<OutcomeLabel, Counter>,
    install_durations: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    reports: Family<OutcomeLabel, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> AgentMetrics {
        let mut registry = Registry::default();
        let installs = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "stx_patch_agent_installs",
            "Installs the agent ran, by outcome",
            installs.clone(),
        );
        let install_durations =
            Family::<OutcomeLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "stx_patch_agent_install_duration_seconds",
            "How long each install ran on the host, by outcome",
            install_durations.clone(),
        );
        let reports = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "stx_patch_agent_reports",
            "Reports sent to the controller, by outcome",
            reports.clone(),
        );
        // Both outcomes from the start, so the series exist before the first event.
        for succeeded in [true, false] {
            let _ = installs.get_or_create(&outcome(succeeded));
            let _ = install_durations.get_or_create(&outcome(succeeded));
            let _ = reports.get_or_create(&outcome(succeeded));
        }
        AgentMetrics {
            registry,
            installs,
            install_durations,
            reports,
        }
    }
}

impl AgentMetrics {
    /// An install that started at `started` ended.
    pub(crate) fn install_finished(&self, started: Instant, succeeded: bool) {
        let label = outcome(succeeded);
        self.installs.get_or_create(&label).inc();
        self.install_durations
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
    }

    /// A report was sent (or failed).
    pub(crate) fn reported(&self, succeeded: bool) {
        self.reports.get_or_create(&outcome(succeeded)).inc();
    }
}

impl Agent {
    /// The metrics as a scrape reads them (OpenMetrics text).
    pub async fn metrics_text(&self) -> String {
        let reboot_pending = self.state.lock().await.reboot_pending;
        let installed = self.installed().map(|p| p.len()).ok();
        let mut now = Registry::default();
        let pending = Gauge::<i64>::default();
        pending.set(i64::from(reboot_pending));
        now.register(
            "stx_patch_agent_reboot_pending",
            "1 when a reboot-required change is installed and waits for the reboot",
            pending,
        );
        let packages = Gauge::<i64>::default();
        // Unreadable package database: the gauge is left out rather than read as 0.
        if let Some(n) = installed {
            packages.set(n as i64);
            now.register(
                "stx_patch_agent_installed_packages",
                "Packages installed on the host's root",
                packages,
            );
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut text, &now);
        let _ = encode_registry(&mut text, &self.metrics.registry);
        let _ = encode_eof(&mut text);
        text
    }

    /// Serves `GET /metrics` on `listener` until `shutdown` is set. Only a loopback
    /// address is accepted: the endpoint has no authentication, and what it shows (the
    /// host's state) is for a node-local scraper.
    pub async fn serve_metrics(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "metrics_listen {addr} is not a loopback address: the agent's metrics have no authentication, so they are served on loopback only (scrape them with a node-local Prometheus agent)"
                ),
            ));
        }
        let router = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(
                    |axum::extract::State(agent): axum::extract::State<Arc<Agent>>| async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            agent.metrics_text().await,
                        )
                    },
                ),
            )
            .with_state(self);
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
    }
}
