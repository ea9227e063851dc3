//! The packages `scripts/package.sh` builds, inspected with `dpkg-deb` and `rpm`, and the
//! .deb installed by `dpkg` into a throwaway root whose tools then run; the controller
//! starts on the configuration the packages ship.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The two packages, built from this build's multi-call binary.
fn build(out: &Path) -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package.sh");
    let built = run(Command::new("bash")
        .arg(script)
        .args(["--binary", env!("CARGO_BIN_EXE_cli"), "--fast", "--out"])
        .arg(out));
    let files: Vec<PathBuf> = text(&built).lines().map(PathBuf::from).collect();
    assert_eq!(files.len(), 2, "{files:?}");
    (files[0].clone(), files[1].clone())
}

fn tools() -> Vec<String> {
    let out = run(Command::new(env!("CARGO_BIN_EXE_cli")).arg("list-tools"));
    text(&out).lines().map(str::to_owned).collect()
}

/// What every package must hold (paths without the leading `/`).
fn expected(tools: &[String]) -> Vec<String> {
    let mut paths: Vec<String> = [
        "usr/lib/stx-patch/stx-patch",
        "usr/lib/systemd/system/sw-patch-controller.service",
        "usr/lib/systemd/system/sw-patch-agent.service",
        "usr/lib/sysusers.d/stx-patch.conf",
        "etc/stx-patch/controller.toml",
        "etc/stx-patch/agent.toml",
        "var/lib/stx-patch",
        "usr/share/doc/stx-patch/README.md",
        "usr/share/man/man1/sw-patch-host-rollback.1.gz",
        "usr/share/man/man1/sw-manager-patch-strategy-create.1.gz",
    ]
    .map(str::to_owned)
    .to_vec();
    for tool in tools {
        paths.push(format!("usr/bin/{tool}"));
        paths.push(format!("usr/share/man/man1/{tool}.1.gz"));
        paths.push(format!("usr/share/bash-completion/completions/{tool}"));
        paths.push(format!("usr/share/zsh/site-functions/_{tool}"));
        paths.push(format!("usr/share/fish/vendor_completions.d/{tool}.fish"));
    }
    paths
}

#[test]
fn the_deb_and_rpm_hold_everything_and_the_deb_installs_into_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let (deb, rpm) = build(dir.path());
    let tools = tools();
    assert!(tools.len() >= 9, "{tools:?}");

    // dpkg-deb -c: names as ./path (directories end with /, links show their target).
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    let in_deb: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches("./").trim_end_matches('/').to_owned())
        .collect();
    for path in expected(&tools) {
        assert!(in_deb.contains(&path), "the .deb lacks {path}:\n{listing}");
    }
    // Configuration files dpkg keeps as the operator edited them on upgrade.
    let conffiles = text(&run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles")));
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        [
            "/etc/stx-patch/controller.toml",
            "/etc/stx-patch/agent.toml"
        ]
    );
    let field = |name: &str| {
        text(&run(Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg(name)))
        .trim()
        .to_owned()
    };
    assert_eq!(field("Package"), "stx-patch");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));

    // rpm -qlp and its configuration files (kept as they are on upgrade).
    let listing = text(&run(Command::new("rpm").arg("-qlp").arg(&rpm)));
    let in_rpm: BTreeSet<String> = listing
        .lines()
        .map(|l| l.trim_start_matches('/').to_owned())
        .collect();
    for path in expected(&tools) {
        assert!(in_rpm.contains(&path), "the .rpm lacks {path}:\n{listing}");
    }
    let config = text(&run(Command::new("rpm")
        .args(["-qp", "--configfiles"])
        .arg(&rpm)));
    assert_eq!(
        config.lines().collect::<Vec<_>>(),
        [
            "/etc/stx-patch/agent.toml",
            "/etc/stx-patch/controller.toml"
        ]
    );

    // dpkg installs it into an empty root (libc is the host's: --force-depends).
    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "").unwrap();
    }
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
            "-i",
        ])
        .arg(&deb));
    let status = text(&run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["-s", "stx-patch"])));
    assert!(status.contains("Status: install ok installed"), "{status}");
    for tool in &tools {
        let out = run(Command::new(root.join("usr/bin").join(tool)).arg("--version"));
        assert_eq!(
            text(&out).trim(),
            format!("{tool} {}", env!("CARGO_PKG_VERSION"))
        );
    }

    // The shipped controller configuration starts a controller (its state elsewhere and a
    // free port: this is a test); the agent's names what is missing.
    let state = dir.path().join("state");
    let (mut controller, addresses) = common::spawn_with_addresses(
        Command::new(root.join("usr/bin/sw-patch-controller"))
            .arg("--config")
            .arg(root.join("etc/stx-patch/controller.toml"))
            .arg("--state-dir")
            .arg(&state)
            .args(["--listen", "127.0.0.1:0", "--vim-listen", "127.0.0.1:0"])
            .arg("--print-addresses")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let _ = controller.kill();
    let _ = controller.wait();
    assert!(
        addresses["api"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{addresses}"
    );
    let agent = Command::new(root.join("usr/bin/sw-patch-agent"))
        .arg("--config")
        .arg(root.join("etc/stx-patch/agent.toml"))
        .output()
        .unwrap();
    assert!(!agent.status.success());
    assert!(
        String::from_utf8_lossy(&agent.stderr).contains("--controller is required"),
        "{}",
        String::from_utf8_lossy(&agent.stderr)
    );
}
