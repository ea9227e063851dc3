//! HTTP clients of the controllers the system controller talks to (its own and each
//! subcloud's): TLS trust of the CA given for each, bounded answers, errors with their causes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::Access;

/// How long one subcloud may take to answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read (thousands of patches are a few MiB).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Patches by id, with their repository state (`Available`, `Applied`, `Committed`).
pub type PatchSet = BTreeMap<String, String>;

/// Why a controller's patches could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The TLS trust could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The request failed or timed out.
    #[error("{0}")]
    Http(String),
    /// The answer was not the patching API's.
    #[error("unexpected answer: {0}")]
    BadAnswer(String),
}

/// An HTTP client for the controller at `access` (named `name` in errors): it trusts the
/// CA given for it, follows no redirect to elsewhere than a pair's active controller, and
/// gives up after `timeout` (none: uploads may take long).
pub fn client_for(
    access: &Access,
    name: &str,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, QueryError> {
    let mut builder = client_builder(access, name)?.redirect(reqwest::redirect::Policy::limited(3));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().map_err(|e| QueryError::Http(e.to_string()))
}

/// A client builder trusting the CA given for `access` (named `name` in errors), or the
/// system's trust store when none is.
pub fn client_builder(access: &Access, name: &str) -> Result<reqwest::ClientBuilder, QueryError> {
    let config = match &access.ca_pem {
        Some(pem) => tls::Trust::CaPem {
            name: format!("{name}'s CA"),
            pem: pem.as_bytes().to_vec(),
        }
        .client_config()?,
        // Loaded once per process by tls: the runner and the audit make clients for every
        // subcloud.
        None => tls::Trust::System.client_config()?,
    };
    Ok(reqwest::Client::builder()
        .connect_timeout(QUERY_TIMEOUT)
        .tls_backend_preconfigured(config))
}

/// An answer's body, refused beyond [`MAX_ANSWER_BYTES`] (whoever answers cannot make the
/// system controller exhaust its memory).
pub async fn read_bounded(
    mut response: reqwest::Response,
    url: &str,
) -> Result<Vec<u8>, QueryError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| QueryError::Http(format!("{url}: {}", chain(&e))))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(QueryError::BadAnswer(format!(
                "{url}: more than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes (reqwest's own message leaves out why a connection failed).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
