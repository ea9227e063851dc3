//! The daemons' logs: plain text by default (journald-friendly under systemd), one JSON
//! object a line with `STX_PATCH_LOG_FORMAT=json`, and one audit event per operation with
//! who asked, from where, what and the outcome, as fields in JSON.

mod common;

use std::process::Command;

/// Starts a controller with `env`, refuses one apply through it, stops it and returns what
/// it logged.
fn log_of_a_refused_apply(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let (mut controller, addresses) = common::spawn_with_addresses(
        common::controller()
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--release", "19.01", "--listen", "127.0.0.1:0"])
            .env("STX_PATCH_LOG", "info")
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let url = format!("http://{}", addresses["api"].as_str().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_sw-patch"))
        .args(["--url", &url, "apply", "NOPE_0001"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = controller.kill();
    let _ = controller.wait();
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn json_logs_carry_each_operation_as_fields() {
    let log = log_of_a_refused_apply(&[("STX_PATCH_LOG_FORMAT", "json")]);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let audit: Vec<&serde_json::Value> = events.iter().filter(|e| e["target"] == "audit").collect();
    assert_eq!(audit.len(), 1, "{log}");
    let event = audit[0];
    assert_eq!(event["user"], "local");
    assert!(
        event["from"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{event}"
    );
    assert!(
        event["action"]
            .as_str()
            .unwrap()
            .starts_with("apply NOPE_0001"),
        "{event}"
    );
    assert!(
        event["outcome"].as_str().unwrap().starts_with("refused: "),
        "{event}"
    );
    assert_eq!(event["level"], "INFO");
    assert!(event["timestamp"].is_string(), "{event}");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .starts_with("User: local From: ")
    );
}

#[test]
fn text_logs_word_the_audit_once_and_leave_the_time_to_journald() {
    let log = log_of_a_refused_apply(&[]);
    let line = log
        .lines()
        .find(|l| l.contains(" audit: "))
        .unwrap_or_else(|| panic!("no audit line: {log}"));
    assert!(line.contains("User: local From: 127.0.0.1:"), "{line}");
    assert!(line.contains("Action: apply NOPE_0001"), "{line}");
    assert!(line.contains("Outcome: refused: "), "{line}");
    // The fields are not repeated after the words, and no colour codes go to a file.
    assert!(
        !line.contains("user=") && !line.contains('\u{1b}'),
        "{line}"
    );
    assert!(
        line.starts_with(|c: char| c.is_ascii_digit()),
        "a timestamp first: {line}"
    );
    let journald = log_of_a_refused_apply(&[("JOURNAL_STREAM", "8:12345")]);
    let line = journald.lines().find(|l| l.contains(" audit: ")).unwrap();
    assert!(
        line.starts_with(" INFO audit: User: local") || line.starts_with("INFO audit: User: local"),
        "{line}"
    );
}
