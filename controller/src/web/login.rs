//! Signing in and out, and the checks every posted form passes: a session, and the
//! session's CSRF token (constant-time compared).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;

use super::session::{self, SessionRef};
use super::{Shared, Web, html, layout, see_other};

pub(super) async fn login_page(State(web): Shared, uri: Uri) -> Response {
    let next = next_from_query(uri.query());
    let (cookie, token) = web.sessions.new_login_form();
    let mut response = html(StatusCode::OK, layout::login(&token, next.as_deref(), None));
    set_cookie(&mut response, &cookie);
    response
}

/// Whether a page to go back to is a path on this server (never `//elsewhere` or a URL), so
/// a login can never redirect off-site. Browsers drop tabs and newlines from a URL (so
/// `/\t/evil.com` reads as `//evil.com`) and treat `\\` as `/`: a path with either is refused.
pub(super) fn local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The `next=` page of a login, if it is a local path.
fn next_from_query(query: Option<&str>) -> Option<String> {
    let pairs = crate::http::parse_query(query.unwrap_or("")).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v)
        .filter(|v| local_path(v))
}

pub(super) fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A form body: `application/x-www-form-urlencoded`, decoded strictly.
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Form, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8".to_owned())?;
        crate::http::parse_query(text).map(Form)
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub(super) async fn login(
    State(web): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
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
    let Some(operator) = web.tokens.identify(token) else {
        tracing::warn!(target: "audit", "dashboard login refused: wrong token");
        let (cookie, fresh) = web.sessions.new_login_form();
        let mut response = html(
            StatusCode::UNAUTHORIZED,
            layout::login(
                &fresh,
                next.as_deref(),
                Some("The token was not accepted. Use one of the controller's API tokens."),
            ),
        );
        set_cookie(&mut response, &cookie);
        return response;
    };
    let who = operator.name.clone();
    match web.sessions.create(token, operator) {
        Ok(cookie) => {
            tracing::info!(target: "audit", "dashboard login: {who}");
            let mut response = see_other(next.as_deref().unwrap_or("/system"));
            set_cookie(&mut response, &cookie);
            set_cookie(&mut response, &web.sessions.clear_login_cookie());
            response
        }
        Err(message) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            layout::bare("Login", layout::message_page("Cannot log in", &message)),
        ),
    }
}

pub(super) async fn logout(
    State(web): Shared,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(session) = web.sessions.get(&headers) else {
        return see_other("/login");
    };
    if let Err(r) = check_form(&session, &body) {
        return *r;
    }
    web.sessions.remove(&session);
    let mut response = see_other("/login");
    set_cookie(&mut response, &web.sessions.clear_session_cookie());
    response
}

pub(super) fn forbidden_csrf() -> Response {
    html(
        StatusCode::FORBIDDEN,
        layout::bare(
            "Refused",
            layout::login_link(layout::message_page(
                "Refused: the form's security token is missing or out of date",
                "Nothing was changed. Reload the page and try again.",
            )),
        ),
    )
}

/// A reader's form: refused, nothing changed.
pub(super) fn reader_refused(operator: &crate::auth::Operator) -> Response {
    html(
        StatusCode::FORBIDDEN,
        layout::bare(
            "Refused",
            layout::message_page(
                "Refused: read-only",
                &format!(
                    "{}. Nothing was changed.",
                    crate::auth::reader_refusal(operator)
                ),
            ),
        ),
    )
}

pub(super) fn bad_form(message: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        layout::bare(
            "Bad request",
            layout::login_link(layout::message_page("The form could not be read", message)),
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

/// A posted form whose session and CSRF token checked out: what every state-changing
/// dashboard handler takes. Without a session the answer is the login page; with a bad or
/// missing token, a refusal that changes nothing.
pub(super) struct Posted {
    pub(super) session: SessionRef,
    pub(super) form: Form,
}

impl axum::extract::FromRequest<std::sync::Arc<Web>> for Posted {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        web: &std::sync::Arc<Web>,
    ) -> Result<Posted, Response> {
        let Some(session) = web.sessions.get(request.headers()) else {
            return Err(see_other("/login"));
        };
        let body = axum::body::Bytes::from_request(request, web)
            .await
            .map_err(axum::response::IntoResponse::into_response)?;
        let form = check_form(&session, &body).map_err(|r| *r)?;
        if !session.operator.may_mutate() {
            tracing::warn!(target: "audit", "dashboard: {} refused (reader)", session.operator.name);
            return Err(reader_refused(&session.operator));
        }
        Ok(Posted { session, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_only_goes_back_to_a_page_here() {
        assert!(local_path("/patches/show/P1"));
        for elsewhere in [
            "//evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/ /evil.com",
            "/\\evil.com",
            "https://evil.com",
            "evil.com",
        ] {
            assert!(!local_path(elsewhere), "{elsewhere:?}");
        }
        assert_eq!(next_from_query(Some("next=%2F%09%2Fevil.com")), None);
        assert_eq!(
            next_from_query(Some("next=%2Fhosts")),
            Some("/hosts".to_owned())
        );
    }
}
