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
    /// The pair's token, as the one secret check takes it.
    token: Arc<crate::auth::Secrets>,
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
        .with_state(Peer {
            token: Arc::new(crate::auth::Secrets::new([&ha.token])),
            ha,
        })
}

fn refuse(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(json!({"error": message}))).into_response()
}

fn authorized(peer: &Peer, headers: &HeaderMap) -> Option<Response> {
    let ok = peer.token.accepts_bearer(headers);
    (!ok).then(|| refuse(401, "the peer token is required"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| refuse(500, &format!("task failed: {e}")))
}

#[derive(Deserialize)]
struct StatusQuery {
    #[serde(default)]
    digest: bool,
}

async fn status(
    State(peer): State<Peer>,
    headers: HeaderMap,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(r) = authorized(&peer, &headers) {
        return r;
    }
    let Ok(Query(q)) = query else {
        return refuse(400, "digest=true or digest=false");
    };
    let ha = peer.ha.clone();
    match blocking(move || ha.status_now(q.digest)).await {
        Ok(s) => axum::Json(s).into_response(),
        Err(r) => r,
    }
}

/// One step of the exchange: the bearer token, a JSON body of type `B`, then `step` on a
/// blocking thread; its answer as JSON, or its refusal as `{"error": …}` with its status.
async fn exchange<B, T>(
    peer: Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
    step: impl FnOnce(&Ha, B) -> Result<T, (u16, String)> + Send + 'static,
) -> Response
where
    B: serde::de::DeserializeOwned + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    if let Some(r) = authorized(&peer, &headers) {
        return r;
    }
    let body: B = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return refuse(400, &format!("bad request body: {e}")),
    };
    let ha = peer.ha.clone();
    match blocking(move || step(&ha, body)).await {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err((code, message))) => refuse(code, &message),
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
    exchange(peer, headers, body, |ha, b: SyncBody| {
        ha.receive_sync(b.term, &b.host, b.manifest)
    })
    .await
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
    if !peer.ha.expects_blob(&sha, q.size) {
        return refuse(
            400,
            &format!(
                "blob {sha} of {} bytes is not in the announced state",
                q.size
            ),
        );
    }
    // Streamed to disk as it arrives, hashed on the way (never whole in memory).
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(16);
    let ha = peer.ha.clone();
    let writer = tokio::task::spawn_blocking(move || {
        ha.gens.stage_blob(
            &sha,
            q.size,
            crate::channel_reader::ChannelReader {
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
    exchange(peer, headers, body, |ha, b: CommitBody| {
        ha.receive_commit(b.term, &b.host, &b.digest)
            .map(|()| json!({"committed": true}))
    })
    .await
}

async fn promote(
    State(peer): State<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    exchange(peer, headers, body, |ha, b: CommitBody| {
        ha.receive_promote(b.term, &b.host, &b.digest)
            .map(|()| json!({"active": true}))
    })
    .await
}
