//! Dashboard sessions: random ids in an HttpOnly, SameSite=Strict cookie, each with its own
//! CSRF token and the messages waiting for the next page. Kept in memory: a restarted
//! controller asks operators to log in again, which is the safe failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

const SESSION_COOKIE: &str = "stx_session";
const LOGIN_COOKIE: &str = "stx_login";
/// A session ends this long after login, however busy.
const MAX_AGE: Duration = Duration::from_secs(8 * 3600);
/// At most this many live sessions (logins beyond it are refused, not evicting others).
const MAX_SESSIONS: usize = 1000;
/// At most this many live sessions per token: a login beyond it ends that token's least
/// recently used session, so one token (or whoever took it) cannot fill the table and lock
/// the other operators out.
const MAX_SESSIONS_PER_TOKEN: usize = 20;
/// At most this many messages wait for the next page.
const MAX_FLASHES: usize = 50;

/// How a message is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub(crate) fn class(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// A message for the next page (the outcome of a form).
#[derive(Clone, Debug)]
pub(crate) struct Flash {
    pub(crate) level: Level,
    pub(crate) text: String,
}

impl Flash {
    pub(crate) fn new(level: Level, text: String) -> Flash {
        Flash { level, text }
    }
}

struct Session {
    /// Which token logged in (its SHA-256: the token itself is never kept).
    token: String,
    /// Who that token is, and what it may do.
    operator: crate::auth::Operator,
    csrf: String,
    created: Instant,
    last_seen: Instant,
    flashes: Vec<Flash>,
    /// A strategy dry run waiting to be shown.
    plan: Option<crate::service::Plan>,
}

/// A live session as a request sees it.
pub(crate) struct SessionRef {
    id: String,
    pub(crate) csrf: String,
    /// Who logged in.
    pub(crate) operator: crate::auth::Operator,
}

/// Every live session.
pub(crate) struct Sessions {
    idle: Duration,
    /// Whether cookies are marked `Secure` (the dashboard serves TLS).
    secure: bool,
    map: Mutex<HashMap<String, Session>>,
}

/// A fresh unguessable secret: 244 bits from the OS's generator, as hex.
fn secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

pub(crate) use crate::auth::same_secret;

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value; `Secure` (never sent over plain HTTP) when the dashboard serves TLS.
fn set(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

impl Sessions {
    /// Sessions ending after `idle` without a request; `secure` when served over TLS.
    pub(crate) fn new(idle: Duration, secure: bool) -> Sessions {
        Sessions {
            idle,
            secure,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The `Set-Cookie` that ends the session cookie.
    pub(crate) fn clear_session_cookie(&self) -> String {
        set(SESSION_COOKIE, "", 0, self.secure)
    }

    /// The `Set-Cookie` that ends the login form's cookie.
    pub(crate) fn clear_login_cookie(&self) -> String {
        set(LOGIN_COOKIE, "", 0, self.secure)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) > self.idle || now.duration_since(s.created) > MAX_AGE
    }

    /// The login form's token and the cookie that carries the same value (the form posts it
    /// back; a cross-site form cannot read or set the cookie).
    pub(crate) fn new_login_form(&self) -> (String, String) {
        let token = secret();
        (set(LOGIN_COOKIE, &token, 3600, self.secure), token)
    }

    /// Whether a posted login form's token matches its cookie.
    pub(crate) fn login_form_ok(&self, headers: &HeaderMap, form_token: &str) -> bool {
        cookie(headers, LOGIN_COOKIE).is_some_and(|c| same_secret(c, form_token))
    }

    /// Starts a session; the `Set-Cookie` value for it.
    /// A new session for an operator who logged in with `token`; its cookie.
    pub(crate) fn create(
        &self,
        token: &str,
        operator: crate::auth::Operator,
    ) -> Result<String, String> {
        use sha2::Digest;
        let token = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| !self.expired(s, now));
        let mine: Vec<(&String, Instant)> = map
            .iter()
            .filter(|(_, s)| s.token == token)
            .map(|(id, s)| (id, s.last_seen))
            .collect();
        if mine.len() >= MAX_SESSIONS_PER_TOKEN
            && let Some(oldest) = mine
                .iter()
                .min_by_key(|(_, seen)| *seen)
                .map(|(id, _)| (*id).clone())
        {
            map.remove(&oldest);
        }
        if map.len() >= MAX_SESSIONS {
            return Err(format!(
                "{MAX_SESSIONS} dashboard sessions are open; wait for some to expire or log out elsewhere."
            ));
        }
        let id = secret();
        map.insert(
            id.clone(),
            Session {
                token,
                operator,
                csrf: secret(),
                created: now,
                last_seen: now,
                flashes: Vec::new(),
                plan: None,
            },
        );
        Ok(set(SESSION_COOKIE, &id, MAX_AGE.as_secs(), self.secure))
    }

    /// The request's live session, if any (and marks it used).
    pub(crate) fn get(&self, headers: &HeaderMap) -> Option<SessionRef> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let now = Instant::now();
        let mut map = self.lock();
        let session = map.get_mut(id)?;
        if self.expired(session, now) {
            map.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(SessionRef {
            id: id.to_owned(),
            csrf: session.csrf.clone(),
            operator: session.operator.clone(),
        })
    }

    /// Ends a session.
    pub(crate) fn remove(&self, session: &SessionRef) {
        self.lock().remove(&session.id);
    }

    /// Queues a message for the session's next page.
    pub(crate) fn flash(&self, session: &SessionRef, flash: Flash) {
        self.flash_all(session, vec![flash]);
    }

    /// Queues messages for the session's next page.
    pub(crate) fn flash_all(&self, session: &SessionRef, flashes: Vec<Flash>) {
        if let Some(s) = self.lock().get_mut(&session.id) {
            s.flashes.extend(flashes);
            let excess = s.flashes.len().saturating_sub(MAX_FLASHES);
            s.flashes.drain(..excess);
        }
    }

    /// The messages waiting for this page (they are shown once).
    pub(crate) fn take_flashes(&self, session: &SessionRef) -> Vec<Flash> {
        self.lock()
            .get_mut(&session.id)
            .map(|s| std::mem::take(&mut s.flashes))
            .unwrap_or_default()
    }

    /// Keeps a dry run's plan for the next orchestration page.
    pub(crate) fn set_plan(&self, session: &SessionRef, plan: crate::service::Plan) {
        if let Some(s) = self.lock().get_mut(&session.id) {
            s.plan = Some(plan);
        }
    }

    /// The dry run waiting to be shown, if any (shown once).
    pub(crate) fn take_plan(&self, session: &SessionRef) -> Option<crate::service::Plan> {
        self.lock().get_mut(&session.id).and_then(|s| s.plan.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> crate::auth::Operator {
        crate::auth::Operator {
            name: "alice".into(),
            role: crate::auth::Role::Admin,
        }
    }
    use axum::http::HeaderValue;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        h
    }

    fn id_of(set_cookie: &str) -> String {
        set_cookie
            .split(';')
            .next()
            .and_then(|p| p.split_once('='))
            .map(|(_, v)| v.to_owned())
            .unwrap()
    }

    #[test]
    fn every_cookie_is_secure_exactly_when_served_over_tls() {
        let plain = Sessions::new(Duration::from_secs(60), false);
        let tls = Sessions::new(Duration::from_secs(60), true);
        let cookies = |s: &Sessions| {
            vec![
                s.create("t", admin()).unwrap(),
                s.new_login_form().0,
                s.clear_login_cookie(),
                s.clear_session_cookie(),
            ]
        };
        assert!(cookies(&tls).iter().all(|c| c.ends_with("; Secure")));
        assert!(cookies(&plain).iter().all(|c| !c.contains("Secure")));
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends_on_logout() {
        let sessions = Sessions::new(Duration::from_secs(60), false);
        let set_cookie = sessions.create("t", admin()).unwrap();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
        let id = id_of(&set_cookie);
        let headers = with_cookie(&format!("other=1; stx_session={id}"));
        let session = sessions.get(&headers).expect("live session");
        assert_eq!(session.csrf.len(), 64);
        assert!(sessions.get(&with_cookie("stx_session=forged")).is_none());
        sessions.remove(&session);
        assert!(sessions.get(&headers).is_none());
    }

    /// Logins with one token beyond its cap end that token's least recently used session;
    /// another token still logs in.
    #[test]
    fn one_token_cannot_fill_the_session_table() {
        let sessions = Sessions::new(Duration::from_secs(60), false);
        let first = id_of(&sessions.create("a", admin()).unwrap());
        for _ in 0..MAX_SESSIONS_PER_TOKEN + 5 {
            sessions.create("a", admin()).unwrap();
        }
        let live = |token: &str| {
            use sha2::Digest;
            let token = hex::encode(sha2::Sha256::digest(token.as_bytes()));
            sessions
                .lock()
                .values()
                .filter(|s| s.token == token)
                .count()
        };
        assert_eq!(live("a"), MAX_SESSIONS_PER_TOKEN);
        assert!(
            sessions
                .get(&with_cookie(&format!("stx_session={first}")))
                .is_none(),
            "the least recently used session made room"
        );
        let other = id_of(&sessions.create("b", admin()).unwrap());
        assert!(
            sessions
                .get(&with_cookie(&format!("stx_session={other}")))
                .is_some()
        );
    }

    #[test]
    fn an_idle_session_expires() {
        let sessions = Sessions::new(Duration::from_millis(1), false);
        let id = id_of(&sessions.create("t", admin()).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            sessions
                .get(&with_cookie(&format!("stx_session={id}")))
                .is_none()
        );
    }

    #[test]
    fn flashes_are_shown_once_and_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60), false);
        let id = id_of(&sessions.create("t", admin()).unwrap());
        let s = sessions
            .get(&with_cookie(&format!("stx_session={id}")))
            .unwrap();
        for i in 0..(MAX_FLASHES + 5) {
            sessions.flash(&s, Flash::new(Level::Info, i.to_string()));
        }
        let shown = sessions.take_flashes(&s);
        assert_eq!(shown.len(), MAX_FLASHES);
        assert_eq!(shown.last().unwrap().text, (MAX_FLASHES + 4).to_string());
        assert!(sessions.take_flashes(&s).is_empty());
    }

    #[test]
    fn login_form_token_must_match_its_cookie() {
        let sessions = Sessions::new(Duration::from_secs(60), false);
        let (set_cookie, token) = sessions.new_login_form();
        let headers = with_cookie(&format!("stx_login={}", id_of(&set_cookie)));
        assert!(sessions.login_form_ok(&headers, &token));
        assert!(!sessions.login_form_ok(&headers, "x"));
        assert!(!sessions.login_form_ok(&HeaderMap::new(), &token));
        assert!(!same_secret("", ""));
    }
}
