//! The main job as a test: the 2+2+2 cluster walkthrough example (controller + six agent
//! processes) runs to the end and prints the seed's tables in each state.

use std::path::PathBuf;
use std::process::Command;

fn example() -> PathBuf {
    // target/<profile>/deps/walkthrough-… → target/<profile>/examples/cluster_walkthrough
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_owned();
    profile_dir.join("examples").join("cluster_walkthrough")
}

#[test]
fn the_cluster_walkthrough_runs_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let exe = example();
    assert!(
        exe.exists(),
        "cargo test builds the examples first: {}",
        exe.display()
    );
    let out = Command::new(&exe)
        .arg(work.path().join("cluster"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A line of a table: starts with `first` and holds every one of `cells`.
    let row = |first: &str, cells: &[&str]| {
        stdout.lines().any(|l| {
            l.starts_with(first) && cells.iter().all(|c| l.split_whitespace().any(|w| w == *c))
        })
    };
    // Every query-hosts row of a host: [hostname, ip, patch current, reboot required, release, state].
    let host_rows = |host: &str| -> Vec<Vec<&str>> {
        stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|cols| cols.len() == 6 && cols[0] == host)
            .collect()
    };
    for host in [
        "controller-0",
        "controller-1",
        "compute-0",
        "compute-1",
        "storage-0",
        "storage-1",
    ] {
        let rows = host_rows(host);
        let seen = |current: &str, rr: &str| {
            rows.iter()
                .any(|r| r[2] == current && r[3] == rr && r[4] == "19.01" && r[5] == "idle")
        };
        assert!(seen("Yes", "No"), "{host} current: {rows:?}");
        // Not current once a patch is applied (Pending until the host re-reports, as the original).
        assert!(
            seen("No", "No") || seen("Pending", "No"),
            "{host} not current: {rows:?}"
        );
        // Reboot Required once the reboot-required patch is applied.
        assert!(
            seen("No", "Yes") || seen("Pending", "Yes"),
            "{host} reboot required: {rows:?}"
        );
    }
    assert_eq!(
        stdout.matches("Installation was successful.").count(),
        18,
        "6 hosts x 3 installs"
    );
    // 001 and 002 through their states.
    assert!(
        stdout.contains("001 is now available\n") && stdout.contains("001 is now in the repo\n")
    );
    for state in ["Available", "Partial-Apply", "Applied"] {
        assert!(row("001 ", &["N", "19.01", state]), "001 {state}: {stdout}");
        assert!(row("002 ", &["Y", "19.01", state]), "002 {state}: {stdout}");
    }
    assert!(
        stdout.contains("compute-0 root: VERSION = '1.0-231' / kernel 958\n"),
        "{stdout}"
    );
    // Removed: the roots are back to the base load.
    assert!(
        stdout
            .contains("compute-0 root: VERSION = '1.0-230' / kernel 957 / newpkg present: false\n"),
        "{stdout}"
    );
}
