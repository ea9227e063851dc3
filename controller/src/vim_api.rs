//! The orchestration REST API (the original VIM's, reference §4) and the alarm API `fm` uses.
//! Strategy URIs are served under both `sw-patch` (the original's) and `sw-update` (the
//! seed's). Errors use the wsme fault body `{"faultcode","faultstring","debuginfo"}`.

use crate::auth::Operators;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orchestrator::Strategy;
use orchestrator::api as strategy_api;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::alarms::{AlarmError, NewAlarm};
use crate::http::Routes;
use crate::service::{AlarmFilter, Service, ServiceError, StrategyError};

#[derive(Clone)]
pub(crate) struct Vim {
    service: Service,
    tokens: Option<Arc<Operators>>,
}

/// The strategy resource of either kind (`sw-patch`, `sw-update`).
const STRATEGY: &str = "/api/orchestration/{kind}/strategy";

/// Every route the API serves (the description, `openapi/vim.yaml`, is checked against it).
pub(crate) fn routes() -> Routes<Vim> {
    Routes::new()
        .get("/", root)
        .get("/api", api_links)
        .get("/api/orchestration", orchestration_links)
        .get("/api/orchestration/{kind}", kind_links)
        .get(STRATEGY, get_strategy)
        .post(STRATEGY, create)
        .delete(STRATEGY, delete_strategy)
        .post("/api/orchestration/{kind}/strategy/actions", action)
        .get(
            "/api/orchestration/{kind}/strategy/{uuid}",
            get_strategy_by_uuid,
        )
        .get("/v1/alarms", list_alarms)
        .post("/v1/alarms", raise_alarm)
        .delete("/v1/alarms", clear_alarms)
        .delete("/v1/alarms/{uuid}", clear_alarm)
        .get("/openapi.json", || async { crate::openapi::VIM.json() })
        .get("/openapi.yaml", || async { crate::openapi::VIM.yaml() })
}

pub(crate) fn router(service: Service, tokens: Option<Arc<Operators>>) -> Router {
    routes()
        .into_router()
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            redirect_mutations,
        ))
        .layer(axum::middleware::from_fn_with_state(
            tokens.clone(),
            guard_mutations,
        ))
        .layer(DefaultBodyLimit::max(strategy_api::MAX_BODY))
        .with_state(Vim { service, tokens })
}

/// Mutations (POST, DELETE): a reader's are refused; every other one is audited with who
/// asked, from where, and the outcome. (Requests without a valid token are refused by the
/// handlers, as before.)
async fn guard_mutations(
    State(tokens): State<Option<Arc<Operators>>>,
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
    let operator = match &tokens {
        None => None,
        Some(tokens) => match tokens.identify_auth_token(request.headers()) {
            Some(o) => Some(o),
            None => return next.run(request).await,
        },
    };
    let from = crate::http::peer(&request);
    let action = format!(
        "{} {}",
        request.method(),
        crate::http::log_text(request.uri().path())
    );
    let refuse = |why: &str| fault(StatusCode::FORBIDDEN, why);
    crate::http::audited_mutation(operator.as_ref(), &from, &action, refuse, next.run(request))
        .await
}

/// Mutations (POST, DELETE) go to the active controller of a pair: elsewhere, a redirect.
async fn redirect_mutations(
    State(service): State<Service>,
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
    let limit = strategy_api::MAX_BODY as u64;
    match crate::http::refuse_if_not_active(&service, |u| u.vim.clone(), request, true, limit).await
    {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal,
    }
}

/// A service error as a fault body with the original's status.
fn service_fault(e: ServiceError) -> Response {
    let status = match &e {
        ServiceError::Strategy(StrategyError::NotFound) => StatusCode::NOT_FOUND,
        ServiceError::Strategy(
            StrategyError::Exists(_) | StrategyError::DeleteRefused(_) | StrategyError::Precheck(_),
        ) => StatusCode::CONFLICT,
        // The original answers a refused action with 500.
        ServiceError::Strategy(StrategyError::ActionRefused(_) | StrategyError::Save(_)) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        ServiceError::Alarm(AlarmError::Invalid(_)) => StatusCode::BAD_REQUEST,
        ServiceError::Alarm(AlarmError::NotFound(_)) => StatusCode::NOT_FOUND,
        ServiceError::NotActive { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    fault(status, &e.to_string())
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
            if tokens.identify_auth_token(headers).is_some() {
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

async fn get_strategy(
    State(vim): State<Vim>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
) -> Response {
    if let Some(r) = unauthorized(&vim, &headers) {
        return r;
    }
    let current = vim.service.strategy();
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
    match vim.service.strategy() {
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
    if request.dry_run {
        return match vim.service.plan_strategy(request.options).await {
            Ok(Ok(plan)) => {
                let plan = strategy_api::plan_json(&plan.stages, &plan.timing);
                axum::Json(json!({"dry-run": plan, "reason": ""})).into_response()
            }
            Ok(Err(e)) => {
                axum::Json(json!({"dry-run": null, "reason": e.to_string()})).into_response()
            }
            Err(e) => service_fault(e),
        };
    }
    match vim
        .service
        .create_strategy(request.options, request.force)
        .await
    {
        Ok(strategy) => axum::Json(strategy_body(Some(&strategy))).into_response(),
        Err(e) => service_fault(e),
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
    match vim.service.delete_strategy(force).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => service_fault(e),
    }
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
    match vim.service.strategy_action(action).await {
        Ok(strategy) => (
            StatusCode::ACCEPTED,
            axum::Json(strategy_body(Some(&strategy))),
        )
            .into_response(),
        Err(e) => service_fault(e),
    }
}

fn alarm_json(a: &orchestrator::Alarm) -> Value {
    let timestamp = crate::alarms::timestamp(a);
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
    let alarms: Vec<Value> = vim.service.alarms().iter().map(alarm_json).collect();
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

async fn raise_alarm(State(vim): State<Vim>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthorized(&vim, &headers) {
        return r;
    }
    let body: RaiseBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return fault(StatusCode::BAD_REQUEST, &format!("bad alarm: {e}")),
    };
    let raised = vim.service.raise_alarm(NewAlarm {
        alarm_id: body.alarm_id,
        entity_instance_id: body.entity_instance_id,
        severity: body.severity,
        reason_text: body.reason_text,
        mgmt_affecting: body.mgmt_affecting,
    });
    match raised.await {
        Ok(uuid) => axum::Json(json!({"uuid": uuid})).into_response(),
        Err(e) => service_fault(e),
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
    match vim.service.clear_alarms(AlarmFilter::Uuid(uuid)).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => service_fault(e),
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
    let filter = AlarmFilter::Id {
        alarm_id: q.alarm_id,
        entity_instance_id: q.entity_instance_id,
    };
    match vim.service.clear_alarms(filter).await {
        Ok(n) => axum::Json(json!({"cleared": n})).into_response(),
        Err(e) => service_fault(e),
    }
}
