//! A blocking client for the orchestration and alarm API (the original VIM's port 4545),
//! shared by `sw-manager` and `fm`.

use std::time::Duration;

use serde_json::Value;

/// What went wrong with a call, mapped as the original `sw-manager` reports it.
#[derive(Debug, thiserror::Error)]
pub enum VimError {
    /// 404: the strategy (or alarm) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409.
    #[error("Operation failed: conflict detected. {0}")]
    Conflict(String),
    /// 401: no valid token (the original's words).
    #[error("Authorization failed")]
    Authorization,
    /// 403: a valid token that may not do this (a reader's), with the server's reason.
    #[error("Authorization failed: {0}")]
    Forbidden(String),
    /// Any other failed status, with the server's fault string.
    #[error("HTTP error: {status}: {message}")]
    Http {
        /// Status code.
        status: u16,
        /// The fault string.
        message: String,
    },
    /// The server could not be reached or answered garbage.
    #[error("{0}")]
    Transport(String),
}

/// The API of a controller, or of a pair (the active one is used).
pub struct VimClient {
    controllers: failover::Controllers,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl VimClient {
    /// A client for `base` (e.g. `http://127.0.0.1:4545`), sending `X-Auth-Token` if given
    /// and verifying an `https://` controller as `trust` says.
    pub fn new(
        base: &str,
        token: Option<String>,
        trust: Option<&tls::Trust>,
    ) -> Result<Self, VimError> {
        let http = crate::http_builder(trust)
            .map_err(|e| VimError::Transport(format!("TLS: {e:#}")))?
            .timeout(Duration::from_secs(40))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| VimError::Transport(format!("creating the HTTP client: {e}")))?;
        Ok(VimClient {
            controllers: failover::Controllers::parse(base),
            token,
            http,
        })
    }

    fn send(
        &self,
        build: impl Fn(&str) -> reqwest::blocking::RequestBuilder,
    ) -> Result<Option<Value>, VimError> {
        let response = self
            .controllers
            .send_blocking(failover::Resend::OnlyUnsent, |base| {
                let mut request = build(base)
                    .header("Accept", "application/json")
                    .header("X-User", "admin")
                    .header("X-Tenant", "admin")
                    .header("X-User-Domain-Name", "Default");
                if let Some(token) = &self.token {
                    request = request.header("X-Auth-Token", token);
                }
                request
            })
            .map_err(|e| {
                VimError::Transport(format!(
                    "cannot reach the orchestration API at {}: {}",
                    self.controllers.all(),
                    e
                ))
            })?;
        let status = response.status();
        let body = crate::read_answer(response)
            .map_err(|e| VimError::Transport(format!("reading the response: {e:#}")))?;
        if status.is_success() {
            if body.trim().is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&body).map(Some).map_err(|e| {
                VimError::Transport(format!(
                    "the API answered with invalid JSON ({e}): {body:.200}"
                ))
            });
        }
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["faultstring"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(200).collect());
        Err(match status.as_u16() {
            404 => VimError::NotFound(message),
            409 => VimError::Conflict(message),
            401 => VimError::Authorization,
            403 => VimError::Forbidden(message),
            code => VimError::Http {
                status: code,
                message,
            },
        })
    }

    /// GET a path.
    pub fn get(&self, path: &str) -> Result<Value, VimError> {
        self.send(|base| self.http.get(format!("{base}{path}")))
            .map(|v| v.unwrap_or(Value::Null))
    }

    /// POST a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, VimError> {
        self.send(|base| self.http.post(format!("{base}{path}")).json(body))
            .map(|v| v.unwrap_or(Value::Null))
    }

    /// DELETE, with an optional JSON body; the reply body (null when empty).
    pub fn delete(&self, path: &str, body: Option<&Value>) -> Result<Value, VimError> {
        self.send(|base| {
            let request = self.http.delete(format!("{base}{path}"));
            match body {
                Some(b) => request.json(b),
                None => request,
            }
        })
        .map(|v| v.unwrap_or(Value::Null))
    }
}
