//! Every state file of the controller and the agent, corrupted and then truncated in turn:
//! the daemon says which file and what to do, never reads it as empty; once the file is
//! restored, nothing is lost.

mod common;

use std::path::Path;

use common::Site;
use patch_format::testing::TestRpm;

/// What the site must still hold after a file was restored.
fn intact(site: &Site) {
    assert_eq!(site.host("compute-0")["hostname"], "compute-0");
    let query = site.ok(&["query"]);
    assert!(
        query.contains("SF_0001") && query.contains("Applied"),
        "{query}"
    );
    let alarms = site
        .http()
        .get(format!("{}/v1/alarms", site.vim_url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(alarms.contains("900.901"), "{alarms}");
    let strategy = site.run("sw-manager", &["patch-strategy", "show"]);
    assert!(
        String::from_utf8_lossy(&strategy.stdout).contains("Strategy Patch Strategy"),
        "{}",
        String::from_utf8_lossy(&strategy.stdout)
    );
}

fn damage(path: &Path, how: &str) {
    match how {
        "corrupted" => std::fs::write(path, b"{\"not\": json at all").unwrap(),
        _ => std::fs::write(path, b"").unwrap(),
    }
}

#[test]
fn every_controller_state_file_damaged_in_turn_stops_the_start_with_its_name() {
    let mut site = Site::new();
    site.start_agent("compute-0", "worker");
    site.wait_for("compute-0 reporting", |s| {
        s.host("compute-0")["patch_current"] == true
    });
    let patch = site.patch(
        "SF_0001",
        false,
        &[TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n")],
        &[],
    );
    site.ok(&["upload", patch.to_str().unwrap()]);
    site.ok(&["apply", "SF_0001"]);
    site.ok(&["host-install", "compute-0"]);
    let raised = site
        .http()
        .post(format!("{}/v1/alarms", site.vim_url))
        .json(&serde_json::json!({
            "alarm_id": "900.901", "entity_instance_id": "host=compute-0",
            "reason_text": "state file test", "severity": "minor"
        }))
        .send()
        .unwrap();
    assert!(raised.status().is_success(), "{:?}", raised.text());
    let created = site.run("sw-manager", &["patch-strategy", "create"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    intact(&site);

    for file in [
        "state/alarms.json",
        "state/orchestration/strategy.json",
        "state/hosts/compute-0.json",
        "state/host-credentials.json",
        "state/repo/rel-19.01/index.json",
        "state/feed/rel-19.01/index.json",
    ] {
        let path = site.path(file);
        let original = std::fs::read(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        for how in ["corrupted", "truncated"] {
            damage(&path, how);
            let err = site
                .try_restart_controller()
                .expect_err(&format!("the controller started with {file} {how}"));
            let name = Path::new(file).file_name().unwrap().to_string_lossy();
            assert!(err.contains(&*name), "{file} {how}: {err}");
        }
        std::fs::write(&path, &original).unwrap();
        site.try_restart_controller()
            .unwrap_or_else(|e| panic!("after restoring {file}: {e}"));
        intact(&site);
    }

    // The signing key: agents cannot get an index signed, and are told why; restored, they can.
    let key = site.path("state/repo-signing/key.pem");
    let original = std::fs::read(&key).unwrap();
    damage(&key, "corrupted");
    let answer = site
        .http()
        .get(format!("{}/agent/v1/index/repo/19.01", site.agent_url))
        .bearer_auth(site.enrol("compute-7"))
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 500);
    assert!(answer.text().unwrap().contains("key.pem"));
    std::fs::write(&key, &original).unwrap();
    site.restart_controller();
    intact(&site);
}

#[test]
fn every_agent_state_file_damaged_in_turn_is_an_error_naming_it() {
    let mut site = Site::new();
    site.start_agent("compute-0", "worker");
    site.wait_for("compute-0 reporting", |s| {
        s.host("compute-0")["patch_current"] == true
    });
    for agent in &mut site.agents {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    let state = site.root("compute-0").join("var/lib/stx-patch/agent");
    for file in ["agent.json", "credential", "repo-key.pem"] {
        let path = state.join(file);
        let original = std::fs::read(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        for how in ["corrupted", "truncated"] {
            damage(&path, how);
            // The boot-time install reads every file the daemon does.
            let out = site
                .agent_command("compute-0", "worker")
                .arg("--install-local")
                .stderr(std::process::Stdio::piped())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{file} {how}: the agent went on");
            assert!(err.contains(file), "{file} {how}: {err}");
        }
        std::fs::write(&path, &original).unwrap();
        let out = site
            .agent_command("compute-0", "worker")
            .arg("--install-local")
            .output()
            .unwrap();
        assert!(out.status.success(), "after restoring {file}");
    }
}
