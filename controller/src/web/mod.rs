//! The web dashboard: the Software Management pages of the original's Horizon GUI, served by
//! the controller itself from templates compiled into the binary (maud) plus one small script
//! for live updates and upload progress. Every page renders server-side, so reading works
//! without JavaScript; forms post and redirect back with the outcome shown.
//!
//! The pages drive the same in-process routers that serve the REST APIs, so the rules and the
//! messages (refusals, errors) are exactly what `sw-patch` and `sw-manager` see. Uploads are
//! the exception: they stream straight into the verifying importer, as the API's do.
//!
//! Security: operators log in with one of the API tokens, which buys a session cookie
//! (HttpOnly, SameSite=Strict, idle and absolute expiry); every state-changing form carries the
//! session's CSRF token; pages are sent with a strict Content-Security-Policy (no inline
//! script, nothing from elsewhere) and are never cached.

mod pages;
mod session;

use crate::auth::Secrets;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use maud::Markup;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::orchestration::Orchestration;
use crate::state::App;
use pages::Page;
pub(crate) use session::Sessions;
use session::{Flash, Level, SessionRef};

/// The dashboard's shared state.
pub(crate) struct Web {
    app: Arc<App>,
    /// The patching API, called in-process.
    api: Router,
    /// The strategy and alarm API, called in-process.
    vim: Router,
    tokens: Arc<Secrets>,
    sessions: Sessions,
}

type Shared = State<Arc<Web>>;

/// Largest form body (everything but uploads).
const MAX_FORM: usize = 64 * 1024;
/// How long a failed login waits before answering (token guessing gets slow).
const FAILED_LOGIN_DELAY: std::time::Duration = std::time::Duration::from_millis(400);

pub(crate) fn router(app: Arc<App>, orch: Arc<Orchestration>, tokens: Secrets) -> Router {
    let idle = std::time::Duration::from_secs(app.config.web_session_idle_minutes * 60);
    let web = Arc::new(Web {
        api: crate::api::router(app.clone(), None),
        vim: crate::vim_api::router(orch, None),
        app,
        tokens: Arc::new(tokens),
        sessions: Sessions::new(idle),
    });
    let forms = Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(|| async { see_other("/system") }))
        .route("/system", get(system_page))
        .route("/patches", get(patches_page))
        .route("/patches/commit", get(commit_page).post(commit))
        .route("/patches/action/{action}", post(patch_action))
        .route("/patches/show/{id}", get(patch_page))
        .route("/hosts", get(hosts_page))
        .route("/hosts/action/{action}", post(host_action))
        .route("/orchestration", get(orchestration_page))
        .route("/orchestration/create", post(strategy_create))
        .route("/orchestration/action/{action}", post(strategy_action))
        .route("/alarms", get(alarms_page))
        .route("/static/dashboard.css", get(css))
        .route("/static/dashboard.js", get(js))
        .layer(DefaultBodyLimit::max(MAX_FORM));
    // Uploads stream with the importer's own limit (max_upload_bytes).
    let uploads = Router::new()
        .route("/patches/upload", post(upload))
        .layer(DefaultBodyLimit::disable());
    forms
        .merge(uploads)
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

/// Headers on every answer: no framing, no sniffing, scripts and styles only from here, no
/// caching of pages that show live state.
async fn security_headers(response: Response) -> Response {
    let mut response = error_as_page(response).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A refusal from the framework itself (a malformed URL, a form over the size limit) comes
/// as plain text: the browser gets it as a page, in the same words.
async fn error_as_page(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let message = if text.trim().is_empty() {
        format!("The request failed ({status}).")
    } else {
        text
    };
    html(
        status,
        pages::bare(
            title,
            pages::login_link(pages::message_page(title, &message)),
        ),
    )
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("dashboard.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("dashboard.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// Where an unauthenticated request goes: the login page, remembering a page to come back
/// to (only a local path, so the login can never redirect elsewhere).
fn to_login(uri: &Uri) -> Response {
    let path = uri.path();
    if path == "/" || !local_path(path) {
        return see_other("/login");
    }
    see_other(&format!("/login?next={}", pages::url_encode(path)))
}

async fn not_found(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = web.sessions.get(&headers);
    let body = pages::message_page("Not found", &format!("There is no page at {}.", uri.path()));
    match session {
        Some(s) => web.render_status(&headers, StatusCode::NOT_FOUND, &s, Page::None, body),
        None => html(
            StatusCode::NOT_FOUND,
            pages::bare("Not found", pages::login_link(body)),
        ),
    }
}

/// What an in-process API call answered.
struct Reply {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Reply {
    /// The messages an operation's answer carries, as the user should read them: the
    /// patching API's `info`/`warning`/`error`, or a non-200's `Error message:` line or
    /// fault string.
    fn flashes(&self) -> Vec<Flash> {
        if !self.status.is_success() {
            return vec![Flash::new(Level::Error, self.error_text())];
        }
        let mut out = Vec::new();
        for (key, level) in [
            ("info", Level::Info),
            ("warning", Level::Warning),
            ("error", Level::Error),
        ] {
            if let Some(text) = self.body.get(key).and_then(Value::as_str) {
                let text = text.trim();
                if !text.is_empty() {
                    out.push(Flash::new(level, text.to_owned()));
                }
            }
        }
        out
    }

    /// The error in words, whatever shape the API gave it.
    fn error_text(&self) -> String {
        if let Some(s) = self.body.get("faultstring").and_then(Value::as_str) {
            return s.to_owned();
        }
        if let Some(s) = self.body.get("error").and_then(Value::as_str)
            && !s.trim().is_empty()
        {
            return s.trim().trim_start_matches("Error message: ").to_owned();
        }
        let text = self.text.trim();
        let text = text.strip_prefix("Error message:").unwrap_or(text).trim();
        if text.is_empty() {
            format!("the controller answered {}", self.status)
        } else {
            text.to_owned()
        }
    }
}

/// Calls one of the in-process routers.
async fn call(router: &Router, method: Method, uri: &str, body: Option<Value>) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(value) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(value.to_string())
        }
        None => Body::empty(),
    };
    let failed = |message: String| Reply {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: Value::Null,
        text: message,
    };
    let request = match request.body(body) {
        Ok(r) => r,
        Err(e) => return failed(format!("bad internal request {uri}: {e}")),
    };
    let response = match router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(e) => return failed(format!("internal request {uri} failed: {e}")),
    };
    let status = response.status();
    // API answers are small JSON documents; 32 MiB bounds a huge patch list.
    match axum::body::to_bytes(response.into_body(), 32 << 20).await {
        Ok(bytes) => Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        },
        Err(e) => failed(format!("reading the answer to {uri}: {e}")),
    }
}

impl Web {
    async fn api(&self, method: Method, uri: &str) -> Reply {
        call(&self.api, method, uri, None).await
    }

    async fn vim(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        call(&self.vim, method, uri, body).await
    }

    fn render(
        &self,
        headers: &HeaderMap,
        session: &SessionRef,
        page: Page,
        body: Markup,
    ) -> Response {
        self.render_status(headers, StatusCode::OK, session, page, body)
    }

    fn render_status(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        session: &SessionRef,
        page: Page,
        body: Markup,
    ) -> Response {
        // A live refresh keeps the waiting messages for the next real page load.
        let flashes = if headers.contains_key("x-dashboard-refresh") {
            Vec::new()
        } else {
            self.sessions.take_flashes(session)
        };
        html(
            status,
            pages::layout(page, &session.csrf, &flashes, &self.system_line(), body),
        )
    }

    /// The header's one-line system summary (and, on a standby, where the active one is).
    fn system_line(&self) -> String {
        let config = &self.app.config;
        let mut line = format!(
            "Release {} · {}",
            config.release,
            if config.single_controller {
                "simplex"
            } else {
                "duplex"
            }
        );
        if let Some(ha) = &self.app.ha {
            match ha.not_active(|u| u.web.clone()) {
                Some((message, _)) => line.push_str(&format!(" · standby: {message}")),
                None => line.push_str(&format!(" · {} active", ha.host)),
            }
        }
        line
    }
}

/// A session, or the way to the login page.
macro_rules! session_or_login {
    ($web:expr, $headers:expr, $uri:expr) => {
        match $web.sessions.get(&$headers) {
            Some(s) => s,
            None => return to_login(&$uri),
        }
    };
}

// ---- login and logout ----

async fn login_page(State(web): Shared, uri: Uri) -> Response {
    let next = next_from_query(uri.query());
    let (cookie, token) = web.sessions.new_login_form();
    let mut response = html(StatusCode::OK, pages::login(&token, next.as_deref(), None));
    set_cookie(&mut response, &cookie);
    response
}

/// Whether a page to go back to is a path on this server (never `//elsewhere` or a URL), so
/// a login can never redirect off-site.
fn local_path(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && !path.contains('\\')
}

/// The `next=` page of a login, if it is a local path.
fn next_from_query(query: Option<&str>) -> Option<String> {
    let pairs = crate::api::parse_query(query.unwrap_or("")).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v)
        .filter(|v| local_path(v))
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A form body: `application/x-www-form-urlencoded`, decoded strictly.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Form, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8".to_owned())?;
        crate::api::parse_query(text).map(Form)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

async fn login(State(web): Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let form = match Form::parse(&body) {
        Ok(f) => f,
        Err(e) => return bad_form(&e),
    };
    let next = form
        .get("next")
        .filter(|v| local_path(v))
        .map(str::to_owned);
    // The login form's own CSRF token: the pre-login cookie must match the form's field.
    if !web
        .sessions
        .login_form_ok(&headers, form.get("csrf").unwrap_or(""))
    {
        return forbidden_csrf();
    }
    let token = form.get("token").unwrap_or("").trim();
    if !web.tokens.accepts(token) {
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        tracing::warn!(target: "audit", "dashboard login refused: wrong token");
        let (cookie, fresh) = web.sessions.new_login_form();
        let mut response = html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                &fresh,
                next.as_deref(),
                Some("The token was not accepted. Use one of the controller's API tokens."),
            ),
        );
        set_cookie(&mut response, &cookie);
        return response;
    }
    match web.sessions.create() {
        Ok(cookie) => {
            tracing::info!(target: "audit", "dashboard login");
            let mut response = see_other(next.as_deref().unwrap_or("/system"));
            set_cookie(&mut response, &cookie);
            set_cookie(&mut response, &session::clear_login_cookie());
            response
        }
        Err(message) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::bare("Login", pages::message_page("Cannot log in", &message)),
        ),
    }
}

async fn logout(State(web): Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Some(session) = web.sessions.get(&headers) else {
        return see_other("/login");
    };
    if let Err(r) = check_form(&session, &body) {
        return *r;
    }
    web.sessions.remove(&session);
    let mut response = see_other("/login");
    set_cookie(&mut response, &session::clear_session_cookie());
    response
}

fn forbidden_csrf() -> Response {
    html(
        StatusCode::FORBIDDEN,
        pages::bare(
            "Refused",
            pages::login_link(pages::message_page(
                "Refused: the form's security token is missing or out of date",
                "Nothing was changed. Reload the page and try again.",
            )),
        ),
    )
}

fn bad_form(message: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        pages::bare(
            "Bad request",
            pages::login_link(pages::message_page("The form could not be read", message)),
        ),
    )
}

/// Parses a posted form and checks its CSRF token against the session's.
fn check_form(session: &SessionRef, body: &[u8]) -> Result<Form, Box<Response>> {
    let form = Form::parse(body).map_err(|e| Box::new(bad_form(&e)))?;
    if !session::same_secret(form.get("csrf").unwrap_or(""), &session.csrf) {
        tracing::warn!(target: "audit", "dashboard form refused: bad CSRF token");
        return Err(Box::new(forbidden_csrf()));
    }
    Ok(form)
}

/// A posted form, its session and CSRF token checked; or the answer that refuses it.
fn posted(
    web: &Web,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(SessionRef, Form), Box<Response>> {
    let Some(session) = web.sessions.get(headers) else {
        return Err(Box::new(see_other("/login")));
    };
    let form = check_form(&session, body)?;
    Ok((session, form))
}

// ---- pages ----

async fn system_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let hosts = crate::inventory::host_records(&web.app.snapshot());
    let alarms = web.vim(Method::GET, "/v1/alarms", None).await;
    let strategy = web
        .vim(Method::GET, "/api/orchestration/sw-patch/strategy", None)
        .await;
    let patches = web.api(Method::GET, "/v1/query?show=all").await;
    let config = &web.app.config;
    let info = pages::SystemInfo {
        release: config.release.clone(),
        mode: if config.single_controller {
            "simplex"
        } else {
            "duplex"
        },
        active_controller: web.app.active_controller(),
    };
    let body = pages::system(
        &info,
        &hosts,
        read(&alarms, "alarms"),
        read(&strategy, "strategy"),
        read(&patches, "pd"),
    );
    web.render(&headers, &session, Page::System, body)
}

/// A field of a read's answer, or the error that stopped the read (shown in its place).
fn read<'a>(reply: &'a Reply, key: &str) -> Result<&'a Value, String> {
    if !reply.status.is_success() {
        return Err(reply.error_text());
    }
    match reply.body.get(key) {
        Some(v) => Ok(v),
        None => Err(format!("the controller's answer has no {key:?}")),
    }
}

async fn patches_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let patches = web.api(Method::GET, "/v1/query?show=all").await;
    let body = pages::patches(
        read(&patches, "pd"),
        &session.csrf,
        web.app.config.max_upload_bytes,
    );
    web.render(&headers, &session, Page::Patches, body)
}

async fn patch_page(
    State(web): Shared,
    headers: HeaderMap,
    uri: Uri,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let session = session_or_login!(web, headers, uri);
    if patch_format::validate_patch_id(&id).is_err() {
        let body = pages::message_page("No such patch", &format!("{id:?} is not a patch id."));
        return web.render_status(
            &headers,
            StatusCode::NOT_FOUND,
            &session,
            Page::Patches,
            body,
        );
    }
    let shown = web.api(Method::GET, &format!("/v1/show/{id}")).await;
    let deps = web
        .api(Method::GET, &format!("/v1/what_requires/{id}"))
        .await;
    let required_by = deps
        .body
        .get("info")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let body = pages::patch_details(&id, &shown.body, &required_by, &session.csrf);
    web.render(&headers, &session, Page::Patches, body)
}

async fn hosts_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let hosts = crate::inventory::host_records(&web.app.snapshot());
    let config = &web.app.config;
    let active = web.app.active_controller();
    let body = pages::hosts(
        &hosts,
        &session.csrf,
        active.as_deref(),
        config.single_controller,
        web.app.ha.is_some(),
    );
    web.render(&headers, &session, Page::Hosts, body)
}

async fn orchestration_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let strategy = web
        .vim(Method::GET, "/api/orchestration/sw-patch/strategy", None)
        .await;
    let plan = web.sessions.take_plan(&session);
    let body = pages::orchestration(read(&strategy, "strategy"), plan.as_ref(), &session.csrf);
    web.render(&headers, &session, Page::Orchestration, body)
}

async fn alarms_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let alarms = web.vim(Method::GET, "/v1/alarms", None).await;
    let body = pages::alarms(read(&alarms, "alarms"));
    web.render(&headers, &session, Page::Alarms, body)
}

// ---- actions ----

async fn patch_action(
    State(web): Shared,
    headers: HeaderMap,
    UrlPath(action): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let (session, form) = match posted(&web, &headers, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let ids = form.all("id");
    let back = form
        .get("back")
        .filter(|b| b.starts_with("/patches"))
        .unwrap_or("/patches")
        .to_owned();
    let api_action = match action.as_str() {
        "apply" | "remove" | "delete" => action.as_str(),
        other => {
            web.sessions.flash(
                &session,
                Flash::new(Level::Error, format!("Unknown patch action {other:?}.")),
            );
            return see_other("/patches");
        }
    };
    if ids.is_empty() {
        web.sessions.flash(
            &session,
            Flash::new(Level::Error, format!("Choose a patch to {api_action}.")),
        );
        return see_other(&back);
    }
    let reply = web
        .api(Method::POST, &format!("/v1/{api_action}/{}", id_path(&ids)))
        .await;
    tracing::info!(target: "audit", "dashboard: {api_action} {}", ids.join(" "));
    web.sessions.flash_all(&session, reply.flashes());
    // A deleted patch has no details page to go back to.
    if api_action == "delete" {
        return see_other("/patches");
    }
    see_other(&back)
}

/// Patch ids as the path of an API call.
fn id_path(ids: &[String]) -> String {
    ids.iter()
        .map(|i| pages::url_encode(i))
        .collect::<Vec<_>>()
        .join("/")
}

fn no_patches_to_commit(web: &Web, session: &SessionRef) -> Response {
    web.sessions.flash(
        session,
        Flash::new(Level::Error, "Choose the patches to commit.".into()),
    );
    see_other("/patches")
}

/// The commit's dry run: what it would commit and free, with the button that does it.
async fn commit_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let pairs = crate::api::parse_query(uri.query().unwrap_or("")).unwrap_or_default();
    let ids: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .collect();
    if ids.is_empty() {
        return no_patches_to_commit(&web, &session);
    }
    let plan = web
        .api(
            Method::GET,
            &format!("/v1/commit_dry_run/{}", id_path(&ids)),
        )
        .await;
    let body = pages::commit_confirm(&ids, &plan.body, &plan.flashes(), &session.csrf);
    web.render(&headers, &session, Page::Patches, body)
}

async fn commit(State(web): Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (session, form) = match posted(&web, &headers, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let ids = form.all("id");
    if ids.is_empty() {
        return no_patches_to_commit(&web, &session);
    }
    let reply = web
        .api(Method::POST, &format!("/v1/commit/{}", id_path(&ids)))
        .await;
    tracing::info!(target: "audit", "dashboard: commit {}", ids.join(" "));
    web.sessions.flash_all(&session, reply.flashes());
    see_other("/patches")
}

/// Upload: a multipart form whose first field is the CSRF token, then one or more `file`
/// fields, each streamed into the verifying importer as it arrives.
async fn upload(State(web): Shared, headers: HeaderMap, request: Request) -> Response {
    let Some(session) = web.sessions.get(&headers) else {
        return see_other("/login");
    };
    let mut multipart = match Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(e) => return bad_form(&format!("the upload is not a multipart form: {e}")),
    };
    // The token comes first (the page's form puts it there), so nothing is read from an
    // unauthenticated form beyond a few bytes.
    let csrf = match multipart.next_field().await {
        Ok(Some(mut field)) if field.name() == Some("csrf") => {
            let mut value = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) if value.len() + chunk.len() <= 256 => {
                        value.extend_from_slice(&chunk)
                    }
                    Ok(None) => break,
                    _ => return forbidden_csrf(),
                }
            }
            String::from_utf8(value).unwrap_or_default()
        }
        _ => return forbidden_csrf(),
    };
    if !session::same_secret(&csrf, &session.csrf) {
        tracing::warn!(target: "audit", "dashboard upload refused: bad CSRF token");
        return forbidden_csrf();
    }
    // Uploads stream straight into the store: only on the active controller of a pair.
    if let Some((message, _)) = web
        .app
        .ha
        .as_ref()
        .and_then(|ha| ha.not_active(|u| u.web.clone()))
    {
        web.sessions
            .flash(&session, Flash::new(Level::Error, message));
        if headers.contains_key("x-dashboard-upload") {
            return (StatusCode::OK, "refused").into_response();
        }
        return see_other("/patches");
    }
    let mut flashes = Vec::new();
    let mut files = 0;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                flashes.push(Flash::new(
                    Level::Error,
                    format!("The upload was cut short: {e}"),
                ));
                break;
            }
        };
        if field.name() != Some("file") {
            continue;
        }
        let name = field
            .file_name()
            .map(crate::api::basename)
            .unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        files += 1;
        let stream = field.map(|chunk| chunk.map_err(std::io::Error::other));
        match crate::api::import_stream(web.app.clone(), stream, name.clone()).await {
            Ok(outcome) => {
                for line in outcome.info {
                    flashes.push(Flash::new(Level::Info, line));
                }
                for line in outcome.warning {
                    flashes.push(Flash::new(Level::Warning, line));
                }
            }
            Err(e) => {
                if !e.is_refusal() {
                    tracing::error!("dashboard upload of {name}: {e}");
                }
                flashes.push(Flash::new(Level::Error, format!("{name}: {e}")));
            }
        }
    }
    // As the API: the standby holds the uploads before the operator hears of them.
    if files > 0
        && let Err(message) = crate::http::replicated(&web.app).await
    {
        flashes.push(Flash::new(Level::Error, message));
    }
    if files == 0 {
        flashes.push(Flash::new(
            Level::Error,
            "Choose a patch file (.patch) to upload.".into(),
        ));
    }
    tracing::info!(target: "audit", "dashboard: upload of {files} file(s)");
    web.sessions.flash_all(&session, flashes);
    // The page's script shows progress and then loads the patches page itself; a redirect
    // it followed would show the messages to the script instead of the operator.
    if headers.contains_key("x-dashboard-upload") {
        return (StatusCode::OK, "uploaded").into_response();
    }
    see_other("/patches")
}

async fn host_action(
    State(web): Shared,
    headers: HeaderMap,
    UrlPath(action): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let (session, form) = match posted(&web, &headers, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let Some(host) = form.get("host").filter(|h| !h.is_empty()) else {
        web.sessions
            .flash(&session, Flash::new(Level::Error, "Choose a host.".into()));
        return see_other("/hosts");
    };
    let host = pages::url_encode(host);
    let uri = match action.as_str() {
        "install" => format!("/v1/host_install_async/{host}"),
        "lock" => format!("/v1/host_lock/{host}"),
        "unlock" => format!("/v1/host_unlock/{host}"),
        "swact" => {
            web.sessions.flash(
                &session,
                Flash::new(Level::Error, pages::SWACT_UNAVAILABLE.into()),
            );
            return see_other("/hosts");
        }
        other => {
            web.sessions.flash(
                &session,
                Flash::new(Level::Error, format!("Unknown host action {other:?}.")),
            );
            return see_other("/hosts");
        }
    };
    let reply = web.api(Method::POST, &uri).await;
    tracing::info!(target: "audit", "dashboard: host {action} {host}");
    web.sessions.flash_all(&session, reply.flashes());
    see_other("/hosts")
}

const STRATEGY: &str = "/api/orchestration/sw-patch/strategy";

async fn strategy_create(
    State(web): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (session, form) = match posted(&web, &headers, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut request = serde_json::Map::new();
    for key in [
        "controller-apply-type",
        "storage-apply-type",
        "worker-apply-type",
        "default-instance-action",
        "alarm-restrictions",
    ] {
        if let Some(v) = form.get(key).filter(|v| !v.is_empty()) {
            request.insert(key.into(), json!(v));
        }
    }
    // Numbers go as the API's strings; it says what is wrong with them.
    for key in ["max-parallel-worker-hosts", "max-failed-hosts"] {
        if let Some(v) = form.get(key).map(str::trim).filter(|v| !v.is_empty()) {
            request.insert(key.into(), json!(v));
        }
    }
    // The parallel limit only means something for parallel workers.
    if form.get("worker-apply-type") != Some("parallel") {
        request.remove("max-parallel-worker-hosts");
    }
    let dry_run = form.get("dry-run").is_some();
    if dry_run {
        request.insert("dry-run".into(), json!(true));
    }
    let reply = web
        .vim(Method::POST, STRATEGY, Some(Value::Object(request)))
        .await;
    if !reply.status.is_success() {
        web.sessions
            .flash(&session, Flash::new(Level::Error, reply.error_text()));
    } else if dry_run {
        match reply.body.get("dry-run").filter(|p| !p.is_null()) {
            Some(plan) => web.sessions.set_plan(&session, plan.clone()),
            None => {
                let reason = reply
                    .body
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("no plan");
                web.sessions.flash(
                    &session,
                    Flash::new(Level::Error, format!("Cannot plan a strategy: {reason}")),
                );
            }
        }
    } else {
        tracing::info!(target: "audit", "dashboard: patch strategy created");
        web.sessions.flash(
            &session,
            Flash::new(Level::Info, "Strategy created; it is being built.".into()),
        );
    }
    see_other("/orchestration")
}

async fn strategy_action(
    State(web): Shared,
    headers: HeaderMap,
    UrlPath(action): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let (session, form) = match posted(&web, &headers, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let stage = form.get("stage-id").filter(|s| !s.is_empty());
    let (method, request, done) = match (action.as_str(), stage) {
        ("apply", None) => (
            Method::POST,
            Some(json!({"action": "apply-all"})),
            "Applying every stage.",
        ),
        ("apply", Some(id)) => (
            Method::POST,
            Some(json!({"action": "apply-stage", "stage-id": id})),
            "Applying the stage.",
        ),
        ("abort", None) => (
            Method::POST,
            Some(json!({"action": "abort"})),
            "Aborting the strategy.",
        ),
        ("abort", Some(id)) => (
            Method::POST,
            Some(json!({"action": "abort-stage", "stage-id": id})),
            "Aborting the stage.",
        ),
        ("delete", _) => (Method::DELETE, None, "Strategy deleted."),
        (other, _) => {
            web.sessions.flash(
                &session,
                Flash::new(Level::Error, format!("Unknown strategy action {other:?}.")),
            );
            return see_other("/orchestration");
        }
    };
    let uri = if method == Method::DELETE {
        STRATEGY.to_owned()
    } else {
        format!("{STRATEGY}/actions")
    };
    let reply = web.vim(method, &uri, request).await;
    if reply.status.is_success() {
        tracing::info!(target: "audit", "dashboard: strategy {action}");
        web.sessions
            .flash(&session, Flash::new(Level::Info, done.into()));
    } else {
        web.sessions
            .flash(&session, Flash::new(Level::Error, reply.error_text()));
    }
    see_other("/orchestration")
}
