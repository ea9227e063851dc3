//! A typed client of one subcloud's controller: its patching API and its orchestration
//! API, over TLS with the subcloud's CA and operator token. A duplex subcloud's URLs are
//! its two controllers' (`https://a,https://b`): each request goes to the first that
//! answers, and a standby's redirect of a mutation is followed to the active one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::client::{PatchSet, QueryError, chain, client_builder, client_for, read_bounded};
use crate::model::Access;

/// The orchestration API's patch strategy.
const STRATEGY: &str = "/api/orchestration/sw-patch/strategy";

/// Why a request to a subcloud failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// No controller of the subcloud answered (it may be rebooting or swacting, or be
    /// offline).
    #[error("{0}")]
    Unreachable(String),
    /// It answered with a refusal.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// It answered something that is not its API's answer.
    #[error("unexpected answer: {0}")]
    BadAnswer(String),
}

impl From<QueryError> for RemoteError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Http(m) => RemoteError::Unreachable(m),
            other => RemoteError::BadAnswer(other.to_string()),
        }
    }
}

/// One subcloud's controller (or pair).
#[derive(Clone)]
pub struct Remote {
    name: String,
    /// A pair's URLs, the active one first once a redirect has shown which it is (reads go
    /// to it too, so they see the newest state).
    patching: Arc<Mutex<Vec<String>>>,
    vim: Arc<Mutex<Vec<String>>>,
    token: String,
    client: reqwest::Client,
    /// Without redirects: a streamed upload cannot be replayed, so its redirect is
    /// followed by hand with a new stream.
    uploads: reqwest::Client,
}

/// Puts first the base of `answered` (the URL that answered, after any redirect) when it is
/// one of `urls`: a pair's active controller, found by its standby's redirect.
fn prefer(urls: &Mutex<Vec<String>>, answered: &str, path: &str) {
    let path = path.split('?').next().unwrap_or(path);
    let Some(base) = answered
        .split('?')
        .next()
        .and_then(|u| u.strip_suffix(path))
    else {
        return;
    };
    let mut urls = urls.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = urls.iter().position(|u| u == base)
        && i > 0
    {
        let active = urls.remove(i);
        urls.insert(0, active);
    }
}

/// The URLs of a comma-separated list.
pub fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

impl Remote {
    /// A client of the controller(s) at `access`, named `name` in messages; each request
    /// gives up after `timeout`.
    pub fn new(access: &Access, name: &str, timeout: Duration) -> Result<Remote, QueryError> {
        let uploads = client_builder(access, name)?
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| QueryError::Http(e.to_string()))?;
        Ok(Remote {
            name: name.to_owned(),
            patching: Arc::new(Mutex::new(split_urls(&access.url))),
            vim: Arc::new(Mutex::new(
                access
                    .vim_url
                    .as_deref()
                    .map(split_urls)
                    .unwrap_or_default(),
            )),
            token: access.token.clone(),
            client: client_for(access, name, Some(timeout))?,
            uploads,
        })
    }

    /// The subcloud's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `method path` (with a JSON body) to the first of `bases` that answers; the
    /// answer's status and JSON body.
    async fn send(
        &self,
        urls: &Mutex<Vec<String>>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), RemoteError> {
        let bases = urls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if bases.is_empty() {
            return Err(RemoteError::Refused {
                status: 0,
                message: format!(
                    "subcloud {} has no orchestration API URL (subcloud add --vim-url)",
                    self.name
                ),
            });
        }
        let mut last = String::new();
        for base in &bases {
            let url = format!("{base}{path}");
            let mut request = self
                .client
                .request(method.clone(), &url)
                .header("X-Auth-Token", &self.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(answer) => {
                    let status = answer.status();
                    prefer(urls, answer.url().as_str(), path);
                    let bytes = read_bounded(answer, &url).await?;
                    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
                        Value::Null
                    } else {
                        match serde_json::from_slice(&bytes) {
                            Ok(v) => v,
                            Err(_) if !status.is_success() => {
                                Value::String(String::from_utf8_lossy(&bytes).trim().to_owned())
                            }
                            Err(e) => return Err(RemoteError::BadAnswer(format!("{url}: {e}"))),
                        }
                    };
                    // A standby without an active to send us to: try the other.
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        last = format!("{url}: {status}");
                        continue;
                    }
                    return Ok((status, value));
                }
                Err(e) => last = format!("{url}: {}", chain(&e)),
            }
        }
        Err(RemoteError::Unreachable(format!(
            "subcloud {} does not answer: {last}",
            self.name
        )))
    }

    /// A refusal's message: the patching API's `error`, the orchestration API's
    /// `faultstring`, or the status.
    fn refused(status: StatusCode, body: &Value) -> RemoteError {
        let message = body
            .get("faultstring")
            .or_else(|| body.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| body.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        RemoteError::Refused {
            status: status.as_u16(),
            message: message.trim().to_owned(),
        }
    }

    /// Every patch and its repository state.
    pub async fn patches(&self) -> Result<PatchSet, RemoteError> {
        let (status, body) = self
            .send(&self.patching, Method::GET, "/v1/query?show=all", None)
            .await?;
        if !status.is_success() {
            return Err(Self::refused(status, &body));
        }
        let pd = body
            .get("pd")
            .and_then(Value::as_object)
            .ok_or_else(|| RemoteError::BadAnswer("no \"pd\" in the query answer".into()))?;
        Ok(pd
            .iter()
            .filter_map(|(id, meta)| {
                let state = meta.get("repostate").and_then(Value::as_str)?;
                Some((id.clone(), state.to_owned()))
            })
            .collect())
    }

    /// Its hosts, as `query_hosts` lists them.
    pub async fn hosts(&self) -> Result<Vec<Value>, RemoteError> {
        let (status, body) = self
            .send(&self.patching, Method::GET, "/v1/query_hosts", None)
            .await?;
        if !status.is_success() {
            return Err(Self::refused(status, &body));
        }
        body.get("data")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| RemoteError::BadAnswer("no \"data\" in the query_hosts answer".into()))
    }

    /// `apply` or `remove` of `ids` on its patching API.
    pub async fn patch_action(&self, action: &str, ids: &[String]) -> Result<(), RemoteError> {
        let path = format!("/v1/{action}/{}", ids.join("/"));
        let (status, body) = self.send(&self.patching, Method::POST, &path, None).await?;
        match body.get("error").and_then(Value::as_str) {
            Some(e) if !e.trim().is_empty() => Err(RemoteError::Refused {
                status: status.as_u16(),
                message: e.trim().to_owned(),
            }),
            _ if !status.is_success() => Err(Self::refused(status, &body)),
            _ => Ok(()),
        }
    }

    /// Its patch strategy, if it has one (the orchestration API's document).
    pub async fn strategy(&self) -> Result<Option<Value>, RemoteError> {
        let (status, body) = self.send(&self.vim, Method::GET, STRATEGY, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Self::refused(status, &body));
        }
        match body.get("strategy") {
            Some(Value::Null) | None => Ok(None),
            Some(s) => Ok(Some(s.clone())),
        }
    }

    /// Creates its patch strategy with `body`.
    pub async fn create_strategy(&self, body: &Value) -> Result<Value, RemoteError> {
        let (status, answer) = self
            .send(&self.vim, Method::POST, STRATEGY, Some(body))
            .await?;
        if !status.is_success() {
            return Err(Self::refused(status, &answer));
        }
        answer
            .get("strategy")
            .filter(|s| !s.is_null())
            .cloned()
            .ok_or_else(|| RemoteError::BadAnswer("no strategy in the create answer".into()))
    }

    /// Applies its patch strategy (every stage).
    pub async fn apply_strategy(&self) -> Result<(), RemoteError> {
        let body = serde_json::json!({"action": "apply-all"});
        let (status, answer) = self
            .send(
                &self.vim,
                Method::POST,
                &format!("{STRATEGY}/actions"),
                Some(&body),
            )
            .await?;
        if !status.is_success() {
            return Err(Self::refused(status, &answer));
        }
        Ok(())
    }

    /// Deletes its patch strategy (none is fine).
    pub async fn delete_strategy(&self) -> Result<(), RemoteError> {
        let (status, answer) = self.send(&self.vim, Method::DELETE, STRATEGY, None).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(Self::refused(status, &answer))
    }

    /// Streams patch `id` from the system controller at `reference` (through `from`) into
    /// this subcloud's upload, which verifies it as any upload. A standby's redirect is
    /// followed with a new stream.
    pub async fn upload_from(
        &self,
        reference: &Access,
        from: &reqwest::Client,
        id: &str,
    ) -> Result<(), String> {
        let mut targets: Vec<String> = self
            .patching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut hops = 0;
        let mut last = String::new();
        while let Some(base) = targets.first().cloned() {
            let file = fetch_patch_file(reference, from, id).await?;
            let length = file.content_length();
            let url = format!("{base}/v1/upload?filename={id}.patch");
            let mut upload = self
                .uploads
                .post(&url)
                .header("X-Auth-Token", &self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(reqwest::Body::wrap_stream(file.bytes_stream()));
            if let Some(length) = length {
                upload = upload.header(reqwest::header::CONTENT_LENGTH, length);
            }
            let answer = match upload.send().await {
                Ok(a) => a,
                Err(e) => {
                    last = format!("the subcloud does not take {id}: {}", chain(&e));
                    targets.remove(0);
                    continue;
                }
            };
            let status = answer.status();
            if status.is_redirection() && hops < 3 {
                hops += 1;
                let location = answer
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| format!("{url}: redirect without a location"))?;
                let active = location.split("/v1/").next().unwrap_or(location).to_owned();
                targets.insert(0, active);
                targets.remove(1);
                continue;
            }
            if status == StatusCode::SERVICE_UNAVAILABLE {
                last = format!("{url}: {status}");
                targets.remove(0);
                continue;
            }
            let body = read_bounded(answer, id).await.map_err(|e| e.to_string())?;
            let body: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the subcloud answered {status} to {id}'s upload: {e}"))?;
            return match body.get("error").and_then(Value::as_str) {
                Some(error) if !error.trim().is_empty() => Err(error.trim().to_owned()),
                _ if !status.is_success() => Err(format!("the subcloud answered {status}")),
                _ => Ok(()),
            };
        }
        Err(last)
    }
}

/// The signed file of patch `id` as the system controller at `reference` keeps it.
pub async fn fetch_patch_file(
    reference: &Access,
    from: &reqwest::Client,
    id: &str,
) -> Result<reqwest::Response, String> {
    let url = format!("{}/v1/patch_file/{id}", reference.url.trim_end_matches('/'));
    let mut get = from.get(&url);
    if !reference.token.is_empty() {
        get = get.header("X-Auth-Token", &reference.token);
    }
    let file = get
        .send()
        .await
        .map_err(|e| format!("the system controller does not give {id}: {}", chain(&e)))?;
    if !file.status().is_success() {
        let status = file.status();
        let body = read_bounded(file, id).await.unwrap_or_default();
        return Err(format!(
            "the system controller does not give {id} ({status}): {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    Ok(file)
}

/// The size in bytes of patch `id`'s signed file on the system controller.
pub async fn patch_file_size(
    reference: &Access,
    from: &reqwest::Client,
    id: &str,
) -> Result<u64, String> {
    let url = format!("{}/v1/patch_file/{id}", reference.url.trim_end_matches('/'));
    let mut head = from.head(&url);
    if !reference.token.is_empty() {
        head = head.header("X-Auth-Token", &reference.token);
    }
    let answer = head
        .send()
        .await
        .map_err(|e| format!("the system controller does not give {id}: {}", chain(&e)))?;
    if !answer.status().is_success() {
        return Err(format!(
            "the system controller does not give {id} ({})",
            answer.status()
        ));
    }
    answer
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("the system controller gives no size for {id}"))
}
