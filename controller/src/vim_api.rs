//! The orchestration REST API (the original VIM's, reference §4) and the alarm API `fm` uses.
//! Strategy URIs are served under both `sw-patch` (the original's) and `sw-update` (the
//! seed's). Errors use the wsme fault body `{"faultcode","faultstring","debuginfo"}`.

use crate::auth::Secrets;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use orchestrator::Strategy;
use orchestrator::api::{self as strategy_api, Action};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::alarms::{AlarmError, NewAlarm};
use crate::orchestration::{Orchestration, now_ms};

#[derive(Clone)]
struct Vim {
    orch: Arc<Orchestration>,
    tokens: Option<Arc<Secrets>>,
}

pub(crate) fn router(orch: Arc<Orchestration>, tokens: Option<Arc<Secrets>>) -> Router {
    let strategy = "/api/orchestration/{kind}/strategy";
    Router::new()
        .route("/", get(root))
        .route("/api", get(api_links))
        .route("/api/orchestration", get(orchestration_links))
        .route("/api/orchestration/{kind}", get(kind_links))
        .route(
            strategy,
            get(get_strategy).post(create).delete(delete_strategy),
        )
        .route(&format!("{strategy}/actions"), post(action))
        .route(&format!("{strategy}/{{uuid}}"), get(get_strategy_by_uuid))
        .route(
            "/v1/alarms",
            get(list_alarms).post(raise_alarm).delete(clear_alarms),
        )
        .route("/v1/alarms/{uuid}", delete(clear_alarm))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            orch.clone(),
            replicated,
        ))
        .layer(DefaultBodyLimit::max(strategy_api::MAX_BODY))
        .with_state(Vim { orch, tokens })
}

/// Mutations (POST, DELETE) go to the active controller of a pair, and answer only once the
/// standby holds them.
async fn replicated(
    State(orch): State<Arc<Orchestration>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mutating = matches!(
        *request.method(),
        axum::http::Method::POST | axum::http::Method::DELETE
    );
    if !mutating {
        return next.run(request).await;
    }
    if let Some(r) =
        crate::http::not_active_response(&orch.app, |u| u.vim.clone(), request.uri(), true)
    {
        return r;
    }
    let response = next.run(request).await;
    if !response.status().is_success() {
        return response;
    }
    match crate::http::replicated(&orch.app).await {
        Ok(()) => response,
        Err(message) => fault(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

fn fault(status: StatusCode, message: &str) -> Response {
    let code = if status.is_server_error() {
        "Server"
    } else {
        "Client"
    };
    (
        status,
        axum::Json(json!({"faultcode": code, "faultstring": message, "debuginfo": null})),
    )
        .into_response()
}

async fn not_found() -> Response {
    fault(StatusCode::NOT_FOUND, "The resource could not be found.")
}

/// Token check (the same tokens as the authenticated patching API).
/// The rejection of a request without a valid token, if any.
fn unauthorized(vim: &Vim, headers: &HeaderMap) -> Option<Response> {
    match &vim.tokens {
        None => None,
        Some(tokens) => {
            if tokens.accepts_auth_token(headers) {
                None
            } else {
                Some(fault(
                    StatusCode::UNAUTHORIZED,
                    "Authentication required: send a valid X-Auth-Token header",
                ))
            }
        }
    }
}

fn links(id: &str, rels: &[(&str, &str)]) -> Response {
    let links: Vec<Value> = rels
        .iter()
        .map(|(rel, href)| json!({"href": href, "rel": rel}))
        .collect();
    axum::Json(json!({"id": id, "links": links})).into_response()
}

async fn root() -> Response {
    links("nfv-vim", &[("self", "/"), ("api", "/api")])
}

async fn api_links() -> Response {
    links(
        "api",
        &[("self", "/api"), ("orchestration", "/api/orchestration")],
    )
}

async fn orchestration_links() -> Response {
    links(
        "orchestration",
        &[
            ("self", "/api/orchestration"),
            ("sw-patch", "/api/orchestration/sw-patch"),
        ],
    )
}

/// Only the patch strategy exists here; `sw-update` is the seed's name for it.
fn unknown_kind(kind: &str) -> Option<Response> {
    match kind {
        "sw-patch" | "sw-update" => None,
        _ => Some(not_found_sync()),
    }
}

fn not_found_sync() -> Response {
    fault(StatusCode::NOT_FOUND, "The resource could not be found.")
}

async fn kind_links(UrlPath(kind): UrlPath<String>) -> Response {
    if kind == "current-strategy" {
        return links("current-strategy", &[]);
    }
    if let Some(r) = unknown_kind(&kind) {
        return r;
    }
    let base = format!("/api/orchestration/{kind}");
    links(
        &kind,
        &[
            ("self", base.as_str()),
            ("strategy", &format!("{base}/strategy")),
        ],
    )
}

fn strategy_body(s: Option<&Strategy>) -> Value {
    json!({"strategy": s.map(strategy_api::strategy_json)})
}

/// The rejection of a strategy request without a valid token or for an unknown strategy type.
fn rejected(vim: &Vim, headers: &HeaderMap, kind: &str) -> Option<Response> {
    unauthorized(vim, headers).or_else(|| unknown_kind(kind))
}

/// Runs `f` on the strategy slot, saving the slot when `f` says it changed. `f`'s own
/// refusal is the answer as it is; a failed save is a 500 (and changes nothing).
fn update<T>(
    vim: &Vim,
    f: impl FnOnce(&mut Option<Strategy>) -> (Result<T, Response>, bool),
) -> Result<T, Box<Response>> {
    match vim.orch.with_strategy(f) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(refusal)) => Err(Box::new(refusal)),
        Err(e) => Err(Box::new(fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot save the strategy: {e}"),
        ))),
    }
}

async fn get_strategy(
    State(vim): State<Vim>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
) -> Response {
    if let Some(r) = unauthorized(&vim, &headers) {
        return r;
    }
    let current = vim.orch.current();
    if kind == "current-strategy" {
        let body = current
            .map(|s| json!({"strategy": {"name": s.name, "state": s.state.as_str()}}))
            .unwrap_or_else(|| json!({"strategy": null}));
        return axum::Json(body).into_response();
    }
    if let Some(r) = unknown_kind(&kind) {
        return r;
    }
    axum::Json(strategy_body(current.as_ref())).into_response()
}

async fn get_strategy_by_uuid(
    State(vim): State<Vim>,
    headers: HeaderMap,
    UrlPath((kind, uuid)): UrlPath<(String, String)>,
) -> Response {
    if let Some(r) = rejected(&vim, &headers, &kind) {
        return r;
    }
    if uuid::Uuid::parse_str(&uuid).is_err() {
        return fault(
            StatusCode::BAD_REQUEST,
            &format!("Invalid strategy uuid, uuid={uuid}"),
        );
    }
    match vim.orch.current() {
        Some(s) if s.uuid == uuid => axum::Json(strategy_body(Some(&s))).into_response(),
        _ => not_found_sync(),
    }
}

async fn create(
    State(vim): State<Vim>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = rejected(&vim, &headers, &kind) {
        return r;
    }
    let request = match strategy_api::parse_create(&body) {
        Ok(r) => r,
        Err(error) => return fault(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let config = &vim.orch.app.config;
    let strategy = Strategy::new(
        request.options,
        config.strategy_timing.clone(),
        config.single_controller,
        config.ignore_alarms.clone(),
    );
    if request.dry_run {
        let orch = vim.orch.clone();
        let planned = tokio::task::spawn_blocking(move || {
            let cluster = orch.cluster();
            strategy
                .plan_now(&cluster, now_ms())
                .map(|stages| strategy_api::plan_json(&stages, &strategy.timing))
        })
        .await;
        return match planned {
            Ok(Ok(plan)) => axum::Json(json!({"dry-run": plan, "reason": ""})).into_response(),
            Ok(Err(e)) => {
                axum::Json(json!({"dry-run": null, "reason": e.to_string()})).into_response()
            }
            Err(e) => fault(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
    }
    let created = update(&vim, |slot| match slot {
        Some(existing) => (
            Err(fault(
                StatusCode::CONFLICT,
                &format!("strategy already exists of type:{}", existing.name),
            )),
            false,
        ),
        None => {
            let mut s = strategy;
            s.start_build(now_ms());
            let body = strategy_body(Some(&s));
            *slot = Some(s);
            (Ok(body), true)
        }
    });
    match created {
        Ok(body) => {
            vim.orch.wake.notify_one();
            tracing::info!(target: "audit", "patch strategy created");
            axum::Json(body).into_response()
        }
        Err(refusal) => *refusal,
    }
}

#[derive(Deserialize, Default)]
struct DeleteBody {
    #[serde(default)]
    force: bool,
}

async fn delete_strategy(
    State(vim): State<Vim>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = rejected(&vim, &headers, &kind) {
        return r;
    }
    let force = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        match serde_json::from_slice::<DeleteBody>(&body) {
            Ok(b) => b.force,
            Err(e) => return fault(StatusCode::BAD_REQUEST, &format!("bad request body: {e}")),
        }
    };
    let deleted = update(&vim, |slot| {
        match slot.as_ref().map(|s| s.check_delete(force)) {
            None => (Err(not_found_sync()), false),
            Some(Err(refused)) => (
                Err(fault(StatusCode::CONFLICT, &refused.to_string())),
                false,
            ),
            Some(Ok(())) => {
                *slot = None;
                (Ok(()), true)
            }
        }
    });
    if let Err(refusal) = deleted {
        return *refusal;
    }
    let orch = vim.orch.clone();
    let _ = tokio::task::spawn_blocking(move || orch.sync_alarms()).await;
    tracing::info!(target: "audit", "patch strategy deleted (force: {force})");
    StatusCode::NO_CONTENT.into_response()
}

async fn action(
    State(vim): State<Vim>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = rejected(&vim, &headers, &kind) {
        return r;
    }
    let action = match strategy_api::parse_action(&body) {
        Ok(a) => a,
        Err(error) => return fault(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let now = now_ms();
    let acted = update(&vim, |slot| {
        let Some(s) = slot.as_mut() else {
            return (Err(not_found_sync()), false);
        };
        let outcome = match action {
            Action::Apply(stage) => s.apply(stage, now),
            Action::Abort(stage) => s.abort(stage, now),
        };
        match outcome {
            Ok(()) => (Ok(strategy_body(Some(s))), true),
            // The original answers a refused action with 500.
            Err(refused) => (
                Err(fault(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &refused.to_string(),
                )),
                false,
            ),
        }
    });
    match acted {
        Ok(body) => {
            vim.orch.wake.notify_one();
            tracing::info!(target: "audit", "patch strategy action {action:?}");
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        }
        Err(refusal) => *refusal,
    }
}

fn alarm_json(a: &orchestrator::Alarm) -> Value {
    let timestamp = chrono::DateTime::from_timestamp(a.raised_at as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default();
    json!({
        "uuid": a.uuid,
        "alarm_id": a.alarm_id,
        "alarm_state": "set",
        "entity_instance_id": a.entity_instance_id,
        "severity": a.severity,
        "reason_text": a.reason_text,
        "mgmt_affecting": a.mgmt_affecting,
        "timestamp": timestamp,
    })
}

async fn list_alarms(State(vim): State<Vim>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&vim, &headers) {
        return r;
    }
    let alarms: Vec<Value> = vim
        .orch
        .app
        .alarms()
        .list()
        .iter()
        .map(alarm_json)
        .collect();
    axum::Json(json!({"alarms": alarms})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RaiseBody {
    alarm_id: String,
    entity_instance_id: String,
    #[serde(default = "default_severity")]
    severity: String,
    #[serde(default)]
    reason_text: String,
    #[serde(default = "default_true")]
    mgmt_affecting: bool,
}

fn default_severity() -> String {
    "major".into()
}

fn default_true() -> bool {
    true
}

fn alarm_error(e: AlarmError) -> Response {
    match e {
        AlarmError::Invalid(m) => fault(StatusCode::BAD_REQUEST, &m),
        io => fault(StatusCode::INTERNAL_SERVER_ERROR, &io.to_string()),
    }
}

async fn raise_alarm(State(vim): State<Vim>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthorized(&vim, &headers) {
        return r;
    }
    let body: RaiseBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return fault(StatusCode::BAD_REQUEST, &format!("bad alarm: {e}")),
    };
    let raised = vim.orch.app.alarms().raise(NewAlarm {
        alarm_id: body.alarm_id,
        entity_instance_id: body.entity_instance_id,
        severity: body.severity,
        reason_text: body.reason_text,
        mgmt_affecting: body.mgmt_affecting,
    });
    match raised {
        Ok(uuid) => axum::Json(json!({"uuid": uuid})).into_response(),
        Err(e) => alarm_error(e),
    }
}

async fn clear_alarm(
    State(vim): State<Vim>,
    headers: HeaderMap,
    UrlPath(uuid): UrlPath<String>,
) -> Response {
    if let Some(r) = unauthorized(&vim, &headers) {
        return r;
    }
    match vim.orch.app.alarms().clear(|a| a.uuid == uuid) {
        Ok(0) => fault(StatusCode::NOT_FOUND, &format!("Alarm {uuid} not found")),
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => alarm_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearQuery {
    alarm_id: String,
    entity_instance_id: Option<String>,
}

async fn clear_alarms(
    State(vim): State<Vim>,
    headers: HeaderMap,
    query: Result<Query<ClearQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(r) = unauthorized(&vim, &headers) {
        return r;
    }
    let Ok(Query(q)) = query else {
        return fault(
            StatusCode::BAD_REQUEST,
            "give alarm_id (and optionally entity_instance_id) to clear",
        );
    };
    let cleared = vim.orch.app.alarms().clear(|a| {
        a.alarm_id == q.alarm_id
            && q.entity_instance_id
                .as_ref()
                .is_none_or(|e| &a.entity_instance_id == e)
    });
    match cleared {
        Ok(0) => fault(
            StatusCode::NOT_FOUND,
            &format!("Alarm {} not found", q.alarm_id),
        ),
        Ok(n) => axum::Json(json!({"cleared": n})).into_response(),
        Err(e) => alarm_error(e),
    }
}
