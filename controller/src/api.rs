//! The patching REST API: `/v1/<action>/<ids…>?options` and its `/patch/…` alias, with the
//! original's JSON shapes. Operation failures are HTTP 200 with `error` set, as the original
//! server does (its client relies on that); any other non-200 body carries an
//! `Error message:` line, which the original client looks for.
//!
//! An adapter: it parses the call, asks the [`Service`], and writes the answer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use axum::Router;
use axum::extract::{
    DefaultBodyLimit, FromRequest, Multipart, Path as UrlPath, RawQuery, Request, State,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt;
use patch_store::{Outcome, RepoState};
use serde_json::json;
use std::sync::Arc;

use crate::auth::Operators;
use crate::http::{Routes, log_text, ok, parse_query};
use crate::json;
use crate::service::{RemoveOptions, Service, ServiceError, ShowFilter};

#[derive(Clone)]
pub(crate) struct Api {
    service: Service,
    /// `Some` on the authenticated listener.
    tokens: Option<Arc<Operators>>,
}

/// The routes besides the actions (`/v1/<action>`, [`ACTIONS`]).
pub(crate) fn routes() -> Routes<Api> {
    Routes::new()
        .get("/", banner)
        .get("/v1", banner)
        .get("/metrics", metrics)
        .get("/openapi.json", openapi_json)
        .get("/openapi.yaml", openapi_yaml)
}

pub(crate) fn router(service: Service, tokens: Option<Arc<Operators>>) -> Router {
    routes()
        .into_router()
        .route("/v1/{*rest}", any(dispatch))
        .route("/patch/{*rest}", any(dispatch))
        .fallback(not_found)
        // Uploads are streamed to disk with their own limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(Api { service, tokens })
}

/// Every action the API serves under `/v1/` (and `/patch/`): an action not listed is
/// answered 404 before it is looked at, so this list is what the API description
/// (`openapi/patching.yaml`) is checked against.
pub(crate) const ACTIONS: &[&str] = &[
    "query",
    "show",
    "upload",
    "upload_dir",
    "apply",
    "remove",
    "delete",
    "what_requires",
    "query_dependencies",
    "commit_dry_run",
    "commit",
    "is_applied",
    "is_available",
    "report_app_dependencies",
    "query_app_dependencies",
    "query_hosts",
    "precheck",
    "host_install",
    "host_install_async",
    "drop_host",
    "host_rollback",
    "host_release",
    "host_list",
    "host_show",
    "host_lock",
    "host_unlock",
    "host_swact",
    "init_release",
    "del_release",
    "isystems",
    "patch_file",
];

/// `GET /metrics`: on the authenticated listener any operator's token (reader or admin),
/// as `X-Auth-Token` or `Authorization: Bearer` (what Prometheus sends).
async fn metrics(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Some(tokens) = &api.tokens
        && tokens.identify_auth_token(&headers).is_none()
        && tokens.identify_bearer(&headers).is_none()
    {
        return http_error(
            StatusCode::UNAUTHORIZED,
            "authentication required: send an operator's token as X-Auth-Token or Authorization: Bearer",
        );
    }
    let service = api.service.clone();
    match tokio::task::spawn_blocking(move || service.metrics_text()).await {
        Ok(text) => crate::metrics::response(text),
        Err(e) => http_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("metrics: {e}")),
    }
}

async fn openapi_json() -> Response {
    crate::openapi::PATCHING.json()
}

async fn openapi_yaml() -> Response {
    crate::openapi::PATCHING.yaml()
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

/// An operation's result as the original reports it.
fn reply(result: Result<Outcome, ServiceError>) -> Response {
    match result {
        Ok(outcome) => ok(json::outcome(&outcome)),
        Err(e) => failure(e),
    }
}

/// A one-line answer (host actions): `info` or `error`.
fn reply_line(result: Result<String, ServiceError>) -> Response {
    match result {
        Err(e) if !e.is_refusal() => failure(e),
        result => ok(json::info_or_error(result)),
    }
}

/// A refusal is a 200 with `error` set; anything else a 500.
fn failure(e: ServiceError) -> Response {
    if e.is_refusal() {
        ok(json::error(&e.to_string()))
    } else {
        tracing::error!("controller failure: {e}");
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

    /// The first path segment after the action (a host name), or empty.
    fn first(&self) -> String {
        self.ids.first().cloned().unwrap_or_default()
    }
}

/// Actions that change nothing.
fn is_read(action: &str) -> bool {
    matches!(
        action,
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
            | "precheck"
            | "patch_file"
    )
}

async fn dispatch(
    State(api): State<Api>,
    UrlPath(rest): UrlPath<String>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let operator = match &api.tokens {
        None => None,
        Some(tokens) => match tokens.identify_auth_token(&headers) {
            Some(operator) => Some(operator),
            None => {
                return http_error(
                    StatusCode::UNAUTHORIZED,
                    "authentication required: send a valid X-Auth-Token header",
                );
            }
        },
    };
    let from = crate::http::peer(&request);
    let mut segments = rest.split('/').filter(|s| !s.is_empty()).map(str::to_owned);
    let Some(action) = segments.next() else {
        return not_found().await;
    };
    if !ACTIONS.contains(&action.as_str()) {
        return http_error(StatusCode::NOT_FOUND, &format!("unknown action {action:?}"));
    }
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
    if is_read(&call.action) {
        return perform(&api.service, call, headers, request).await;
    }
    let action = format!(
        "{} {} {:?}",
        log_text(&call.action),
        log_text(&call.ids.join(" ")),
        call.options
    );
    let refuse = |why: &str| http_error(StatusCode::FORBIDDEN, why);
    crate::http::audited_mutation(operator.as_ref(), &from, &action, refuse, async move {
        // A forced swact is how a standby takes over from a dead active: not redirected.
        let forced_swact = call.action == "host_swact" && call.flag("force");
        let request = if forced_swact {
            request
        } else {
            let limit = api.service.config().max_upload_bytes;
            match crate::http::refuse_if_not_active(
                &api.service,
                |u| u.api.clone(),
                request,
                false,
                limit,
            )
            .await
            {
                Ok(request) => request,
                Err(refusal) => return refusal,
            }
        };
        perform(&api.service, call, headers, request).await
    })
    .await
}

/// Carries out one call.
async fn perform(service: &Service, call: Call, headers: HeaderMap, request: Request) -> Response {
    let ids = call.ids.clone();
    match call.action.as_str() {
        "query" => query(service, &call),
        "show" => show(service, &call),
        "upload" => upload(service, &call, headers, request).await,
        "upload_dir" => upload_dir(service, &call).await,
        "apply" => {
            let all = ids.iter().any(|i| i == "--all");
            let ids = ids.into_iter().filter(|i| i != "--all").collect();
            reply(service.apply(ids, all, call.flag("skip-semantic")).await)
        }
        "remove" => {
            let options = RemoveOptions {
                skip_semantic: call.flag("skip-semantic"),
                skip_app_check: call.flag("skipappcheck"),
                remove_unremovable: call.flag("removeunremovable"),
            };
            reply(service.remove(ids, options).await)
        }
        "delete" => reply(service.delete(ids).await),
        "what_requires" => reply(service.what_requires(ids).await),
        "query_dependencies" => {
            match service
                .query_dependencies(ids, call.flag("recursive"))
                .await
            {
                Ok(patches) => ok(json!({"patches": patches, "error": ""})),
                Err(e) if e.is_refusal() => ok(json!({"patches": [], "error": format!("{e}\n")})),
                Err(e) => failure(e),
            }
        }
        "commit_dry_run" => match service.commit_plan(ids).await {
            Ok(plan) => ok(json!({
                "info": format!("This commit operation would free {:.2} MiB\n", plan.bytes_freed as f64 / (1024.0 * 1024.0)),
                "warning": "",
                "error": "",
                "patches": plan.patches,
            })),
            Err(e) => failure(e),
        },
        "commit" => reply(service.commit(ids).await),
        "is_applied" => ok(json!(service.patches().all_in(&ids, true))),
        "is_available" => ok(json!(service.patches().all_in(&ids, false))),
        "report_app_dependencies" => {
            let Some(app_name) = call.options.get("app").cloned() else {
                return ok(json::error("An application name is required: app=NAME"));
            };
            match service.report_app_dependencies(app_name, ids).await {
                Ok(()) => ok(json!(true)),
                Err(e) => failure(e),
            }
        }
        "query_app_dependencies" => ok(json!(service.app_dependencies())),
        "query_hosts" => ok(json!({"data": service.hosts()})),
        "precheck" => precheck(service, call).await,
        "host_install" => ok(json::error("Deprecated")),
        "host_install_async" => {
            let force = ids.get(1).is_some_and(|f| f == "force");
            reply_line(service.install(call.first(), force).await)
        }
        "drop_host" => reply_line(service.drop_host(call.first()).await),
        // host_rollback/HOST[/PATCH…][?all=yes]; host_release/HOST.
        "host_rollback" => {
            let patches = ids.iter().skip(1).cloned().collect();
            reply_line(
                service
                    .hold_back(call.first(), patches, call.flag("all"))
                    .await,
            )
        }
        "host_release" => reply_line(service.release(call.first()).await),
        "host_list" => ok(json!({"ihosts": service.hosts()})),
        "host_show" => match service.host(&call.first()) {
            Ok(host) => ok(json!(host)),
            Err(e) => failure(e),
        },
        "host_lock" => reply_line(service.lock(call.first(), call.flag("force")).await),
        "host_unlock" => reply_line(service.unlock(call.first()).await),
        "host_swact" => reply_line(service.swact(call.first(), call.flag("force")).await),
        "init_release" | "del_release" => release(service, call).await,
        // What `system show` reports (the sysinv `isystems` shape, with the fields we know).
        "isystems" => match service.system().await {
            Ok(system) => ok(json!({"isystems": [system]})),
            Err(e) => failure(e),
        },
        "patch_file" => patch_file(service, &call.first()).await,
        other => http_error(StatusCode::NOT_FOUND, &format!("unknown action {other:?}")),
    }
}

/// `patch_file/ID`: the patch's signed file as it was uploaded, streamed.
async fn patch_file(service: &Service, id: &str) -> Response {
    let path = match service.patch_file(id) {
        Ok(p) => p,
        Err(e) if e.is_refusal() => return http_error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => return failure(e),
    };
    let opened = match tokio::fs::File::open(&path).await {
        Ok(file) => file.metadata().await.map(|m| (file, m.len())),
        Err(e) => Err(e),
    };
    match opened {
        // The length lets a client size a transfer before it starts (a dry run's bytes).
        Ok((file, length)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_LENGTH, length.to_string()),
            ],
            axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        )
            .into_response(),
        Err(e) => http_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("{}: {e}", path.display()),
        ),
    }
}

/// `precheck[/ID…][?alarm_restrictions=strict|relaxed]`: the checks, and the worst result.
async fn precheck(service: &Service, call: Call) -> Response {
    let alarm_restrictions = match call
        .options
        .get("alarm_restrictions")
        .map_or(Ok(orchestrator::AlarmRestrictions::Strict), |v| v.parse())
    {
        Ok(r) => r,
        Err(e) => return ok(json::error(&format!("alarm_restrictions: {e}"))),
    };
    let request = crate::service::PrecheckRequest {
        patches: call.ids,
        alarm_restrictions,
        for_strategy: false,
    };
    match service.precheck(request).await {
        Ok(p) => ok(json!({"result": p.result, "checks": p.checks, "error": ""})),
        Err(e) => failure(e),
    }
}

fn query(service: &Service, call: &Call) -> Response {
    let show = match call.options.get("show").map(String::as_str) {
        Some("available") => ShowFilter::Repo(RepoState::Available),
        Some("applied") => ShowFilter::Repo(RepoState::Applied),
        Some("committed") => ShowFilter::Repo(RepoState::Committed),
        _ => ShowFilter::All,
    };
    let patches = service.patches();
    let mut pd = serde_json::Map::new();
    for p in patches.filtered(show, call.options.get("release").map(String::as_str)) {
        pd.insert(p.id().to_owned(), json::metadata_dict(p.record, p.state));
    }
    ok(json!({"pd": pd, "info": "", "warning": "", "error": ""}))
}

fn show(service: &Service, call: &Call) -> Response {
    let patches = service.patches();
    let mut metadata = serde_json::Map::new();
    let mut contents = serde_json::Map::new();
    let mut error = String::new();
    for id in &call.ids {
        match patches.get(id) {
            Ok(p) => {
                metadata.insert(id.clone(), json::metadata_dict(p.record, p.state));
                contents.insert(id.clone(), json!(p.record.metadata.contents));
            }
            Err(e) => error.push_str(&format!("{e}\n")),
        }
    }
    ok(json!({"metadata": metadata, "contents": contents, "error": error}))
}

async fn release(service: &Service, call: Call) -> Response {
    let Some(release) = call.ids.first().cloned() else {
        return ok(json::error(
            "A release must be given, e.g. init_release/19.01",
        ));
    };
    if call.action == "del_release" {
        return reply(service.del_release(release).await);
    }
    let feed = call
        .options
        .get("feed")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from);
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
    reply(service.init_release(release, feed, personalities).await)
}

/// Merges several outcomes (one per uploaded file) the way the original concatenates them.
fn merge(results: Vec<Result<Outcome, ServiceError>>) -> Response {
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
            Err(e) => return failure(e),
        }
    }
    let join = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    ok(json!({"info": join(&info), "warning": join(&warning), "error": join(&error)}))
}

/// `upload`: multipart field `file` (one or more), or a raw body with `?filename=`. Each file
/// streams into the service's verifying importer as it arrives.
async fn upload(service: &Service, call: &Call, headers: HeaderMap, request: Request) -> Response {
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
            results.push(service.upload(stream, name, None).await);
        }
    } else {
        let Some(name) = call.options.get("filename").map(|n| basename(n)) else {
            return ok(json::error(
                "upload: send the patch as multipart field 'file', or as the body with ?filename=<id>.patch",
            ));
        };
        let declared_len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let stream = request
            .into_body()
            .into_data_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other));
        results.push(service.upload(stream, name, declared_len).await);
    }
    if results.is_empty() {
        return ok(json::error(
            "No patch file in the upload (multipart field 'file')",
        ));
    }
    merge(results)
}

pub(crate) use crate::service::basename;

/// `upload_dir`: every `*.patch` in the server-side directories `dir0=…&dir1=…`.
async fn upload_dir(service: &Service, call: &Call) -> Response {
    let dirs: Vec<PathBuf> = call
        .options
        .iter()
        .filter(|(k, _)| k.starts_with("dir"))
        .map(|(_, v)| PathBuf::from(v))
        .collect();
    match service.upload_dir(dirs).await {
        Ok(results) => merge(results),
        Err(e) => failure(e),
    }
}
