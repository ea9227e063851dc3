//! The agent endpoint: reports, long-polled orders, and the repositories' files. Every call
//! needs `Authorization: Bearer <agent token>`.

use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use host_state::protocol::{Delivery, HostReport, ReportReply};
use serde::Deserialize;

use crate::auth::Secrets;
use crate::state::App;

#[derive(Clone)]
struct AgentApi {
    app: Arc<App>,
    token: Arc<Secrets>,
}

pub(crate) fn router(app: Arc<App>, token: String) -> Router {
    Router::new()
        .route("/agent/v1/report", post(report))
        .route("/agent/v1/orders", get(orders))
        .route("/agent/v1/feed/{*path}", get(feed_file))
        .route("/agent/v1/repo/{*path}", get(repo_file))
        .with_state(AgentApi {
            app,
            token: Arc::new(Secrets::new([token])),
        })
}

fn authorized(api: &AgentApi, headers: &HeaderMap) -> bool {
    api.token.accepts_bearer(headers)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "Error message: a valid agent token is required\n",
    )
        .into_response()
}

async fn report(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    // Hosts report to the active controller of a pair (the standby's copy follows).
    if let Some(r) = crate::http::not_active_response(&api.app, |u| u.agent.clone(), &uri, false) {
        return r;
    }
    let report: HostReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("Error message: bad report: {e}\n"),
            )
                .into_response();
        }
    };
    if patch_format::validate_patch_id(&report.hostname).is_err() {
        return (StatusCode::BAD_REQUEST, "Error message: bad hostname\n").into_response();
    }
    let hostname = report.hostname.clone();
    let done = report.install_done;
    let app = api.app.clone();
    let locked = tokio::task::spawn_blocking(move || {
        let was_interim = app.host_reported(&hostname);
        app.with_hosts(|hosts| {
            let changed = hosts.report(report, done);
            let locked = hosts
                .hosts
                .get(&hostname)
                .is_some_and(|h| h.facts.admin == host_state::AdminState::Locked);
            // A plain heartbeat changes nothing the snapshot shows: no rebuild.
            (locked, changed || was_interim)
        })
    })
    .await
    .unwrap_or(false);
    let reply = ReportReply {
        op_counter: api.app.op_counter(),
        locked,
    };
    axum::Json(reply).into_response()
}

#[derive(Deserialize)]
struct OrdersQuery {
    hostname: String,
    #[serde(default)]
    wait: u64,
    /// The last delivery the agent received (acknowledges it).
    #[serde(default)]
    received: u64,
}

async fn orders(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<OrdersQuery>,
) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    if let Some(r) = crate::http::not_active_response(&api.app, |u| u.agent.clone(), &uri, false) {
        return r;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(q.wait.min(60));
    loop {
        // Register interest before checking, so a notify in between is not lost.
        let notified = api.app.orders.notified();
        let order = api
            .app
            .with_hosts(|hosts| (hosts.take_order(&q.hostname, q.received), false));
        if let Some(order) = order {
            return axum::Json(order).into_response();
        }
        // Wake at least every second: a controller that stopped being active (swact) sends
        // its agents to the new active one instead of holding them here.
        let tick = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
        let woken = tokio::time::timeout_at(tick, notified).await.is_ok();
        if let Some(r) =
            crate::http::not_active_response(&api.app, |u| u.agent.clone(), &uri, false)
        {
            return r;
        }
        if !woken && tokio::time::Instant::now() >= deadline {
            return axum::Json(Delivery::none()).into_response();
        }
    }
}

async fn feed_file(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> Response {
    serve(&api, &headers, "feed", &path).await
}

async fn repo_file(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> Response {
    serve(&api, &headers, "repo", &path).await
}

/// Streams a file of `<state>/<area>/<path>`; only plain relative paths are accepted.
async fn serve(api: &AgentApi, headers: &HeaderMap, area: &str, path: &str) -> Response {
    if !authorized(api, headers) {
        return unauthorized();
    }
    let rel = Path::new(path);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return (StatusCode::BAD_REQUEST, "Error message: bad path\n").into_response();
    }
    let full = api.app.config.state_dir.join(area).join(rel);
    match tokio::fs::File::open(&full).await {
        Ok(file) => {
            let len = file.metadata().await.map(|m| m.len()).ok();
            // 256 KiB reads: the default 4 KiB costs one blocking-pool trip per 4 KiB.
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
            let mut response = Body::from_stream(stream).into_response();
            if let Some(len) = len
                && let Ok(value) = len.to_string().parse()
            {
                response.headers_mut().insert(header::CONTENT_LENGTH, value);
            }
            response
        }
        Err(_) => (StatusCode::NOT_FOUND, "Error message: no such file\n").into_response(),
    }
}
