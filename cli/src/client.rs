//! A small blocking client for the patching REST API, shared by `sw-patch` and `system`.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// The patching API of a controller, or of a pair (the active one is used).
pub struct ApiClient {
    controllers: failover::Controllers,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:5487`, or several URLs separated by
    /// commas for a controller pair), sending `X-Auth-Token` if given and verifying an
    /// `https://` controller as `trust` says.
    pub fn new(
        base: &str,
        token: Option<String>,
        trust: Option<&tls::Trust>,
    ) -> anyhow::Result<Self> {
        let http = crate::http_builder(trust)?
            .timeout(None::<Duration>)
            .connect_timeout(Duration::from_secs(10))
            // A standby's 307 is handled by the failover (an upload cannot be replayed).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("creating the HTTP client")?;
        Ok(ApiClient {
            controllers: failover::Controllers::parse(base),
            token,
            http,
        })
    }

    fn url(base: &str, action: &str, ids: &[String]) -> String {
        let mut url = format!("{base}/v1/{action}");
        for id in ids {
            url.push('/');
            url.push_str(&percent_encode(id));
        }
        url
    }

    fn send(
        &self,
        build: impl Fn(&str) -> reqwest::blocking::RequestBuilder,
    ) -> anyhow::Result<Value> {
        let response = self
            .controllers
            .send_blocking(failover::Resend::OnlyUnsent, |base| {
                let request = build(base);
                match &self.token {
                    Some(token) => request.header("X-Auth-Token", token),
                    None => request,
                }
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach the patching API at {}: {}",
                    self.controllers.all(),
                    e
                )
            })?;
        let status = response.status();
        let body = crate::read_answer(response).context("reading the API response")?;
        if !status.is_success() {
            let message = body
                .lines()
                .find_map(|l| l.trim().strip_prefix("Error message:"))
                .map(|m| m.trim().to_owned())
                .or_else(|| {
                    serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                })
                .unwrap_or_else(|| body.chars().take(200).collect());
            if status == reqwest::StatusCode::INTERNAL_SERVER_ERROR {
                bail!("An internal error has occurred: {message}");
            }
            bail!("{message} (HTTP {status})");
        }
        serde_json::from_str(&body)
            .with_context(|| format!("the API answered with invalid JSON: {body:.200}"))
    }

    /// GET `/v1/<action>/<ids>?<query>`.
    pub fn get(
        &self,
        action: &str,
        ids: &[String],
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        self.send(|base| self.http.get(Self::url(base, action, ids)).query(query))
    }

    /// POST `/v1/<action>/<ids>?<query>`.
    pub fn post(
        &self,
        action: &str,
        ids: &[String],
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        self.send(|base| self.http.post(Self::url(base, action, ids)).query(query))
    }

    /// POST a patch file as multipart field `file` (as the original client does), with a
    /// progress bar on a terminal.
    pub fn upload(&self, path: &Path) -> anyhow::Result<Value> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("File does not exist: {}", path.display()))?
            .len();
        let name = path.to_string_lossy().into_owned();
        let bar = if std::io::stderr().is_terminal() && len > 1 << 20 {
            let bar = indicatif::ProgressBar::new(len);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(format!("uploading {}", path.display()));
            Some(bar)
        } else {
            None
        };
        // Built anew for each controller tried: a stream cannot be sent twice.
        let result = self.send(|base| {
            let request = self.http.post(Self::url(base, "upload", &[]));
            let Ok(file) = std::fs::File::open(path) else {
                return request;
            };
            if let Some(bar) = &bar {
                bar.set_position(0);
            }
            let reader = ProgressReader {
                inner: file,
                bar: bar.clone(),
            };
            let part = reqwest::blocking::multipart::Part::reader_with_length(reader, len)
                .file_name(name.clone());
            request.multipart(reqwest::blocking::multipart::Form::new().part("file", part))
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        result
    }
}

struct ProgressReader {
    inner: std::fs::File,
    bar: Option<indicatif::ProgressBar>,
}

impl Read for ProgressReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

/// Everything but RFC 3986's unreserved characters is escaped.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `text` as one URL path segment or query value (every tool's URLs are built with this).
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, ESCAPED).to_string()
}

/// Prints an operation result the original client's way; returns whether it failed.
pub fn print_outcome(value: &Value) -> bool {
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (info, warning, error) = (text("info"), text("warning"), text("error"));
    // As the original client prints them: each followed by a newline of its own (the texts
    // end in one already, so a blank line follows).
    if !info.is_empty() {
        println!("{info}");
    }
    if !warning.is_empty() {
        println!("Warning:");
        println!("{warning}");
    }
    if !error.is_empty() {
        eprintln!("Error:");
        eprint!("{error}");
        return true;
    }
    false
}

/// [`print_outcome`] unless the caller printed JSON already; returns whether it failed.
pub fn print_outcome_unless(value: &Value, json: crate::OutputFormat) -> bool {
    if json.structured() {
        return value
            .get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty());
    }
    print_outcome(value)
}
