//! The Prometheus metrics (`GET /metrics`, OpenMetrics text): events counted as they happen
//! (API requests, uploads, installs) and state read at each scrape (hosts, patches, the
//! strategy, replication), so a scrape always shows the controller as it is, not as it was
//! when something last changed. Every metric is described in `docs/METRICS.md`; a test
//! compares the two.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text format.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label sets with one label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    method: String,
    route: String,
    status: u16,
}

type Durations = Family<OutcomeLabel, Histogram, fn() -> Histogram>;

/// Seconds, from a tenth of a second to about an hour and a half.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// The metrics recorded as events happen; the rest is read at each scrape.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    strategies_created: Counter,
    installs: Durations,
    uploads: Durations,
    /// When each host's latest install order was given (not persisted: an install that
    /// spans a controller restart is not timed).
    install_started: Mutex<HashMap<String, Instant>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "stx_patch_http_requests",
            "API requests, by listener, route, method and status (499: the client went away before the answer)",
            requests.clone(),
        );
        let strategies_created = Counter::default();
        registry.register(
            "stx_patch_strategies_created",
            "Patch strategies created and stored, whether or not the client waited for the answer",
            strategies_created.clone(),
        );
        let installs = Durations::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "stx_patch_install_duration_seconds",
            "Time from an install order to the host's report that it finished, by outcome",
            installs.clone(),
        );
        let uploads = Durations::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "stx_patch_upload_duration_seconds",
            "Time to receive, verify and import one uploaded patch, by outcome",
            uploads.clone(),
        );
        // Both outcomes from the start, so the series exist before the first event.
        for succeeded in [true, false] {
            let label = OutcomeLabel {
                outcome: outcome(succeeded),
            };
            let _ = installs.get_or_create(&label);
            let _ = uploads.get_or_create(&label);
        }
        Metrics {
            registry,
            requests,
            strategies_created,
            installs,
            uploads,
            install_started: Mutex::new(HashMap::new()),
        }
    }
}

/// One host's conditions, as the metrics count them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HostConditions {
    pub(crate) patch_current: bool,
    /// A reboot-required change waits for the host, or is installed and waits for the reboot.
    pub(crate) reboot_required: bool,
    pub(crate) installing: bool,
    pub(crate) install_failed: bool,
    pub(crate) offline: bool,
    pub(crate) locked: bool,
}

/// What a scrape reads besides the recorded events.
pub(crate) struct Reading<'a> {
    pub(crate) hosts: Vec<HostConditions>,
    pub(crate) patch_states: Vec<host_state::PatchState>,
    pub(crate) strategy: Option<&'a orchestrator::Strategy>,
    pub(crate) replication: Option<crate::ha::ReplicationStats>,
}

/// The patch states counted (every one, so a state with no patch reads 0, not absent).
const PATCH_STATES: [host_state::PatchState; 5] = [
    host_state::PatchState::Available,
    host_state::PatchState::PartialApply,
    host_state::PatchState::Applied,
    host_state::PatchState::PartialRemove,
    host_state::PatchState::Committed,
];

/// The host conditions counted; a host may be in several.
const HOST_STATES: [&str; 7] = [
    "all",
    "patch-current",
    "reboot-required",
    "installing",
    "install-failed",
    "offline",
    "locked",
];

fn host_in(host: &HostConditions, state: &str) -> bool {
    match state {
        "all" => true,
        "patch-current" => host.patch_current,
        "reboot-required" => host.reboot_required,
        "installing" => host.installing,
        "install-failed" => host.install_failed,
        "offline" => host.offline,
        "locked" => host.locked,
        _ => false,
    }
}

impl Metrics {
    /// Counts one answered request.
    fn count_request(&self, listener: &'static str, method: &str, route: String, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                listener,
                method: method.to_owned(),
                route,
                status,
            })
            .inc();
    }

    /// Counts one patch strategy stored.
    pub(crate) fn strategy_created(&self) {
        self.strategies_created.inc();
    }

    /// Times one upload.
    pub(crate) fn upload_finished(&self, started: Instant, succeeded: bool) {
        self.uploads
            .get_or_create(&OutcomeLabel {
                outcome: outcome(succeeded),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// An install order was given to `host`.
    pub(crate) fn install_ordered(&self, host: &str) {
        let mut started = self
            .install_started
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        started.insert(host.to_owned(), Instant::now());
    }

    /// `host` reported the end of its install.
    pub(crate) fn install_finished(&self, host: &str, succeeded: bool) {
        let started = {
            let mut started = self
                .install_started
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            started.remove(host)
        };
        if let Some(started) = started {
            self.installs
                .get_or_create(&OutcomeLabel {
                    outcome: outcome(succeeded),
                })
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// The OpenMetrics text of everything.
    pub(crate) fn render(&self, reading: &Reading<'_>) -> String {
        let mut now = Registry::default();
        register_hosts(&mut now, &reading.hosts);
        register_patches(&mut now, &reading.patch_states);
        register_strategy(&mut now, reading.strategy);
        register_replication(&mut now, reading.replication.as_ref());
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut text, &now);
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_eof(&mut text);
        text
    }
}

fn outcome(succeeded: bool) -> &'static str {
    if succeeded { "success" } else { "failure" }
}

fn register_hosts(registry: &mut Registry, hosts: &[HostConditions]) {
    let family = Family::<StateLabel, Gauge>::default();
    for state in HOST_STATES {
        let count = hosts.iter().filter(|h| host_in(h, state)).count();
        family
            .get_or_create(&StateLabel {
                state: state.to_owned(),
            })
            .set(count as i64);
    }
    registry.register(
        "stx_patch_hosts",
        "Hosts in each condition (a host may be in several; \"all\" counts every host)",
        family,
    );
}

fn register_patches(registry: &mut Registry, states: &[host_state::PatchState]) {
    let family = Family::<StateLabel, Gauge>::default();
    for state in PATCH_STATES {
        let count = states.iter().filter(|s| **s == state).count();
        family
            .get_or_create(&StateLabel {
                state: state.as_str().to_owned(),
            })
            .set(count as i64);
    }
    registry.register("stx_patch_patches", "Patches in each state", family);
}

fn register_strategy(registry: &mut Registry, strategy: Option<&orchestrator::Strategy>) {
    use orchestrator::{Phase, StepResult, StrategyState};
    let state = Family::<StateLabel, Gauge>::default();
    state
        .get_or_create(&StateLabel {
            state: "none".into(),
        })
        .set(i64::from(strategy.is_none()));
    for s in StrategyState::ALL {
        state
            .get_or_create(&StateLabel {
                state: s.as_str().into(),
            })
            .set(i64::from(strategy.is_some_and(|st| st.state == *s)));
    }
    registry.register(
        "stx_patch_strategy_state",
        "1 for the patch strategy's state (\"none\" without a strategy), 0 for the others",
        state,
    );
    let finished = |r: StepResult| {
        !matches!(
            r,
            StepResult::Initial | StepResult::Inprogress | StepResult::Wait
        )
    };
    let stages = Family::<PhaseLabel, Gauge>::default();
    let stages_done = Family::<PhaseLabel, Gauge>::default();
    let steps = Family::<PhaseLabel, Gauge>::default();
    let steps_done = Family::<PhaseLabel, Gauge>::default();
    let phases: [(&'static str, Option<&Phase>); 3] = [
        ("build", strategy.map(|s| &s.build_phase)),
        ("apply", strategy.map(|s| &s.apply_phase)),
        ("abort", strategy.map(|s| &s.abort_phase)),
    ];
    for (name, phase) in phases {
        let label = PhaseLabel { phase: name };
        let all_stages = phase.map_or(&[][..], |p| &p.stages[..]);
        stages.get_or_create(&label).set(all_stages.len() as i64);
        stages_done
            .get_or_create(&label)
            .set(all_stages.iter().filter(|s| finished(s.result)).count() as i64);
        let all_steps = || all_stages.iter().flat_map(|s| s.steps.iter());
        steps.get_or_create(&label).set(all_steps().count() as i64);
        steps_done
            .get_or_create(&label)
            .set(all_steps().filter(|s| finished(s.result)).count() as i64);
    }
    registry.register(
        "stx_patch_strategy_stages",
        "Stages in each phase of the patch strategy",
        stages,
    );
    registry.register(
        "stx_patch_strategy_stages_done",
        "Stages of each phase that have finished (whatever their result)",
        stages_done,
    );
    registry.register(
        "stx_patch_strategy_steps",
        "Steps in each phase of the patch strategy",
        steps,
    );
    registry.register(
        "stx_patch_strategy_steps_done",
        "Steps of each phase that have finished (whatever their result)",
        steps_done,
    );
    let failed = Gauge::<i64>::default();
    failed.set(strategy.map_or(0, |s| s.failed_hosts.len() as i64));
    registry.register(
        "stx_patch_strategy_failed_hosts",
        "Hosts whose install failed during the patch strategy (counted against --max-failed-hosts)",
        failed,
    );
}

fn register_replication(registry: &mut Registry, stats: Option<&crate::ha::ReplicationStats>) {
    let rounds = Family::<OutcomeLabel, Counter>::default();
    let lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    // Every outcome is shown, 0 without a pair: a series that appears only once it is
    // non-zero breaks rate() and alerts on it.
    let none = crate::ha::ReplicationStats::default();
    let stats = stats.unwrap_or(&none);
    for (label, count) in [
        ("replicated", stats.replicated),
        ("peer-down", stats.peer_down),
        ("refused", stats.refused),
    ] {
        rounds
            .get_or_create(&OutcomeLabel { outcome: label })
            .inc_by(count);
    }
    lag.set(stats.lag.as_secs_f64());
    registry.register(
        "stx_patch_replication_rounds",
        "Replication rounds to the standby controller, by outcome (pair only)",
        rounds,
    );
    registry.register(
        "stx_patch_replication_lag_seconds",
        "How long the oldest change not yet held by the standby has waited (0: in sync)",
        lag,
    );
}

/// What the request-counting middleware needs: where to count, the listener's name, and
/// the patching API's actions (`/v1/<action>` is counted by action; others as unknown).
#[derive(Clone)]
pub(crate) struct RequestCounting {
    pub(crate) metrics: std::sync::Arc<Metrics>,
    pub(crate) listener: &'static str,
    pub(crate) actions: &'static [&'static str],
}

/// The status a request is counted with when its client went away before the answer (the
/// "client closed request" of common proxies).
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// Counts each request a listener answers, with the route it matched (the patching API's
/// known action, never the raw path: the label set stays bounded). A request whose client
/// went away first drops its handler mid-way; it still counts, as [`CLIENT_CLOSED`].
pub(crate) async fn count_requests(
    State(counting): State<RequestCounting>,
    request: Request,
    next: Next,
) -> Response {
    let mut pending = PendingRequest {
        method: request.method().as_str().to_owned(),
        route: Some(route_label(&request, counting.actions)),
        counting,
    };
    let response = next.run(request).await;
    pending.count(response.status().as_u16());
    response
}

/// A request not counted yet: counted once, with its answer's status or, if dropped
/// unanswered, with [`CLIENT_CLOSED`].
struct PendingRequest {
    counting: RequestCounting,
    method: String,
    /// Taken when counted.
    route: Option<String>,
}

impl PendingRequest {
    fn count(&mut self, status: u16) {
        if let Some(route) = self.route.take() {
            self.counting.metrics.count_request(
                self.counting.listener,
                &self.method,
                route,
                status,
            );
        }
    }
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        self.count(CLIENT_CLOSED);
    }
}

/// The route a request matched: its pattern, or for the patching API's `/v1/{*rest}` the
/// action it names (`/v1/{unknown}` for others).
fn route_label(request: &Request, actions: &[&str]) -> String {
    let Some(matched) = request.extensions().get::<MatchedPath>() else {
        return "unmatched".into();
    };
    let pattern = matched.as_str();
    let Some(prefix) = pattern.strip_suffix("/{*rest}") else {
        return pattern.to_owned();
    };
    let action = request
        .uri()
        .path()
        .strip_prefix(prefix)
        .and_then(|rest| rest.trim_start_matches('/').split('/').next())
        .unwrap_or("");
    if actions.contains(&action) {
        format!("{prefix}/{action}")
    } else {
        format!("{prefix}/{{unknown}}")
    }
}

/// The answer to `GET /metrics`.
pub(crate) fn response(text: String) -> Response {
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use std::sync::Arc;
    use std::time::Duration;
    use tower::ServiceExt;

    fn recorded(metrics: &Metrics) -> String {
        let mut text = String::new();
        encode_registry(&mut text, &metrics.registry).unwrap();
        text
    }

    /// A client that hangs up drops the request's handler; the request is still counted, as
    /// 499, once (the crash test of the distributed cloud lost a strategy create this way).
    #[tokio::test]
    async fn a_request_dropped_before_its_answer_is_counted_once_as_client_closed() {
        let metrics = Arc::new(Metrics::default());
        let counting = RequestCounting {
            metrics: metrics.clone(),
            listener: "vim",
            actions: &[],
        };
        let router = axum::Router::new()
            .route("/answered", axum::routing::get(|| async { "ok" }))
            .route(
                "/never",
                axum::routing::post(std::future::pending::<&'static str>),
            )
            .layer(axum::middleware::from_fn_with_state(
                counting,
                count_requests,
            ));
        let request = |method: &str, uri: &str| {
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap()
        };
        let answered = router
            .clone()
            .oneshot(request("GET", "/answered"))
            .await
            .unwrap();
        assert_eq!(answered.status(), 200);
        let abandoned = tokio::time::timeout(
            Duration::from_millis(50),
            router.oneshot(request("POST", "/never")),
        )
        .await;
        assert!(abandoned.is_err(), "the handler never answers");
        let text = recorded(&metrics);
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("stx_patch_http_requests_total{"))
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                r#"stx_patch_http_requests_total{listener="vim",method="GET",route="/answered",status="200"} 1"#,
                r#"stx_patch_http_requests_total{listener="vim",method="POST",route="/never",status="499"} 1"#,
            ],
            "{text}"
        );
    }
}
