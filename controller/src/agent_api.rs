//! The agent endpoint: enrolment, reports, long-polled orders, the signed indexes and the
//! repositories' files. A host enrols once with the shared enrolment token
//! (`Authorization: Bearer <agent token>`) and gets a credential of its own; every other call
//! needs that credential, and a credential acts only for its own host.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use host_state::protocol::HostReport;
use serde::Deserialize;

use crate::auth::Secrets;
use crate::service::{FileArea, Service, ServiceError};

#[derive(Clone)]
struct AgentApi {
    service: Service,
    token: Arc<Secrets>,
}

pub(crate) fn router(service: Service, token: String) -> Router {
    Router::new()
        .route("/agent/v1/enrol", post(enrol))
        .route("/agent/v1/report", post(report))
        .route("/agent/v1/orders", get(orders))
        .route("/agent/v1/index/{area}/{release}", get(signed_index))
        .route("/agent/v1/repo-key", get(repo_key))
        .route("/agent/v1/feed/{*path}", get(feed_file))
        .route("/agent/v1/repo/{*path}", get(repo_file))
        .with_state(AgentApi {
            service,
            token: Arc::new(Secrets::new([token])),
        })
}

/// The enrolled host whose credential the request carries.
fn host_of(api: &AgentApi, headers: &HeaderMap) -> Option<String> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    api.service.host_of(presented)
}

fn authorized(api: &AgentApi, headers: &HeaderMap) -> bool {
    host_of(api, headers).is_some()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "Error message: a valid host credential is required (a host enrols once with the agent token, then uses its own credential)\n",
    )
        .into_response()
}

/// A host's credential used for another host.
fn not_yours(own: &str, claimed: &str) -> Response {
    tracing::warn!(target: "audit", "host {own}'s credential refused for {}", crate::http::log_text(claimed));
    (
        StatusCode::FORBIDDEN,
        format!(
            "Error message: this credential belongs to {own}; it cannot act for {}\n",
            crate::http::log_text(claimed)
        ),
    )
        .into_response()
}

#[derive(Deserialize)]
struct EnrolRequest {
    hostname: String,
}

/// A host's first call: the enrolment token buys a credential of its own, once.
async fn enrol(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    if !api.token.accepts_bearer(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "Error message: enrolment needs the agent token\n",
        )
            .into_response();
    }
    if let Some(r) = redirect(&api, &uri) {
        return r;
    }
    let request: EnrolRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("Error message: bad enrolment: {e}\n"),
            )
                .into_response();
        }
    };
    if patch_format::validate_patch_id(&request.hostname).is_err() {
        return (StatusCode::BAD_REQUEST, "Error message: bad hostname\n").into_response();
    }
    match api.service.enrol(request.hostname, peer.to_string()).await {
        Ok(credential) => {
            axum::Json(serde_json::json!({ "credential": credential })).into_response()
        }
        Err(ServiceError::Credential(e @ crate::credentials::CredentialError::Enrolled(_))) => {
            (StatusCode::CONFLICT, format!("Error message: {e}\n")).into_response()
        }
        Err(ServiceError::Credential(e @ crate::credentials::CredentialError::Full(_))) => {
            (StatusCode::FORBIDDEN, format!("Error message: {e}\n")).into_response()
        }
        Err(e) => refused(&api, &uri, e),
    }
}

/// Hosts talk to the active controller of a pair: elsewhere, a redirect to it.
fn redirect(api: &AgentApi, uri: &axum::http::Uri) -> Option<Response> {
    crate::http::not_active_response(&api.service, |u| u.agent.clone(), uri, false)
}

/// A refusal by the service: redirected if it is "not active", otherwise its words.
fn refused(api: &AgentApi, uri: &axum::http::Uri, e: ServiceError) -> Response {
    if let ServiceError::NotActive { message } = &e {
        return redirect(api, uri).unwrap_or_else(|| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Error message: {message}\n"),
            )
                .into_response()
        });
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Error message: {e}\n"),
    )
        .into_response()
}

async fn report(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> Response {
    let Some(own) = host_of(&api, &headers) else {
        return unauthorized();
    };
    if let Some(r) = redirect(&api, &uri) {
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
    if report.hostname != own {
        return not_yours(&own, &report.hostname);
    }
    match api.service.report(report).await {
        Ok(reply) => axum::Json(reply).into_response(),
        Err(e) => refused(&api, &uri, e),
    }
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
    let Some(own) = host_of(&api, &headers) else {
        return unauthorized();
    };
    if q.hostname != own {
        return not_yours(&own, &q.hostname);
    }
    if let Some(r) = redirect(&api, &uri) {
        return r;
    }
    let wait = Duration::from_secs(q.wait);
    match api.service.next_order(&q.hostname, q.received, wait).await {
        Ok(delivery) => axum::Json(delivery).into_response(),
        Err(e) => refused(&api, &uri, e),
    }
}

/// The feed's or repository's index of a release, signed.
async fn signed_index(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    UrlPath((area, release)): UrlPath<(String, String)>,
) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    let area = match area.as_str() {
        "feed" => FileArea::Feed,
        "repo" => FileArea::Repo,
        _ => return (StatusCode::NOT_FOUND, "Error message: no such index\n").into_response(),
    };
    match api.service.signed_index(area, &release).await {
        Ok((body, signature)) => (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (
                    header::HeaderName::from_static(repo_sign::SIGNATURE_HEADER),
                    signature,
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => refused(&api, &uri, e),
    }
}

/// The public key repository indexes are signed with (PEM), for agents that pin it on first
/// contact over a verified channel.
async fn repo_key(State(api): State<AgentApi>, headers: HeaderMap) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    match api.service.repo_key() {
        Ok(pem) => ([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Error message: {e}\n"),
        )
            .into_response(),
    }
}

async fn feed_file(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> Response {
    serve(&api, &headers, FileArea::Feed, &path).await
}

async fn repo_file(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    UrlPath(path): UrlPath<String>,
) -> Response {
    serve(&api, &headers, FileArea::Repo, &path).await
}

/// Streams a file of the feed or the repository.
async fn serve(api: &AgentApi, headers: &HeaderMap, area: FileArea, path: &str) -> Response {
    if !authorized(api, headers) {
        return unauthorized();
    }
    let Some(full) = api.service.agent_file(area, path) else {
        return (StatusCode::BAD_REQUEST, "Error message: bad path\n").into_response();
    };
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
