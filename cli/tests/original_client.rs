//! The original StarlingX `sw-patch` client (Python, `cli/tests/original/`, unmodified) against
//! the real controller's loopback plain API: every command it sends works, and where our
//! `sw-patch` prints the same thing, the two outputs are byte for byte equal.

mod common;

use std::process::{Command, Output};

use common::Site;
use patch_format::testing::TestRpm;

/// The original client, run with the system's Python against `site`'s plain API.
fn original(site: &Site, args: &[&str]) -> Output {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/original");
    let out = Command::new("/usr/bin/python3")
        .arg(format!("{dir}/sw_patch.py"))
        .args(args)
        .env("STX_TEST_API_ADDR", site.url.trim_start_matches("http://"))
        .env("COLUMNS", "80")
        .output()
        .expect("/usr/bin/python3 runs (scripts/test.sh installs its modules)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("ModuleNotFoundError"),
        "the original client needs python3-requests, -requests-toolbelt, -netaddr and -six (scripts/test.sh installs them): {err}"
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ours(site: &Site, args: &[&str]) -> String {
    text(&site.run("sw-patch", args))
}

#[test]
fn the_original_client_drives_the_controller_and_prints_what_ours_prints() {
    let mut site = Site::new();
    site.start_agent("compute-0", "worker");
    site.wait_for("compute-0 reporting", |s| {
        s.host("compute-0")["patch_current"] == true
    });
    let patch = site.patch(
        "ORIG_0001",
        false,
        &[TestRpm::new("sysinv", "1.0", "231").file("/usr/lib/sysinv/api.py", "VERSION = 231\n")],
        &[],
    );

    let up = original(&site, &["upload", patch.to_str().unwrap()]);
    assert!(up.status.success(), "{}", text(&up));
    assert!(
        text(&up).contains("ORIG_0001 is now available"),
        "{}",
        text(&up)
    );

    let mut differ = Vec::new();
    for args in [
        vec!["query"],
        vec!["show", "ORIG_0001"],
        vec!["query-hosts"],
        vec!["what-requires", "ORIG_0001"],
        // --debug prints the answers as JSON (sorted, indented by four).
        vec!["--debug", "query"],
        vec!["--debug", "show", "ORIG_0001"],
        vec!["--debug", "what-requires", "ORIG_0001"],
    ] {
        let theirs = original(&site, &args);
        assert!(theirs.status.success(), "{args:?}: {}", text(&theirs));
        let mine = ours(&site, &args);
        if text(&theirs) != mine {
            differ.push(format!(
                "{args:?}:\n original: {:?}\n ours:     {mine:?}",
                text(&theirs)
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));

    // A region other than the system controller's is refused by both, with one message.
    let theirs = original(&site, &["--os-region-name", "RegionOne", "query"]);
    // Ours asks the distributed cloud system controller whether it is a subcloud; none
    // answers here.
    let mine = site.run(
        "sw-patch",
        &[
            "--dcmanager-url",
            "http://127.0.0.1:1",
            "--os-region-name",
            "RegionOne",
            "query",
        ],
    );
    assert!(!theirs.status.success() && !mine.status.success());
    assert_eq!(text(&theirs), "Unsupported region name: RegionOne\n");
    assert!(
        text(&mine).starts_with("error: Unsupported region name: RegionOne (no distributed cloud system controller answers at http://127.0.0.1:1"),
        "{}",
        text(&mine)
    );
    let refused = site.run(
        "sw-patch",
        &["--os-region-name", "SystemController", "query-hosts"],
    );
    assert!(!refused.status.success());
    assert_eq!(
        text(&refused),
        "error: query-hosts command is not allowed in SystemController region\n"
    );

    let applied = original(&site, &["apply", "ORIG_0001"]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(
        text(&applied).contains("ORIG_0001 is now in the repo"),
        "{}",
        text(&applied)
    );
    let installed = original(&site, &["host-install", "compute-0"]);
    assert!(installed.status.success(), "{}", text(&installed));
    assert_eq!(text(&installed), "\nInstallation was successful.\n");
    site.wait_for("ORIG_0001 applied", |s| {
        s.patch_state("ORIG_0001") == "Applied"
    });
    assert_eq!(text(&original(&site, &["query"])), ours(&site, &["query"]));
    assert_eq!(
        text(&original(&site, &["query-hosts"])),
        ours(&site, &["query-hosts"])
    );
    assert_eq!(
        text(&original(&site, &["is-applied", "ORIG_0001"])).trim(),
        "True"
    );
    assert_eq!(
        text(&original(&site, &["is-available", "ORIG_0001"])).trim(),
        "False"
    );

    let removed = original(&site, &["remove", "ORIG_0001"]);
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(
        text(&removed).contains("ORIG_0001 has been removed from the repo"),
        "{}",
        text(&removed)
    );
    let reinstalled = original(&site, &["host-install", "compute-0"]);
    assert_eq!(text(&reinstalled), "\nInstallation was successful.\n");
    assert_eq!(
        ours(&site, &["host-install", "compute-0"]),
        "\nInstallation was successful.\n"
    );
    let deleted = original(&site, &["delete", "ORIG_0001"]);
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert!(
        text(&deleted).contains("ORIG_0001 has been deleted"),
        "{}",
        text(&deleted)
    );
    assert_eq!(text(&original(&site, &["query"])), ours(&site, &["query"]));
}
