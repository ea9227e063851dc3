//! The patching REST API: `/v1/<action>/<ids…>?options` and its `/patch/…` alias, with the
//! original's JSON shapes. Operation failures are HTTP 200 with `error` set, as the original
//! server does (its client relies on that); any other non-200 body carries an
//! `Error message:` line, which the original client looks for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{
    DefaultBodyLimit, FromRequest, Multipart, Path as UrlPath, RawQuery, Request, State,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt;
use host_state::PatchState;
use patch_store::{ChangeOptions, Outcome, RepoState, StoreError};
use serde_json::json;

use crate::auth::Secrets;
use crate::channel_reader::ChannelReader;
use crate::http::ok;
use crate::json;
use crate::state::App;

#[derive(Clone)]
struct Api {
    app: Arc<App>,
    /// `Some` on the authenticated listener.
    tokens: Option<Arc<Secrets>>,
}

pub(crate) fn router(app: Arc<App>, tokens: Option<Arc<Secrets>>) -> Router {
    Router::new()
        .route("/", any(banner))
        .route("/v1", any(banner))
        .route("/v1/{*rest}", any(dispatch))
        .route("/patch/{*rest}", any(dispatch))
        .fallback(not_found)
        // Uploads are streamed to disk with their own limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(Api { app, tokens })
}

async fn banner() -> &'static str {
    "Titanium Cloud Patching API, Available versions: /v1"
}

async fn not_found() -> Response {
    http_error(StatusCode::NOT_FOUND, "no such resource: use /v1/<action>")
}

/// A non-200 answer: plain text with the `Error message:` line the original client expects.
fn http_error(status: StatusCode, message: &str) -> Response {
    (status, format!("Error message: {message}\n")).into_response()
}

/// A store result as the original reports it.
fn reply(result: Result<Outcome, StoreError>) -> Response {
    match result {
        Ok(outcome) => ok(json::outcome(&outcome)),
        Err(e) => store_error(e),
    }
}

fn store_error(e: StoreError) -> Response {
    if e.is_refusal() {
        ok(json::error(&e.to_string()))
    } else {
        tracing::error!("store failure: {e}");
        let body = json::error(&format!("Error message: {e}"));
        (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
    }
}

pub(crate) struct Call {
    action: String,
    ids: Vec<String>,
    options: BTreeMap<String, String>,
}

impl Call {
    fn flag(&self, name: &str) -> bool {
        self.options
            .get(name)
            .is_some_and(|v| v == "yes" || v == "true" || v == "1")
    }
}

async fn dispatch(
    State(api): State<Api>,
    UrlPath(rest): UrlPath<String>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let user = match &api.tokens {
        None => "local",
        Some(tokens) => {
            if !tokens.accepts_auth_token(&headers) {
                return http_error(
                    StatusCode::UNAUTHORIZED,
                    "authentication required: send a valid X-Auth-Token header",
                );
            }
            "admin"
        }
    };
    let mut segments = rest.split('/').filter(|s| !s.is_empty()).map(str::to_owned);
    let Some(action) = segments.next() else {
        return not_found().await;
    };
    let ids: Vec<String> = segments.collect();
    let options = match parse_query(raw_query.as_deref().unwrap_or("")) {
        Ok(pairs) => pairs.into_iter().collect(),
        Err(e) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                &format!("malformed query string: {e}"),
            );
        }
    };
    let call = Call {
        action,
        ids,
        options,
    };
    let mutating = !matches!(
        call.action.as_str(),
        "query"
            | "show"
            | "isystems"
            | "what_requires"
            | "query_dependencies"
            | "query_hosts"
            | "is_applied"
            | "is_available"
            | "query_app_dependencies"
            | "commit_dry_run"
    );
    if mutating {
        tracing::info!(target: "audit", "User: {user} Action: {} {} {:?}", call.action, call.ids.join(" "), call.options);
    }
    // A forced swact is how a standby takes over from a dead active: it is not redirected.
    if call.action == "host_swact" && call.flag("force") {
        let app = api.app.clone();
        return blocking(move || crate::inventory::host_swact(&app, &call.ids, true)).await;
    }
    if mutating
        && let Some(refusal) =
            crate::http::not_active_response(&api.app, |u| u.api.clone(), request.uri(), false)
    {
        return refusal;
    }
    let response = perform(&api, call, headers, request).await;
    if !mutating || response.status() != StatusCode::OK {
        return response;
    }
    // The standby holds the change before the caller hears of it.
    match crate::http::replicated(&api.app).await {
        Ok(()) => response,
        Err(message) => ok(json::error(&message)),
    }
}

/// Carries out one call.
async fn perform(api: &Api, call: Call, headers: HeaderMap, request: Request) -> Response {
    match call.action.as_str() {
        "query" => query(&api.app, &call),
        "show" => show(&api.app, &call),
        "upload" => upload(api.app.clone(), &call, headers, request).await,
        "upload_dir" => upload_dir(api.app.clone(), &call).await,
        "apply" => apply(api.app.clone(), call).await,
        "remove" => remove(api.app.clone(), call).await,
        "delete" => {
            let app = api.app.clone();
            blocking(move || {
                let states = app.snapshot().patch_states();
                reply(app.mutate(|s| s.delete(&call.ids, &states)))
            })
            .await
        }
        "what_requires" => {
            let app = api.app.clone();
            blocking(move || reply(app.with_store(|s| s.what_requires(&call.ids)))).await
        }
        "query_dependencies" => {
            let app = api.app.clone();
            blocking(move || {
                match app.with_store(|s| s.query_dependencies(&call.ids, call.flag("recursive"))) {
                    Ok(patches) => ok(json!({"patches": patches, "error": ""})),
                    Err(e) if e.is_refusal() => {
                        ok(json!({"patches": [], "error": format!("{e}\n")}))
                    }
                    Err(e) => store_error(e),
                }
            })
            .await
        }
        "commit_dry_run" | "commit" => commit(api.app.clone(), call).await,
        "is_applied" | "is_available" => {
            let snapshot = api.app.snapshot();
            let (wanted, wanted_repo) = if call.action == "is_applied" {
                (PatchState::Applied, RepoState::Applied)
            } else {
                (PatchState::Available, RepoState::Available)
            };
            let all = !call.ids.is_empty()
                && call.ids.iter().all(|id| {
                    snapshot.patches().get(id).is_some_and(|p| {
                        // Without host reports the repo state stands for the patch state.
                        match snapshot.patch_state(p) {
                            PatchState::NotApplicable => p.repo_state == wanted_repo,
                            state => state == wanted,
                        }
                    })
                });
            ok(json!(all))
        }
        "report_app_dependencies" => {
            let Some(app_name) = call.options.get("app").cloned() else {
                return ok(json::error("An application name is required: app=NAME"));
            };
            let app = api.app.clone();
            blocking(move || {
                match app.mutate(|s| s.report_app_dependencies(&app_name, &call.ids)) {
                    Ok(()) => ok(json!(true)),
                    Err(e) => store_error(e),
                }
            })
            .await
        }
        "query_app_dependencies" => ok(json!(api.app.snapshot().store.app_deps)),
        "query_hosts" => ok(crate::inventory::query_hosts(&api.app.snapshot())),
        "host_install" => ok(json::error("Deprecated")),
        "host_install_async" => crate::inventory::host_install_async(&api.app, &call.ids),
        "drop_host" => crate::inventory::drop_host(&api.app, &call.ids),
        "host_list" => ok(crate::inventory::host_list(&api.app.snapshot())),
        "host_show" => crate::inventory::host_show(&api.app.snapshot(), &call.ids),
        "host_lock" => crate::inventory::host_lock(&api.app, &call.ids, call.flag("force")),
        "host_unlock" => crate::inventory::host_unlock(&api.app, &call.ids),
        "host_swact" => {
            let app = api.app.clone();
            blocking(move || crate::inventory::host_swact(&app, &call.ids, false)).await
        }
        "init_release" | "del_release" => release(api.app.clone(), call).await,
        // What `system show` reports (the sysinv `isystems` shape, with the fields we know).
        "isystems" => {
            let app = api.app.clone();
            // Blocking: a pair compares its state with the peer's (a walk of each state).
            blocking(move || ok(json!({"isystems": [system_show(&app)]}))).await
        }
        other => http_error(StatusCode::NOT_FOUND, &format!("unknown action {other:?}")),
    }
}

/// What `system show` reports (the sysinv `isystems` shape, with the fields we know).
fn system_show(app: &App) -> serde_json::Value {
    let snapshot = app.snapshot();
    let mut system = json!({
        "software_version": app.config.release,
        "patch_op_counter": snapshot.store.op_counter,
        "system_mode": if app.config.single_controller { "simplex" } else { "duplex" },
    });
    if let Some(active) = app.active_controller() {
        system["active_controller"] = json!(active);
    }
    if let Some(ha) = &app.ha {
        let me = ha.state();
        let mut controllers = vec![json!({
            "hostname": ha.host, "role": me.role, "term": me.term, "reachable": true,
        })];
        match ha.peer_status() {
            Some(p) => {
                let mut peer = json!({
                    "hostname": p.host, "role": p.role, "term": p.term, "reachable": true,
                });
                if let Some(in_sync) = ha.in_sync() {
                    peer["in_sync"] = json!(in_sync);
                }
                controllers.push(peer);
            }
            None => controllers.push(json!({"reachable": false})),
        }
        system["controllers"] = json!(controllers);
    }
    system
}

async fn blocking(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(response) => response,
        Err(e) => http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("request task failed: {e}"),
        ),
    }
}

fn query(app: &App, call: &Call) -> Response {
    let snapshot = app.snapshot();
    let show = call
        .options
        .get("show")
        .map(String::as_str)
        .unwrap_or("all");
    let release = call.options.get("release");
    let mut pd = serde_json::Map::new();
    for (id, record) in snapshot.patches() {
        let state_ok = match show {
            "available" | "applied" | "committed" => {
                record.repo_state.as_str().eq_ignore_ascii_case(show)
            }
            _ => true,
        };
        if state_ok && release.is_none_or(|r| *r == record.metadata.sw_version) {
            pd.insert(
                id.clone(),
                json::metadata_dict(record, snapshot.patch_state(record)),
            );
        }
    }
    ok(json!({"pd": pd, "info": "", "warning": "", "error": ""}))
}

fn show(app: &App, call: &Call) -> Response {
    let snapshot = app.snapshot();
    let mut metadata = serde_json::Map::new();
    let mut contents = serde_json::Map::new();
    let mut error = String::new();
    for id in &call.ids {
        match snapshot.patches().get(id) {
            Some(record) => {
                metadata.insert(
                    id.clone(),
                    json::metadata_dict(record, snapshot.patch_state(record)),
                );
                contents.insert(id.clone(), json!(record.metadata.contents));
            }
            None => error.push_str(&format!("{id} is unrecognized\n")),
        }
    }
    ok(json!({"metadata": metadata, "contents": contents, "error": error}))
}

const INSTALLING: &str = "Rejected: One or more nodes are installing patches.";

async fn apply(app: Arc<App>, call: Call) -> Response {
    if app.snapshot().any_installing() {
        return ok(json::error(INSTALLING));
    }
    let all = call.ids.iter().any(|i| i == "--all");
    let ids: Vec<String> = call.ids.iter().filter(|i| *i != "--all").cloned().collect();
    let options = ChangeOptions {
        skip_semantic: call.flag("skip-semantic"),
        ..ChangeOptions::default()
    };
    blocking(move || {
        let options = ChangeOptions {
            patch_states: app.snapshot().patch_states(),
            ..options
        };
        reply(app.mutate(|s| s.apply(&ids, all, &options)))
    })
    .await
}

async fn remove(app: Arc<App>, call: Call) -> Response {
    if app.snapshot().any_installing() {
        return ok(json::error(INSTALLING));
    }
    let options = ChangeOptions {
        skip_semantic: call.flag("skip-semantic"),
        skip_app_check: call.flag("skipappcheck"),
        remove_unremovable: call.flag("removeunremovable"),
        ..ChangeOptions::default()
    };
    blocking(move || {
        let options = ChangeOptions {
            patch_states: app.snapshot().patch_states(),
            ..options
        };
        reply(app.mutate(|s| s.remove(&call.ids, &options)))
    })
    .await
}

async fn commit(app: Arc<App>, call: Call) -> Response {
    blocking(move || {
        let states = app.snapshot().patch_states();
        if call.action == "commit_dry_run" {
            return match app.with_store(|s| s.commit_plan(&call.ids, &states)) {
                Ok(plan) => ok(json!({
                    "info": format!("This commit operation would free {:.2} MiB\n", plan.bytes_freed as f64 / (1024.0 * 1024.0)),
                    "warning": "",
                    "error": "",
                    "patches": plan.patches,
                })),
                Err(e) => store_error(e),
            };
        }
        reply(app.mutate(|s| s.commit(&call.ids, &states)).map(|(_, outcome)| outcome))
    })
    .await
}

async fn release(app: Arc<App>, call: Call) -> Response {
    let Some(release) = call.ids.first().cloned() else {
        return ok(json::error(
            "A release must be given, e.g. init_release/19.01",
        ));
    };
    let feed = call
        .options
        .get("feed")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from);
    blocking(move || {
        if call.action == "init_release" {
            // personality-<type>=pkg1,pkg2: base-load packages only that node type installs.
            let mut personalities = BTreeMap::new();
            for (key, value) in &call.options {
                let Some(kind) = key.strip_prefix("personality-") else {
                    continue;
                };
                let personality = match kind.parse::<patch_format::Personality>() {
                    Ok(p) => p,
                    Err(e) => return ok(json::error(&e.to_string())),
                };
                let names: BTreeSet<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                personalities.insert(personality, names);
            }
            reply(app.mutate(|s| s.init_release(&release, feed.as_deref(), &personalities)))
        } else {
            reply(app.mutate(|s| s.del_release(&release)))
        }
    })
    .await
}

/// Merges several outcomes (one per uploaded file) the way the original concatenates them.
fn merge(results: Vec<Result<Outcome, StoreError>>) -> Response {
    let mut info = Vec::new();
    let mut warning = Vec::new();
    let mut error = Vec::new();
    for result in results {
        match result {
            Ok(o) => {
                info.extend(o.info);
                warning.extend(o.warning);
            }
            Err(e) if e.is_refusal() => error.push(e.to_string()),
            Err(e) => return store_error(e),
        }
    }
    let join = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    ok(json!({"info": join(&info), "warning": join(&warning), "error": join(&error)}))
}

/// `upload`: multipart field `file` (one or more), or a raw body with `?filename=`. Each file
/// streams straight into the verifying reader on a blocking thread (never whole in memory,
/// never staged as a second copy), bounded by `max_upload_bytes`; then it is imported.
async fn upload(app: Arc<App>, call: &Call, headers: HeaderMap, request: Request) -> Response {
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut results = Vec::new();
    if is_multipart {
        let mut multipart = match Multipart::from_request(request, &()).await {
            Ok(m) => m,
            Err(e) => return ok(json::error(&format!("bad multipart upload: {e}"))),
        };
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break,
                Err(e) => return ok(json::error(&format!("bad multipart upload: {e}"))),
            };
            if field.name() != Some("file") {
                continue;
            }
            let name = field.file_name().map(basename).unwrap_or_default();
            let stream = field.map(|chunk| chunk.map_err(std::io::Error::other));
            results.push(import_stream(app.clone(), stream, name).await);
        }
    } else {
        let Some(name) = call.options.get("filename").map(|n| basename(n)) else {
            return ok(json::error(
                "upload: send the patch as multipart field 'file', or as the body with ?filename=<id>.patch",
            ));
        };
        let stream = request
            .into_body()
            .into_data_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other));
        results.push(import_stream(app.clone(), stream, name).await);
    }
    if results.is_empty() {
        return ok(json::error(
            "No patch file in the upload (multipart field 'file')",
        ));
    }
    merge(results)
}

/// The final component of a client-side path (the original client sends what the user typed).
pub(crate) fn basename(name: &str) -> String {
    Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// How much of a refused upload is still read and discarded, so that a client still sending
/// gets the answer instead of a broken connection.
const DRAIN_AFTER_REFUSAL: u64 = 1 << 30;

/// Feeds one uploaded file to the verifier (on a blocking thread) as it arrives, then imports
/// it under the store lock.
pub(crate) async fn import_stream(
    app: Arc<App>,
    mut stream: impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Unpin,
    name: String,
) -> Result<Outcome, StoreError> {
    let (base, id) = (
        name.clone(),
        name.strip_suffix(".patch").unwrap_or(&name).to_owned(),
    );
    if !base.ends_with(".patch") && !app.snapshot().patches().contains_key(&id) {
        drain(&mut stream, DRAIN_AFTER_REFUSAL).await;
        return Err(StoreError::Refused(format!(
            "File must end in .patch extension: {base}"
        )));
    }
    let max = app.config.max_upload_bytes;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(32);
    let verifier = app.verifier.clone();
    let reader = tokio::task::spawn_blocking(move || {
        verifier.verify(
            ChannelReader {
                rx,
                current: axum::body::Bytes::new(),
            },
            &name,
        )
    });
    let mut received = 0u64;
    let mut too_big = false;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tx
                    .send(Err(std::io::Error::other(format!(
                        "upload interrupted: {e}"
                    ))))
                    .await;
                break;
            }
        };
        received += chunk.len() as u64;
        if received > max {
            too_big = true;
            let _ = tx
                .send(Err(std::io::Error::other(format!(
                    "larger than the {max}-byte upload limit"
                ))))
                .await;
            break;
        }
        if tx.send(Ok(chunk)).await.is_err() {
            // The reader stopped early (the patch was refused); it will say why.
            break;
        }
    }
    drop(tx);
    drain(&mut stream, DRAIN_AFTER_REFUSAL).await;
    let verified = reader
        .await
        .map_err(|e| StoreError::Corrupt(format!("verification task failed: {e}")))?;
    if too_big {
        return Err(StoreError::Refused(format!(
            "the upload is larger than the {max}-byte limit (max_upload_bytes)"
        )));
    }
    let upload = verified?;
    tokio::task::spawn_blocking(move || app.mutate(|s| s.import_verified(upload)))
        .await
        .map_err(|e| StoreError::Corrupt(format!("import task failed: {e}")))?
}

async fn drain(
    stream: &mut (impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Unpin),
    limit: u64,
) {
    let mut drained = 0u64;
    while drained < limit {
        match stream.next().await {
            Some(Ok(chunk)) => drained += chunk.len() as u64,
            _ => break,
        }
    }
}

/// `upload_dir`: every `*.patch` in the server-side directories `dir0=…&dir1=…`.
async fn upload_dir(app: Arc<App>, call: &Call) -> Response {
    let dirs: Vec<PathBuf> = call
        .options
        .iter()
        .filter(|(k, _)| k.starts_with("dir"))
        .map(|(_, v)| PathBuf::from(v))
        .collect();
    blocking(move || {
        let mut files = Vec::new();
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "patch") && path.is_file() {
                    files.push(path);
                }
            }
        }
        files.sort();
        files.dedup();
        if files.is_empty() {
            return ok(json!({"error": "No patches found\n", "info": "", "warning": ""}));
        }
        let results = files
            .iter()
            .map(|path| app.mutate(|s| s.import(path, &basename(&path.to_string_lossy()))))
            .collect();
        merge(results)
    })
    .await
}

/// Parses `a=b&c=d` strictly: a `%` must start a two-digit hex escape and the decoded text
/// must be UTF-8 (a lenient decoder would silently turn garbage into other values).
pub(crate) fn parse_query(raw: &str) -> Result<Vec<(String, String)>, String> {
    fn decode(part: &str) -> Result<String, String> {
        // `percent_decode` passes a malformed escape through; refuse it instead.
        let bytes = part.as_bytes();
        let malformed = bytes.iter().enumerate().any(|(i, b)| {
            *b == b'%'
                && !bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
        if malformed {
            return Err(format!("bad %-escape in {part:?}"));
        }
        percent_encoding::percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("{part:?} is not UTF-8"))
    }
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}
