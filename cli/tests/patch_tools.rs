//! patch-build, patch-query and patch-modify as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

use patch_format::testing::TestRpm;

fn tool(name: &str) -> Command {
    let path = match name {
        "patch-build" => env!("CARGO_BIN_EXE_patch-build"),
        "patch-query" => env!("CARGO_BIN_EXE_patch-query"),
        "patch-modify" => env!("CARGO_BIN_EXE_patch-modify"),
        other => panic!("{other}"),
    };
    let mut cmd = Command::new(path);
    cmd.env_remove("PLATFORM_RELEASE")
        .env_remove("PATCH_SIGNING_KEY")
        .env_remove("PATCH_RPM_SIGNING_KEY")
        .env_remove("STX_PATCH_KEYRING");
    cmd
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "unexpectedly succeeded");
    String::from_utf8(out.stderr).unwrap()
}

fn setup(dir: &Path) {
    ok(tool("patch-build")
        .arg("--generate-key")
        .arg(dir.join("keys"))
        .output()
        .unwrap());
    std::fs::create_dir_all(dir.join("keyring")).unwrap();
    std::fs::copy(
        dir.join("keys/signing-key.pub.pem"),
        dir.join("keyring/dev.pem"),
    )
    .unwrap();
    TestRpm::new("sysinv", "1.0", "231.tis").build(dir);
    TestRpm::new("newpkg", "1.0", "1.tis").build(dir);
}

#[test]
fn build_query_modify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    std::fs::write(d.join("pre.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    let out = ok(tool("patch-build")
        .current_dir(d)
        .env("PLATFORM_RELEASE", "19.01")
        .env("PATCH_SIGNING_KEY", d.join("keys/signing-key.pem"))
        .args([
            "--id",
            "STX_19.01_PATCH_0001",
            "--status",
            "DEV",
            "--reboot-required",
            "N",
        ])
        .args([
            "--summary",
            "Sample",
            "--desc",
            "line 1\nline 2",
            "--req",
            "STX_19.01_PATCH_0000",
        ])
        .args([
            "--all-nodes",
            "newpkg-1.0-1.tis.x86_64.rpm",
            "--pre-apply",
            "pre.sh",
        ])
        .args(["--output-dir", "out", "sysinv-1.0-231.tis.x86_64.rpm"])
        .output()
        .unwrap());
    assert!(
        out.contains("out/STX_19.01_PATCH_0001.patch built: 2 RPM(s)"),
        "{out}"
    );
    let patch = d.join("out/STX_19.01_PATCH_0001.patch");

    let text = ok(tool("patch-query")
        .arg(&patch)
        .arg("--keyring")
        .arg(d.join("keyring"))
        .output()
        .unwrap());
    assert!(text.starts_with("STX_19.01_PATCH_0001:\n"), "{text}");
    assert!(text.contains("    Status:         DEV\n"), "{text}");
    assert!(text.contains("    RR:             N\n"), "{text}");
    assert!(
        text.contains("    Description:    line 1\n                    line 2\n"),
        "{text}"
    );
    assert!(
        text.contains("    New Packages:   controller: newpkg\n"),
        "{text}"
    );
    assert!(
        text.contains("                    worker-lowlatency: newpkg\n"),
        "{text}"
    );
    assert!(
        text.contains("    Signed By:      dev.pem (SHA256:"),
        "{text}"
    );

    let json = ok(tool("patch-query")
        .arg(&patch)
        .arg("--format=json")
        .env("STX_PATCH_KEYRING", d.join("keyring"))
        .output()
        .unwrap());
    assert!(json.contains("\"signed_by\": \"dev.pem\""), "{json}");
    assert!(
        json.contains("\"requires\": [\n      \"STX_19.01_PATCH_0000\""),
        "{json}"
    );

    let modified = ok(tool("patch-modify")
        .arg(&patch)
        .args(["--status", "REL", "--signing-key"])
        .arg(d.join("keys/signing-key.pem"))
        .output()
        .unwrap());
    assert!(modified.contains("status DEV -> REL"), "{modified}");
    let text = ok(tool("patch-query")
        .arg(&patch)
        .arg("--keyring")
        .arg(d.join("keyring"))
        .output()
        .unwrap());
    assert!(text.contains("    Status:         REL\n"), "{text}");
    assert!(text.contains("    Semantics:      pre-apply\n"), "{text}");
    // Nothing but the patch in the output dir (no temp files from the rewrite).
    assert_eq!(std::fs::read_dir(d.join("out")).unwrap().count(), 1);
}

#[test]
fn refusals_have_the_original_messages_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let key = d.join("keys/signing-key.pem");
    let err = fails(
        tool("patch-build")
            .current_dir(d)
            .args(["--id", "P1", "--release", "19.01", "--signing-key"])
            .arg(&key)
            .output()
            .unwrap(),
    );
    assert!(err.contains("Cannot generate empty patch"), "{err}");
    let err = fails(
        tool("patch-build")
            .current_dir(d)
            .args([
                "--id",
                "P1",
                "sysinv-1.0-231.tis.x86_64.rpm",
                "--signing-key",
            ])
            .arg(&key)
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("The release version must be specified in the sw_version field"),
        "{err}"
    );
    let err = fails(
        tool("patch-build")
            .current_dir(d)
            .args([
                "--id",
                "P1",
                "--release",
                "1",
                "sysinv-1.0-231.tis.x86_64.rpm",
            ])
            .output()
            .unwrap(),
    );
    assert!(err.contains("no signing key"), "{err}");
    let err = fails(
        tool("patch-build")
            .current_dir(d)
            .args([
                "--id",
                "P1",
                "--release",
                "1",
                "--status",
                "X",
                "sysinv-1.0-231.tis.x86_64.rpm",
            ])
            .output()
            .unwrap(),
    );
    assert!(err.contains("unknown status"), "{err}");
    let err = fails(
        tool("patch-build")
            .current_dir(d)
            .args([
                "--id",
                "../P1",
                "--release",
                "1",
                "sysinv-1.0-231.tis.x86_64.rpm",
                "--signing-key",
            ])
            .arg(&key)
            .output()
            .unwrap(),
    );
    assert!(err.contains("<id>"), "{err}");
    let err = fails(
        tool("patch-build")
            .arg("--generate-key")
            .arg(d.join("keys"))
            .output()
            .unwrap(),
    );
    assert!(err.contains("already exists"), "{err}");

    // patch-query on garbage, and on a patch signed by a key not in the keyring.
    std::fs::write(d.join("bad.patch"), "garbage").unwrap();
    let err = fails(
        tool("patch-query")
            .arg(d.join("bad.patch"))
            .arg("--keyring")
            .arg(d.join("keyring"))
            .output()
            .unwrap(),
    );
    assert!(err.contains("not gzip"), "{err}");
    ok(tool("patch-build")
        .arg("--generate-key")
        .arg(d.join("other"))
        .output()
        .unwrap());
    ok(tool("patch-build")
        .current_dir(d)
        .args([
            "--id",
            "P2",
            "--release",
            "1",
            "sysinv-1.0-231.tis.x86_64.rpm",
            "--signing-key",
        ])
        .arg(d.join("other/signing-key.pem"))
        .output()
        .unwrap());
    let err = fails(
        tool("patch-query")
            .arg(d.join("P2.patch"))
            .arg("--keyring")
            .arg(d.join("keyring"))
            .output()
            .unwrap(),
    );
    assert!(err.contains("Signature check failed"), "{err}");
    // patch-modify will not re-sign a patch it cannot verify.
    let err = fails(
        tool("patch-modify")
            .arg(d.join("P2.patch"))
            .args(["--status", "REL", "--keyring"])
            .arg(d.join("keyring"))
            .arg("--signing-key")
            .arg(&key)
            .output()
            .unwrap(),
    );
    assert!(err.contains("does not verify"), "{err}");
}

#[test]
fn rpms_are_signed_at_build_and_reported_by_query() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let out = ok(tool("patch-build")
        .arg("--generate-rpm-key")
        .arg(d.join("rpmkeys"))
        .args(["--format", "json"])
        .output()
        .unwrap());
    let generated: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key_id = generated["key_id"].as_str().unwrap().to_owned();
    assert_eq!(key_id.len(), 16);
    // Never overwrites a key.
    let err = fails(
        tool("patch-build")
            .arg("--generate-rpm-key")
            .arg(d.join("rpmkeys"))
            .output()
            .unwrap(),
    );
    assert!(err.contains("already exists"), "{err}");

    let input = d.join("sysinv-1.0-231.tis.x86_64.rpm");
    let before = std::fs::read(&input).unwrap();
    ok(tool("patch-build")
        .current_dir(d)
        .env("PATCH_SIGNING_KEY", d.join("keys/signing-key.pem"))
        .env("PATCH_RPM_SIGNING_KEY", d.join("rpmkeys/rpm-signing.asc"))
        .args(["--id", "SIGNED_0001", "--release", "19.01"])
        .args(["--all-nodes", "newpkg-1.0-1.tis.x86_64.rpm"])
        .args(["--output-dir", "out", "sysinv-1.0-231.tis.x86_64.rpm"])
        .output()
        .unwrap());
    assert_eq!(std::fs::read(&input).unwrap(), before, "inputs untouched");
    let text = ok(tool("patch-query")
        .arg(d.join("out/SIGNED_0001.patch"))
        .arg("--keyring")
        .arg(d.join("keyring"))
        .output()
        .unwrap());
    assert!(
        text.contains(&format!(
            "sysinv-1.0-231.tis.x86_64.rpm: signed by key {key_id}"
        )),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(tool("patch-query")
        .arg(d.join("out/SIGNED_0001.patch"))
        .arg("--keyring")
        .arg(d.join("keyring"))
        .args(["--format", "json"])
        .output()
        .unwrap()))
    .unwrap();
    for rpm in json["rpms"].as_array().unwrap() {
        assert_eq!(rpm["signed_by"], serde_json::json!([key_id]), "{rpm}");
    }

    // Unsigned RPMs say so; a bad key file is a clear error and builds nothing.
    ok(tool("patch-build")
        .current_dir(d)
        .env("PATCH_SIGNING_KEY", d.join("keys/signing-key.pem"))
        .args(["--id", "PLAIN_0001", "--release", "19.01"])
        .args(["--output-dir", "out", "sysinv-1.0-231.tis.x86_64.rpm"])
        .output()
        .unwrap());
    let text = ok(tool("patch-query")
        .arg(d.join("out/PLAIN_0001.patch"))
        .arg("--keyring")
        .arg(d.join("keyring"))
        .output()
        .unwrap());
    assert!(
        text.contains("sysinv-1.0-231.tis.x86_64.rpm: unsigned"),
        "{text}"
    );
    let err = fails(
        tool("patch-build")
            .current_dir(d)
            .env("PATCH_SIGNING_KEY", d.join("keys/signing-key.pem"))
            .arg("--sign-rpms")
            .arg(d.join("keys/signing-key.pem"))
            .args(["--id", "BAD_0001", "--release", "19.01"])
            .args(["--output-dir", "out", "sysinv-1.0-231.tis.x86_64.rpm"])
            .output()
            .unwrap(),
    );
    assert!(err.contains("OpenPGP secret key"), "{err}");
    assert!(!d.join("out/BAD_0001.patch").exists());
}
