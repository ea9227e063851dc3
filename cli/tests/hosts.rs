//! Real controller + real agents (separate processes, temp roots) on loopback: install,
//! reboot-required patches with lock/unlock, removal, and refusals.

mod common;

use std::path::Path;
use std::process::Command;

use common::Site;
use patch_format::testing::{SpecRpm, TestRpm, rpmbuild_available};
use patch_format::{PatchBuilder, PatchMetadata, Personality, Status};

fn read(root: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(root.join(file)).ok()
}

/// `rpm -qa` in `root` (the rpm tool's own database), sorted.
fn rpm_query_all(root: &Path) -> Vec<String> {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args([
            "--dbpath",
            "/var/lib/rpm",
            "-qa",
            "--qf",
            "%{NAME}-%{VERSION}-%{RELEASE}\\n",
        ])
        .output()
        .expect("the rpm tool (scripts/test.sh installs it)");
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    list.sort();
    list
}

/// A signed in-service patch of packages built by the real `rpmbuild` (`new`: packages every
/// node type installs).
fn rpmbuild_patch(site: &Site, id: &str, rpms: &[SpecRpm], new: &[&str]) -> std::path::PathBuf {
    assert!(
        rpmbuild_available(),
        "rpmbuild is not installed (./scripts/test.sh installs rpm)"
    );
    let mut m = PatchMetadata::new(id, "19.01");
    m.status = Status::Released;
    m.reboot_required = false;
    let mut b = PatchBuilder::new(m);
    for rpm in rpms {
        let personalities: &[Personality] = if new.contains(&rpm.name.as_str()) {
            &Personality::ALL
        } else {
            &[]
        };
        b.add_rpm(&rpm.build(&site.path("rpms")), personalities)
            .unwrap();
    }
    b.write_to_dir(&site.path("patches"), &site.key).unwrap().0
}

#[test]
fn install_reboot_required_lock_unlock_and_remove_on_real_agents() {
    let mut site = Site::new();
    site.start_agent("controller-0", "controller");
    site.start_agent("compute-0", "worker");
    site.wait_for("both hosts reporting, current", |s| {
        let hosts = s.hosts();
        hosts.len() == 2 && hosts.iter().all(|h| h["patch_current"] == true)
    });
    assert_eq!(
        read(&site.root("compute-0"), "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 230\n")
    );
    let table = site.ok(&["query-hosts"]);
    assert!(
        table.starts_with(
            "  Hostname    IP Address  Patch Current  Reboot Required  Release  State\n"
        ),
        "{table}"
    );
    assert!(
        table
            .contains("compute-0     127.0.0.1        Yes             No          19.01   idle \n"),
        "{table}"
    );

    // An in-service patch: upgrade + a new package on every node type.
    let p1 = site.patch(
        "P1",
        false,
        &[
            TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n"),
            TestRpm::new("newpkg", "1.0", "1").file("/usr/bin/newpkg", "#!/bin/sh\necho new\n"),
        ],
        &["newpkg"],
    );
    site.ok(&["upload", p1.to_str().unwrap()]);
    site.ok(&["apply", "P1"]);
    site.wait_for("hosts see P1", |s| {
        s.hosts().iter().all(|h| h["patch_current"] == false)
    });
    assert_eq!(site.patch_state("P1"), "Partial-Apply");
    for host in ["controller-0", "compute-0"] {
        let out = site.ok(&["host-install", host]);
        assert_eq!(out, "\nInstallation was successful.\n");
        let root = site.root(host);
        assert_eq!(
            read(&root, "usr/lib/sysinv/api.py").as_deref(),
            Some("VERSION = 231\n")
        );
        assert_eq!(
            read(&root, "usr/bin/newpkg").as_deref(),
            Some("#!/bin/sh\necho new\n")
        );
    }
    site.wait_for("P1 applied", |s| s.patch_state("P1") == "Applied");
    let table = site.ok(&["query"]);
    assert_eq!(
        table,
        "Patch ID  RR  Release  Patch State\n========  ==  =======  ===========\nP1        N    19.01     Applied  \n\n"
    );

    // A reboot-required patch: refused on an unlocked host, root untouched.
    let p2 = site.patch(
        "P2",
        true,
        &[TestRpm::new("sysinv", "1.0", "232").file("/usr/lib/sysinv/api.py", "VERSION = 232\n")],
        &[],
    );
    site.ok(&["upload", p2.to_str().unwrap()]);
    site.ok(&["apply", "P2"]);
    site.wait_for("compute-0 sees P2", |s| {
        s.host("compute-0")["requires_reboot"] == true
    });
    let out = site.run("sw-patch", &["host-install", "compute-0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Installation rejected. Node must be locked.")
    );
    assert_eq!(
        read(&site.root("compute-0"), "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 231\n")
    );

    // Lock, install, unlock (reboots), current.
    assert!(
        site.system(&["host-lock", "compute-0"])
            .contains("Host compute-0 is locked.")
    );
    let list = site.system(&["host-list"]);
    assert!(
        list.contains(
            "| compute-0    | worker      | locked         | disabled    | online       |"
        ),
        "{list}"
    );
    site.ok(&["host-install", "compute-0"]);
    assert_eq!(
        read(&site.root("compute-0"), "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 232\n")
    );
    let boot = site.host("compute-0")["boot_id"].clone();
    assert_eq!(
        site.host("compute-0")["requires_reboot"],
        true,
        "installed, waiting for the reboot"
    );
    assert!(
        site.system(&["host-unlock", "compute-0"])
            .contains("rebooting")
    );
    site.wait_for("compute-0 rebooted", |s| {
        let h = s.host("compute-0");
        h["boot_id"] != boot && h["requires_reboot"] == false
    });
    let list = site.system(&["host-list"]);
    assert!(
        list.contains(
            "| compute-0    | worker      | unlocked       | enabled     | available    |"
        ),
        "{list}"
    );
    assert_eq!(site.host("compute-0")["patch_current"], true);

    // Remove both patches; the roots go back to the base load.
    site.ok(&["remove", "P2", "P1"]);
    for host in ["controller-0", "compute-0"] {
        site.system(&["host-lock", host]);
        site.ok(&["host-install", host]);
        site.system(&["host-unlock", host]);
        let root = site.root(host);
        assert_eq!(
            read(&root, "usr/lib/sysinv/api.py").as_deref(),
            Some("VERSION = 230\n")
        );
        assert!(
            !root.join("usr/bin/newpkg").exists(),
            "{host}: newpkg not removed"
        );
    }
    site.wait_for("all current", |s| {
        s.hosts()
            .iter()
            .all(|h| h["patch_current"] == true && h["requires_reboot"] == false)
    });
    site.wait_for("patches available", |s| {
        s.patch_state("P1") == "Available" && s.patch_state("P2") == "Available"
    });

    // Refusals: unknown host; an agent with a wrong token.
    let out = site.run("sw-patch", &["host-install", "nosuchhost"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown host specified: nosuchhost"));
    let r = site
        .http()
        .post(format!("{}/agent/v1/report", site.agent_url))
        .bearer_auth("wrong")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn tampered_or_truncated_repository_files_and_escaping_paths_are_refused() {
    let mut site = Site::new();
    site.start_agent("compute-0", "worker");
    site.wait_for("host current", |s| {
        s.host("compute-0")["patch_current"] == true
    });
    let root = site.root("compute-0");
    let before = common::root_snapshot(&root);

    let p1 = site.patch(
        "P1",
        false,
        &[TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n")],
        &[],
    );
    site.ok(&["upload", p1.to_str().unwrap()]);
    site.ok(&["apply", "P1"]);
    let repo_rpm = site.path("state/repo/rel-19.01/Packages/x86_64/sysinv-1.0-231.x86_64.rpm");
    let good = std::fs::read(&repo_rpm).unwrap();

    // Bytes that differ from index.json (same size), then a truncated file.
    let mut tampered = good.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    for (bytes, reason) in [
        (tampered, "does not match the index"),
        (good[..good.len() / 2].to_vec(), "truncated"),
    ] {
        std::fs::remove_file(&repo_rpm).unwrap();
        std::fs::write(&repo_rpm, &bytes).unwrap();
        let out = site.run("sw-patch", &["host-install", "compute-0"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Installation failed") && err.contains(reason),
            "{err}"
        );
        assert_eq!(
            common::root_snapshot(&root),
            before,
            "nothing may be written to the root"
        );
    }
    std::fs::remove_file(&repo_rpm).unwrap();
    std::fs::write(&repo_rpm, &good).unwrap();
    site.ok(&["host-install", "compute-0"]);
    assert_eq!(
        read(&root, "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 231\n")
    );
    site.ok(&["remove", "P1"]);
    site.ok(&["host-install", "compute-0"]);
    assert_eq!(common::root_snapshot(&root), before);

    // A package whose payload path climbs out of the root.
    let mut evil = rpm::PackageBuilder::new("evil", "1.0", "MIT", "x86_64", "escapes");
    evil.release("1");
    let built = evil
        .with_file_contents(
            "owned\n",
            rpm::FileOptions::new("/usr/../../../escaped-file"),
        )
        .ok()
        .and_then(|b| b.build().ok());
    let package = built.expect("the rpm builder makes the escaping package");
    let path = site.path("rpms/evil-1.0-1.x86_64.rpm");
    package.write_file(&path).unwrap();
    let mut m = PatchMetadata::new("EVIL", "19.01");
    m.status = Status::Released;
    m.reboot_required = false;
    let mut b = PatchBuilder::new(m);
    b.add_rpm(&path, &Personality::ALL).unwrap();
    let (evil_patch, _) = b.write_to_dir(&site.path("patches"), &site.key).unwrap();
    site.ok(&["upload", evil_patch.to_str().unwrap()]);
    site.ok(&["apply", "EVIL"]);
    let out = site.run("sw-patch", &["host-install", "compute-0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("escape the root") || err.contains("unsafe path"),
        "{err}"
    );
    assert_eq!(common::root_snapshot(&root), before);
    assert!(!site.path("escaped-file").exists() && !site.path("roots/escaped-file").exists());
}

#[test]
fn in_service_restart_scripts_run_after_the_install_and_can_fail_it() {
    let mut site = Site::new();
    site.start_agent_with("compute-0", "worker", &["--script-timeout", "3"]);
    site.wait_for("host current", |s| {
        s.host("compute-0")["patch_current"] == true
    });
    let root = site.root("compute-0");
    let build = |id: &str, release: &str, script: &str| {
        let rpm = TestRpm::new("sysinv", "1.0", release)
            .file("/usr/lib/sysinv/api.py", format!("VERSION = {release}\n"));
        let script_path = site.path(&format!("{id}-restart.sh"));
        std::fs::write(&script_path, script).unwrap();
        let mut m = PatchMetadata::new(id, "19.01");
        m.status = Status::Released;
        m.reboot_required = false;
        let mut b = PatchBuilder::new(m);
        b.add_rpm(&rpm.build(&site.path("rpms")), &[]).unwrap();
        b.restart_script(&script_path).unwrap();
        b.write_to_dir(&site.path("patches"), &site.key).unwrap().0
    };
    let good = build(
        "R1",
        "231",
        "#!/bin/sh\nmkdir -p \"$STX_PATCH_ROOT/run\"\necho \"restarted for $STX_PATCH_ID\" > \"$STX_PATCH_ROOT/run/restarted\"\n",
    );
    site.ok(&["upload", good.to_str().unwrap()]);
    site.ok(&["apply", "R1"]);
    site.ok(&["host-install", "compute-0"]);
    assert_eq!(
        read(&root, "run/restarted").as_deref(),
        Some("restarted for R1\n")
    );

    let bad = build(
        "R2",
        "232",
        "#!/bin/sh\necho 'service would not restart' >&2\nexit 3\n",
    );
    site.ok(&["upload", bad.to_str().unwrap()]);
    site.ok(&["apply", "R2"]);
    let out = site.run("sw-patch", &["host-install", "compute-0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Installation failed") && err.contains("service would not restart"),
        "{err}"
    );
    assert_eq!(site.host("compute-0")["patch_failed"], true);
    assert!(site.ok(&["query-hosts"]).contains("Failed"));

    // A script that never ends (its child sleeps on) is stopped at --script-timeout, with
    // everything it started, and the install fails saying so.
    let pid_file = site.path("hung-child.pid");
    let hung = build(
        "R3",
        "233",
        &format!(
            "#!/bin/sh\nsleep 3600 &\necho $! > {}\nwait\n",
            pid_file.display()
        ),
    );
    site.ok(&["upload", hung.to_str().unwrap()]);
    site.ok(&["apply", "R3"]);
    let out = site.run("sw-patch", &["host-install", "compute-0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not finish within 3 s and was stopped (--script-timeout)"),
        "{err}"
    );
    let child = std::fs::read_to_string(&pid_file).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.trim()));
    assert!(
        stat.map_or(true, |s| s.contains(") Z ")),
        "the script's child still runs"
    );
}

/// The `rpm` installer: the system's rpm tool with --root (scripts/test.sh installs rpm).
#[test]
fn the_rpm_tool_installer_installs_upgrades_and_removes() {
    let mut site = Site::new();
    site.start_agent_with("compute-1", "worker", &["--installer", "rpm"]);
    site.wait_for("host current", |s| {
        s.host("compute-1")["patch_current"] == true
    });
    let root = site.root("compute-1");
    assert_eq!(rpm_query_all(&root), ["sysinv-1.0-230"]);
    assert_eq!(
        read(&root, "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 230\n")
    );

    let p1 = site.patch(
        "P1",
        false,
        &[
            TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n"),
            TestRpm::new("newpkg", "1.0", "1").file("/usr/bin/newpkg", "#!/bin/sh\n"),
        ],
        &["newpkg"],
    );
    site.ok(&["upload", p1.to_str().unwrap()]);
    site.ok(&["apply", "P1"]);
    site.ok(&["host-install", "compute-1"]);
    assert_eq!(rpm_query_all(&root), ["newpkg-1.0-1", "sysinv-1.0-231"]);
    assert_eq!(
        read(&root, "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 231\n")
    );
    site.wait_for("current", |s| s.host("compute-1")["patch_current"] == true);

    site.ok(&["remove", "P1"]);
    site.ok(&["host-install", "compute-1"]);
    assert_eq!(rpm_query_all(&root), ["sysinv-1.0-230"]);
    assert_eq!(
        read(&root, "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 230\n")
    );
    assert!(!root.join("usr/bin/newpkg").exists());
}

#[test]
fn install_local_reads_the_agent_configuration_file() {
    let site = Site::new();
    let root = site.root("storage-0");
    std::fs::create_dir_all(&root).unwrap();
    let config = site.path("agent.toml");
    std::fs::write(
        &config,
        format!(
            "controllers = [\"{}\"]\ntoken_file = \"{}\"\nhostname = \"storage-0\"\npersonality = \"storage\"\nrelease = \"19.01\"\nroot = \"{}\"\n",
            site.agent_url,
            site.path("agent-token").display(),
            root.display()
        ),
    )
    .unwrap();
    let out = site.ok(&["install-local", "--config", config.to_str().unwrap()]);
    assert_eq!(out, "Patch installation is complete.\n");
    assert_eq!(
        read(&root, "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 230\n")
    );
    // A bad configuration is refused with the reason.
    std::fs::write(&config, "hostname = 3\n").unwrap();
    let out = site.run(
        "sw-patch",
        &["install-local", "--config", config.to_str().unwrap()],
    );
    assert!(!out.status.success());
}

#[test]
fn a_host_that_stops_reporting_goes_offline() {
    let mut site = Site::new_with(&["--host-offline-after", "2"]);
    site.start_agent("compute-0", "worker");
    site.wait_for("available", |s| {
        s.host("compute-0")["availability"] == "available"
    });
    for agent in &mut site.agents {
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
    site.wait_for("offline", |s| {
        s.host("compute-0")["availability"] == "offline"
    });
    assert!(site.system(&["host-list"]).contains("| offline"));
    // An install ordered on the offline host stays pending, and does not block applying patches.
    site.ok(&["host-install-async", "compute-0"]);
    assert_eq!(site.host("compute-0")["state"], "installing");
    let p1 = site.patch(
        "P1",
        false,
        &[TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n")],
        &[],
    );
    site.ok(&["upload", p1.to_str().unwrap()]);
    site.ok(&["apply", "P1"]);
    // It comes back when its agent reports again, and carries out the pending install.
    let child = site.agent_command("compute-0", "worker").spawn().unwrap();
    site.agents.push(child);
    site.wait_for("available again, installed", |s| {
        let h = s.host("compute-0");
        h["availability"] == "available" && h["patch_current"] == true && h["state"] == "idle"
    });
    assert_eq!(
        read(&site.root("compute-0"), "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 231\n")
    );
}

/// An order whose answer is lost (here: read by nobody, then the controller killed) is handed
/// over again with the same delivery number until a poll acknowledges it.
#[test]
fn an_order_answer_lost_with_the_controller_is_handed_over_again() {
    let mut site = Site::new();
    let http = site.http();
    let credential = site.enrol("compute-0");
    let report = common::report_json("compute-0");
    let reported = http
        .post(format!("{}/agent/v1/report", site.agent_url))
        .bearer_auth(&credential)
        .json(&report)
        .send()
        .unwrap();
    assert_eq!(reported.status(), 200, "{:?}", reported.text());
    site.ok(&["host-install-async", "compute-0"]);
    let poll = |site: &Site, received: u64| -> serde_json::Value {
        http.get(format!(
            "{}/agent/v1/orders?hostname=compute-0&wait=1&received={received}",
            site.agent_url
        ))
        .bearer_auth(&credential)
        .send()
        .unwrap()
        .json()
        .unwrap()
    };
    let first = poll(&site, 0);
    assert_eq!(first["order"], "install", "{first}");
    let delivery = first["delivery"].as_u64().unwrap();
    assert!(delivery > 0, "{first}");
    site.restart_controller();
    assert_eq!(poll(&site, 0), first);
    assert_eq!(poll(&site, delivery)["order"], "none");
    site.restart_controller();
    assert_eq!(poll(&site, delivery)["order"], "none");
    assert_eq!(site.host("compute-0")["state"], "installing");
}

#[test]
fn one_host_rolls_back_to_exactly_what_it_had_while_the_others_keep_the_patch() {
    let mut site = Site::new();
    site.start_agent("compute-0", "worker");
    site.start_agent_with("compute-1", "worker", &["--installer", "rpm"]);
    site.start_agent("compute-2", "worker");
    site.wait_for("hosts current", |s| {
        ["compute-0", "compute-1", "compute-2"]
            .iter()
            .all(|h| s.host(h)["patch_current"] == true)
    });
    let files_without_rpmdb = |host: &str| {
        common::tree_snapshot(&site.root(host), |rel, _| {
            rel.starts_with("var/lib/stx-patch") || rel.starts_with("var/lib/rpm")
        })
    };
    let before_0 = common::root_snapshot(&site.root("compute-0"));
    let before_1 = files_without_rpmdb("compute-1");
    let before_1_rpms = rpm_query_all(&site.root("compute-1"));
    assert_eq!(before_1_rpms, ["sysinv-1.0-230"]);

    // P1 upgrades sysinv and brings a new package (built by rpmbuild: xz payloads, an
    // executable, a noreplace config); every host installs it.
    let p1 = rpmbuild_patch(
        &site,
        "P1",
        &[
            SpecRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n"),
            SpecRpm::new("newtool", "1.0", "1")
                .file_with("/usr/bin/newtool", "#!/bin/sh\n", 0o755, "root", "root", "")
                .file_with(
                    "/etc/newtool.conf",
                    "level = 1\n",
                    0o644,
                    "root",
                    "root",
                    "%config(noreplace)",
                ),
        ],
        &["newtool"],
    );
    site.ok(&["upload", p1.to_str().unwrap()]);
    site.ok(&["apply", "P1"]);
    for host in ["compute-0", "compute-1", "compute-2"] {
        site.ok(&["host-install", host]);
    }
    assert_eq!(site.patch_state("P1"), "Applied");
    assert_ne!(common::root_snapshot(&site.root("compute-0")), before_0);

    // Refusals say what is wrong.
    for (args, message) in [
        (&["host-rollback", "compute-2"][..], "Name the patches"),
        (
            &["host-rollback", "compute-2", "NOPE"][..],
            "Patch NOPE does not exist",
        ),
    ] {
        let out = site.run("sw-patch", args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }

    // compute-0 (built-in installer) and compute-1 (rpm) roll back; compute-2 keeps P1.
    site.ok(&["host-rollback", "compute-0", "P1"]);
    site.ok(&["host-rollback", "compute-1", "--all"]);
    // Every file is back byte for byte (and mode); the rpm database lists what it listed.
    // Directories the patch's packages created are left behind, empty, exactly as `rpm -e`
    // leaves them: both installers' roots are the same tree.
    let files = |tree: &std::collections::BTreeMap<std::path::PathBuf, (u32, Vec<u8>)>| {
        tree.iter()
            .filter(|(_, (mode, _))| mode & 0o170000 != 0o040000)
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let after_0 = common::root_snapshot(&site.root("compute-0"));
    let after_1 = files_without_rpmdb("compute-1");
    assert_eq!(files(&after_0), files(&before_0), "compute-0's files");
    assert_eq!(files(&after_1), files(&before_1), "compute-1's files");
    assert_eq!(
        after_0, after_1,
        "the built-in installer left another tree than rpm"
    );
    assert_eq!(rpm_query_all(&site.root("compute-1")), before_1_rpms);
    assert_eq!(
        read(&site.root("compute-2"), "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 231\n")
    );
    for host in ["compute-0", "compute-1", "compute-2"] {
        assert_eq!(site.host(host)["patch_current"], true, "{host}");
    }
    assert_eq!(site.patch_state("P1"), "Partial-Apply");
    assert_eq!(
        site.host("compute-0")["held_patches"],
        serde_json::json!(["P1"])
    );
    assert!(site.host("compute-2").get("held_patches").is_none());

    // Released, compute-0 takes P1 again.
    site.ok(&["host-release", "compute-0"]);
    assert_eq!(site.host("compute-0")["patch_current"], false);
    site.ok(&["host-install", "compute-0"]);
    assert_eq!(
        read(&site.root("compute-0"), "usr/lib/sysinv/api.py").as_deref(),
        Some("VERSION = 231\n")
    );
}

#[test]
fn a_failing_health_check_rolls_the_host_back_and_fails_its_install() {
    let mut site = Site::new();
    let health = site.path("health");
    common::write_script(
        &health.join("required.d/10-api"),
        "test -f \"$STX_PATCH_ROOT/usr/lib/sysinv/api.py\" || { echo 'sysinv api.py is gone'; exit 1; }",
    );
    common::write_script(
        &health.join("wanted.d/10-disk"),
        "echo 'disk almost full'; exit 1",
    );
    site.start_agent_with(
        "compute-0",
        "worker",
        &["--health-dir", health.to_str().unwrap()],
    );
    site.start_agent("compute-1", "worker");
    site.wait_for("hosts current", |s| {
        ["compute-0", "compute-1"]
            .iter()
            .all(|h| s.host(h)["patch_current"] == true)
    });
    let patch = |id: &str, release: &str, keep_api: bool| {
        let mut rpm = SpecRpm::new("sysinv", "1.0", release).file(
            "/usr/share/sysinv/VERSION",
            format!("sysinv-1.0-{release}\n"),
        );
        if keep_api {
            rpm = rpm.file("/usr/lib/sysinv/api.py", format!("VERSION = {release}\n"));
        }
        let path = rpmbuild_patch(&site, id, &[rpm], &[]);
        site.ok(&["upload", path.to_str().unwrap()]);
        site.ok(&["apply", id]);
    };

    // A good patch passes the required check; the wanted one only warns.
    patch("GOOD", "231", true);
    site.ok(&["host-install", "compute-0"]);
    let host = site.host("compute-0");
    assert_eq!(host["health"]["state"], "warned", "{host}");
    assert!(
        host["health"]["detail"]
            .as_str()
            .unwrap()
            .contains("wanted.d/10-disk failed"),
        "{host}"
    );
    let before = common::root_snapshot(&site.root("compute-0"));

    // A patch whose package drops the file the check looks for: the host fails its check,
    // rolls back to exactly what it had, and is held back from the patch.
    patch("BAD", "232", false);
    let out = site.run("sw-patch", &["host-install", "compute-0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("health check required.d/10-api failed")
            && err.contains("sysinv api.py is gone")
            && err.contains("rolled back from BAD"),
        "{err}"
    );
    assert_eq!(common::root_snapshot(&site.root("compute-0")), before);
    let host = site.host("compute-0");
    assert_eq!(host["health"]["state"], "failed", "{host}");
    assert_eq!(host["held_patches"], serde_json::json!(["BAD"]), "{host}");
    assert_eq!(host["patch_failed"], true, "{host}");
    assert_eq!(host["patch_current"], true, "{host}");
    // A host without the check takes the patch; the patch is Partial-Apply meanwhile.
    assert_eq!(site.patch_state("BAD"), "Partial-Apply");
    site.ok(&["host-install", "compute-1"]);
    assert_eq!(site.patch_state("BAD"), "Partial-Apply");
    assert_eq!(
        read(&site.root("compute-1"), "usr/share/sysinv/VERSION").as_deref(),
        Some("sysinv-1.0-232\n")
    );
}
