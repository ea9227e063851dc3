//! SIGKILL of the installing process at random moments of upgrades of rpmbuild-built
//! packages (payload staging, file renames, scriptlets, the rpm database update, the
//! commit): once the installer is reopened, files and rpm database are exactly as before the
//! transaction or exactly as after it, never a mix.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::{BuiltinInstaller, Recovery, Transaction, TransactionPackage};
use common::{Node, make_root, rpm_state, tree};
use host_state::InstalledPackage;
use patch_format::testing::roots::rpm_lines;
use patch_format::testing::{Payload, SpecRpm, rpmbuild_available};
use patch_format::{Evr, PackageId};

const KILLS: usize = 50;

/// The tree (as the conformance suite compares it, without what scriptlets write at run
/// time and without directory times, which renames and their undoing set to the wall
/// clock), its hard-link groups, `rpm -qa` and `rpm -Va`.
#[derive(Debug, PartialEq, Eq)]
struct State {
    nodes: BTreeMap<String, Node>,
    links: BTreeSet<Vec<String>>,
    qa: Vec<String>,
    va: Vec<String>,
}

fn state(root: &Path) -> State {
    let (mut nodes, links) = tree(root);
    nodes.retain(|path, _| path != "trace" && !path.starts_with("var/tmp"));
    for node in nodes.values_mut().filter(|n| n.kind == 'd') {
        node.mtime = None;
    }
    let (qa, va) = rpm_state(root);
    State {
        nodes,
        links,
        qa,
        va,
    }
}

fn package(name: &str, v: u32) -> SpecRpm {
    let mut spec = SpecRpm::new(name, &format!("{v}.0"), "1")
        .payload(Payload::Xz)
        .file_with(
            &format!("/usr/bin/{name}"),
            format!("binary {v}\n"),
            0o755,
            "root",
            "root",
            "",
        )
        .hard_link(
            &format!("/usr/bin/{name}-link"),
            &format!("/usr/bin/{name}"),
        )
        .file_with(
            &format!("/etc/{name}.conf"),
            format!("v{v}\n"),
            0o644,
            "root",
            "root",
            "%config(noreplace)",
        )
        .symlink(&format!("/usr/share/{name}/latest"), &format!("data-{v}"))
        .dir(&format!("/usr/share/{name}"), 0o755);
    for i in 0..40 {
        spec = spec.file(
            &format!("/usr/share/{name}/data-{v}/f{i}"),
            format!("{name} {v} {i}\n").repeat(50),
        );
    }
    for section in ["%pre", "%post", "%preun", "%postun", "%posttrans"] {
        spec = spec.script(
            section,
            &format!("echo \"{section} {name}-{v} $1\" >> /trace"),
        );
    }
    spec
}

fn tx(specs: &[SpecRpm], dir: &Path) -> Transaction {
    Transaction {
        install: specs
            .iter()
            .map(|s| TransactionPackage {
                package: InstalledPackage {
                    id: PackageId::new(
                        s.name.clone(),
                        Evr::new(0, &s.version, &s.release),
                        s.arch.clone(),
                    ),
                    patch: None,
                    reboot_required: false,
                },
                rpm: dir.join(s.file_name()),
            })
            .collect(),
        remove: vec![],
    }
}

fn copy_root(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// The child: runs the upgrade named by the environment (this test binary, re-run).
#[test]
fn crash_child() {
    let (Ok(root), Ok(rpms)) = (
        std::env::var("STX_CRASH_ROOT"),
        std::env::var("STX_CRASH_RPMS"),
    ) else {
        return; // run as a normal test: nothing to do
    };
    let (mut installer, _) = BuiltinInstaller::open(Path::new(&root)).unwrap();
    // The parent's kill window starts here, not at process start.
    println!("ready");
    std::io::stdout().flush().unwrap();
    installer
        .apply(&tx(&upgrade_specs(), Path::new(&rpms)))
        .unwrap();
}

fn upgrade_specs() -> Vec<SpecRpm> {
    ["alpha", "beta", "gamma"]
        .iter()
        .map(|n| package(n, 2))
        .collect()
}

#[test]
fn sigkill_at_random_moments_leaves_files_and_rpm_database_before_or_after() {
    assert!(
        rpmbuild_available(),
        "rpmbuild is not installed (./scripts/test.sh installs rpm)"
    );
    let dir = tempfile::tempdir().unwrap();
    let rpms = dir.path().join("rpms");
    std::fs::create_dir_all(&rpms).unwrap();
    let base_specs: Vec<SpecRpm> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|n| package(n, 1))
        .collect();
    for s in base_specs.iter().chain(upgrade_specs().iter()) {
        s.build(&rpms);
    }
    // The base root: v1 installed by the builtin installer, an edited config.
    let base = dir.path().join("base");
    make_root(&base);
    {
        let (mut installer, _) = BuiltinInstaller::open(&base).unwrap();
        installer.apply(&tx(&base_specs, &rpms)).unwrap();
    }
    std::fs::write(base.join("etc/beta.conf"), "administrator's\n").unwrap();
    let before = state(&base);
    // The after-state, and how long an uninterrupted upgrade takes.
    let probe = dir.path().join("probe");
    copy_root(&base, &probe);
    let exe = std::env::current_exe().unwrap();
    // The child, once it has opened the installer and is about to install.
    let child = |root: &Path| {
        let mut process = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("STX_CRASH_ROOT", root)
            .env("STX_CRASH_RPMS", &rpms)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the child never got ready"
            );
        }
        (process, stdout)
    };
    let (mut probe_process, _out) = child(&probe);
    let started = Instant::now();
    assert!(probe_process.wait().unwrap().success());
    let full = started.elapsed();
    let after = state(&probe);
    assert_ne!(before, after);
    assert!(
        after.qa.iter().all(|p| p.contains("-2.0-1")),
        "{:?}",
        after.qa
    );
    assert_eq!(
        rpm_lines(&probe, &["-Va", "--nodeps"]),
        vec!["S.5....T.  c /etc/beta.conf".to_owned()],
        "only the edited config differs"
    );

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut saw_before, mut saw_after, mut rolled_back) = (0, 0, 0);
    let root = dir.path().join("root");
    for kill in 0..KILLS {
        copy_root(&base, &root);
        let (mut process, _out) = child(&root);
        // Anywhere in the install, and a little past its usual end.
        let wait = Duration::from_micros(random() % (full.as_micros() as u64 * 6 / 5 + 1));
        std::thread::sleep(wait);
        let _ = process.kill(); // SIGKILL
        let _ = process.wait();
        let (_, recovery) = BuiltinInstaller::open(&root).unwrap();
        rolled_back += usize::from(recovery == Recovery::RolledBack);
        let now = state(&root);
        if now == before {
            saw_before += 1;
            assert!(
                matches!(recovery, Recovery::Clean | Recovery::RolledBack),
                "kill {kill}: before-state after {recovery:?}"
            );
        } else if now == after {
            saw_after += 1;
            assert!(
                matches!(recovery, Recovery::Clean | Recovery::RolledForward),
                "kill {kill}: after-state after {recovery:?}"
            );
        } else {
            let diff: Vec<String> = now
                .nodes
                .iter()
                .filter(|(k, v)| before.nodes.get(*k) != Some(v) && after.nodes.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: {v:?}"))
                .take(10)
                .collect();
            panic!(
                "kill {kill} after {wait:?} ({recovery:?}): a mix of before and after\n{diff:#?}\nqa {:?}\nva {:?}",
                now.qa, now.va
            );
        }
    }
    eprintln!(
        "{KILLS} kills over {full:?}: {saw_before} before ({rolled_back} rolled back), {saw_after} after"
    );
    assert_eq!(saw_before + saw_after, KILLS);
}
