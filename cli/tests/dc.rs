//! The distributed cloud system controller end to end: `dc-controller` and `dcmanager`
//! against real subcloud controllers (each its own `sw-patch-controller`, reached over TLS
//! with its own CA and operator token), on SQLite and on a real PostgreSQL server. The audit
//! finds each managed subcloud's patches and compares them with the system controller's.

mod common;

use std::process::Command;

use common::Site;
use common::dc::{Dc, SUBCLOUD_TOKEN, TOKEN, add, apply, subcloud, trust};
use patch_format::testing::TestRpm;
use serde_json::Value;

fn the_audit_reports_availability_and_sync(database_url: Option<&str>) {
    let system_controller = Site::new();
    apply(&system_controller, "DC_0001", "231");
    let mut east = subcloud();
    let west = subcloud();
    let dc = Dc::start(&system_controller, database_url);

    dc.ok(&[
        "subcloud-group",
        "add",
        "--name",
        "east",
        "--update-apply-type",
        "serial",
        "--max-parallel-subclouds",
        "3",
    ]);
    add(&dc, "subcloud1", &east, Some("east"));
    add(&dc, "subcloud2", &west, None);
    // A subcloud whose controller is gone: reported offline, never waited on.
    let gone = subcloud();
    add(&dc, "subcloud3", &gone, None);
    drop(gone);

    let list = dc.ok(&["subcloud", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        lines[1],
        "| id | name      | management | availability | deploy status | sync    | backup status | prestage status |",
        "{list}"
    );
    assert_eq!(
        lines[3],
        "| 1  | subcloud1 | unmanaged  | offline      | complete      | unknown | None          | None            |",
        "{list}"
    );
    assert!(
        dc.ok(&["subcloud-group", "list-subclouds", "east"])
            .contains("subcloud1")
    );

    for name in ["subcloud1", "subcloud2", "subcloud3"] {
        dc.ok(&["subcloud", "manage", name]);
    }
    let s1 = dc.wait_for("subcloud1", "online", "out-of-sync");
    assert_eq!(s1["sync-detail"], "missing: DC_0001", "{s1}");
    dc.wait_for("subcloud2", "online", "out-of-sync");
    let s3 = dc.wait_for("subcloud3", "offline", "unknown");
    assert!(
        s3["sync-detail"].as_str().unwrap().starts_with("offline: "),
        "{s3}"
    );

    // Once subcloud1 has the system controller's patches, it is in sync; one with a patch
    // the system controller lacks is not.
    apply(&east, "DC_0001", "231");
    dc.wait_for("subcloud1", "online", "in-sync");
    apply(&west, "DC_0001", "231");
    apply(&west, "DC_0002", "232");
    dc.wait_until("subcloud2", "out of sync by DC_0002", |s| {
        s["sync_status"] == "out-of-sync" && s["sync-detail"] == "extra: DC_0002"
    });
    // A subcloud's region reaches its controller through the system controller: a query,
    // then an upload streamed through and applied there (DC_0003, a patch only subcloud2
    // has), which the next audit sees.
    let region = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sw-patch"))
            .args(["--dcmanager-url", &dc.url, "--token", TOKEN])
            .args(args)
            .output()
            .unwrap()
    };
    let query = region(&["--os-region-name", "subcloud2", "query"]);
    let listed = String::from_utf8_lossy(&query.stdout);
    assert!(query.status.success(), "{query:?}");
    assert!(
        listed.contains("DC_0002") && listed.contains("DC_0001"),
        "{listed}"
    );
    let own = west.patch(
        "DC_0003",
        false,
        &[TestRpm::new("sysinv", "1.0", "233").file("/usr/lib/sysinv/api.py", "VERSION\n")],
        &[],
    );
    let uploaded = region(&[
        "--os-region-name",
        "subcloud2",
        "upload",
        own.to_str().unwrap(),
    ]);
    assert!(uploaded.status.success(), "{uploaded:?}");
    assert!(
        String::from_utf8_lossy(&uploaded.stdout).contains("DC_0003 is now available"),
        "{uploaded:?}"
    );
    assert!(
        region(&["--os-region-name", "subcloud2", "apply", "DC_0003"])
            .status
            .success()
    );
    dc.wait_until("subcloud2", "out of sync by DC_0002 and DC_0003", |s| {
        s["sync-detail"] == "extra: DC_0002, DC_0003"
    });
    // sw-manager and fm reach the subcloud's orchestration and alarm API the same way.
    let manager = Command::new(env!("CARGO_BIN_EXE_sw-manager"))
        .args(["--dcmanager-url", &dc.url, "--token", TOKEN])
        .args(["--os-region-name", "subcloud2", "patch-strategy", "show"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&manager.stdout),
        "No strategy available\n",
        "{manager:?}"
    );
    let fm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fm"))
            .args(["--dcmanager-url", &dc.url, "--token", TOKEN])
            .args(["--os-region-name", "subcloud2"])
            .args(args)
            .output()
            .unwrap()
    };
    let raised = fm(&[
        "alarm-raise",
        "--alarm-id",
        "100.101",
        "--entity-instance-id",
        "host=controller-0",
    ]);
    assert!(raised.status.success(), "{raised:?}");
    let alarms: Value =
        serde_json::from_slice(&fm(&["alarm-list", "--format", "json"]).stdout).unwrap();
    assert_eq!(alarms["alarms"][0]["alarm_id"], "100.101", "{alarms}");
    // ... on subcloud2 only.
    let local = Command::new(env!("CARGO_BIN_EXE_fm"))
        .args([
            "--url",
            &east.vim_url,
            "--token",
            SUBCLOUD_TOKEN,
            "--format",
            "json",
        ])
        .env("OS_CACERT", &east.ca.ca_cert)
        .arg("alarm-list")
        .output()
        .unwrap();
    let local: Value = serde_json::from_slice(&local.stdout).unwrap();
    assert_eq!(local["alarms"].as_array().map(Vec::len), Some(0), "{local}");

    let unknown = region(&["--os-region-name", "nosuch", "query"]);
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "error: Unsupported region name: nosuch\n"
    );

    // Prestage: the system controller's signed file of a patch subcloud1 lacks is passed
    // on to it and verified there (the subclouds trust the system controller's signing key,
    // as a real distributed cloud's share one); nothing is applied.
    apply(&system_controller, "DC_0004", "234");
    dc.wait_until("subcloud1", "missing DC_0004", |s| {
        s["sync-detail"] == "missing: DC_0004"
    });
    let refused = dc.run(&["subcloud", "prestage", "subcloud1"]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("Failed: DC_0004: "),
        "{refused:?}"
    );
    trust(&mut east, &system_controller);
    assert_eq!(
        dc.ok(&["subcloud", "prestage", "subcloud1"]),
        "Uploaded to subcloud1: DC_0004\n"
    );
    let query: Value = serde_json::from_str(&east.ok(&["query", "--format", "json"])).unwrap();
    assert_eq!(query["pd"]["DC_0004"]["repostate"], "Available", "{query}");
    assert_eq!(
        dc.ok(&["subcloud", "prestage", "subcloud1"]),
        "subcloud1 lacks no patch of the system controller\n"
    );

    dc.wait_until("subcloud2", "missing DC_0004", |s| {
        s["sync-detail"] == "missing: DC_0004; extra: DC_0002, DC_0003"
    });
    let shown = dc.ok(&["subcloud", "show", "subcloud2", "--detail"]);
    assert!(
        shown.contains("| patching_sync_detail | missing: DC_0004; extra: DC_0002, DC_0003 |"),
        "{shown}"
    );

    // Unmanaged: unknown; a managed subcloud cannot be deleted.
    let refused = dc.run(&["subcloud", "delete", "subcloud3"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unmanage subcloud3 first"),
        "{refused:?}"
    );
    dc.ok(&["subcloud", "unmanage", "subcloud3"]);
    assert_eq!(dc.subcloud("subcloud3")["sync_status"], "unknown");
    dc.ok(&["subcloud", "delete", "subcloud3"]);
    // Deleting a group moves its subclouds to Default.
    dc.ok(&["subcloud-group", "delete", "east"]);
    assert_eq!(dc.subcloud("subcloud1")["group_id"], 1);

    // Without a token nothing is answered.
    let anonymous = Command::new(env!("CARGO_BIN_EXE_dcmanager"))
        .args(["--dcmanager-url", &dc.url, "subcloud", "list"])
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("authentication required"));
}

#[test]
fn the_audit_reports_availability_and_sync_on_sqlite() {
    the_audit_reports_availability_and_sync(None);
}

#[test]
fn the_audit_reports_availability_and_sync_on_postgresql() {
    let server = dc_controller::test_postgres::Postgres::start();
    the_audit_reports_availability_and_sync(Some(&server.url()));
}
