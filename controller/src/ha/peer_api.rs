//! The endpoint the two controllers talk over (`ha_listen`, bearer token): status, the
//! replication exchange (sync → blobs → commit) and promotion.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::Ha;
use super::manifest::Manifest;

#[derive(Clone)]
struct Peer {
    ha: Arc<Ha>,
}

/// Largest manifest accepted (a state of some 100,000 files).
const MAX_MANIFEST: usize = 64 << 20;

pub(crate) fn router(ha: Arc<Ha>) -> Router {
    Router::new()
        .route("/ha/v1/status", get(status))
        .route("/ha/v1/sync", post(sync))
        .route("/ha/v1/blob/{sha}", put(blob))
        .route("/ha/v1/commit", post(commit))
        .route("/ha/v1/promote", post(promote))
        .layer(DefaultBodyLimit::max(MAX_MANIFEST))
        .with_state(Peer { ha })
}

fn refuse(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(json!({"error": message}))).into_response()
}

fn authorized(peer: &Peer, headers: &HeaderMap) -> Option<Response> {
    let ok = crate::agent_api::bearer_is(headers, &peer.ha.token);
    (!ok).then(|| refuse(401, "the peer token is required"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| refuse(500, &format!("task failed: {e}")))
}

async fn status(State(peer): State<Peer>, headers: HeaderMap) -> Response {
    if let Some(r) = authorized(&peer, &headers) {
        return r;
    }
    let ha = peer.ha.clone();
    match blocking(move || ha.status_now()).await {
        Ok(s) => axum::Json(s).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    term: u64,
    host: String,
    manifest: Manifest,
}

async fn sync(State(peer): State<Peer>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(r) = authorized(&peer, &headers) {
        return r;
    }
    let body: SyncBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return refuse(400, &format!("bad sync: {e}")),
    };
    let ha = peer.ha.clone();
    match blocking(move || ha.receive_sync(body.term, &body.host, body.manifest)).await {
        Ok(Ok(missing)) => axum::Json(missing).into_response(),
        Ok(Err((code, message))) => refuse(code, &message),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct BlobQuery {
    size: u64,
}

async fn blob(
    State(peer): State<Peer>,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
    query: Result<Query<BlobQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    if let Some(r) = authorized(&peer, &headers) {
        return r;
    }
    let Ok(Query(q)) = query else {
        return refuse(400, "give the blob's size=N");
    };
    // Streamed to disk as it arrives, hashed on the way (never whole in memory).
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(16);
    let ha = peer.ha.clone();
    let writer = tokio::task::spawn_blocking(move || {
        ha.gens.stage_blob(
            &sha,
            q.size,
            crate::api::ChannelReader {
                rx,
                current: axum::body::Bytes::new(),
            },
        )
    });
    let mut stream = request.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other);
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    match writer.await {
        Ok(Ok(())) => axum::Json(json!({"stored": true})).into_response(),
        Ok(Err(e)) => refuse(400, &e.to_string()),
        Err(e) => refuse(500, &e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    term: u64,
    host: String,
    digest: String,
}

async fn commit(State(peer): State<Peer>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(r) = authorized(&peer, &headers) {
        return r;
    }
    let body: CommitBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return refuse(400, &format!("bad commit: {e}")),
    };
    let ha = peer.ha.clone();
    match blocking(move || ha.receive_commit(body.term, &body.host, &body.digest)).await {
        Ok(Ok(())) => axum::Json(json!({"committed": true})).into_response(),
        Ok(Err((code, message))) => refuse(code, &message),
        Err(r) => r,
    }
}

async fn promote(
    State(peer): State<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = authorized(&peer, &headers) {
        return r;
    }
    let body: CommitBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return refuse(400, &format!("bad promote: {e}")),
    };
    let ha = peer.ha.clone();
    match blocking(move || ha.receive_promote(body.term, &body.host, &body.digest)).await {
        Ok(Ok(())) => axum::Json(json!({"active": true})).into_response(),
        Ok(Err((code, message))) => refuse(code, &message),
        Err(r) => r,
    }
}
