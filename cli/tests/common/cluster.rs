//! The 2+2+2 cluster the strategy tests run on, and its patches.

use patch_format::testing::TestRpm;

use super::Site;

/// Two controllers, two storage hosts, two workers.
pub const HOSTS: &[(&str, &str)] = &[
    ("controller-0", "controller"),
    ("controller-1", "controller"),
    ("storage-0", "storage"),
    ("storage-1", "storage"),
    ("compute-0", "worker"),
    ("compute-1", "worker"),
];

/// Controller TOML shortening the strategy's waits to seconds; `settle` is the stabilize
/// period after an install on locked hosts.
pub fn fast_timing(settle: u64) -> String {
    format!(
        "strategy_audit_ms = 100
[strategy_timing]
swact_settle = 0
lock_no_disable_wait = 0
stabilize_after_install = {settle}
stabilize_in_service = 1
stabilize_final = 1
reboot_settle = 0
alarms_first_query = 0
data_sync_first_query = 0
"
    )
}

/// A site with the six hosts' agents running (those named in `hooks` with that workload
/// hook), every host reporting and current.
pub fn six_hosts(toml: &str, hooks: &[(&str, &str)]) -> Site {
    six_hosts_with(toml, hooks, &[])
}

/// [`six_hosts`], every agent also given `agent_args`.
pub fn six_hosts_with(toml: &str, hooks: &[(&str, &str)], agent_args: &[&str]) -> Site {
    let mut site = Site::with_toml(toml, &[]);
    for (host, personality) in HOSTS {
        let mut args: Vec<&str> = agent_args.to_vec();
        if let Some((_, hook)) = hooks.iter().find(|(h, _)| h == host) {
            args.extend(["--workload-hook", hook]);
        }
        site.start_agent_with(host, personality, &args);
    }
    site.wait_for("all hosts reporting and current", |s| {
        let hosts = s.hosts();
        hosts.len() == HOSTS.len() && hosts.iter().all(|h| h["patch_current"] == true)
    });
    site
}

/// Uploads and applies a patch upgrading sysinv to 231 (plus `extra` new packages) and waits
/// until every host has reported against it.
pub fn apply_patch(site: &Site, id: &str, reboot_required: bool, extra: &[TestRpm]) {
    let mut rpms = vec![
        TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n"),
    ];
    rpms.extend(extra.iter().cloned());
    let new: Vec<&str> = extra.iter().map(|r| r.name.as_str()).collect();
    let patch = site.patch(id, reboot_required, &rpms, &new);
    site.ok(&["upload", patch.to_str().unwrap()]);
    site.ok(&["apply", id]);
    site.wait_for("hosts settled on the applied patch", |s| {
        s.hosts()
            .iter()
            .all(|h| h["interim_state"] == false && h["patch_current"] == false)
    });
}
