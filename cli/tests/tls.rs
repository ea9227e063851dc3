//! TLS on the controller's remote listeners, from outside: the real daemon with a
//! development CA, the real clients, a passive observer in the middle, certificate reload on
//! SIGHUP, and the limits every listener keeps (idle and dripping connections).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "operator-secret-token-0123456789";

struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
    addrs: Value,
    ca: tls::dev_ca::DevCa,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// A controller serving TLS on its authenticated API and strategy API, with the extra
    /// TOML `toml`.
    fn start(toml: &str) -> Daemon {
        let (dir, _key) = common::work_dir(&[]);
        let d = dir.path();
        std::fs::write(d.join("tokens"), format!("{TOKEN}\n")).unwrap();
        let ca = tls::dev_ca::create(&d.join("tls"), &[]).unwrap();
        // The files the daemon serves, copied so a test can replace them.
        std::fs::copy(&ca.server_cert, d.join("cert.pem")).unwrap();
        std::fs::copy(&ca.server_key, d.join("key.pem")).unwrap();
        std::fs::write(
            d.join("controller.toml"),
            format!(
                "state_dir = {:?}\nrelease = \"19.01\"\n{toml}",
                d.join("state")
            ),
        )
        .unwrap();
        let (child, addrs) = common::spawn_with_addresses(
            common::controller()
                .arg("--config")
                .arg(d.join("controller.toml"))
                .arg("--keyring")
                .arg(d.join("keyring"))
                .args(["--listen", "127.0.0.1:0", "--auth-listen", "127.0.0.1:0"])
                .arg("--auth-tokens-file")
                .arg(d.join("tokens"))
                .arg("--tls-cert")
                .arg(d.join("cert.pem"))
                .arg("--tls-key")
                .arg(d.join("key.pem"))
                .env("STX_PATCH_LOG", "warn"),
        );
        Daemon {
            dir,
            child,
            addrs,
            ca,
        }
    }

    fn addr(&self, which: &str) -> String {
        self.addrs[which].as_str().unwrap().to_owned()
    }

    fn sw_patch(&self, url: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sw-patch"))
            .args(["--url", url, "--token", TOKEN])
            .args(args)
            .env_remove("OS_CACERT")
            .output()
            .unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn clients_verify_the_controller_and_a_wrong_ca_is_refused() {
    let daemon = Daemon::start("");
    let url = format!("https://{}", daemon.addr("auth_api"));
    let ca = daemon.ca.ca_cert.to_str().unwrap().to_owned();

    let out = daemon.sw_patch(&url, &["--os-cacert", &ca, "query"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Patch ID"));
    // OS_CACERT, as the OpenStack clients read it.
    let out = Command::new(env!("CARGO_BIN_EXE_sw-patch"))
        .args(["--url", &url, "--token", TOKEN, "query"])
        .env("OS_CACERT", &ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // No CA given: the system's trust store does not know the development CA.
    let out = daemon.sw_patch(&url, &["query"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));

    // Another CA: refused before any request is sent.
    let other = tls::dev_ca::create(&daemon.dir.path().join("other"), &[]).unwrap();
    let out = daemon.sw_patch(
        &url,
        &["--os-cacert", other.ca_cert.to_str().unwrap(), "query"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));

    // sw-manager and fm verify the strategy API the same way.
    let vim = format!("https://{}", daemon.addr("vim_api"));
    for (bin, args) in [
        (env!("CARGO_BIN_EXE_sw-manager"), ["patch-strategy", "show"]),
        (env!("CARGO_BIN_EXE_fm"), ["alarm-list", "--uuid"]),
    ] {
        let run = |cacert: &str| {
            Command::new(bin)
                .args(["--url", &vim, "--token", TOKEN, "--os-cacert", cacert])
                .args(args)
                .output()
                .unwrap()
        };
        let good = run(&ca);
        assert!(good.status.success(), "{bin}: {}", stderr(&good));
        let bad = run(other.ca_cert.to_str().unwrap());
        assert!(
            !bad.status.success(),
            "{bin} talked to a server its CA did not sign"
        );
    }

    // --insecure talks (still encrypted) and says what it gives up.
    let out = daemon.sw_patch(&url, &["--insecure", "query"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not verified"), "{}", stderr(&out));

    // Plain HTTP to a TLS listener gets no answer an HTTP client could use.
    let out = daemon.sw_patch(&format!("http://{}", daemon.addr("auth_api")), &["query"]);
    assert!(!out.status.success());

    // The loopback plain API stays plain, for the original client.
    let out = daemon.sw_patch(&format!("http://{}", daemon.addr("api")), &["query"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A TCP relay between a client and the controller that keeps every byte it passes on.
struct Observer {
    addr: String,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Observer {
    fn between(upstream: String) -> Observer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let server = TcpStream::connect(&upstream).unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let log = log.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            log.lock().unwrap().extend_from_slice(&buf[..n]);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Observer { addr, seen }
    }

    fn saw(&self, needle: &[u8]) -> bool {
        self.seen
            .lock()
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    }
}

#[test]
fn a_passive_observer_sees_no_token_over_tls_and_sees_it_over_plain_http() {
    let daemon = Daemon::start("");
    let ca = daemon.ca.ca_cert.to_str().unwrap().to_owned();

    let tapped = Observer::between(daemon.addr("auth_api"));
    let out = daemon.sw_patch(
        &format!("https://{}", tapped.addr),
        &["--os-cacert", &ca, "query"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        tapped.seen.lock().unwrap().len() > 1000,
        "the exchange went through the observer"
    );
    assert!(!tapped.saw(TOKEN.as_bytes()), "the token crossed in clear");
    assert!(!tapped.saw(b"X-Auth-Token") && !tapped.saw(b"x-auth-token"));

    // The same observer on the plain loopback API reads everything: that is why it stays
    // on loopback, and why the capture above means something.
    let plain = Observer::between(daemon.addr("api"));
    let out = Command::new(env!("CARGO_BIN_EXE_sw-patch"))
        .args([
            "--url",
            &format!("http://{}", plain.addr),
            "--token",
            TOKEN,
            "query",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(plain.saw(TOKEN.as_bytes()));
}

fn replace(from: &Path, to: &Path) {
    let tmp: PathBuf = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn sighup_reloads_the_certificate_without_a_restart() {
    let daemon = Daemon::start("");
    let url = format!("https://{}", daemon.addr("auth_api"));
    let next = tls::dev_ca::create(&daemon.dir.path().join("next"), &[]).unwrap();
    let query = |ca: &Path| daemon.sw_patch(&url, &["--os-cacert", ca.to_str().unwrap(), "query"]);
    assert!(query(&daemon.ca.ca_cert).status.success());
    assert!(!query(&next.ca_cert).status.success());

    replace(&next.server_cert, &daemon.dir.path().join("cert.pem"));
    replace(&next.server_key, &daemon.dir.path().join("key.pem"));
    let pid = daemon.child.id().to_string();
    let hangup = || {
        let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(sent.success());
    };
    hangup();
    let start = Instant::now();
    while !query(&next.ca_cert).status.success() {
        assert!(start.elapsed() < Duration::from_secs(10), "not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!query(&daemon.ca.ca_cert).status.success());

    // A broken file on reload: the certificate in use stays, the daemon keeps serving.
    std::fs::write(daemon.dir.path().join("cert.pem"), "garbage").unwrap();
    hangup();
    std::thread::sleep(Duration::from_millis(300));
    assert!(query(&next.ca_cert).status.success());
}

#[test]
fn a_remote_listener_without_tls_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), format!("{TOKEN}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sw-patch-controller"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args([
            "--release",
            "19.01",
            "--auth-listen",
            "0.0.0.0:0",
            "--vim-listen",
            "off",
        ])
        .arg("--auth-tokens-file")
        .arg(dir.path().join("tokens"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("auth_listen 0.0.0.0:0 is not a loopback address and has no TLS")
            && err.contains("tls-init"),
        "{err}"
    );

    // tls-init makes the files the message points to, and refuses to overwrite them.
    let tls_dir = dir.path().join("tls");
    let init = |d: &Path| {
        Command::new(env!("CARGO_BIN_EXE_sw-patch-controller"))
            .arg("tls-init")
            .arg(d)
            .args(["--name", "controller-0"])
            .output()
            .unwrap()
    };
    let out = init(&tls_dir);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem"] {
        assert!(tls_dir.join(f).is_file(), "{f}");
    }
    let again = init(&tls_dir);
    assert!(!again.status.success());
}

#[test]
fn idle_and_dripping_connections_are_closed_while_operators_are_served() {
    let daemon = Daemon::start(
        "[connections]\nhead_timeout_secs = 1\nbody_idle_timeout_secs = 1\nbody_min_bytes_per_sec = 1024\n",
    );
    let ca = daemon.ca.ca_cert.to_str().unwrap().to_owned();
    let url = format!("https://{}", daemon.addr("auth_api"));
    // 300 connections that never speak, and one that drips a request head.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(daemon.addr("auth_api")).unwrap())
        .collect();
    let mut drip = TcpStream::connect(daemon.addr("api")).unwrap();
    drip.write_all(b"GET /v1/query HTTP/1.1\r\n").unwrap();

    let out = daemon.sw_patch(&url, &["--os-cacert", &ca, "query"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let start = Instant::now();
    for mut conn in idle {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 1];
        // Closed by the server: end of stream (or a reset), not a read timeout.
        match conn.read(&mut buf) {
            Ok(0) => {}
            Ok(_) => panic!("an idle TLS connection got bytes"),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        }
    }
    assert!(start.elapsed() < Duration::from_secs(8));
    drip.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = drip.write_all(b"Host: x\r\n");
    let _ = drip.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "a dripped head was served"
    );

    // A body dripping one byte a second is cut off, and the upload refused.
    let mut slow = TcpStream::connect(daemon.addr("api")).unwrap();
    slow.write_all(
        b"POST /v1/upload?filename=a.patch HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n",
    )
    .unwrap();
    // The bytes are a real gzip stream's ("hello"), so the verifier keeps waiting for more
    // and only the pace can end the upload (dripping junk was refused as "not gzip" when
    // its second byte came in just under the pace's grace period).
    const GZIP_HELLO: [u8; 25] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9,
        0x07, 0x00, 0x86, 0xa6, 0x10, 0x36, 0x05, 0x00, 0x00, 0x00,
    ];
    let started = Instant::now();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut answer = Vec::new();
    for byte in GZIP_HELLO {
        if started.elapsed() >= Duration::from_secs(15) || slow.write_all(&[byte]).is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(900));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a 1 byte/s body was kept for {:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.contains("slower than") || answer.contains("stalled"),
        "{answer}"
    );
}

#[test]
fn token_guessing_from_one_source_is_throttled_even_in_parallel() {
    let daemon = Daemon::start("[connections]\nmax_failed_auth_per_minute = 5\n");
    let ca = tls::Trust::CaBundle(daemon.ca.ca_cert.clone());
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(ca.client_config().unwrap())
        .build()
        .unwrap();
    let url = format!("https://{}/v1/query", daemon.addr("auth_api"));
    // Five waves of ten guesses at once: once five have failed, the source gets nothing but
    // 429 (a wave already in flight may still be looked at).
    let mut statuses: Vec<u16> = Vec::new();
    for wave in 0..5 {
        statuses.extend(std::thread::scope(|s| {
            let handles: Vec<_> = (0..10)
                .map(|i| {
                    let (http, url) = (&http, &url);
                    s.spawn(move || {
                        http.get(url)
                            .header("X-Auth-Token", format!("guess-{wave}-{i}"))
                            .send()
                            .unwrap()
                            .status()
                            .as_u16()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<u16>>()
        }));
    }
    let looked_at = statuses.iter().filter(|s| **s == 401).count();
    let refused_unseen = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        looked_at <= 15 && refused_unseen >= 35 && looked_at + refused_unseen == 50,
        "{statuses:?}"
    );
    // Blocked for the rest of the minute, even with the right token.
    let blocked = http.get(&url).header("X-Auth-Token", TOKEN).send().unwrap();
    assert_eq!(blocked.status().as_u16(), 429);
    assert!(blocked.headers().contains_key("retry-after"));
    // The loopback plain API has no tokens to guess, and is not affected.
    let out = daemon.sw_patch(&format!("http://{}", daemon.addr("api")), &["query"]);
    assert!(out.status.success());
}
