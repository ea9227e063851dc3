//! The dcmanager REST API (`/v1.0/subclouds`, `/v1.0/subcloud-groups`), as the original's
//! paths and JSON keys have it. Every request needs an operator's `X-Auth-Token`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::api_shared::{Api, error, failure};
use crate::db::{Db, DbError, GroupUpdate};
use crate::model::{Access, ApplyType, Group, Management, NewSubcloud, Subcloud};
use crate::strategy_api;

/// The largest request body (a subcloud's CA bundle is the largest part).
const MAX_BODY: usize = 1 << 20;

/// The router over `db`, accepting `tokens`.
pub(crate) fn router(
    db: Db,
    tokens: Vec<String>,
    reference: Access,
    wake: Arc<tokio::sync::Notify>,
) -> Router {
    let tokens = Arc::new(
        tokens
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(String::into_bytes)
            .collect(),
    );
    let api = Api {
        db,
        tokens,
        reference: Arc::new(reference),
        wake,
    };
    Router::new()
        .route("/v1.0/subclouds", get(list_subclouds).post(add_subcloud))
        .route(
            "/v1.0/subclouds/{subcloud}",
            get(show_subcloud)
                .patch(update_subcloud)
                .delete(delete_subcloud),
        )
        .route(
            "/v1.0/subclouds/{subcloud}/prestage",
            axum::routing::post(prestage),
        )
        .route(
            "/v1.0/subclouds/{subcloud}/{api}/{*rest}",
            axum::routing::any(proxy),
        )
        .route("/v1.0/subcloud-groups", get(list_groups).post(add_group))
        .route(
            "/v1.0/subcloud-groups/{group}",
            get(show_group).patch(update_group).delete(delete_group),
        )
        .route(
            "/v1.0/subcloud-groups/{group}/subclouds",
            get(group_subclouds),
        )
        .route(
            "/v1.0/sw-update-strategy",
            get(strategy_api::show)
                .post(strategy_api::create)
                .delete(strategy_api::delete),
        )
        .route(
            "/v1.0/sw-update-strategy/",
            axum::routing::post(strategy_api::create),
        )
        .route(
            "/v1.0/sw-update-strategy/actions",
            axum::routing::post(strategy_api::action),
        )
        .route("/v1.0/sw-update-strategy/steps", get(strategy_api::steps))
        .route(
            "/v1.0/sw-update-strategy/steps/{cloud}",
            get(strategy_api::step),
        )
        .route("/v1.0/sw-update-options", get(strategy_api::list_options))
        .route(
            "/v1.0/sw-update-options/{cloud}",
            get(strategy_api::show_options)
                .post(strategy_api::update_options)
                .delete(strategy_api::delete_options),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such resource".into()) })
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Refuses a request without a valid operator token; every token is compared in constant
/// time.
async fn authenticate(State(api): State<Api>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get("x-auth-token")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let mut known = false;
    for token in api.tokens.iter() {
        known |= bool::from(token.as_slice().ct_eq(&presented));
    }
    if !known || presented.is_empty() {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication required: send an operator's token as X-Auth-Token".into(),
        );
    }
    next.run(request).await
}

/// The request body as `T`, or why not (a 400's message).
fn body<T: for<'a> Deserialize<'a>>(bytes: &Bytes) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("bad request body: {e}"))
}

/// A subcloud as the original's API shows it (no credential).
pub fn subcloud_json(s: &Subcloud) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "location": s.location,
        "url": s.url,
        "vim-url": s.vim_url,
        "management-state": s.management.as_str(),
        "availability-status": s.availability.as_str(),
        "deploy-status": "complete",
        "group_id": s.group_id,
        "sync_status": s.sync_status.as_str(),
        "sync-detail": s.sync_detail,
        "endpoint_sync_status": [
            {"endpoint_type": "patching", "sync_status": s.sync_status.as_str()}
        ],
        "created-at": s.created_at,
        "updated-at": s.updated_at,
        "audited-at": s.audited_at,
    })
}

/// A group as the original's API shows it.
pub fn group_json(g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "update_apply_type": g.update_apply_type.as_str(),
        "max_parallel_subclouds": g.max_parallel_subclouds,
    })
}

async fn list_subclouds(State(api): State<Api>) -> Response {
    match api.db.subclouds().await {
        Ok(list) => axum::Json(json!({
            "subclouds": list.iter().map(subcloud_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => failure(e),
    }
}

async fn show_subcloud(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.db.subcloud(&name).await {
        Ok(s) => axum::Json(subcloud_json(&s)).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddSubcloud {
    name: String,
    url: String,
    token: String,
    #[serde(rename = "ca-pem", default)]
    ca_pem: Option<String>,
    #[serde(rename = "vim-url", default)]
    vim_url: Option<String>,
    #[serde(default)]
    group_id: Option<Value>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    location: String,
}

/// A group named by name or number.
fn group_ref(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn add_subcloud(State(api): State<Api>, bytes: Bytes) -> Response {
    let add: AddSubcloud = match body(&bytes) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    if add.token.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "token: the subcloud controller's operator token is required".into(),
        );
    }
    let new = NewSubcloud {
        name: add.name,
        access: Access {
            url: add.url,
            token: add.token,
            ca_pem: add.ca_pem.filter(|p| !p.trim().is_empty()),
            vim_url: add.vim_url.filter(|u| !u.is_empty()),
        },
        group: group_ref(add.group_id),
        description: add.description,
        location: add.location,
    };
    // A CA that does not parse is refused now, not at the first audit.
    if let Some(pem) = &new.access.ca_pem {
        let trust = tls::Trust::CaPem {
            name: "ca-pem".into(),
            pem: pem.as_bytes().to_vec(),
        };
        if let Err(e) = trust.client_config() {
            return error(StatusCode::BAD_REQUEST, format!("ca-pem: {e}"));
        }
    }
    match api.db.add_subcloud(new).await {
        Ok(s) => {
            tracing::info!(target: "audit", "subcloud {} added", s.name);
            axum::Json(subcloud_json(&s)).into_response()
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSubcloud {
    #[serde(rename = "management-state", default)]
    management: Option<String>,
    #[serde(default)]
    group_id: Option<Value>,
}

async fn update_subcloud(
    State(api): State<Api>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Response {
    let update: UpdateSubcloud = match body(&bytes) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    if update.management.is_none() && update.group_id.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "nothing to update: give management-state or group_id".into(),
        );
    }
    let mut result = api.db.subcloud(&name).await;
    if let Some(group) = group_ref(update.group_id) {
        result = api.db.set_group(&name, &group).await;
    }
    if let Some(m) = update.management {
        let management: Management = match m.parse() {
            Ok(m) => m,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        result = api.db.set_management(&name, management).await;
        if let Ok(s) = &result {
            tracing::info!(target: "audit", "subcloud {name} {management}");
            if management == Management::Managed {
                // Its status is known at once rather than at the next audit round.
                let (db, reference, id) = (api.db.clone(), api.reference.clone(), s.id);
                tokio::spawn(async move {
                    if let Err(e) = crate::audit::audit_subcloud(&db, &reference, id).await {
                        tracing::warn!("audit of subcloud {id}: {e}");
                    }
                });
            }
        }
    }
    match result {
        Ok(s) => axum::Json(subcloud_json(&s)).into_response(),
        Err(e) => failure(e),
    }
}

async fn delete_subcloud(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.db.delete_subcloud(&name).await {
        Ok(()) => {
            tracing::info!(target: "audit", "subcloud {name} deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => failure(e),
    }
}

async fn list_groups(State(api): State<Api>) -> Response {
    match api.db.groups().await {
        Ok(list) => axum::Json(json!({
            "subcloud_groups": list.iter().map(group_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => failure(e),
    }
}

async fn show_group(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.db.group(&name).await {
        Ok(g) => axum::Json(group_json(&g)).into_response(),
        Err(e) => failure(e),
    }
}

async fn group_subclouds(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.db.group_subclouds(&name).await {
        Ok(list) => axum::Json(json!({
            "subclouds": list.iter().map(subcloud_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    update_apply_type: Option<String>,
    #[serde(default)]
    max_parallel_subclouds: Option<i64>,
}

fn apply_type(value: Option<String>) -> Result<Option<ApplyType>, String> {
    value
        .map(|v| v.parse())
        .transpose()
        .map_err(|e: crate::model::BadValue| e.to_string())
}

async fn add_group(State(api): State<Api>, bytes: Bytes) -> Response {
    let add: GroupBody = match body(&bytes) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let Some(name) = add.name else {
        return error(StatusCode::BAD_REQUEST, "name is required".into());
    };
    let apply = match apply_type(add.update_apply_type) {
        Ok(a) => a.unwrap_or(ApplyType::Parallel),
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let result = api
        .db
        .add_group(
            &name,
            add.description.as_deref().unwrap_or_default(),
            apply,
            add.max_parallel_subclouds.unwrap_or(2),
        )
        .await;
    match result {
        Ok(g) => axum::Json(group_json(&g)).into_response(),
        Err(e) => failure(e),
    }
}

async fn update_group(State(api): State<Api>, Path(name): Path<String>, bytes: Bytes) -> Response {
    let update: GroupBody = match body(&bytes) {
        Ok(b) => b,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let update_apply_type = match apply_type(update.update_apply_type) {
        Ok(a) => a,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let update = GroupUpdate {
        name: update.name,
        description: update.description,
        update_apply_type,
        max_parallel_subclouds: update.max_parallel_subclouds,
    };
    match api.db.update_group(&name, update).await {
        Ok(g) => axum::Json(group_json(&g)).into_response(),
        Err(e) => failure(e),
    }
}

async fn delete_group(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.db.delete_group(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

/// A managed subcloud and how to reach it, or the answer refusing `what` (unknown or
/// unmanaged subcloud).
async fn managed_access(api: &Api, name: &str, what: &str) -> Result<Access, (StatusCode, String)> {
    let subcloud = api.db.subcloud(name).await.map_err(|e| match e {
        DbError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        e => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    })?;
    if subcloud.management != Management::Managed {
        return Err((
            StatusCode::CONFLICT,
            format!("subcloud {name} is unmanaged: manage it before {what}"),
        ));
    }
    api.db
        .access(subcloud.id)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `/v1.0/subclouds/<name>/<api>/<rest>`: the request passed on to that subcloud's own
/// patching API (`patching`) or orchestration and alarm API (`vim`), with the credential
/// and CA the system controller holds for it, the answer passed back; bodies stream both
/// ways. This is how `sw-patch`, `system`, `sw-manager` and `fm` with `--os-region-name
/// <subcloud>` reach a subcloud through the system controller.
async fn proxy(
    State(api): State<Api>,
    Path((name, which, rest)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let access = match managed_access(&api, &name, "sending it requests").await {
        Ok(a) => a,
        Err((status, message)) => return error(status, message),
    };
    let base = match which.as_str() {
        "patching" => access.url.clone(),
        "vim" => match &access.vim_url {
            Some(url) => url.clone(),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "subcloud {name} has no orchestration API URL (subcloud add --vim-url)"
                    ),
                );
            }
        },
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no such subcloud API {other:?}: patching or vim"),
            );
        }
    };
    let client = match crate::client::client_for(&access, &name, None) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let mut url = format!("{}/{rest}", base.trim_end_matches('/'));
    if let Some(query) = request.uri().query() {
        url.push('?');
        url.push_str(query);
    }
    let method = request.method().clone();
    let content_type = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .cloned();
    let length = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .cloned();
    let body = reqwest::Body::wrap_stream(request.into_body().into_data_stream());
    let mut forward = client
        .request(method, &url)
        .header("X-Auth-Token", &access.token)
        .body(body);
    if let Some(v) = content_type {
        forward = forward.header(axum::http::header::CONTENT_TYPE, v);
    }
    if let Some(v) = length {
        forward = forward.header(axum::http::header::CONTENT_LENGTH, v);
    }
    let answer = match forward.send().await {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("subcloud {name} does not answer: {e}"),
            );
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::builder().status(status);
    if let Some(v) = answer.headers().get(reqwest::header::CONTENT_TYPE) {
        response = response.header(axum::http::header::CONTENT_TYPE, v.as_bytes());
    }
    response
        .body(axum::body::Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|e| error(StatusCode::BAD_GATEWAY, e.to_string()))
}

/// `POST /v1.0/subclouds/<name>/prestage`: uploads the patches it lacks (see
/// [`crate::prestage`]).
async fn prestage(State(api): State<Api>, Path(name): Path<String>) -> Response {
    let access = match managed_access(&api, &name, "prestaging").await {
        Ok(a) => a,
        Err((status, message)) => return error(status, message),
    };
    match crate::prestage::prestage(&api.reference, &access, &name).await {
        Ok(done) => {
            tracing::info!(
                target: "audit",
                "subcloud {name} prestaged: uploaded {:?}, failed {:?}",
                done.uploaded,
                done.failed
            );
            axum::Json(json!({
                "uploaded": done.uploaded,
                "failed": done.failed.iter().map(|(id, why)| json!({"patch": id, "reason": why})).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
