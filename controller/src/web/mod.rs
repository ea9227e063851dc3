//! The web dashboard: the Software Management pages of the original's Horizon GUI, served by
//! the controller itself from templates compiled into the binary (maud) plus one small script
//! for live updates and upload progress. Every page renders server-side, so reading works
//! without JavaScript; forms post and redirect back with the outcome shown.
//!
//! An adapter of the [`Service`]: pages read its typed values and forms call its operations,
//! so the rules and the messages (refusals, errors) are exactly what `sw-patch` and
//! `sw-manager` see. One module per page; signing in and the form checks in [`login`].
//!
//! Security: operators log in with one of the API tokens, which buys a session cookie
//! (HttpOnly, SameSite=Strict, idle and absolute expiry); every state-changing form carries the
//! session's CSRF token; pages are sent with a strict Content-Security-Policy (no inline
//! script, nothing from elsewhere) and are never cached.

mod dc;
mod hosts;
mod layout;
mod login;
mod orchestration;
mod patches;
mod session;
mod system;

use crate::auth::Operators;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use patch_store::Outcome;

use crate::service::{Service, ServiceError};
use layout::Page;
pub(crate) use session::Sessions;
use session::{Flash, Level, SessionRef};

/// The dashboard's shared state.
pub(crate) struct Web {
    service: Service,
    tokens: Arc<Operators>,
    sessions: Sessions,
}

type Shared = State<Arc<Web>>;

/// Largest form body (everything but uploads).
const MAX_FORM: usize = 64 * 1024;

/// The dashboard; `over_tls` marks its cookies `Secure` (a browser then never sends them
/// over plain HTTP) and asks browsers to keep to HTTPS.
pub(crate) fn router(service: Service, tokens: Operators, over_tls: bool) -> Router {
    let idle = std::time::Duration::from_secs(service.config().web_session_idle_minutes * 60);
    let web = Arc::new(Web {
        service,
        tokens: Arc::new(tokens),
        sessions: Sessions::new(idle, over_tls),
    });
    let forms = Router::new()
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/", get(|| async { see_other("/system") }))
        .route("/system", get(system::system_page))
        .route("/patches", get(patches::patches_page))
        .route(
            "/patches/commit",
            get(patches::commit_page).post(patches::commit),
        )
        .route("/patches/action/{action}", post(patches::patch_action))
        .route("/patches/show/{id}", get(patches::patch_page))
        .route("/hosts", get(hosts::hosts_page))
        .route("/hosts/action/{action}", post(hosts::host_action))
        .route("/orchestration", get(orchestration::orchestration_page))
        .route("/orchestration/precheck", get(orchestration::precheck_page))
        .route(
            "/orchestration/create",
            post(orchestration::strategy_create),
        )
        .route(
            "/orchestration/action/{action}",
            post(orchestration::strategy_action),
        )
        .route("/alarms", get(system::alarms_page))
        .route("/dc", get(dc::dc_page))
        .route("/static/dashboard.css", get(css))
        .route("/static/dashboard.js", get(js))
        .layer(DefaultBodyLimit::max(MAX_FORM));
    // Uploads stream with the importer's own limit (max_upload_bytes).
    let uploads = Router::new()
        .route("/patches/upload", post(patches::upload))
        .layer(DefaultBodyLimit::disable());
    let router = forms
        .merge(uploads)
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers));
    let router = if over_tls {
        router.layer(axum::middleware::map_response(strict_transport))
    } else {
        router
    };
    router.with_state(web)
}

/// Over TLS: browsers keep to HTTPS for this controller.
async fn strict_transport(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    response
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
        layout::bare(
            title,
            layout::login_link(layout::message_page(title, &message)),
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

pub(crate) fn see_other(location: &str) -> Response {
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
    if path == "/" || !login::local_path(path) {
        return see_other("/login");
    }
    see_other(&format!("/login?next={}", layout::url_encode(path)))
}

async fn not_found(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = web.sessions.get(&headers);
    let body = layout::message_page("Not found", &format!("There is no page at {}.", uri.path()));
    match session {
        Some(s) => web.render_status(&headers, StatusCode::NOT_FOUND, &s, Page::None, body),
        None => html(
            StatusCode::NOT_FOUND,
            layout::bare("Not found", layout::login_link(body)),
        ),
    }
}

/// The messages an operation's outcome carries, as the operator should read them.
fn outcome_flashes(result: Result<Outcome, ServiceError>) -> Vec<Flash> {
    match result {
        Ok(outcome) => {
            let mut out = Vec::new();
            for (lines, level) in [
                (outcome.info, Level::Info),
                (outcome.warning, Level::Warning),
            ] {
                let text = lines.join("\n");
                if !text.trim().is_empty() {
                    out.push(Flash::new(level, text.trim().to_owned()));
                }
            }
            out
        }
        Err(e) => vec![error_flash(&e)],
    }
}

/// A one-line answer (host actions) as a message.
fn line_flash(result: Result<String, ServiceError>) -> Flash {
    match result {
        Ok(line) => Flash::new(Level::Info, line.trim().to_owned()),
        Err(e) => error_flash(&e),
    }
}

/// A refusal or failure in words.
fn error_flash(e: &ServiceError) -> Flash {
    if !e.is_refusal() {
        tracing::error!("dashboard: {e}");
    }
    Flash::new(Level::Error, e.to_string().trim().to_owned())
}

impl Web {
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
            layout::layout(page, &session.csrf, &flashes, &self.system_line(), body),
        )
    }

    /// The header's one-line system summary (and, on a standby, where the active one is).
    fn system_line(&self) -> String {
        let config = self.service.config();
        let mut line = format!(
            "Release {} · {}",
            config.release,
            crate::service::SystemInfo::mode(config.single_controller)
        );
        match self.service.pair_role() {
            Some(Err(message)) => line.push_str(&format!(" · standby: {message}")),
            Some(Ok(host)) => line.push_str(&format!(" · {host} active")),
            None => {}
        }
        line
    }
}

/// A session, or the way to the login page.
macro_rules! session_or_login {
    ($web:expr, $headers:expr, $uri:expr) => {
        match $web.sessions.get(&$headers) {
            Some(s) => s,
            None => return $crate::web::to_login(&$uri),
        }
    };
}
use session_or_login;
