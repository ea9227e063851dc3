//! `sw-patch precheck` and the precheck every strategy starts with, on the real daemons: a
//! clean cluster passes; each condition that makes patching go wrong is produced in turn
//! and reported with what to do; a strategy is refused while one fails, `--force` or not.

mod common;

use std::process::Output;

use common::Site;
use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Status};
use serde_json::Value;

/// `sw-patch precheck ARGS` as JSON, and whether it exited zero.
fn precheck(site: &Site, args: &[&str]) -> (Value, bool) {
    let mut all = vec!["precheck", "--format", "json"];
    all.extend_from_slice(args);
    let out = site.run("sw-patch", &all);
    let value: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "precheck {args:?}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (value, out.status.success())
}

/// The outcome of one check: (result, detail, fix).
fn check(value: &Value, name: &str) -> (String, String, String) {
    let c = value["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {value}"));
    let text = |k: &str| c[k].as_str().unwrap_or("").to_owned();
    (text("result"), text("detail"), text("fix"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A signed patch `id` requiring `requires`, with `rpm`.
fn patch_requiring(site: &Site, id: &str, requires: &[&str], rpm: TestRpm) -> String {
    let mut m = PatchMetadata::new(id, "19.01");
    m.status = Status::Released;
    m.reboot_required = false;
    m.requires = requires.iter().map(|r| (*r).to_owned()).collect();
    let mut b = PatchBuilder::new(m);
    b.add_rpm(&rpm.build(&site.path("rpms")), &[]).unwrap();
    let path = b.write_to_dir(&site.path("patches"), &site.key).unwrap().0;
    path.to_string_lossy().into_owned()
}

#[test]
fn each_unfit_condition_is_found_with_its_fix_and_a_clean_cluster_passes() {
    // A reserve no disk has: any host about to receive packages is short of space.
    let mut site = Site::with_toml(
        "precheck_disk_reserve_bytes = 1000000000000000\nhost_offline_after_secs = 3\n",
        &[],
    );
    site.start_agent("compute-0", "worker");
    site.start_agent("compute-1", "worker");
    site.wait_for("both hosts current", |s| {
        ["compute-0", "compute-1"]
            .iter()
            .all(|h| s.host(h)["patch_current"] == true)
    });

    // Clean: every check passes, as a table and as JSON.
    let table = site.ok(&["precheck"]);
    for name in [
        "hosts-reporting",
        "install-failures",
        "controllers-in-sync",
        "disk-space",
        "repository",
        "required-patches",
        "alarms",
        "strategy",
    ] {
        assert!(table.contains(name), "{name} missing:\n{table}");
    }
    assert!(
        table.contains("| Check") && table.ends_with("Precheck: pass\n"),
        "{table}"
    );
    let (clean, ok) = precheck(&site, &[]);
    assert!(ok);
    assert_eq!(clean["result"], "pass", "{clean}");
    assert!(
        check(&clean, "controllers-in-sync")
            .1
            .contains("single controller")
    );

    // A strategy that exists is reported (it must be deleted before another is created).
    let manager = |args: &[&str]| site.run("sw-manager", args);
    // (Its build fails: nothing needs applying. It exists all the same.)
    let _ = manager(&["patch-strategy", "create", "--wait"]);
    let (value, ok) = precheck(&site, &[]);
    assert!(ok, "a finished strategy only warns");
    assert_eq!(check(&value, "strategy").0, "warn", "{value}");
    assert!(
        check(&value, "strategy")
            .2
            .contains("patch-strategy delete")
    );
    assert!(manager(&["patch-strategy", "delete"]).status.success());

    // Required patches: one not in the store fails, one not applied warns.
    let p2 = patch_requiring(&site, "P2", &["P1"], TestRpm::new("newtool", "1.0", "1"));
    site.ok(&["upload", &p2]);
    let (value, ok) = precheck(&site, &["P2"]);
    assert!(!ok);
    let (result, detail, fix) = check(&value, "required-patches");
    assert_eq!(result, "fail");
    assert!(
        detail.contains("P2 requires P1, which is not in the store"),
        "{detail}"
    );
    assert!(fix.contains("sw-patch upload"), "{fix}");
    let (value, _) = precheck(&site, &["NOPE"]);
    assert!(
        check(&value, "required-patches")
            .1
            .contains("NOPE is not in the store")
    );
    let p1 = patch_requiring(
        &site,
        "P1",
        &[],
        TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n"),
    );
    site.ok(&["upload", &p1]);
    let (value, ok) = precheck(&site, &["P2"]);
    assert!(ok, "warnings exit zero: {value}");
    let (result, detail, fix) = check(&value, "required-patches");
    assert_eq!(result, "warn");
    assert!(
        detail.contains("P2 requires P1, which is not applied"),
        "{detail}"
    );
    assert!(fix.contains("apply"), "{fix}");

    // Disk space: P1 upgrades a package both hosts have; the reserve cannot be met.
    let (value, ok) = precheck(&site, &["P1"]);
    assert!(!ok);
    let (result, detail, fix) = check(&value, "disk-space");
    assert_eq!(result, "fail");
    assert!(
        detail.contains("compute-0 has") && detail.contains("free and needs"),
        "{detail}"
    );
    assert!(fix.contains("precheck_disk_reserve_bytes"), "{fix}");

    // Repository: a package changed on disk after it was indexed. A strategy is refused,
    // even with --force; an install fails, and the failed install is reported in turn.
    site.ok(&["apply", "P1"]);
    let packages = site.path("state/repo/rel-19.01/Packages/x86_64");
    let rpm = std::fs::read_dir(&packages)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("sysinv-1.0-231"))
        .expect("P1's package in the repository");
    let good = std::fs::read(&rpm).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&rpm, &bad).unwrap();
    let (value, ok) = precheck(&site, &[]);
    assert!(!ok);
    let (result, detail, fix) = check(&value, "repository");
    assert_eq!(result, "fail");
    assert!(
        detail.contains("sysinv-1.0-231") && detail.contains("its SHA-256 is not the index's"),
        "{detail}"
    );
    assert!(fix.contains("restore the files"), "{fix}");
    for args in [
        &["patch-strategy", "create"][..],
        &["patch-strategy", "create", "--force"][..],
    ] {
        let out = manager(args);
        assert!(!out.status.success(), "{args:?} created a strategy");
        let err = stderr(&out);
        assert!(
            err.contains("precheck fail") && err.contains("repository fail"),
            "{err}"
        );
    }
    let out = site.run("sw-patch", &["host-install", "compute-0"]);
    assert!(
        !out.status.success(),
        "an install from a damaged repository"
    );
    std::fs::write(&rpm, &good).unwrap();
    let (value, ok) = precheck(&site, &[]);
    assert!(!ok);
    assert_eq!(check(&value, "repository").0, "pass", "{value}");
    let (result, detail, fix) = check(&value, "install-failures");
    assert_eq!(
        result,
        "fail",
        "{value}\n{}\n{}",
        site.host("compute-0"),
        stderr(&out)
    );
    assert!(detail.starts_with("compute-0"), "{detail}");
    assert!(fix.contains("sw-patch host-install HOST"), "{fix}");

    // Alarms: strict counts every alarm, relaxed only management-affecting ones. compute-0's
    // failed install raises 900.002 (major, management-affecting) at the controller's next
    // audit: waited for, so both checks below see it whatever the machine's speed.
    site.wait_for("compute-0's install-failed alarm", |s| {
        String::from_utf8_lossy(&s.run("fm", &["alarm-list"]).stdout).contains("900.002")
    });
    let out = site.run(
        "fm",
        &[
            "alarm-raise",
            "--alarm-id",
            "100.101",
            "--entity-instance-id",
            "host=compute-1",
            "--reason-text",
            "Platform CPU threshold exceeded",
            "--not-mgmt-affecting",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (value, _) = precheck(&site, &[]);
    let (result, detail, fix) = check(&value, "alarms");
    assert_eq!(result, "fail", "{value}");
    assert!(detail.contains("100.101 on host=compute-1"), "{detail}");
    assert!(fix.contains("relaxed"), "{fix}");
    let (value, _) = precheck(&site, &["--alarm-restrictions", "relaxed"]);
    let (result, detail, _) = check(&value, "alarms");
    assert_eq!(result, "fail", "{value}");
    assert!(
        detail.contains("900.002") && !detail.contains("100.101"),
        "relaxed ignores the alarm that does not affect management: {detail}"
    );

    // Hosts: a locked host warns, a silent one fails.
    site.system(&["host-lock", "compute-1"]);
    let (value, _) = precheck(&site, &[]);
    let (result, detail, _) = check(&value, "hosts-reporting");
    assert_eq!(result, "warn");
    assert!(
        detail.contains("locked (out of service): compute-1"),
        "{detail}"
    );
    let agent = &mut site.agents[1];
    agent.kill().unwrap();
    agent.wait().unwrap();
    site.wait_for("compute-1 offline", |s| {
        s.host("compute-1")["availability"] == "offline"
    });
    let (value, _) = precheck(&site, &[]);
    let (result, detail, fix) = check(&value, "hosts-reporting");
    assert_eq!(result, "fail");
    assert!(detail.contains("not reporting: compute-1"), "{detail}");
    assert!(fix.contains("sw-patch drop-host"), "{fix}");
    // The table says the same, and the exit code is non-zero.
    let out = site.run("sw-patch", &["precheck"]);
    assert!(!out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.ends_with("Precheck: fail\n"), "{table}");
}
