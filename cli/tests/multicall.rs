//! The multi-call `cli` binary: the first argument, or the name it is called by, picks the tool.

use std::process::Command;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cli"))
}

#[test]
fn the_first_argument_names_the_tool_and_the_tool_sees_its_own_name() {
    for tool in [
        "sw-patch",
        "sw-manager",
        "system",
        "fm",
        "patch-build",
        "patch-query",
    ] {
        let out = cli().args([tool, "--help"]).output().unwrap();
        assert!(out.status.success(), "{tool}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Usage: {tool} ")),
            "{tool} --help: {text}"
        );
    }
}

#[test]
fn an_unknown_or_missing_tool_is_an_error_that_lists_the_tools() {
    let out = cli().arg("sw-patchh").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown tool \"sw-patchh\""), "{err}");
    assert!(err.contains("sw-patch, system"), "{err}");
    let out = cli().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn called_by_a_tools_name_it_is_that_tool() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("sw-manager");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cli"), &link).unwrap();
    let out = Command::new(&link).arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: sw-manager "));
}

#[test]
fn exit_statuses_are_the_documented_ones() {
    let status = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sw-patch"))
            .args(args)
            .env_remove("SW_PATCH_URL")
            .output()
            .unwrap()
            .status
            .code()
    };
    // A wrong command line: 2.
    assert_eq!(status(&["--no-such-flag"]), Some(2));
    assert_eq!(status(&["query", "--format", "xml"]), Some(2));
    // A controller that does not answer: the operation failed, 1.
    assert_eq!(status(&["--url", "http://127.0.0.1:1", "query"]), Some(1));
    // A refused region: 1.
    assert_eq!(
        status(&[
            "--dcmanager-url",
            "http://127.0.0.1:1",
            "--os-region-name",
            "RegionOne",
            "query"
        ]),
        Some(1)
    );
    let help = Command::new(env!("CARGO_BIN_EXE_sw-patch"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains(stx_patch_cli::EXIT_CODES));
}
