//! Controller redundancy: two controller daemons (own state directories), agents that follow
//! the active one, synchronous replication, swact, catch-up, stale controllers, crashes.

mod common;

use std::time::Duration;

use common::cluster::fast_timing;
use common::pair::{Pair, state_files};
use patch_format::testing::TestRpm;
use serde_json::Value;

fn sysinv(release: &str) -> TestRpm {
    TestRpm::new("sysinv", "1.0", release)
        .file("/usr/lib/sysinv/api.py", format!("VERSION = {release}\n"))
}

fn app_deps(pair: &Pair, urls: &str) -> Value {
    let out = pair.run_at(
        "sw-patch",
        urls,
        &["query-app-dependencies", "--format", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn mutations_reach_the_standby_before_they_return_and_swact_goes_both_ways() {
    let mut pair = Pair::new("");
    pair.start_agent("controller-0", "controller");
    pair.start_agent("controller-1", "controller");
    pair.wait_for("both hosts reporting", |p| p.hosts().len() == 2);
    assert_eq!(pair.active(), Some(0));
    let patch = pair.patch("PAIR_0001", false, &[sysinv("231")], &[]);

    // Through the standby's URL first: it sends the client on to the active one.
    let standby_first = format!("{},{}", pair.api_url(1), pair.api_url(0));
    let out = pair.run_at(
        "sw-patch",
        &standby_first,
        &["upload", patch.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        pair.store_in_sync(),
        "the standby holds the upload when the call returns"
    );
    pair.ok(&["apply", "PAIR_0001"]);
    assert!(
        pair.store_in_sync(),
        "the standby holds the apply when the call returns"
    );
    assert_eq!(
        Pair::repo_states(&pair.state_dir(1)),
        vec![("PAIR_0001".to_owned(), "applied".to_owned())]
    );
    // The standby serves reads from its copy.
    let out = pair.run_at("sw-patch", &pair.api_url(1), &["query"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("PAIR_0001"));

    // A mutation sent to the standby alone is refused in words, with the way to the active.
    let r = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/v1/remove/PAIR_0001", pair.api_url(1)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{}/v1/remove/PAIR_0001", pair.api_url(0))
    );
    let text = r.text().unwrap();
    assert!(
        text.contains("controller-1 is not active; active is controller-0 at"),
        "{text}"
    );

    // The active controller cannot be locked; the standby can.
    let out = pair.run("system", &["host-lock", "controller-0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Can not lock an active controller."));

    // Swact to controller-1, change something there, swact back.
    let out = pair.ok_with("system", &["host-swact", "controller-0"]);
    assert!(
        out.contains("controller-0 is now standby; controller-1 is active"),
        "{out}"
    );
    assert_eq!(pair.active(), Some(1));
    let show = pair.system_show(0);
    assert_eq!(show["active_controller"], "controller-1");
    assert_eq!(show["system_mode"], "duplex");
    pair.ok_with("system", &["host-lock", "controller-0"]);
    pair.ok_with("system", &["host-unlock", "controller-0"]);
    pair.ok(&["remove", "PAIR_0001"]);
    assert!(pair.store_in_sync());
    assert_eq!(
        Pair::repo_states(&pair.state_dir(0)),
        vec![("PAIR_0001".to_owned(), "available".to_owned())]
    );
    // The agents follow: both report to controller-1 now.
    pair.wait_for("hosts reporting to controller-1", |p| {
        p.hosts()
            .iter()
            .all(|h| h["secs_since_ack"].as_u64().unwrap_or(99) <= 2)
    });
    let out = pair.ok_with("system", &["host-swact", "controller-1"]);
    assert!(out.contains("controller-0 is active"), "{out}");
    assert_eq!(pair.active(), Some(0));
    pair.ok(&["delete", "PAIR_0001"]);
    assert!(pair.store_in_sync());
    assert!(Pair::repo_states(&pair.state_dir(1)).is_empty());
}

/// In controller-1's place (it must be down): an endpoint that reports itself standby at term
/// 1 (holding some other state than the active's) and answers every other request with
/// `status_line` and `{"error": error}`.
fn fake_standby(pair: &Pair, status_line: &'static str, error: &'static str) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind(pair.peer_addr(1)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let (status, answer) = if request_line.starts_with("GET /ha/v1/status") {
                (
                    "200 OK",
                    r#"{"host":"controller-1","term":1,"role":"standby","active":"controller-0","urls":{},"digest":"an-older-state"}"#
                        .to_owned(),
                )
            } else {
                (
                    status_line,
                    serde_json::json!({ "error": error }).to_string(),
                )
            };
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
}

/// The precheck's controllers-in-sync row, asked of controller-0.
fn precheck_sync_row(pair: &Pair) -> Value {
    let out = pair.run_at(
        "sw-patch",
        &pair.api_url(0),
        &["precheck", "--format", "json"],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "precheck answered {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let row = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "controllers-in-sync")
        .cloned()
        .unwrap();
    // The command's exit status follows the verdict.
    assert_eq!(out.status.success(), report["result"] != "fail", "{report}");
    row
}

/// Precheck: a pair in sync passes; a standby that is down, or up with another state, fails
/// the check with what to do (and so the strategy create that runs it).
#[test]
fn the_precheck_fails_while_the_standby_is_down_or_out_of_sync() {
    let mut pair = Pair::plain("");
    let row = precheck_sync_row(&pair);
    assert_eq!(row["result"], "pass", "{row}");
    assert_eq!(
        row["detail"], "controller-1 answers and is in sync",
        "{row}"
    );

    pair.kill(1);
    let row = precheck_sync_row(&pair);
    assert_eq!(row["result"], "fail", "{row}");
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .starts_with("the other controller does not answer"),
        "{row}"
    );
    assert!(row["fix"].as_str().unwrap().contains("start it"), "{row}");

    fake_standby(&pair, "500 Internal Server Error", "not taken");
    let row = precheck_sync_row(&pair);
    assert_eq!(row["result"], "fail", "{row}");
    assert_eq!(
        row["detail"], "controller-1 is not in sync with this controller",
        "{row}"
    );
    assert!(
        row["fix"]
            .as_str()
            .unwrap()
            .contains("wait for replication"),
        "{row}"
    );
}

/// A standby that is up but fails every exchange: the change is not acknowledged, and the
/// caller is told why.
#[test]
fn a_standby_that_cannot_take_a_change_fails_the_call() {
    // The stand-in standby speaks plain HTTP.
    let mut pair = Pair::plain("");
    pair.kill(1);
    fake_standby(
        &pair,
        "500 Internal Server Error",
        "no space left on device",
    );
    let out = pair.run_at(
        "sw-patch",
        &pair.api_url(0),
        &["report-app-dependencies", "--app", "refused", "P1"],
    );
    assert!(!out.status.success(), "the call must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the standby controller could not take it")
            && stderr.contains("no space left on device"),
        "{stderr}"
    );
}

/// A swact whose standby turns out to be at a newer term fails in words (it once waited
/// forever on a lock it held itself), and the controller goes on serving.
#[test]
fn a_swact_refused_for_a_stale_term_fails_and_leaves_the_controller_serving() {
    // The stand-in standby speaks plain HTTP.
    let mut pair = Pair::plain("");
    pair.kill(1);
    fake_standby(
        &pair,
        "409 Conflict",
        "stale term 1: controller-1 is at term 7",
    );
    let out = pair.run_at("system", &pair.api_url(0), &["host-swact", "controller-0"]);
    assert!(!out.status.success(), "the swact must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Cannot swact: the standby could not take the final state")
            && stderr.contains("stale term"),
        "{stderr}"
    );
    assert_eq!(pair.role(0), "active");
    let out = pair.run_at("sw-patch", &pair.api_url(0), &["query"]);
    assert!(out.status.success());
}

#[test]
fn a_standby_that_missed_50_mutations_catches_up() {
    let mut pair = Pair::new("");
    pair.kill(1);
    // With the standby down the active goes on (and says nothing is lost: it holds them).
    for i in 0..50 {
        pair.ok(&[
            "report-app-dependencies",
            "--app",
            &format!("app{i}"),
            &format!("P{i}"),
        ]);
    }
    assert!(!pair.in_sync());
    pair.wait_for("system show to see the standby gone", |p| {
        p.system_show(0)["controllers"][1]["reachable"] == false
    });
    pair.start(1);
    pair.wait_for("the standby to catch up", Pair::in_sync);
    pair.wait_for("system show to say the pair is in sync", |p| {
        p.system_show(0)["controllers"][1]["in_sync"] == true
    });
    let deps = app_deps(&pair, &pair.api_url(1));
    assert_eq!(deps.as_object().map(|o| o.len()), Some(50), "{deps}");
    assert_eq!(deps["app49"], serde_json::json!(["P49"]));
}

#[test]
fn a_stale_controller_brought_back_cannot_overwrite_the_newer_state() {
    let mut pair = Pair::new("");
    pair.ok(&["report-app-dependencies", "--app", "before", "P1"]);
    // The active dies; the operator promotes the standby.
    pair.kill(0);
    let out = pair.run_at(
        "system",
        &pair.api_url(1),
        &["host-swact", "--force", "controller-0"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pair.role(1), "active");
    pair.ok(&["report-app-dependencies", "--app", "after", "P2"]);
    // The old active comes back believing it is active at the old term: it steps down and
    // takes the newer state instead of pushing its own.
    assert_eq!(pair.role(0), "active");
    pair.start(0);
    pair.wait_for("the stale controller to step down", |p| {
        p.role(0) == "standby"
    });
    pair.wait_for("the pair to converge", Pair::in_sync);
    assert_eq!(pair.role(1), "active");
    let deps = app_deps(&pair, &pair.api_url(0));
    assert_eq!(deps["after"], serde_json::json!(["P2"]), "{deps}");
    // Mutations sent to it go to the active one.
    let out = pair.run_at(
        "sw-patch",
        &pair.api_url(0),
        &["report-app-dependencies", "--app", "later", "P3"],
    );
    assert!(out.status.success());
    let deps = app_deps(&pair, &pair.api_url(1));
    assert_eq!(deps["later"], serde_json::json!(["P3"]));
    let ha0: Value =
        serde_json::from_slice(&std::fs::read(pair.path("c0/ha.json")).unwrap()).unwrap();
    let ha1: Value =
        serde_json::from_slice(&std::fs::read(pair.path("c1/ha.json")).unwrap()).unwrap();
    assert_eq!(ha0["term"], ha1["term"]);
    assert!(ha1["term"].as_u64().unwrap() >= 2);
}

#[test]
fn the_active_controller_is_patched_through_a_swact_by_the_strategy() {
    let mut pair = Pair::new(&fast_timing(1));
    for (host, personality) in [
        ("controller-0", "controller"),
        ("controller-1", "controller"),
        ("compute-0", "worker"),
    ] {
        pair.start_agent(host, personality);
    }
    pair.wait_for("hosts reporting and current", |p| {
        let hosts = p.hosts();
        hosts.len() == 3 && hosts.iter().all(|h| h["patch_current"] == true)
    });
    let patch = pair.patch("PAIR_RR_0001", true, &[sysinv("231")], &[]);
    pair.ok(&["upload", patch.to_str().unwrap()]);
    pair.ok(&["apply", "PAIR_RR_0001"]);
    pair.wait_for("hosts settled on the applied patch", |p| {
        p.hosts()
            .iter()
            .all(|h| h["interim_state"] == false && h["patch_current"] == false)
    });
    pair.ok_with("sw-manager", &["patch-strategy", "create", "--wait"]);
    pair.ok_with("sw-manager", &["patch-strategy", "apply"]);
    // The strategy swacts controller-0 away (it is patched last), and controller-1 carries on.
    let started = std::time::Instant::now();
    loop {
        let out = pair.run(
            "sw-manager",
            &["patch-strategy", "show", "--format", "json"],
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let state = v["state"].as_str().unwrap_or("").to_owned();
        if state == "applied" {
            break;
        }
        let details = || {
            String::from_utf8_lossy(
                &pair
                    .run("sw-manager", &["patch-strategy", "show", "--details"])
                    .stdout,
            )
            .into_owned()
        };
        assert!(
            !state.ends_with("failed") && !state.starts_with("abort"),
            "strategy {state}: {}",
            details()
        );
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the strategy did not finish: {}",
            details()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(pair.active(), Some(1), "controller-0 was swacted away");
    let hosts = pair.hosts();
    assert!(
        hosts.iter().all(|h| h["patch_current"] == true),
        "{hosts:?}"
    );
    for host in ["controller-0", "controller-1", "compute-0"] {
        let api = std::fs::read_to_string(pair.root(host).join("usr/lib/sysinv/api.py")).unwrap();
        assert_eq!(api, "VERSION = 231\n", "{host}");
    }
    // And back.
    pair.ok_with("system", &["host-swact", "controller-1"]);
    assert_eq!(pair.active(), Some(0));
    pair.ok_with("sw-manager", &["patch-strategy", "delete"]);
    assert!(pair.store_in_sync());
    assert_eq!(pair.ok(&["query"]).matches("Applied").count(), 1);
}

/// SIGKILLs either controller at random moments while mutations and swacts run; after every
/// restart the pair converges, nothing acknowledged is lost, and no patch is in two states.
#[test]
fn controllers_killed_at_random_moments_converge_and_lose_nothing_acknowledged() {
    let mut pair = Pair::new("");
    let patch = pair.patch("CRASH_0001", false, &[sysinv("231")], &[]);
    pair.ok(&["upload", patch.to_str().unwrap()]);
    let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64;
    let mut next = move |n: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % n
    };
    let mut acknowledged: Vec<String> = Vec::new();
    let urls = pair.api_urls();
    let kills = 30;
    let mut active_changes = 0;
    let mut last_active = pair.active();
    for round in 0..kills {
        // A burst of mutations (and now and then a swact or an apply/remove) in the
        // background while one controller is killed at a random moment.
        let worker = {
            let urls = urls.clone();
            let round_apps: Vec<String> = (0..6).map(|k| format!("r{round}k{k}")).collect();
            let swact = next(3) == 0;
            let flip = next(2) == 0;
            std::thread::spawn(move || {
                let sw_patch = env!("CARGO_BIN_EXE_sw-patch");
                let system = env!("CARGO_BIN_EXE_system");
                let mut done = Vec::new();
                for (k, app) in round_apps.iter().enumerate() {
                    let out = std::process::Command::new(sw_patch)
                        .args([
                            "--url",
                            &urls,
                            "report-app-dependencies",
                            "--app",
                            app,
                            "P1",
                        ])
                        .output()
                        .unwrap();
                    if out.status.success() {
                        done.push(app.clone());
                    }
                    if k == 2 && swact {
                        // Whichever is active hands over (the other name is refused).
                        for who in ["controller-0", "controller-1"] {
                            let swacted = std::process::Command::new(system)
                                .args(["--url", &urls, "host-swact", who])
                                .output()
                                .is_ok_and(|o| o.status.success());
                            if swacted {
                                break;
                            }
                        }
                    }
                    if k == 3 && flip {
                        for action in ["apply", "remove"] {
                            let _ = std::process::Command::new(sw_patch)
                                .args(["--url", &urls, action, "CRASH_0001"])
                                .output();
                        }
                    }
                }
                done
            })
        };
        std::thread::sleep(Duration::from_millis(next(400)));
        let victim = next(2) as usize;
        pair.kill(victim);
        std::thread::sleep(Duration::from_millis(next(200)));
        pair.start(victim);
        acknowledged.extend(worker.join().unwrap());
        // Both up: the pair settles on one active controller and one state.
        pair.wait_for("one active controller", |p| p.active().is_some());
        if pair.active() != last_active {
            active_changes += 1;
            last_active = pair.active();
        }
        pair.wait_for("the pair to converge", Pair::in_sync);
        for i in 0..2 {
            let states = Pair::repo_states(&pair.state_dir(i));
            assert_eq!(states.len(), 1, "one repo state per patch: {states:?}");
        }
    }
    assert!(
        acknowledged.len() >= kills,
        "most mutations were acknowledged: {}",
        acknowledged.len()
    );
    assert!(
        active_changes >= 2,
        "swacts happened between kills: {active_changes}"
    );
    for i in 0..2 {
        let deps = app_deps(&pair, &pair.api_url(i));
        for app in &acknowledged {
            assert_eq!(
                deps[app],
                serde_json::json!(["P1"]),
                "controller-{i} lost {app}"
            );
        }
    }
    assert_eq!(
        state_files(&pair.state_dir(0)),
        state_files(&pair.state_dir(1))
    );
    assert_eq!(
        [pair.role(0), pair.role(1)]
            .iter()
            .filter(|r| *r == "active")
            .count(),
        1
    );
}
