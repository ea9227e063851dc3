use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;

/// What a fake controller does with each connection, in turn.
#[derive(Clone, Copy)]
enum Reply {
    /// `200` with this body.
    Ok(&'static str),
    /// `503` with this body.
    Busy(&'static str),
    /// `307` naming this URL index among the servers started (none: no header).
    Standby(Option<usize>),
    /// Read the request, close without answering.
    Hang,
}

/// Starts one fake controller per script on loopback; returns their URLs.
fn servers(scripts: Vec<Vec<Reply>>) -> Vec<String> {
    let listeners: Vec<TcpListener> = scripts
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    for (listener, script) in listeners.into_iter().zip(scripts) {
        let urls = urls.clone();
        std::thread::spawn(move || {
            for reply in script {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, header, body) = match reply {
                    Reply::Ok(body) => ("200 OK", String::new(), body),
                    Reply::Busy(body) => ("503 Service Unavailable", String::new(), body),
                    Reply::Standby(to) => (
                        "307 Temporary Redirect",
                        to.map(|i| format!("X-Stx-Active-Url: {}/\r\n", urls[i]))
                            .unwrap_or_default(),
                        "not active",
                    ),
                    Reply::Hang => continue,
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
    }
    urls
}

/// A URL nothing listens on.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn blocking_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn get(c: &Controllers, resend: Resend) -> Result<(u16, String), FailoverError> {
    let http = blocking_client();
    c.send_blocking(resend, |base| http.get(format!("{base}/v1/query")))
        .map(|r| (r.status().as_u16(), r.text().unwrap()))
}

#[test]
fn urls_are_split_and_trimmed() {
    let c = Controllers::parse(" http://a:1/ ,, http://b:2");
    assert_eq!(c.base(), "http://a:1");
    assert_eq!(c.all(), "http://a:1, http://b:2");
    c.switch(None);
    assert_eq!(c.base(), "http://b:2");
    c.switch(Some("http://c:3".into()));
    assert_eq!(c.all(), "http://a:1, http://b:2, http://c:3");
    assert!(matches!(
        get(&Controllers::parse(""), Resend::Always),
        Err(FailoverError::NoUrl)
    ));
}

#[test]
fn a_standby_names_the_active_one_which_joins_the_list() {
    // The list knows only the standby; the active one is at the second server.
    let urls = servers(vec![vec![Reply::Standby(Some(1))], vec![Reply::Ok("fine")]]);
    let c = Controllers::new([&urls[0]]);
    assert_eq!(get(&c, Resend::OnlyUnsent).unwrap(), (200, "fine".into()));
    assert_eq!(c.base(), urls[1]);
    assert_eq!(c.all(), format!("{}, {}", urls[0], urls[1]));
}

#[test]
fn a_controller_handing_over_or_down_is_passed_over() {
    let urls = servers(vec![
        vec![Reply::Busy("handing over")],
        vec![Reply::Ok("fine")],
    ]);
    let c = Controllers::new([closed_url(), urls[0].clone(), urls[1].clone()]);
    assert_eq!(get(&c, Resend::OnlyUnsent).unwrap(), (200, "fine".into()));
    assert_eq!(c.base(), urls[1]);
}

#[test]
fn when_no_controller_serves_the_last_refusal_is_the_answer() {
    // Its body says why (e.g. retry in a moment), which beats "unreachable".
    let urls = servers(vec![
        vec![Reply::Busy("retry in a moment")],
        vec![Reply::Standby(None)],
    ]);
    let c = Controllers::new([urls[0].clone(), urls[1].clone(), closed_url()]);
    assert_eq!(
        get(&c, Resend::OnlyUnsent).unwrap(),
        (307, "not active".into())
    );
    let c = Controllers::new([closed_url()]);
    let err = get(&c, Resend::Always).unwrap_err();
    assert!(
        matches!(&err, FailoverError::Unreachable { last } if last.starts_with("cannot reach")),
        "{err}"
    );
}

#[test]
fn a_request_without_an_answer_is_resent_only_when_idempotent() {
    let urls = servers(vec![
        vec![Reply::Hang, Reply::Hang],
        vec![Reply::Ok("fine")],
    ]);
    let c = Controllers::new([urls[0].clone(), urls[1].clone()]);
    let err = get(&c, Resend::OnlyUnsent).unwrap_err();
    assert!(matches!(err, FailoverError::NoAnswer { .. }), "{err}");
    assert_eq!(c.base(), urls[0], "a lost request does not move the client");
    assert_eq!(get(&c, Resend::Always).unwrap(), (200, "fine".into()));
}

#[tokio::test]
async fn the_async_client_follows_the_same_rules() {
    let urls = servers(vec![
        vec![Reply::Standby(Some(2)), Reply::Standby(Some(2))],
        vec![Reply::Hang, Reply::Hang],
        vec![Reply::Busy("handing over"), Reply::Ok("fine")],
    ]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let c = Controllers::new([urls[1].clone(), urls[0].clone()]);
    let send = || {
        c.send(Resend::Always, |base| {
            http.get(format!("{base}/agent/v1/orders"))
        })
    };
    // No answer (resent: idempotent) → a standby → the active it names (joins) → 503: every
    // URL was tried once, the last refusal is the answer.
    let first = send().await.unwrap();
    assert_eq!(first.status(), 503);
    assert_eq!(first.text().await.unwrap(), "handing over");
    // The same path again; now the active one serves.
    let second = send().await.unwrap();
    assert_eq!(second.text().await.unwrap(), "fine");
    assert_eq!(c.base(), urls[2]);
}
