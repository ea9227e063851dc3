//! The web dashboard against a real controller and agents: first with a plain HTTP client
//! (pages render without JavaScript, the login and CSRF rules hold), then in headless
//! Chromium driven over WebDriver through the whole operator flow.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Site;
use common::cluster::{fast_timing, six_hosts};
use fantoccini::{Client, ClientBuilder, Locator};
use patch_format::testing::TestRpm;

const TOKEN: &str = "operator-token-0123456789";

fn web_toml() -> String {
    format!(
        "auth_tokens = [\"{TOKEN}\"]\nweb_listen = \"127.0.0.1:0\"\n{}",
        fast_timing(1)
    )
}

fn sysinv_231() -> TestRpm {
    TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n")
}

use common::{cookie, csrf_of, http_login};

#[test]
fn dashboard_reads_without_javascript_and_refuses_forged_forms() {
    let site = Site::with_toml(&web_toml(), &[]);
    let web = site.web_url.clone().expect("the dashboard listens");
    let http = site.http();
    let patch = site.patch("WEB_0001", false, &[sysinv_231()], &[]);
    site.ok(&["upload", patch.to_str().unwrap()]);

    // Not logged in: every page sends the browser to the login page, remembering the page.
    let r = http.get(format!("{web}/patches")).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fpatches");

    // A wrong token is refused, with a session for nobody.
    let r = http_login(&http, &web, "not-the-token");
    assert_eq!(r.status(), 401);
    assert!(cookie(&r, "stx_session").is_none());
    assert!(r.text().unwrap().contains("The token was not accepted"));

    // A login form posted without its own cookie (a cross-site form) is refused.
    let r = http
        .post(format!("{web}/login"))
        .form(&[("csrf", "x"), ("token", TOKEN)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    let r = http_login(&http, &web, TOKEN);
    assert_eq!(r.status(), 303);
    let (session, header) = cookie(&r, "stx_session").expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=",
        "Path=/",
        "Secure",
    ] {
        assert!(header.contains(attribute), "{header} lacks {attribute}");
    }

    // The tables render on the server: the patch is in the page's HTML as sent.
    let page = http
        .get(format!("{web}/patches"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().unwrap();
    assert!(html.contains("id=\"patch-WEB_0001\""), "{html}");
    // No host reports yet: the patch state is n/a and the repo state column appears.
    assert!(html.contains("<td class=\"state\">n/a</td>"), "{html}");
    assert!(html.contains("<td class=\"repo\">Available</td>"), "{html}");
    let csrf = csrf_of(&html);
    for path in [
        "/system",
        "/hosts",
        "/orchestration",
        "/alarms",
        "/patches/show/WEB_0001",
    ] {
        let r = http
            .get(format!("{web}{path}"))
            .header("cookie", &session)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().unwrap();
        assert!(
            body.contains("<table") || body.contains("No "),
            "{path}: {body}"
        );
    }

    // The precheck runs when asked for, one row per check.
    let r = http
        .get(format!("{web}/orchestration/precheck"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().unwrap();
    for check in [
        "hosts-reporting",
        "repository",
        "required-patches",
        "alarms",
    ] {
        assert!(
            body.contains(&format!("data-check=\"{check}\" data-result=\"pass\"")),
            "{check}: {body}"
        );
    }
    assert!(
        body.contains("id=\"precheck-result\" data-result=\"pass\""),
        "{body}"
    );

    // State-changing forms without the session's CSRF token change nothing.
    for body in [
        vec![("id", "WEB_0001")],
        vec![("id", "WEB_0001"), ("csrf", "forged")],
    ] {
        let r = http
            .post(format!("{web}/patches/action/apply"))
            .header("cookie", &session)
            .form(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().unwrap().contains("security token"));
    }
    let upload = reqwest::blocking::multipart::Form::new()
        .file("file", &patch)
        .unwrap();
    let r = http
        .post(format!("{web}/patches/upload"))
        .header("cookie", &session)
        .multipart(upload)
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "an upload without the token first is refused"
    );
    assert_eq!(site.patch_state("WEB_0001"), "n/a");
    let listing = site.ok(&["query"]);
    assert!(listing.contains("Available"), "{listing}");

    // With the token the same form works, and the outcome is on the next page.
    let r = http
        .post(format!("{web}/patches/action/apply"))
        .header("cookie", &session)
        .form(&[("id", "WEB_0001"), ("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let html = http
        .get(format!("{web}/patches"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(html.contains("WEB_0001 is now in the repo"), "{html}");
    // An API refusal is shown in words.
    http.post(format!("{web}/patches/action/delete"))
        .header("cookie", &session)
        .form(&[("id", "NO_SUCH_PATCH"), ("csrf", csrf.as_str())])
        .send()
        .unwrap();
    let html = http
        .get(format!("{web}/patches"))
        .header("cookie", &session)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        html.contains("class=\"flash error\"") && html.contains("NO_SUCH_PATCH"),
        "{html}"
    );

    // Logging out ends the session on the server, whatever the browser keeps.
    let r = http
        .post(format!("{web}/logout"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = http
        .get(format!("{web}/patches"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
}

/// A ChromeDriver process on a free loopback port, and headless Chromium through it.
struct Browser {
    driver: Child,
    client: Client,
    profile: tempfile::TempDir,
}

/// The base64 SHA-256 of a certificate's public key (SubjectPublicKeyInfo), as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it; computed by openssl.
fn spki_sha256(cert: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -pubkey -noout -in \"$1\" | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl base64 -A",
        )
        .arg("sh")
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Browser {
    async fn start(server_cert: &std::path::Path) -> Browser {
        let chromedriver = which("chromedriver").expect(
            "chromedriver is not installed: install Debian's chromium and chromium-driver \
             (./scripts/test.sh does)",
        );
        let chromium = which("chromium").expect("chromium is not installed (./scripts/test.sh)");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    // The dashboard serves TLS with the site's development certificate: the
                    // browser accepts exactly that key, as if its CA were installed.
                    format!("--ignore-certificate-errors-spki-list={}", spki_sha256(server_cert)),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = caps.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start Chromium through chromedriver: {e}"),
            }
        };
        Browser {
            driver,
            client,
            profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = &self.profile;
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits (the page updating itself, never reloaded) until `css` holds `text`.
async fn wait_text(c: &Client, css: &str, text: &str, limit: Duration) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(t) = el.text().await
        {
            if t.contains(text) {
                return;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let page = match c.find(Locator::Css("main")).await {
        Ok(main) => main.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    panic!("timed out waiting for {css} to show {text:?} (last seen: {last:?}); the page:\n{page}");
}

/// Waits until every element `css` matches has `text`, and there are `count` of them.
async fn wait_all(c: &Client, css: &str, text: &str, count: usize, limit: Duration) {
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < limit {
        if let Ok(els) = c.find_all(Locator::Css(css)).await {
            let mut texts = Vec::new();
            for el in els {
                texts.push(el.text().await.unwrap_or_default());
            }
            if texts.len() == count && texts.iter().all(|t| t == text) {
                return;
            }
            last = texts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {count} × {css} = {text:?} (last seen: {last:?})");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

/// Accepts the confirmation a form asks for.
async fn accept_confirm(c: &Client) {
    let started = Instant::now();
    while c.accept_alert().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no confirmation was asked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn operator_rolls_out_a_patch_in_chromium() {
    let site = six_hosts(&web_toml(), &[]);
    let web = site.web_url.clone().expect("the dashboard listens");
    let patch = site.patch("WEB_0002", false, &[sysinv_231()], &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let browser = Browser::start(&site.ca.server_cert).await;
        let c = &browser.client;
        let result = drive(c, &web, &patch).await;
        let _ = c.clone().close().await;
        result
    });
    // What the pages showed is what the controller holds.
    assert_eq!(site.patch_state("WEB_0002"), "Committed");
    assert!(site.hosts().iter().all(|h| h["patch_current"] == true));
}

async fn drive(c: &Client, web: &str, patch: &Path) {
    let long = Duration::from_secs(120);
    // Log in: a wrong token first.
    c.goto(&format!("{web}/system")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    screenshot(c, "login").await;
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("wrong-token")
        .await
        .unwrap();
    click(c, "#login").await;
    wait_text(c, "#login-error", "not accepted", long).await;
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    click(c, "#login").await;
    wait_text(c, "#system-mode", "duplex", long).await;
    assert_eq!(c.current_url().await.unwrap().path(), "/system");
    wait_text(c, "#hosts-total", "6", long).await;
    screenshot(c, "system").await;

    // A POST without the CSRF token, from the logged-in browser itself, is refused.
    let status = c
        .execute(
            "return fetch('/patches/action/apply', {method: 'POST', \
             body: new URLSearchParams({id: 'WEB_0002'})}).then(r => r.status)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403));

    // Upload the patch file through the form (progress, then the page with the outcome).
    c.goto(&format!("{web}/patches")).await.unwrap();
    c.find(Locator::Id("upload-file"))
        .await
        .unwrap()
        .send_keys(patch.to_str().unwrap())
        .await
        .unwrap();
    click(c, "#upload").await;
    wait_text(c, "#patch-WEB_0002 td.state", "Available", long).await;
    wait_text(c, "#messages", "WEB_0002 is now available", long).await;

    // Apply it.
    click(c, "#patch-WEB_0002 button[data-action='Apply']").await;
    wait_text(c, "#messages", "WEB_0002 is now in the repo", long).await;
    wait_text(c, "#patch-WEB_0002 td.state", "Partial-Apply", long).await;
    screenshot(c, "patches").await;

    // The hosts are no longer patch current.
    c.goto(&format!("{web}/hosts")).await.unwrap();
    wait_all(c, "#hosts td.current", "No", 6, long).await;
    screenshot(c, "hosts").await;

    // A dry run shows the plan and stores nothing.
    c.goto(&format!("{web}/orchestration")).await.unwrap();
    click(c, "#dry-run").await;
    wait_text(c, "#dry-run-plan", "Predicted duration", long).await;
    wait_text(c, "#dry-run-plan", "sw-patch-worker-hosts", long).await;
    assert!(c.find(Locator::Id("no-strategy")).await.is_ok());
    // Create a strategy (workers and storage in parallel) and apply it.
    for (id, value) in [
        ("storage-apply-type", "parallel"),
        ("worker-apply-type", "parallel"),
    ] {
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }
    click(c, "#create").await;
    wait_text(c, "#strategy-state", "ready-to-apply", long).await;
    click(c, "#strategy-actions button[data-action='Apply All']").await;
    accept_confirm(c).await;
    wait_text(c, "#messages", "Applying every stage", long).await;
    wait_text(c, "#strategy-state", "applying", long).await;
    screenshot(c, "orchestration-applying").await;
    // The page follows the rollout by itself.
    wait_text(c, "#strategy-state", "applied", Duration::from_secs(240)).await;
    screenshot(c, "orchestration").await;

    c.goto(&format!("{web}/hosts")).await.unwrap();
    wait_all(c, "#hosts td.current", "Yes", 6, long).await;
    c.goto(&format!("{web}/patches")).await.unwrap();
    wait_text(c, "#patch-WEB_0002 td.state", "Applied", long).await;
    // Lock and unlock a host from its row (the lock asks first).
    c.goto(&format!("{web}/hosts")).await.unwrap();
    click(c, "#host-compute-0 button[data-action='Lock']").await;
    accept_confirm(c).await;
    wait_text(c, "#messages", "Host compute-0 is locked", long).await;
    wait_text(c, "#host-compute-0", "locked", long).await;
    click(c, "#host-compute-0 button[data-action='Unlock']").await;
    wait_text(c, "#messages", "Host compute-0 is unlocked", long).await;

    // Commit: the dry run's "would free" first, then the confirmation.
    c.goto(&format!("{web}/patches")).await.unwrap();
    click(c, "#patch-WEB_0002 a[data-action='Commit']").await;
    wait_text(c, "#commit-plan", "would free", long).await;
    screenshot(c, "commit").await;
    click(c, "#commit-confirm").await;
    wait_text(c, "#patch-WEB_0002 td.state", "Committed", long).await;

    c.goto(&format!("{web}/alarms")).await.unwrap();
    screenshot(c, "alarms").await;
    c.goto(&format!("{web}/patches/show/WEB_0002"))
        .await
        .unwrap();
    wait_text(c, "#patch-details", "sysinv-1.0-231", long).await;
    screenshot(c, "patch-details").await;

    // Log out: the pages ask for a login again.
    click(c, "#logout").await;
    c.goto(&format!("{web}/patches")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
}
