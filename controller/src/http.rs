//! Helpers every HTTP adapter shares: the JSON answer, and how a mutation sent to a
//! controller that is not active is redirected to the active one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::ha::Urls;
use crate::service::Service;

/// A 200 answer with a JSON body.
pub(crate) fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// The answer to a mutation sent to a controller that is not active: `307` to the same path
/// on the active one (clients that follow redirects just work; `X-Stx-Active-Url` names it
/// for those that pick their next URL themselves), or `503` when the active one is unknown.
/// The body says it in words: an `Error message:` line, or a fault body when `fault`.
pub(crate) fn not_active_response(
    service: &Service,
    pick: fn(&Urls) -> Option<String>,
    uri: &axum::http::Uri,
    fault: bool,
) -> Option<axum::response::Response> {
    use axum::http::header;
    let (message, base) = service.not_active(pick)?;
    let body = if fault {
        serde_json::json!({"faultcode": "Client", "faultstring": message, "debuginfo": null})
            .to_string()
    } else {
        format!("Error message: {message}\n")
    };
    let content_type = if fault {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = match &base {
        Some(base) => {
            let location = format!(
                "{}{}",
                base.trim_end_matches('/'),
                uri.path_and_query().map_or("/", |p| p.as_str())
            );
            (
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, location),
                    (header::CONTENT_TYPE, content_type.into()),
                ],
                body,
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
    };
    if let Some(base) = base
        && let Ok(v) = axum::http::HeaderValue::from_str(&base)
    {
        response.headers_mut().insert("x-stx-active-url", v);
    }
    Some(response)
}

/// A change sent to a controller that is not active: `Err` with its refusal (see
/// [`not_active_response`]) once the request's body has been read to its end (at most
/// `body_limit` bytes), else `Ok` with the request to carry out.
pub(crate) async fn refuse_if_not_active(
    service: &Service,
    pick: fn(&Urls) -> Option<String>,
    request: axum::extract::Request,
    fault: bool,
    body_limit: u64,
) -> Result<axum::extract::Request, Response> {
    match not_active_response(service, pick, request.uri(), fault) {
        None => Ok(request),
        Some(refusal) => {
            drain_body(request.into_body(), body_limit).await;
            Err(refusal)
        }
    }
}

/// How long a refused request's body is read for, at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads and discards what is left of a request's body (at most `limit` bytes, for at most a
/// minute) before the request is refused. A client that sends its whole body before it reads
/// the answer (reqwest's blocking client, so `sw-patch upload`) otherwise finds the connection
/// closed under its body ("receiver is gone") and never sees the answer: a standby's `307`
/// that would have sent it on to the active controller.
async fn drain_body(body: axum::body::Body, limit: u64) {
    use futures_util::StreamExt;
    let mut chunks = body.into_data_stream();
    let mut read = 0_u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = chunks.next().await {
            read += chunk.len() as u64;
            if read > limit {
                break;
            }
        }
    })
    .await;
}

/// Parses `a=b&c=d` strictly: a `%` must start a two-digit hex escape and the decoded text
/// must be UTF-8 (a lenient decoder would silently turn garbage into other values).
pub(crate) fn parse_query(raw: &str) -> Result<Vec<(String, String)>, String> {
    fn decode(part: &str) -> Result<String, String> {
        // `percent_decode` passes a malformed escape through; refuse it instead.
        let bytes = part.as_bytes();
        let malformed = bytes.iter().enumerate().any(|(i, b)| {
            *b == b'%'
                && !bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
        if malformed {
            return Err(format!("bad %-escape in {part:?}"));
        }
        percent_encoding::percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("{part:?} is not UTF-8"))
    }
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Outside text as it goes into a log line: control characters escaped, so a value with a
/// `%0A` in it cannot start a forged line of the audit log.
pub(crate) fn log_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The address a request came from (the listener records it), for audit lines.
pub(crate) fn peer(request: &axum::extract::Request) -> String {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string())
}

/// An answer's outcome for the audit log: `ok`, the error an answer carries (the patching
/// API says "error" in a 200), or the HTTP status. Only answers known to be small (at most
/// 1 MiB) are looked into; any other passes through untouched, its outcome the status.
pub(crate) async fn outcome(response: Response) -> (Response, String) {
    use axum::body::HttpBody;
    const LOOKED_INTO: u64 = 1 << 20;
    let status = response.status();
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= LOOKED_INTO);
    if !small {
        return (response, format!("HTTP {status}"));
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, LOOKED_INTO as usize).await {
        Ok(b) => b,
        Err(e) => {
            // The body failed while being read: the client would have got the same failure.
            return (
                Response::from_parts(parts, axum::body::Body::empty()),
                format!("HTTP {status} (answer failed: {e})"),
            );
        }
    };
    let error = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("faultstring"))
                .and_then(|e| e.as_str())
                .map(|e| e.trim().to_owned())
        })
        .filter(|e| !e.is_empty());
    let outcome = match (status.is_success(), error) {
        (true, None) => "ok".to_owned(),
        (_, Some(error)) => format!("refused: {error}"),
        (false, None) => format!("HTTP {status}"),
    };
    (
        Response::from_parts(parts, axum::body::Body::from(bytes)),
        outcome,
    )
}

/// A mutation as every API carries it out: a reader's is refused (the API's own refusal from
/// `refuse`, given the reason); any other runs, and is audited with who asked, from where and
/// the outcome read from the answer.
pub(crate) async fn audited_mutation(
    operator: Option<&crate::auth::Operator>,
    from: &str,
    action: &str,
    refuse: impl FnOnce(&str) -> Response,
    run: impl std::future::Future<Output = Response>,
) -> Response {
    let who = operator.map_or("local", |o| o.name.as_str());
    if let Some(reader) = operator.filter(|o| !o.may_mutate()) {
        tracing::warn!(
            target: "audit",
            user = who,
            from,
            action,
            outcome = "refused (reader)",
            "User: {who} From: {from} Action: {action} Outcome: refused (reader)"
        );
        return refuse(&crate::auth::reader_refusal(reader));
    }
    let (response, outcome) = outcome(run.await).await;
    let outcome = log_text(&outcome);
    tracing::info!(
        target: "audit",
        user = who,
        from,
        action,
        outcome = %outcome,
        "User: {who} From: {from} Action: {action} Outcome: {outcome}"
    );
    response
}

/// A router that remembers what it mounts (method and path pattern), so the API
/// description can be checked against the routes actually served.
pub(crate) struct Routes<S> {
    router: axum::Router<S>,
    mounted: Vec<(axum::http::Method, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub(crate) fn new() -> Routes<S> {
        Routes {
            router: axum::Router::new(),
            mounted: Vec::new(),
        }
    }

    /// Mounts `handler` for `method` on `path` (several methods on one path merge).
    pub(crate) fn at<H, T>(
        mut self,
        method: axum::http::Method,
        path: &'static str,
        handler: H,
    ) -> Self
    where
        H: axum::handler::Handler<T, S>,
        T: 'static,
    {
        let filter = axum::routing::MethodFilter::try_from(method.clone())
            .expect("routes are mounted for GET, POST, PUT or DELETE");
        self.router = self.router.route(path, axum::routing::on(filter, handler));
        self.mounted.push((method, path));
        self
    }

    /// `GET path`.
    pub(crate) fn get<H: axum::handler::Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.at(axum::http::Method::GET, path, handler)
    }

    /// `POST path`.
    pub(crate) fn post<H: axum::handler::Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.at(axum::http::Method::POST, path, handler)
    }

    /// `DELETE path`.
    pub(crate) fn delete<H: axum::handler::Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.at(axum::http::Method::DELETE, path, handler)
    }

    /// What is mounted: (method, path pattern), as text.
    #[cfg(test)]
    pub(crate) fn mounted_pairs(&self) -> Vec<(String, String)> {
        self.mounted
            .iter()
            .map(|(method, path)| (method.to_string(), (*path).to_owned()))
            .collect()
    }

    /// The router.
    pub(crate) fn into_router(self) -> axum::Router<S> {
        self.router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that refuses an upload with a `307`, draining the body first when `drain`;
    /// what a blocking client streaming 16 MiB to it gets back.
    fn refused_upload(drain: bool) -> Result<u16, String> {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let refuse = move |request: axum::extract::Request| async move {
            if drain {
                drain_body(request.into_body(), 64 << 20).await;
            }
            (
                StatusCode::TEMPORARY_REDIRECT,
                "Error message: not active\n",
            )
        };
        let app = axum::Router::new().route("/v1/upload", axum::routing::post(refuse));
        runtime.spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let body = std::io::Cursor::new(vec![0_u8; 16 << 20]);
        client
            .post(format!("http://{addr}/v1/upload"))
            .body(reqwest::blocking::Body::new(body))
            .send()
            .map(|answer| answer.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    }

    /// The bug it prevents: a standby answered an upload's `307` before reading its body, and
    /// `sw-patch`, still sending, saw "receiver is gone" instead of the answer.
    #[test]
    fn a_client_still_sending_its_body_gets_the_refusal_not_a_closed_connection() {
        assert!(
            refused_upload(false).is_err(),
            "undrained, the streaming client should lose the answer (the bug this guards)"
        );
        assert_eq!(refused_upload(true), Ok(307));
    }

    #[tokio::test]
    async fn the_audit_outcome_reads_small_answers_and_never_eats_a_large_one() {
        let refused = ok(serde_json::json!({"info": "", "error": "P1 is not available\n"}));
        let (_, said) = outcome(refused).await;
        assert_eq!(said, "refused: P1 is not available");
        let (_, said) = outcome(ok(serde_json::json!({"info": "done", "error": ""}))).await;
        assert_eq!(said, "ok");

        let large = vec![b'x'; 2 << 20];
        let (response, said) = outcome(Response::new(axum::body::Body::from(large.clone()))).await;
        assert_eq!(said, "HTTP 200 OK");
        let body = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .unwrap();
        assert_eq!(body.len(), large.len());

        let streamed =
            axum::body::Body::from_stream(futures_util::stream::iter([Ok::<_, std::io::Error>(
                axum::body::Bytes::from_static(b"{}"),
            )]));
        let (response, said) = outcome(Response::new(streamed)).await;
        assert_eq!(said, "HTTP 200 OK");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"{}");
    }

    #[test]
    fn log_text_cannot_start_a_new_line() {
        assert_eq!(log_text("P1"), "P1");
        assert_eq!(
            log_text("P1\nUser: admin Action: commit P2"),
            "P1\\nUser: admin Action: commit P2"
        );
        assert_eq!(log_text("a\rb\u{1b}c"), "a\\rb\\u{1b}c");
    }
}
