//! Serving a router on a TCP listener with the limits every listener has: an optional TLS
//! layer (the certificate reloadable), a cap on open connections, a time limit on the TLS
//! handshake and on each request head (which is also how long an idle keep-alive connection
//! stays open), and a minimum pace for request bodies. Without these, idle or dripping
//! connections could hold every file descriptor or worker until the daemon stops serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::config::ListenerLimits;

/// A router and how it is served.
pub(crate) struct Serving {
    pub(crate) router: axum::Router,
    pub(crate) tls: Option<Arc<tls::ServerTls>>,
    pub(crate) limits: ListenerLimits,
}

/// Accepts connections until `shutdown`, then lets open requests finish (for at most the
/// head timeout).
pub(crate) async fn serve(
    listener: TcpListener,
    serving: Serving,
    mut shutdown: watch::Receiver<bool>,
) {
    let Serving {
        router,
        tls,
        limits,
    } = serving;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            BodyPace::from(&limits),
            pace_bodies,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(FailedAuth::new(&limits)),
            throttle_failed_auth,
        ));
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or memory: wait instead of spinning; open connections
                // close at their timeouts and free some.
                tracing::warn!("accept error: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // At the cap: closed at once, so the kernel's queue does not fill with clients
            // that would wait for nothing.
            if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    "{} connections open (max_connections); refusing {peer} and others",
                    limits.max_connections
                );
                last_full_warning = Some(Instant::now());
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let watcher = graceful.watcher();
        let head_timeout = limits.head_timeout();
        tokio::spawn(async move {
            let _slot = slot;
            let service =
                router.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                });
            let service = TowerToHyperService::new(service);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .keep_alive(true);
            match acceptor {
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(head_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake with {peer} failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                None => {
                    let conn = http.serve_connection(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.head_timeout(), graceful.shutdown()).await;
}

/// Failed authentications per source address: after `max_failures` within `window`, the
/// source's requests are answered 429 without being looked at until the window ends, so
/// tokens cannot be guessed at network speed (in parallel or not).
pub(crate) struct FailedAuth {
    max_failures: u32,
    window: Duration,
    sources: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, Instant)>>,
}

/// Sources remembered at most (the oldest windows are dropped beyond it).
const MAX_SOURCES: usize = 100_000;

impl FailedAuth {
    fn new(limits: &ListenerLimits) -> FailedAuth {
        FailedAuth {
            max_failures: limits.max_failed_auth_per_minute,
            window: Duration::from_secs(60),
            sources: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// How long `ip` must still wait, if it is blocked.
    fn blocked(&self, ip: std::net::IpAddr) -> Option<Duration> {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = sources.get(&ip)?;
        let left = self.window.checked_sub(since.elapsed())?;
        (*count >= self.max_failures).then_some(left)
    }

    fn failed(&self, ip: std::net::IpAddr) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&ip) {
            let window = self.window;
            sources.retain(|_, (_, since)| since.elapsed() < window);
            if sources.len() >= MAX_SOURCES {
                // Still full of live windows: this source goes uncounted rather than the
                // table growing without bound.
                return;
            }
        }
        let entry = sources.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        if entry.0 == self.max_failures {
            tracing::warn!(target: "audit", "{} failed authentications from {ip} within a minute: its requests are refused for a minute", self.max_failures);
        }
    }
}

/// The source failures are counted for: the address, or for IPv6 its /64 (one host usually
/// holds a whole /64, and would otherwise have 2^64 fresh addresses to guess from).
fn source_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

async fn throttle_failed_auth(
    axum::extract::State(failed): axum::extract::State<Arc<FailedAuth>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| source_of(c.0.ip()));
    let Some(ip) = ip else {
        return next.run(req).await;
    };
    if let Some(left) = failed.blocked(ip) {
        let secs = left.as_secs().max(1);
        return (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, secs.to_string())],
            format!(
                "Error message: too many failed authentications from {ip}; try again in {secs} s\n"
            ),
        )
            .into_response();
    }
    let response = next.run(req).await;
    if response.status() == axum::http::StatusCode::UNAUTHORIZED {
        // Counted first, then slowed: guesses sent at once are counted as they are looked
        // at, not only when the slow answers go out (the dashboard's delay once let a
        // thousand parallel guesses through before the first was counted).
        failed.failed(ip);
        tokio::time::sleep(FAILED_AUTH_DELAY).await;
    }
    response
}

/// How long an answer to a failed authentication waits: guessing one after another gets slow.
const FAILED_AUTH_DELAY: Duration = Duration::from_millis(400);

/// The pace a request body must keep.
#[derive(Clone, Copy, Debug)]
struct BodyPace {
    /// Longest wait for the next chunk.
    idle: Duration,
    /// Bytes per second on average, enforced once `idle` has passed since the body began.
    min_rate: u64,
}

impl From<&ListenerLimits> for BodyPace {
    fn from(limits: &ListenerLimits) -> Self {
        BodyPace {
            idle: Duration::from_secs(limits.body_idle_timeout_secs),
            min_rate: limits.body_min_bytes_per_sec,
        }
    }
}

/// Wraps every request body so a client that stalls, or drips slower than the pace, gets
/// an error from the body (and the handler's refusal) instead of holding its worker.
async fn pace_bodies(
    axum::extract::State(pace): axum::extract::State<BodyPace>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let paced = Body::from_stream(paced(body, pace));
    next.run(axum::extract::Request::from_parts(parts, paced))
        .await
}

fn paced(
    body: Body,
    pace: BodyPace,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send {
    let started = Instant::now();
    futures_util::stream::unfold(
        (body.into_data_stream(), 0u64, false),
        move |(mut stream, received, done)| async move {
            if done {
                return None;
            }
            let failed =
                |message: String| std::io::Error::new(std::io::ErrorKind::TimedOut, message);
            match tokio::time::timeout(pace.idle, stream.next()).await {
                Err(_) => Some((
                    Err(failed(format!(
                        "the request body stalled for {} s",
                        pace.idle.as_secs()
                    ))),
                    (stream, received, true),
                )),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), (stream, received, true))),
                Ok(Some(Ok(chunk))) => {
                    let received = received + chunk.len() as u64;
                    let elapsed = started.elapsed();
                    if elapsed > pace.idle
                        && received < pace.min_rate.saturating_mul(elapsed.as_secs())
                    {
                        return Some((
                            Err(failed(format!(
                                "the request body arrives slower than {} bytes/s",
                                pace.min_rate
                            ))),
                            (stream, received, true),
                        ));
                    }
                    Some((Ok(chunk), (stream, received, false)))
                }
            }
        },
    )
    // Readers may poll again after the end (an upload drains what follows a refusal);
    // `unfold` panics then, a fused stream says "ended" again.
    .fuse()
}

/// Lets the daemon hold as many connections as the system allows: the soft limit on open
/// files (often 1,024) is raised to the hard one, so the connection caps, not the
/// descriptor limit, decide when connections are refused.
pub(crate) fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the open-files limit: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_paced_body_can_be_polled_after_its_end() {
        let pace = BodyPace::from(&ListenerLimits::default());
        let mut body = std::pin::pin!(paced(Body::from("a patch"), pace));
        assert_eq!(body.next().await.unwrap().unwrap(), "a patch");
        // What the upload's drain does after a whole body: no panic, still the end.
        assert!(body.next().await.is_none());
        assert!(body.next().await.is_none());
    }

    fn throttle(max_failures: u32) -> FailedAuth {
        FailedAuth::new(&ListenerLimits {
            max_failed_auth_per_minute: max_failures,
            ..ListenerLimits::default()
        })
    }

    #[test]
    fn a_source_is_blocked_after_its_failures_and_an_ipv6_host_is_one_source() {
        let failed = throttle(3);
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(other));
        let mapped: std::net::IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            source_of(mapped),
            "10.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
        for ip in [a, b, a] {
            assert!(failed.blocked(source_of(ip)).is_none());
            failed.failed(source_of(ip));
        }
        assert!(failed.blocked(source_of(b)).is_some());
        assert!(failed.blocked(source_of(other)).is_none());
    }

    #[test]
    fn the_table_of_sources_stays_bounded() {
        let failed = throttle(1);
        for i in 0..(MAX_SOURCES as u32 + 10) {
            failed.failed(std::net::IpAddr::V4(std::net::Ipv4Addr::from(i)));
        }
        let len = failed.sources.lock().unwrap().len();
        assert_eq!(len, MAX_SOURCES);
    }
}
