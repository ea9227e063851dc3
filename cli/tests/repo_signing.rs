//! An attacker in the middle between an agent and its controller: a relay that forwards the
//! agent's requests to the real controller and changes the answers. The agent pins the
//! controller's repository key; every kind of forged answer is refused, and the host's root
//! and rpm database stay as they were.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::Site;
use patch_format::testing::TestRpm;

/// What the relay does to the answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// Passes everything on unchanged.
    None,
    /// Flips a byte of every RPM download.
    TamperPackage,
    /// Changes a byte of the repository index, keeping the controller's signature.
    TamperIndex,
    /// Replaces the index's signature with one by another key.
    OtherKey,
    /// Answers with an index signed by the real key before the last one the agent accepted.
    Replay,
    /// Answers with an index signed by the real key that has expired.
    Expired,
    /// Drops the signature header.
    Unsigned,
}

#[derive(Clone)]
struct Relay {
    upstream: String,
    http: reqwest::Client,
    attack: Arc<Mutex<Attack>>,
    /// The controller's own key (the attacker stole a copy of an old envelope's signing
    /// ability only in the replay and expiry cases, to show the agent's own rules hold).
    real_key: Arc<repo_sign::Signer>,
    other_key: Arc<repo_sign::Signer>,
}

async fn relay(
    axum::extract::State(relay): axum::extract::State<Relay>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!("{}{}", relay.upstream, uri.path_and_query().unwrap());
    let mut request = relay.http.request(method, &url).body(body);
    if let Some(auth) = headers.get("authorization") {
        request = request.header("authorization", auth);
    }
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let signature = answer
        .headers()
        .get(repo_sign::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = answer.bytes().await.unwrap().to_vec();
    let attack = *relay.attack.lock().unwrap();
    let path = uri.path();
    let is_index = path.starts_with("/agent/v1/index/repo/");
    let mut signature = signature;
    match attack {
        Attack::TamperPackage if path.ends_with(".rpm") => {
            let last = body.len() - 1;
            body[last] ^= 0xff;
        }
        Attack::TamperIndex if is_index => {
            let at = body.windows(6).position(|w| w == b"sysinv").unwrap();
            body[at] = b'S';
        }
        Attack::OtherKey if is_index => {
            signature = Some(relay.other_key.sign(&body).unwrap());
        }
        Attack::Replay | Attack::Expired if is_index => {
            // Re-seal the index the controller just sent with the real key, as an envelope
            // from an hour ago: valid for two hours (replay) or for one minute (expired).
            let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let index = envelope["index"].to_string();
            let (mut old, _) =
                repo_sign::Envelope::seal(&relay.real_key, ("repo", "19.01"), &index, 1, 1)
                    .map(|(b, h)| (serde_json::from_slice::<serde_json::Value>(&b).unwrap(), h))
                    .unwrap();
            let hour_ago = repo_sign::now_ms() - 3_600_000;
            old["serial"] = hour_ago.into();
            old["expires"] = (hour_ago
                + if attack == Attack::Replay {
                    7_200_000
                } else {
                    60_000
                })
            .into();
            body = serde_json::to_vec(&old).unwrap();
            signature = Some(relay.real_key.sign(&body).unwrap());
        }
        Attack::Unsigned if is_index => signature = None,
        _ => {}
    }
    let mut response = (status, body).into_response();
    if let Some(s) = signature {
        response.headers_mut().insert(
            axum::http::HeaderName::from_static(repo_sign::SIGNATURE_HEADER),
            s.parse().unwrap(),
        );
    }
    response
}

fn state_of(root: &Path) -> std::collections::BTreeMap<std::path::PathBuf, (u32, Vec<u8>)> {
    // The whole root, the rpm database (var/lib/rpm) included; only the agent's own state
    // (var/lib/stx-patch) is left out.
    common::root_snapshot(root)
}

#[test]
fn an_agent_behind_an_attacker_installs_nothing_forged() {
    let mut site = Site::new();
    let key_file = repo_sign::KeyFile::new(site.path("state/repo-signing"));
    let other_dir = tempfile::tempdir().unwrap();
    let other = repo_sign::KeyFile::new(other_dir.path());
    other.create_if_missing().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let attack = Arc::new(Mutex::new(Attack::None));
    let trust = tls::Trust::CaBundle(site.ca.ca_cert.clone());
    let relay_state = Relay {
        upstream: site.agent_url.clone(),
        http: reqwest::Client::builder()
            .tls_backend_preconfigured(trust.client_config().unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        attack: attack.clone(),
        real_key: Arc::new(repo_sign::Signer::new(key_file.clone())),
        other_key: Arc::new(repo_sign::Signer::new(other)),
    };
    let relay_url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(relay).with_state(relay_state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    });

    // compute-0 reaches the controller only through the relay (plain HTTP: the attacker
    // sees and changes everything), with the controller's key pinned from a trusted copy.
    let host = "compute-0";
    let agent = |extra: &[&str]| {
        let mut cmd = common::agent_command(
            &relay_url,
            &site.path("agent-token"),
            &site.root(host),
            host,
            "worker",
        );
        cmd.arg("--repo-key").arg(key_file.public()).args(extra);
        cmd
    };
    assert!(agent(&["--install-local"]).status().unwrap().success());
    site.agents.push(agent(&[]).spawn().unwrap());
    site.wait_for("compute-0 current", |s| {
        s.host(host)["patch_current"] == true
    });

    let p1 = site.patch(
        "P1",
        false,
        &[TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n")],
        &[],
    );
    site.ok(&["upload", p1.to_str().unwrap()]);
    site.ok(&["apply", "P1"]);
    site.wait_for("compute-0 sees P1", |s| {
        s.host(host)["patch_current"] == false
    });

    let before = state_of(&site.root(host));
    for (attack_kind, expected) in [
        (Attack::TamperPackage, "sha256"),
        (Attack::TamperIndex, "does not verify"),
        (Attack::OtherKey, "not by the pinned controller key"),
        (Attack::Unsigned, "not signed"),
        (Attack::Expired, "expired"),
    ] {
        *attack.lock().unwrap() = attack_kind;
        let out = site.run("sw-patch", &["host-install", host]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("Installation failed"),
            "{attack_kind:?}: {text}"
        );
        assert_eq!(
            state_of(&site.root(host)),
            before,
            "{attack_kind:?} changed the root"
        );
        let log = agent_error(&site, host);
        assert!(
            log.to_lowercase().contains(expected),
            "{attack_kind:?}: {log}"
        );
    }

    // Honest answers install; after that, an index from before is a replay.
    *attack.lock().unwrap() = Attack::None;
    site.ok(&["host-install", host]);
    assert_eq!(
        std::fs::read_to_string(site.root(host).join("usr/lib/sysinv/api.py")).unwrap(),
        "VERSION = 231\n"
    );
    let p2 = site.patch(
        "P2",
        false,
        &[TestRpm::new("sysinv", "1.0", "232").file("/usr/lib/sysinv/api.py", "VERSION = 232\n")],
        &[],
    );
    site.ok(&["upload", p2.to_str().unwrap()]);
    site.ok(&["apply", "P2"]);
    site.wait_for("compute-0 sees P2", |s| {
        s.host(host)["patch_current"] == false
    });
    let installed = state_of(&site.root(host));
    *attack.lock().unwrap() = Attack::Replay;
    let out = site.run("sw-patch", &["host-install", host]);
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stdout).contains("failed"));
    assert_eq!(
        state_of(&site.root(host)),
        installed,
        "a replayed index changed the root"
    );
    assert!(agent_error(&site, host).contains("older than the one accepted before"));
}

/// The reason the host's last install failed, as the controller shows it.
fn agent_error(site: &Site, host: &str) -> String {
    let out = site.ok(&["query-hosts", "--format", "json"]);
    let hosts: serde_json::Value = serde_json::from_str(&out).unwrap();
    hosts["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["hostname"] == host)
        .map(|h| h.to_string())
        .unwrap_or_default()
}
