//! SIGKILL the controller at random moments while a strategy applies a reboot-required patch
//! to six real agents: after each restart the strategy resumes, and it ends `applied` with
//! every host installed exactly once and none left locked.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::Site;
use common::cluster::{HOSTS, apply_patch, fast_timing, six_hosts};
use serde_json::Value;

fn strategy(site: &Site) -> Option<Value> {
    let out = site.run(
        "sw-manager",
        &["patch-strategy", "show", "--format", "json"],
    );
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// One line per step of the apply phase's stages that have started: what a hang is waiting on.
fn apply_summary(strategy: &Value) -> String {
    let phase = &strategy["apply-phase"];
    let mut out = format!(
        "apply phase: current stage {}, {}%",
        phase["current-stage"], phase["completion-percentage"]
    );
    for stage in phase["stages"].as_array().into_iter().flatten() {
        if stage["result"] == "initial" {
            continue;
        }
        out += &format!(
            "\n stage {} {}: {} (step {})",
            stage["stage-id"], stage["stage-name"], stage["result"], stage["current-step"]
        );
        for step in stage["steps"].as_array().into_iter().flatten() {
            out += &format!(
                "\n  {} {} {} {} {}",
                step["step-id"],
                step["step-name"],
                step["entity-names"],
                step["result"],
                step["reason"]
            );
        }
    }
    out
}

#[test]
fn sigkill_during_apply_resumes_and_finishes() {
    // Serial everywhere and a 3 s settle per stage: the apply lasts long enough for 20 kills.
    let mut site = six_hosts(&fast_timing(3), &[]);
    apply_patch(&site, "RR_CRASH", true, &[]);
    let create = site.run("sw-manager", &["patch-strategy", "create", "--wait"]);
    assert!(create.status.success());
    let apply = site.run("sw-manager", &["patch-strategy", "apply"]);
    assert!(apply.status.success());

    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("strategy crash test seed {seed}");
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Kill at random moments until 30 kills have landed during the apply, then let it finish
    // (kills faster than a loaded machine makes progress would starve it forever).
    let start = Instant::now();
    let mut kills = 0;
    let last = loop {
        std::thread::sleep(Duration::from_millis(150 + rand(850)));
        let s = strategy(&site).expect("the strategy API answers");
        let state = s["state"].as_str().unwrap_or("").to_owned();
        if state != "applying" {
            break s;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let hosts = site.hosts();
            if std::env::var_os("STX_TEST_LOGS").is_some() {
                eprintln!("logs kept in {}", site.dir.path().display());
                let _ = std::mem::replace(&mut site.dir, tempfile::tempdir().unwrap()).keep();
            }
            panic!(
                "no end after {kills} kills; where the apply stands:\n{}\nhosts: {hosts:#?}",
                apply_summary(&s)
            );
        }
        if kills < 30 {
            site.restart_controller();
            kills += 1;
        }
    };
    let s = &last;
    eprintln!("{kills} kills during the apply");
    assert_eq!(s["state"], "applied", "{s:#}");
    assert!(kills >= 20, "only {kills} kills landed during the apply");
    for h in site.hosts() {
        assert_eq!(h["patch_current"], true, "{h}");
        assert_eq!(h["administrative"], "unlocked", "{h}");
        assert_eq!(h["requires_reboot"], false, "{h}");
    }
    // One install order per host: none was installed twice.
    for (host, _) in HOSTS {
        let entry: Value = serde_json::from_slice(
            &std::fs::read(site.path(&format!("state/hosts/{host}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(entry["install_seq"], 1, "{host}: {entry}");
        assert_eq!(
            std::fs::read_to_string(site.root(host).join("usr/lib/sysinv/api.py")).unwrap(),
            "VERSION = 231\n"
        );
    }
}
