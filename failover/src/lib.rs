//! One way to reach the active controller of a pair, for the command-line tools (blocking)
//! and the agent (async).
//!
//! A client knows several controller URLs and sends to the one that answered last. It moves
//! on when that one cannot be reached, answers `503` (handing over, or its peer is out of
//! sight) or `307` (a standby: `X-Stx-Active-Url` names the active one, which joins the list
//! if it was not in it). A request that reached a controller but got no answer (a timeout, a
//! reset) is sent elsewhere only when it is [`Resend::Always`]: one that is not idempotent
//! may have been carried out. Clients must not follow redirects themselves (an upload cannot
//! be replayed); build them with `redirect(Policy::none())`.

#![forbid(unsafe_code)]

use std::sync::Mutex;

/// The header a standby names the active controller's URL in.
pub const ACTIVE_URL_HEADER: &str = "x-stx-active-url";

/// Whether a request may be sent again after it may have reached a controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Only a request that never reached a controller (connection refused, unresolvable).
    OnlyUnsent,
    /// Any failed request (the request is idempotent).
    Always,
}

/// Why no controller gave an answer.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// No URL was configured.
    #[error("no controller URL given")]
    NoUrl,
    /// Every URL was tried; the last failure is shown.
    #[error("{last}")]
    Unreachable {
        /// What went wrong with the last URL tried.
        last: String,
    },
    /// The request reached `base` but got no answer, and may have been carried out.
    #[error("{base}: {reason}")]
    NoAnswer {
        /// The controller's URL.
        base: String,
        /// The transport's error.
        reason: String,
    },
}

/// What became of one attempt, in terms the rules decide on.
enum Attempt<R> {
    /// An answer to return to the caller.
    Answer(R),
    /// `307`: not the active controller; the header's URL if any.
    NotActive(R, Option<String>),
    /// `503`: the controller cannot serve now (handing over).
    Unavailable(R),
    /// The request never reached the controller.
    Unsent(String),
    /// It reached it and got no answer.
    Lost(String),
}

struct Urls {
    bases: Vec<String>,
    current: usize,
}

/// The controllers' URLs and the one requests go to now (shared between threads).
pub struct Controllers {
    urls: Mutex<Urls>,
}

impl Controllers {
    /// From a list of URLs (trailing `/` dropped, empty entries skipped).
    pub fn new<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> Controllers {
        let bases = urls
            .into_iter()
            .map(|u| u.as_ref().trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        Controllers {
            urls: Mutex::new(Urls { bases, current: 0 }),
        }
    }

    /// From `--url`: one URL or several separated by commas.
    pub fn parse(urls: &str) -> Controllers {
        Controllers::new(urls.split(','))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Urls> {
        // A panic elsewhere while holding the lock leaves the list intact.
        self.urls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The URL requests go to now (empty when none is configured).
    pub fn base(&self) -> String {
        let urls = self.lock();
        urls.bases.get(urls.current).cloned().unwrap_or_default()
    }

    /// Every URL, for messages.
    pub fn all(&self) -> String {
        self.lock().bases.join(", ")
    }

    /// Moves to `active` (added if new), or to the next URL.
    fn switch(&self, active: Option<String>) {
        let mut urls = self.lock();
        match active {
            Some(url) => {
                let at = match urls.bases.iter().position(|b| *b == url) {
                    Some(i) => i,
                    None => {
                        urls.bases.push(url);
                        urls.bases.len() - 1
                    }
                };
                urls.current = at;
            }
            None => urls.current = (urls.current + 1) % urls.bases.len().max(1),
        }
    }

    /// Whether a request that made `tried` attempts gets another: one per URL, counting the
    /// URLs standbys named on the way.
    fn another(&self, tried: usize) -> bool {
        tried < self.lock().bases.len()
    }

    /// Applies the rules to one attempt: `Ok(Some(answer))` to return, `Ok(None)` to try
    /// the next URL (keeping the last `307`/`503` answer in `last` and why in `why`), `Err`
    /// to give up.
    fn judge<R>(
        &self,
        base: &str,
        attempt: Attempt<R>,
        resend: Resend,
        last: &mut Option<R>,
        why: &mut String,
    ) -> Result<Option<R>, FailoverError> {
        match attempt {
            Attempt::Answer(r) => return Ok(Some(r)),
            Attempt::NotActive(r, active) => {
                *why = format!("{base} is not the active controller");
                *last = Some(r);
                self.switch(active.map(|a| a.trim_end_matches('/').to_owned()));
            }
            Attempt::Unavailable(r) => {
                *why = format!("{base} cannot serve now (handing over)");
                *last = Some(r);
                self.switch(None);
            }
            Attempt::Unsent(e) => {
                *why = format!("cannot reach {base}: {e}");
                self.switch(None);
            }
            Attempt::Lost(e) if resend == Resend::Always => {
                *why = format!("{base}: {e}");
                self.switch(None);
            }
            Attempt::Lost(reason) => {
                return Err(FailoverError::NoAnswer {
                    base: base.to_owned(),
                    reason,
                });
            }
        }
        Ok(None)
    }

    /// Once every URL was tried: the last answer (a `307` or `503`, whose body says why),
    /// else why none came.
    fn exhausted<R>(last: Option<R>, why: String) -> Result<R, FailoverError> {
        match last {
            Some(r) => Ok(r),
            None if why.is_empty() => Err(FailoverError::NoUrl),
            None => Err(FailoverError::Unreachable { last: why }),
        }
    }

    /// Sends the request `build` makes for a base URL to the active controller (blocking).
    pub fn send_blocking(
        &self,
        resend: Resend,
        build: impl Fn(&str) -> reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, FailoverError> {
        let (mut last, mut why) = (None, String::new());
        let mut tried = 0;
        while self.another(tried) {
            tried += 1;
            let base = self.base();
            let attempt = match build(&base).send() {
                Ok(r) => classify(r.status(), active_url(r.headers()), r),
                Err(e) => transport_failure(&e),
            };
            if let Some(r) = self.judge(&base, attempt, resend, &mut last, &mut why)? {
                return Ok(r);
            }
        }
        Self::exhausted(last, why)
    }

    /// Sends the request `build` makes for a base URL to the active controller.
    pub async fn send(
        &self,
        resend: Resend,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, FailoverError> {
        let (mut last, mut why) = (None, String::new());
        let mut tried = 0;
        while self.another(tried) {
            tried += 1;
            let base = self.base();
            let attempt = match build(&base).send().await {
                Ok(r) => classify(r.status(), active_url(r.headers()), r),
                Err(e) => transport_failure(&e),
            };
            if let Some(r) = self.judge(&base, attempt, resend, &mut last, &mut why)? {
                return Ok(r);
            }
        }
        Self::exhausted(last, why)
    }
}

/// A request that got no answer: never sent (the controller could not be reached) or lost.
fn transport_failure<R>(e: &reqwest::Error) -> Attempt<R> {
    if e.is_connect() {
        Attempt::Unsent(describe(e))
    } else {
        Attempt::Lost(describe(e))
    }
}

/// An error with its causes ("error sending request: … : invalid peer certificate:
/// UnknownIssuer"): reqwest's own text leaves out the cause an operator needs.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

fn active_url(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get(ACTIVE_URL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn classify<R>(status: reqwest::StatusCode, active: Option<String>, response: R) -> Attempt<R> {
    match status {
        reqwest::StatusCode::TEMPORARY_REDIRECT => Attempt::NotActive(response, active),
        reqwest::StatusCode::SERVICE_UNAVAILABLE => Attempt::Unavailable(response),
        _ => Attempt::Answer(response),
    }
}

#[cfg(test)]
mod tests;
