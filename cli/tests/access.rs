//! Who may do what, on the real daemons. Per-host credentials: a host enrols once with the
//! agent token and gets a credential of its own, which acts only for that host; `drop-host`
//! revokes it at once; the enrolment token itself cannot report or take orders. Roles: a
//! reader's token queries and watches on every API and is refused every change.

mod common;

use common::Site;
use patch_format::testing::TestRpm;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[test]
fn a_host_credential_acts_only_for_its_host_and_dies_with_drop_host() {
    let mut site = Site::new();
    site.start_agent("compute-0", "worker");
    site.wait_for("compute-0 reporting", |s| {
        s.host("compute-0")["patch_current"] == true
    });
    let http = site.http();
    let agent = site.agent_url.clone();
    let b = site.enrol("compute-1");

    let post_report = |token: &str, host: &str| {
        http.post(format!("{agent}/agent/v1/report"))
            .bearer_auth(token)
            .json(&common::report_json(host))
            .send()
            .unwrap()
    };
    let get = |token: &str, path: &str| {
        http.get(format!("{agent}/agent/v1/{path}"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };

    // B reports as itself, not as compute-0; takes its own orders, not compute-0's.
    assert_eq!(post_report(&b, "compute-1").status(), StatusCode::OK);
    let refused = post_report(&b, "compute-0");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().unwrap().contains("belongs to compute-1"));
    assert_eq!(
        get(&b, "orders?hostname=compute-0&wait=0"),
        StatusCode::FORBIDDEN
    );
    assert_eq!(get(&b, "orders?hostname=compute-1&wait=0"), StatusCode::OK);
    assert_eq!(get(&b, "index/repo/19.01"), StatusCode::OK);

    // The enrolment token enrols, and does nothing else; a host enrols once.
    assert_eq!(
        post_report("agent-secret", "compute-1").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("agent-secret", "orders?hostname=compute-1&wait=0"),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("agent-secret", "index/repo/19.01"),
        StatusCode::UNAUTHORIZED
    );
    let again = http
        .post(format!("{agent}/agent/v1/enrol"))
        .bearer_auth("agent-secret")
        .json(&json!({"hostname": "compute-0"}))
        .send()
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again.text().unwrap().contains("drop-host compute-0"));
    let forged = http
        .post(format!("{agent}/agent/v1/enrol"))
        .bearer_auth(&b)
        .json(&json!({"hostname": "compute-9"}))
        .send()
        .unwrap();
    assert_eq!(
        forged.status(),
        StatusCode::UNAUTHORIZED,
        "a host credential cannot enrol"
    );

    // drop-host revokes at once: every call with B is refused.
    site.ok(&["drop-host", "compute-1"]);
    assert_eq!(
        post_report(&b, "compute-1").status(),
        StatusCode::UNAUTHORIZED
    );
    for path in [
        "orders?hostname=compute-1&wait=0",
        "index/repo/19.01",
        "repo-key",
    ] {
        assert_eq!(get(&b, path), StatusCode::UNAUTHORIZED, "{path}");
    }
    // A reinstalled compute-1 enrols again, with a new credential.
    let b2 = site.enrol("compute-1");
    assert_ne!(b, b2);
    assert_eq!(post_report(&b2, "compute-1").status(), StatusCode::OK);

    // compute-0's agent never noticed; a dropped running agent enrols again by itself.
    site.ok(&["drop-host", "compute-0"]);
    site.wait_for("compute-0 back", |s| {
        s.host("compute-0")["patch_current"] == true
    });
}

#[test]
fn enrolment_stops_at_max_hosts_until_a_host_is_dropped() {
    let site = Site::with_toml("max_hosts = 3\n", &[]);
    for i in 0..3 {
        site.enrol(&format!("compute-{i}"));
    }
    let enrol = |host: &str| {
        site.http()
            .post(format!("{}/agent/v1/enrol", site.agent_url))
            .bearer_auth("agent-secret")
            .json(&json!({ "hostname": host }))
            .send()
            .unwrap()
    };
    let refused = enrol("made-up-host");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let why = refused.text().unwrap();
    assert!(
        why.contains("3 hosts are enrolled") && why.contains("max_hosts"),
        "{why}"
    );
    site.ok(&["drop-host", "compute-0"]);
    assert_eq!(enrol("compute-3").status(), StatusCode::OK);
}

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";

/// A patch's repository state (`Available`, `Applied`).
fn repo_state(site: &Site, id: &str) -> String {
    let out = site.ok(&["query", "--format", "json"]);
    serde_json::from_str::<Value>(&out).unwrap()["pd"][id]["repostate"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_reader_token_queries_everywhere_and_changes_nothing() {
    let site = Site::with_toml(
        &format!(
            "auth_tokens = [\"{ADMIN}\"]\nreader_tokens = [\"{READER}\"]\nauth_listen = \"127.0.0.1:0\"\nweb_listen = \"127.0.0.1:0\"\n"
        ),
        &[],
    );
    let auth = site.auth_url.clone().unwrap();
    let patch = site.patch(
        "RO_0001",
        false,
        &[TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n")],
        &[],
    );
    let tool = |bin: &str, url: &str, token: &str, args: &[&str]| {
        std::process::Command::new(bin)
            .args(["--url", url, "--token", token])
            .env("OS_CACERT", &site.ca.ca_cert)
            .args(args)
            .output()
            .unwrap()
    };
    let sw_patch = env!("CARGO_BIN_EXE_sw-patch");
    // REST: queries answer; every change is refused with the reason.
    assert!(tool(sw_patch, &auth, READER, &["query"]).status.success());
    assert!(
        tool(sw_patch, &auth, READER, &["query-hosts"])
            .status
            .success()
    );
    for args in [
        vec!["upload", patch.to_str().unwrap()],
        vec!["apply", "RO_0001"],
        vec!["drop-host", "compute-0"],
        vec!["host-install-async", "compute-0"],
    ] {
        let out = tool(sw_patch, &auth, READER, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("reader's token"),
            "{args:?}: {err}"
        );
    }
    // The admin's upload goes through; the reader still cannot apply it.
    let out = tool(sw_patch, &auth, ADMIN, &["upload", patch.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !tool(sw_patch, &auth, READER, &["apply", "RO_0001"])
            .status
            .success()
    );
    assert_eq!(repo_state(&site, "RO_0001"), "Available");

    // VIM: the strategy and alarms read; creating, deleting and raising are refused.
    let sw_manager = env!("CARGO_BIN_EXE_sw-manager");
    let shown = tool(
        sw_manager,
        &site.vim_url,
        READER,
        &["patch-strategy", "show"],
    );
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let out = tool(
        sw_manager,
        &site.vim_url,
        READER,
        &["patch-strategy", "create"],
    );
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("reader"), "{text}");
    let http = site.http();
    let raw = http
        .delete(format!(
            "{}/api/orchestration/sw-patch/strategy",
            site.vim_url
        ))
        .header("X-Auth-Token", READER)
        .send()
        .unwrap();
    assert_eq!(raw.status(), StatusCode::FORBIDDEN);
    let raw = http
        .post(format!("{}/v1/alarms", site.vim_url))
        .header("X-Auth-Token", READER)
        .json(&json!({"alarm_id": "900.001", "entity_instance_id": "x", "reason_text": "r"}))
        .send()
        .unwrap();
    assert_eq!(raw.status(), StatusCode::FORBIDDEN);

    // Dashboard: a reader logs in and sees the pages; every form is refused.
    let web = site.web_url.clone().unwrap();
    let login = common::http_login(&http, &web, READER);
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let (session, _) = common::cookie(&login, "stx_session").expect("a session cookie");
    let patches = http
        .get(format!("{web}/patches"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(patches.status(), StatusCode::OK);
    let page = patches.text().unwrap();
    assert!(page.contains("RO_0001"));
    let refused = http
        .post(format!("{web}/patches/action/apply"))
        .header("cookie", &session)
        .form(&[("csrf", common::csrf_of(&page).as_str()), ("id", "RO_0001")])
        .send()
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().unwrap().contains("read-only"));
    assert_eq!(repo_state(&site, "RO_0001"), "Available");

    // An id carrying a line break cannot forge an audit line: it is logged escaped (the
    // refusal is logged at the level the test site keeps).
    let forged = http
        .post(format!(
            "{auth}/v1/apply/X%0AUser:%20admin%20From:%2010.9.9.9:1%20Action:%20remove%20ALL"
        ))
        .header("X-Auth-Token", READER)
        .send()
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // Each refusal is in the audit log with who asked and from where.
    let log = std::fs::read_to_string(site.path("controller.log")).unwrap();
    let forged_lines: Vec<&str> = log.lines().filter(|l| l.contains("10.9.9.9")).collect();
    assert!(
        !forged_lines.is_empty(),
        "the forged id is not logged:\n{log}"
    );
    for line in forged_lines {
        assert!(
            line.contains("Action: apply X\\nUser: admin"),
            "a forged line: {line}"
        );
    }
    for expected in [
        "User: reader_tokens[0] From: 127.0.0.1:",
        "Action: apply RO_0001",
        "Action: DELETE /api/orchestration/sw-patch/strategy Outcome: refused (reader)",
        "dashboard: reader_tokens[0] refused (reader)",
    ] {
        assert!(
            log.contains(expected),
            "{expected:?} not in the audit log:\n{log}"
        );
    }
}

/// The dashboard's delay after a wrong token slowed only guesses made one after another;
/// guesses sent at once are counted per source like every other failed authentication.
#[test]
fn parallel_dashboard_logins_from_one_source_are_throttled() {
    let site = Site::with_toml(
        &format!(
            "auth_tokens = [\"{ADMIN}\"]\nweb_listen = \"127.0.0.1:0\"\n[connections]\nmax_failed_auth_per_minute = 5\n"
        ),
        &[],
    );
    let web = site.web_url.clone().unwrap();
    let http = site.http();
    // Thirty login forms first (cookie and CSRF field each), then thirty guesses at once.
    let forms: Vec<(String, String)> = (0..30)
        .map(|_| {
            let form = http.get(format!("{web}/login")).send().unwrap();
            let (cookie, _) = common::cookie(&form, "stx_login").unwrap();
            (cookie, common::csrf_of(&form.text().unwrap()))
        })
        .collect();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = forms
            .iter()
            .enumerate()
            .map(|(i, (cookie, csrf))| {
                let (http, web) = (&http, &web);
                s.spawn(move || {
                    http.post(format!("{web}/login"))
                        .header("cookie", cookie)
                        .form(&[("csrf", csrf.as_str()), ("token", &format!("guess-{i}"))])
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let looked_at = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        looked_at + throttled == 30 && throttled >= 10,
        "{statuses:?}"
    );
    // The source is refused everything, the right token too, until the minute is over.
    let form = http.get(format!("{web}/login")).send().unwrap();
    assert_eq!(form.status().as_u16(), 429);
}

/// A host's report may say it rolled back from patches (a failed health check); only the
/// patches applied here are taken, so a host cannot fill its record with made-up ones.
#[test]
fn a_host_can_say_it_rolled_back_only_from_applied_patches() {
    let site = Site::new();
    let patch = site.patch(
        "P1",
        false,
        &[TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "231\n")],
        &[],
    );
    site.ok(&["upload", patch.to_str().unwrap()]);
    site.ok(&["apply", "P1"]);
    let credential = site.enrol("compute-1");
    let mut report = common::report_json("compute-1");
    report["health"] = json!({
        "state": "failed",
        "detail": "required.d/10-api failed",
        "rolled_back": ["P1", "MADE_UP", "../../etc/passwd"]
    });
    let answer = site
        .http()
        .post(format!("{}/agent/v1/report", site.agent_url))
        .bearer_auth(&credential)
        .json(&report)
        .send()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let host = site.host("compute-1");
    assert_eq!(host["held_patches"], json!(["P1"]), "{host}");
    assert_eq!(host["health"]["state"], "failed", "{host}");
}
