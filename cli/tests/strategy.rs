//! Patch orchestration end to end: a controller and six real agents (2 controllers, 2 storage,
//! 2 workers) driven by `sw-manager patch-strategy` and `fm`, with the strategy's waits
//! shortened to seconds.

mod common;

use std::time::{Duration, Instant};

use common::Site;
use common::cluster::{HOSTS, apply_patch, fast_timing, six_hosts, six_hosts_with};
use patch_format::testing::TestRpm;
use serde_json::Value;

fn cluster() -> Site {
    six_hosts(&fast_timing(1), &[])
}

fn manager(site: &Site, args: &[&str]) -> String {
    let out = site.run("sw-manager", args);
    assert!(
        out.status.success(),
        "sw-manager {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn manager_fails(site: &Site, args: &[&str]) -> String {
    let out = site.run("sw-manager", args);
    assert!(!out.status.success(), "sw-manager {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fm(site: &Site, args: &[&str]) -> String {
    let out = site.run("fm", args);
    assert!(
        out.status.success(),
        "fm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn strategy(site: &Site) -> Value {
    let out = manager(site, &["patch-strategy", "show", "--format", "json"]);
    serde_json::from_str(&out).unwrap()
}

fn wait_strategy(site: &Site, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = strategy(site);
        if cond(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stage_hosts(s: &Value) -> Vec<Vec<String>> {
    s["apply-phase"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| {
            let mut hosts: Vec<String> = Vec::new();
            for step in stage["steps"].as_array().unwrap() {
                for h in step["entity-names"].as_array().unwrap() {
                    let h = h.as_str().unwrap().to_owned();
                    if step["entity-type"] == "hosts" && !hosts.contains(&h) {
                        hosts.push(h);
                    }
                }
            }
            hosts
        })
        .collect()
}

fn assert_all_patched_and_unlocked(site: &Site) {
    for h in site.hosts() {
        assert_eq!(h["patch_current"], true, "{h}");
        assert_eq!(h["administrative"], "unlocked", "{h}");
        assert_eq!(h["requires_reboot"], false, "{h}");
    }
    for (host, _) in HOSTS {
        assert_eq!(
            std::fs::read_to_string(site.root(host).join("usr/lib/sysinv/api.py")).unwrap(),
            "VERSION = 231\n",
            "{host}"
        );
    }
}

#[test]
fn a_reboot_required_patch_rolls_out_by_strategy() {
    let site = cluster();
    apply_patch(&site, "RR_0001", true, &[]);
    let out = manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--storage-apply-type",
            "parallel",
            "--worker-apply-type",
            "parallel",
            "--max-parallel-worker-hosts",
            "2",
            "--wait",
        ],
    );
    assert!(out.starts_with("Strategy Patch Strategy:\n"), "{out}");
    assert!(
        out.contains("  state:                                  ready-to-apply\n"),
        "{out}"
    );
    assert!(
        out.contains("  max-parallel-worker-hosts:              2\n"),
        "{out}"
    );
    let s = strategy(&site);
    assert_eq!(
        stage_hosts(&s),
        [
            vec!["controller-0"],
            vec!["controller-1"],
            vec!["storage-0", "storage-1"],
            vec!["compute-0", "compute-1"]
        ]
    );
    let details = manager(&site, &["patch-strategy", "show", "--details"]);
    assert!(details.contains("  apply-phase:\n"), "{details}");
    assert!(details.contains("            step-name:                    swact-hosts\n"));
    assert_eq!(
        manager_fails(&site, &["patch-strategy", "create"]).trim(),
        "error: Operation failed: conflict detected. strategy already exists of type:sw-patch"
    );

    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("  state:                                  applied\n"),
        "{out}"
    );
    assert!(
        out.contains("  apply-result:                           success\n"),
        "{out}"
    );
    assert_all_patched_and_unlocked(&site);
    assert_eq!(site.patch_state("RR_0001"), "Applied");
    let s = strategy(&site);
    for stage in s["apply-phase"]["stages"].as_array().unwrap() {
        assert_eq!(stage["result"], "success", "{stage:#}");
    }
    assert_eq!(s["current-phase-completion-percentage"], 100);
    // No strategy alarm is left once it applied; deleting it is the operator's call.
    assert!(!fm(&site, &["alarm-list"]).contains("900.10"));
    assert_eq!(
        manager(&site, &["patch-strategy", "delete"]),
        "Strategy deleted\n"
    );
    assert_eq!(
        manager(&site, &["patch-strategy", "show"]),
        "No strategy available\n"
    );
    assert_eq!(
        manager_fails(&site, &["patch-strategy", "delete"]).trim(),
        "error: Strategy delete failed"
    );
}

#[test]
fn an_in_service_patch_needs_no_locks_and_alarms_block_the_build() {
    let site = cluster();
    apply_patch(&site, "INSVC_0001", false, &[]);

    // A dry run plans and predicts, and stores nothing.
    let plan = manager(&site, &["patch-strategy", "create", "--dry-run"]);
    assert!(
        plan.contains("total-stages:                           6"),
        "{plan}"
    );
    assert!(plan.contains("predicted-duration-min:"), "{plan}");
    assert_eq!(
        manager(&site, &["patch-strategy", "show"]),
        "No strategy available\n"
    );

    // An operator's alarm blocks the build; relaxed restrictions ignore it when it is not
    // management affecting.
    fm(
        &site,
        &[
            "alarm-raise",
            "--alarm-id",
            "100.101",
            "--entity-instance-id",
            "host=compute-0",
            "--reason-text",
            "Platform CPU threshold exceeded",
            "--not-mgmt-affecting",
        ],
    );
    assert!(fm(&site, &["alarm-list"]).contains("Platform CPU threshold exceeded"));
    manager(&site, &["patch-strategy", "create"]);
    let s = wait_strategy(&site, "build end", |s| s["state"] != "building");
    assert_eq!(s["state"], "build-failed");
    assert_eq!(s["build-phase"]["reason"], "active alarms present");
    let err = manager_fails(&site, &["patch-strategy", "apply"]);
    assert!(err.contains("active alarms present"), "{err}");
    manager(&site, &["patch-strategy", "delete"]);
    manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--alarm-restrictions",
            "relaxed",
            "--wait",
        ],
    );
    let s = strategy(&site);
    for stage in s["apply-phase"]["stages"].as_array().unwrap() {
        let names: Vec<&str> = stage["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["step-name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["query-alarms", "sw-patch-hosts", "system-stabilize"]
        );
    }

    // One stage, then the rest.
    let err = manager_fails(&site, &["patch-strategy", "apply", "--stage-id", "3"]);
    assert!(
        err.contains("invalid stage id 3 for the apply, total-stages are 6"),
        "{err}"
    );
    manager(
        &site,
        &["patch-strategy", "apply", "--stage-id", "0", "--wait"],
    );
    let s = strategy(&site);
    assert_eq!(s["state"], "applying");
    assert_eq!(s["apply-phase"]["current-stage"], 1);
    assert_eq!(s["apply-phase"]["stages"][0]["result"], "success");
    assert_eq!(s["apply-phase"]["stages"][1]["result"], "initial");
    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("  state:                                  applied\n"),
        "{out}"
    );
    assert_all_patched_and_unlocked(&site);
    fm(&site, &["alarm-clear", "--alarm-id", "100.101"]);
    assert!(!fm(&site, &["alarm-list"]).contains("100.101"));
}

#[test]
fn abort_mid_stage_finishes_the_step_and_unlocks() {
    // A longer settle after the install, so the abort lands before the unlock step.
    let site = six_hosts(&fast_timing(6), &[]);
    apply_patch(&site, "RR_0002", true, &[]);
    manager(&site, &["patch-strategy", "create", "--wait"]);
    manager(&site, &["patch-strategy", "apply"]);
    // Abort while the first controller's install step (or the settle after it) runs.
    let s = wait_strategy(&site, "the first install step", |s| {
        let stage = &s["apply-phase"]["stages"][0];
        stage["steps"][3]["result"] != "initial"
    });
    // Before it is asked for, the strategy says what an abort would do now: wait for the
    // running step, then unlock the host it locked.
    let preview = &s["abort-preview"];
    assert_eq!(preview["allowed"], true, "{s:#}");
    assert!(preview["waits-for"].as_str().is_some(), "{s:#}");
    assert_eq!(
        preview["undoes"],
        serde_json::json!(["unlock-hosts (controller-0)"]),
        "{s:#}"
    );
    let out = manager(
        &site,
        &["patch-strategy", "abort", "--stage-id", "0", "--wait"],
    );
    assert!(
        out.contains("  state:                                  aborted\n"),
        "{out}"
    );
    let s = strategy(&site);
    let stage = &s["apply-phase"]["stages"][0];
    assert_eq!(stage["result"], "aborted");
    // The install step finished (and the settle after it, if it had started); nothing
    // after them ran.
    assert_eq!(stage["steps"][3]["result"], "success", "{stage:#}");
    assert_eq!(stage["steps"][5]["step-name"], "unlock-hosts");
    assert_eq!(stage["steps"][5]["result"], "initial", "{stage:#}");
    for later in &s["apply-phase"]["stages"].as_array().unwrap()[1..] {
        assert_eq!(later["result"], "initial");
    }
    let abort_steps = &s["abort-phase"]["stages"][0]["steps"];
    assert_eq!(abort_steps[0]["step-name"], "unlock-hosts");
    assert_eq!(abort_steps[0]["entity-names"][0], "controller-0");
    for h in site.hosts() {
        assert_eq!(h["administrative"], "unlocked", "{h}");
    }
    // The aborted host got the patch (the step finished); the others did not.
    assert_eq!(site.host("controller-0")["patch_current"], true);
    assert_eq!(site.host("controller-1")["patch_current"], false);
}

/// Aborts while a step of `kind` runs on the real cluster (the running step is let finish),
/// then checks that the cluster is whole: every host unlocked and in service, none
/// installing, none holding an install it has not rebooted into.
fn abort_during(site: &Site, kind: &str) {
    manager(site, &["patch-strategy", "create", "--wait"]);
    manager(site, &["patch-strategy", "apply"]);
    let running = |s: &Value| {
        s["apply-phase"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|st| st["steps"].as_array().unwrap())
            .any(|x| x["step-name"] == kind && x["result"] == "inprogress")
    };
    let caught = wait_strategy(site, kind, |s| running(s) || s["state"] != "applying");
    assert!(running(&caught), "{kind} never seen running: {caught:#}");
    let at = caught["apply-phase"]["current-stage"].as_u64().unwrap() as usize;
    manager(site, &["patch-strategy", "abort"]);
    let s = wait_strategy(site, "the abort to end", |s| {
        s["state"] == "aborted" || s["state"] == "abort-failed"
    });
    assert_eq!(s["state"], "aborted", "{kind}: {s:#}");
    // The abort stopped the rollout: no stage started past the one it came in (or the
    // next, had the running step ended between the poll and the abort).
    let stages = s["apply-phase"]["stages"].as_array().unwrap();
    for later in stages.iter().skip(at + 2) {
        assert_eq!(later["result"], "initial", "{kind}: {s:#}");
    }
    for step in s["apply-phase"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|st| st["steps"].as_array().unwrap())
    {
        assert_ne!(step["result"], "inprogress", "{kind}: {step:#}");
    }
    site.wait_for("every host back in service", |site| {
        site.hosts().iter().all(|h| {
            h["administrative"] == "unlocked"
                && h["availability"] == "available"
                && h["state"] != "installing"
        })
    });
    for h in site.hosts() {
        let half_installed = h["patch_current"] == true && h["requires_reboot"] == true;
        assert!(!half_installed, "{kind}: {h}");
        assert_eq!(h["patch_failed"], false, "{kind}: {h}");
    }
    manager(site, &["patch-strategy", "delete"]);
}

/// An abort while a locked host settles after its install, or while a host unlocks and
/// reboots into the patch, leaves the cluster whole (the in-memory runner test covers every
/// step kind; these are the two where a real host is in flux).
#[test]
fn an_abort_while_a_host_settles_or_reboots_leaves_the_cluster_whole() {
    // A health check that takes a second keeps each host's reboot (and so its unlock step)
    // going long enough to be caught running.
    let checks = tempfile::tempdir().unwrap();
    common::write_script(&checks.path().join("required.d/10-slow"), "sleep 1");
    let site = six_hosts_with(
        &fast_timing(3),
        &[],
        &["--health-dir", checks.path().to_str().unwrap()],
    );
    apply_patch(&site, "RR_0008", true, &[]);
    abort_during(&site, "system-stabilize");
    abort_during(&site, "unlock-hosts");
    // Each abort came after a host had installed: at least two have the patch (how many
    // more depends on where the polling caught each step).
    let patched = site
        .hosts()
        .iter()
        .filter(|h| h["patch_current"] == true)
        .count();
    assert!(patched >= 2, "{:#?}", site.hosts());
}

/// A patch whose new package cannot be installed on storage-0 (a file sits where it needs
/// a directory): its install fails and rolls back.
fn failing_site() -> Site {
    let site = cluster();
    let root = site.root("storage-0");
    std::fs::create_dir_all(root.join("opt")).unwrap();
    std::fs::write(root.join("opt/fixdata"), "in the way\n").unwrap();
    apply_patch(
        &site,
        "RR_0003",
        true,
        &[TestRpm::new("fixdata", "1.0", "1").file("/opt/fixdata/table", "rows\n")],
    );
    site
}

#[test]
fn an_install_failure_aborts_and_unlocks_every_host() {
    let site = failing_site();
    manager(&site, &["patch-strategy", "create", "--wait"]);
    let out = manager_fails(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("software update failed to apply on host storage-0"),
        "{out}"
    );
    let s = strategy(&site);
    assert_eq!(s["state"], "aborted");
    assert_eq!(s["apply-phase"]["result"], "failed");
    let stages = s["apply-phase"]["stages"].as_array().unwrap();
    assert_eq!(stages[2]["result"], "failed");
    assert!(stages[3..].iter().all(|st| st["result"] == "initial"));
    for h in site.hosts() {
        assert_eq!(h["administrative"], "unlocked", "{h}");
    }
    assert_eq!(site.host("storage-0")["patch_failed"], true);
    let alarms = fm(&site, &["alarm-list"]);
    assert!(alarms.contains("900.103"), "{alarms}");
    assert!(alarms.contains("host=storage-0"), "{alarms}");
    manager(&site, &["patch-strategy", "delete"]);
    assert!(!fm(&site, &["alarm-list"]).contains("900.103"));
}

#[test]
fn the_error_budget_lets_the_other_stages_finish() {
    let site = failing_site();
    manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--max-failed-hosts",
            "1",
            "--wait",
        ],
    );
    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("  state:                                  applied\n"),
        "{out}"
    );
    let s = strategy(&site);
    assert_eq!(s["apply-phase"]["result"], "degraded");
    assert_eq!(s["failed-hosts"], serde_json::json!(["storage-0"]));
    let stages = s["apply-phase"]["stages"].as_array().unwrap();
    assert_eq!(stages[2]["result"], "degraded");
    assert!(stages[3..].iter().all(|st| st["result"] == "success"));
    for h in site.hosts() {
        assert_eq!(h["administrative"], "unlocked", "{h}");
        let expected = h["hostname"] != "storage-0";
        assert_eq!(h["patch_current"], expected, "{h}");
    }
}

/// A workload hook over files: `<dir>/vms/<name>` holds `running` or `stopped`; every action
/// is appended to `<dir>/log`.
const HOOK: &str = r#"dir="$1"; verb="$2"; target="$3"
case "$verb" in
  list)
    printf '['; sep=''
    for f in "$dir"/vms/*; do
      [ -e "$f" ] || continue
      name=$(basename "$f"); locked=false
      [ "$(cat "$f")" = stopped ] && locked=true
      printf '%s{"name":"%s","uuid":"uuid-%s","locked":%s}' "$sep" "$name" "$name" "$locked"
      sep=','
    done
    printf ']\n';;
  stop) echo stopped > "$dir/vms/$target"; echo "stop $target" >> "$dir/log";;
  start) echo running > "$dir/vms/$target"; echo "start $target" >> "$dir/log";;
  *) echo "unexpected $verb" >> "$dir/log"; exit 1;;
esac
"#;

/// The 2+2+2 cluster with `hook` (a workload hook script) on compute-1, which runs the
/// instance db-1, and the reboot-required patch `id` applied; the hook's directory (its
/// `log` says what it was asked) is returned with the site.
fn hooked_site(hook: &str, id: &str) -> (Site, tempfile::TempDir, std::path::PathBuf) {
    // The hook lives outside the site, which is created with the agents already running.
    let hook_dir = tempfile::tempdir().unwrap();
    std::fs::write(hook_dir.path().join("hook.sh"), hook).unwrap();
    let wl = hook_dir.path().join("workloads-compute-1");
    std::fs::create_dir_all(wl.join("vms")).unwrap();
    std::fs::write(wl.join("vms/db-1"), "running\n").unwrap();
    let command = format!(
        "sh {} {}",
        hook_dir.path().join("hook.sh").display(),
        wl.display()
    );
    let site = six_hosts(&fast_timing(1), &[("compute-1", &command)]);
    apply_patch(&site, id, true, &[]);
    (site, hook_dir, wl)
}

#[test]
fn workloads_are_stopped_before_the_lock_and_started_after() {
    let (site, _hook_dir, wl) = hooked_site(HOOK, "RR_0004");
    manager(&site, &["patch-strategy", "create", "--wait"]);
    let s = strategy(&site);
    let stage = s["apply-phase"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["steps"][3]["entity-names"][0] == "compute-1")
        .cloned()
        .unwrap_or_else(|| panic!("no compute-1 stage: {s:#}"));
    let names: Vec<&str> = stage["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["step-name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "query-alarms",
            "stop-instances",
            "lock-hosts",
            "sw-patch-hosts",
            "system-stabilize",
            "unlock-hosts",
            "start-instances",
            "wait-alarms-clear"
        ]
    );
    assert_eq!(stage["steps"][1]["entity-names"][0], "db-1");
    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("  state:                                  applied\n"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(wl.join("log")).unwrap(),
        "stop db-1\nstart db-1\n"
    );
    assert_eq!(
        std::fs::read_to_string(wl.join("vms/db-1")).unwrap(),
        "running\n"
    );
    assert_all_patched_and_unlocked(&site);
}

/// A hook that also migrates (the instance leaves the host) and disables or enables the
/// host's compute services.
const MIGRATING_HOOK: &str = r#"dir="$1"; verb="$2"; target="$3"
case "$verb" in
  list)
    printf '['; sep=''
    for f in "$dir"/vms/*; do
      [ -e "$f" ] || continue
      name=$(basename "$f")
      printf '%s{"name":"%s","uuid":"uuid-%s","locked":false}' "$sep" "$name" "$name"
      sep=','
    done
    printf ']\n';;
  migrate) rm "$dir/vms/$target"; echo "migrate $target" >> "$dir/log";;
  disable-services|enable-services) echo "$verb $target" >> "$dir/log";;
  *) echo "unexpected $verb" >> "$dir/log"; exit 1;;
esac
"#;

/// Workers patched in parallel have their workloads migrated away after their compute
/// services are disabled; the unlock gives the services back (as the original's does), so
/// no host stays out of scheduling after a strategy.
#[test]
fn migrated_hosts_get_their_compute_services_back_after_the_unlock() {
    let (site, _hook_dir, wl) = hooked_site(MIGRATING_HOOK, "RR_0006");
    manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--worker-apply-type",
            "parallel",
            "--instance-action",
            "migrate",
            "--wait",
        ],
    );
    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("  state:                                  applied\n"),
        "{out}"
    );
    assert_all_patched_and_unlocked(&site);
    site.wait_for("compute-1's services enabled again", |_| {
        std::fs::read_to_string(wl.join("log")).unwrap_or_default()
            == "disable-services compute-1\nmigrate db-1\nenable-services compute-1\n"
    });
}

#[test]
fn a_baseline_ignores_alarms_raised_before_create_and_stale_alarms_are_named() {
    let site = cluster();
    apply_patch(&site, "BASE_0001", false, &[]);
    let raise = |id: &str, host: &str| {
        fm(
            &site,
            &[
                "alarm-raise",
                "--alarm-id",
                id,
                "--entity-instance-id",
                &format!("host={host}"),
                "--reason-text",
                "raised by the test",
            ],
        )
    };
    // Active before the strategy exists: part of the baseline, it does not block.
    raise("100.101", "compute-0");
    manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--alarm-restrictions",
            "baseline",
            "--wait",
        ],
    );
    assert_eq!(strategy(&site)["alarm-restrictions"], "baseline");
    // A new one does.
    raise("100.102", "compute-1");
    let _ = site.run("sw-manager", &["patch-strategy", "apply", "--wait"]);
    // The failed stage aborts the strategy, as the original does.
    let s = wait_strategy(&site, "the apply to stop", |s| {
        s["state"] == "aborted" || s["state"] == "applied"
    });
    assert_eq!(s["state"], "aborted", "{s:#}");
    let reason = s["apply-phase"]["stages"][0]["steps"][0]["reason"]
        .as_str()
        .unwrap_or("");
    assert_eq!(
        reason, "alarms ['100.102'] from platform are present",
        "{s:#}"
    );
    manager(&site, &["patch-strategy", "delete"]);

    // Stale: both alarms have not changed for longer than --alarm-stale-after; they are
    // ignored, and the step says so.
    std::thread::sleep(Duration::from_secs(2));
    manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--alarm-stale-after",
            "1",
            "--wait",
        ],
    );
    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("  state:                                  applied\n"),
        "{out}"
    );
    let s = strategy(&site);
    assert_eq!(s["alarm-stale-after"], 1);
    let reason = s["apply-phase"]["stages"][0]["steps"][0]["reason"]
        .as_str()
        .unwrap_or("");
    assert_eq!(
        reason, "stale alarms ['100.101', '100.102'] ignored (unchanged for more than 1 s)",
        "{s:#}"
    );
    assert_all_patched_and_unlocked(&site);
}

#[test]
fn canaries_are_patched_first_and_the_rest_waits_for_approval() {
    let site = cluster();
    apply_patch(&site, "CANARY_0001", true, &[]);
    manager(
        &site,
        &["patch-strategy", "create", "--canary-hosts", "2", "--wait"],
    );
    let s = strategy(&site);
    assert_eq!(s["canary-hosts"], 2);
    assert_eq!(s["canary-state"], "in-progress");
    // Serial workers: one canary stage per worker, before the controllers.
    let hosts = stage_hosts(&s);
    assert_eq!(hosts[0], ["compute-0"]);
    assert_eq!(hosts[1], ["compute-1"]);
    // The whole apply stops after the canaries.
    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("canary-state:") && out.contains("wait-for-approval"),
        "{out}"
    );
    let s = strategy(&site);
    assert_eq!(s["state"], "applying");
    assert_eq!(s["apply-phase"]["current-stage"], 2);
    for h in site.hosts() {
        let canary = h["hostname"] == "compute-0" || h["hostname"] == "compute-1";
        assert_eq!(h["patch_current"], canary, "{h}");
        assert_eq!(h["administrative"], "unlocked", "{h}");
    }
    // Approved: the rest goes.
    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("  state:                                  applied\n"),
        "{out}"
    );
    assert_eq!(strategy(&site)["canary-state"], "passed");
    assert_all_patched_and_unlocked(&site);
}

#[test]
fn a_failing_canary_stops_everything_whatever_the_budget() {
    let site = cluster();
    // compute-0, the first canary, cannot take the patch.
    let root = site.root("compute-0");
    std::fs::create_dir_all(root.join("opt")).unwrap();
    std::fs::write(root.join("opt/fixdata"), "in the way\n").unwrap();
    apply_patch(
        &site,
        "CANARY_0002",
        true,
        &[TestRpm::new("fixdata", "1.0", "1").file("/opt/fixdata/table", "rows\n")],
    );
    manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--canary-hosts",
            "1",
            "--max-failed-hosts",
            "3",
            "--wait",
        ],
    );
    let out = manager_fails(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("software update failed to apply on host compute-0"),
        "{out}"
    );
    let s = strategy(&site);
    assert_eq!(s["state"], "aborted", "{s:#}");
    let stages = s["apply-phase"]["stages"].as_array().unwrap();
    assert_eq!(stages[0]["result"], "failed");
    assert!(stages[1..].iter().all(|st| st["result"] == "initial"));
    // Nothing else was touched: every other host still waits for the patch, unlocked.
    for h in site.hosts() {
        assert_eq!(h["administrative"], "unlocked", "{h}");
        if h["hostname"] != "compute-0" {
            assert_eq!(h["patch_current"], false, "{h}");
            assert_eq!(h["patch_failed"], false, "{h}");
        }
    }
}

#[test]
fn with_a_soak_the_rest_goes_on_by_itself_once_the_canaries_stayed_healthy() {
    let site = cluster();
    apply_patch(&site, "CANARY_0003", false, &[]);
    manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--canary-hosts",
            "1",
            "--canary-soak",
            "2",
            "--wait",
        ],
    );
    let out = manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("  state:                                  applied\n"),
        "{out}"
    );
    let s = strategy(&site);
    let soak = s["apply-phase"]["stages"][0]["steps"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(soak["step-name"], "canary-soak");
    assert_eq!(soak["result"], "success");
    assert_eq!(soak["entity-names"], serde_json::json!(["compute-0"]));
    assert_all_patched_and_unlocked(&site);
}

/// The 2+2+2 cluster, every host checking after an install that sysinv's api.py is there,
/// with an in-service patch applied whose sysinv drops that file.
fn health_checked_site() -> (Site, tempfile::TempDir) {
    health_checked_site_with("BREAKS_0001", false)
}

/// [`health_checked_site`] with patch `id`, reboot-required or not.
fn health_checked_site_with(id: &str, reboot_required: bool) -> (Site, tempfile::TempDir) {
    let checks = tempfile::tempdir().unwrap();
    let dir = checks.path();
    common::write_script(
        &dir.join("required.d/10-api"),
        "test -f \"$STX_PATCH_ROOT/usr/lib/sysinv/api.py\" || { echo 'api.py is gone'; exit 1; }",
    );
    let site = six_hosts_with(
        &fast_timing(1),
        &[],
        &["--health-dir", dir.to_str().unwrap()],
    );
    let patch = site.patch(
        id,
        reboot_required,
        &[TestRpm::new("sysinv", "1.0", "231")],
        &[],
    );
    site.ok(&["upload", patch.to_str().unwrap()]);
    site.ok(&["apply", id]);
    site.wait_for("hosts settled on the patch", |s| {
        s.hosts()
            .iter()
            .all(|h| h["interim_state"] == false && h["patch_current"] == false)
    });
    (site, checks)
}

/// Hosts that failed their check: rolled back (back on 230) and held back from the patch.
fn rolled_back_hosts(site: &Site) -> Vec<String> {
    rolled_back_from(site, "BREAKS_0001")
}

/// [`rolled_back_hosts`] for patch `id`.
fn rolled_back_from(site: &Site, id: &str) -> Vec<String> {
    site.hosts()
        .into_iter()
        .filter(|h| h["health"]["state"] == "failed")
        .map(|h| {
            let name = h["hostname"].as_str().unwrap().to_owned();
            assert_eq!(h["held_patches"], serde_json::json!([id]), "{h}");
            assert_eq!(h["patch_failed"], true, "{h}");
            let api = site.root(&name).join("usr/lib/sysinv/api.py");
            assert_eq!(
                std::fs::read_to_string(api).unwrap(),
                "VERSION = 230\n",
                "{name} was not rolled back"
            );
            name
        })
        .collect()
}

#[test]
fn a_patch_breaking_a_health_check_is_rolled_back_on_the_first_host_and_stops_the_strategy() {
    let (site, _checks) = health_checked_site();
    manager(&site, &["patch-strategy", "create", "--wait"]);
    let out = manager_fails(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("software update failed to apply on host")
            && out.contains("health check required.d/10-api failed"),
        "{out}"
    );
    let s = strategy(&site);
    assert_eq!(s["state"], "aborted");
    let failed = rolled_back_hosts(&site);
    assert_eq!(failed.len(), 1, "{failed:?}");
    // Nobody else was touched.
    for h in site.hosts() {
        assert_eq!(h["administrative"], "unlocked", "{h}");
        if h["hostname"] != failed[0].as_str() {
            assert_eq!(h["patch_current"], false, "{h}");
        }
    }
}

#[test]
fn with_a_budget_of_one_the_strategy_goes_past_the_first_rolled_back_host() {
    let (site, _checks) = health_checked_site();
    manager(
        &site,
        &[
            "patch-strategy",
            "create",
            "--max-failed-hosts",
            "1",
            "--wait",
        ],
    );
    let _ = site.run("sw-manager", &["patch-strategy", "apply", "--wait"]);
    let s = wait_strategy(&site, "the apply to end", |s| {
        s["state"] == "aborted" || s["state"] == "applied"
    });
    // The first failure is within the budget: the next stage ran, and its host failed too
    // (the same package breaks every host), which is one too many.
    let stages = s["apply-phase"]["stages"].as_array().unwrap();
    assert_eq!(stages[0]["result"], "degraded", "{s:#}");
    assert_eq!(s["state"], "aborted", "{s:#}");
    assert_eq!(rolled_back_hosts(&site).len(), 2);
}

#[test]
fn a_health_check_failing_during_the_soak_rolls_the_host_back() {
    let checks = tempfile::tempdir().unwrap();
    // Passes right after the install, fails when run again: only a soak can catch it.
    common::write_script(
        &checks.path().join("required.d/10-flaky"),
        "runs=\"$STX_PATCH_ROOT/health-runs\"\necho x >> \"$runs\"\nif [ \"$(wc -l < \"$runs\")\" -ge 2 ]; then echo 'the service died after a while'; exit 1; fi",
    );
    let site = six_hosts_with(
        &fast_timing(1),
        &[],
        &["--health-dir", checks.path().to_str().unwrap()],
    );
    apply_patch(&site, "SOAK_0001", false, &[]);
    manager(
        &site,
        &["patch-strategy", "create", "--soak-seconds", "3", "--wait"],
    );
    assert_eq!(strategy(&site)["soak-seconds"], 3);
    let out = manager_fails(&site, &["patch-strategy", "apply", "--wait"]);
    assert!(
        out.contains("the service died after a while") && out.contains("(during the soak)"),
        "{out}"
    );
    let failed: Vec<Value> = site
        .hosts()
        .into_iter()
        .filter(|h| h["health"]["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let name = failed[0]["hostname"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(site.root(name).join("usr/lib/sysinv/api.py")).unwrap(),
        "VERSION = 230\n",
        "{name} was not rolled back"
    );
}

#[test]
fn a_reboot_required_patch_breaking_a_health_check_is_rolled_back_after_its_reboot() {
    let (site, _checks) = health_checked_site_with("RR_BREAKS_0001", true);
    let before: Vec<_> = HOSTS
        .iter()
        .map(|(h, _)| common::root_snapshot(&site.root(h)))
        .collect();
    manager(&site, &["patch-strategy", "create", "--wait"]);
    let out = manager_fails(&site, &["patch-strategy", "apply", "--wait"]);
    // The check ran after the reboot into the patch; the host rolled back and rebooted again.
    assert!(
        out.contains("software update failed to apply on host")
            && out.contains("health check required.d/10-api failed")
            && out.contains("api.py is gone (after the reboot)")
            && out.contains("rolled back from RR_BREAKS_0001 and rebooting"),
        "{out}"
    );
    let s = strategy(&site);
    assert_eq!(s["state"], "aborted", "{s:#}");
    let failed = rolled_back_from(&site, "RR_BREAKS_0001");
    assert_eq!(failed.len(), 1, "{failed:?}");
    // Every root is as before, the failed host's too (byte for byte); every host is unlocked,
    // and the failed one runs what it had (no reboot left pending).
    for ((host, _), before) in HOSTS.iter().zip(&before) {
        assert_eq!(&common::root_snapshot(&site.root(host)), before, "{host}");
    }
    for h in site.hosts() {
        assert_eq!(h["administrative"], "unlocked", "{h}");
        let failed_host = h["hostname"] == failed[0].as_str();
        assert_eq!(h["patch_current"], failed_host, "{h}");
        assert_eq!(h["requires_reboot"], !failed_host, "{h}");
    }
}

#[test]
fn a_good_reboot_required_patch_passes_its_health_checks_and_soak_after_each_reboot() {
    let checks = tempfile::tempdir().unwrap();
    common::write_script(
        &checks.path().join("required.d/10-api"),
        "grep -q 'VERSION = 231' \"$STX_PATCH_ROOT/usr/lib/sysinv/api.py\" || { echo 'not on 231'; exit 1; }",
    );
    let site = six_hosts_with(
        &fast_timing(1),
        &[],
        &["--health-dir", checks.path().to_str().unwrap()],
    );
    apply_patch(&site, "RR_GOOD_0001", true, &[]);
    manager(
        &site,
        &["patch-strategy", "create", "--soak-seconds", "1", "--wait"],
    );
    manager(&site, &["patch-strategy", "apply", "--wait"]);
    assert_eq!(strategy(&site)["state"], "applied");
    assert_all_patched_and_unlocked(&site);
    for h in site.hosts() {
        assert_eq!(h["health"]["state"], "passed", "{h}");
    }
}
