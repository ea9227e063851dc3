//! SIGKILL of the installing process at random moments of upgrades of rpmbuild-built
//! packages (payload staging, file renames, scriptlets, the rpm database update, the
//! commit): once the installer is reopened, files and rpm database are exactly as before the
//! transaction or exactly as after it, never a mix.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::{BuiltinInstaller, Recovery, Transaction, TransactionPackage};
use host_state::InstalledPackage;
use patch_format::Evr;
use patch_format::testing::{Payload, SpecRpm, rpmbuild_available};
use sha2::{Digest, Sha256};

const KILLS: usize = 50;

fn rpm_lines(root: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"])
        .args(args)
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.contains("use Alien instead") && !l.contains("assuming you know"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Files (not the installer's state, not what scriptlets write at run time) with kind, mode,
/// owner, content hash, link target and inode group; plus `rpm -qa` and `rpm -Va`.
#[derive(Debug, PartialEq, Eq)]
struct State {
    files: BTreeMap<String, String>,
    qa: Vec<String>,
    va: Vec<String>,
}

fn state(root: &Path) -> State {
    let mut files = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with("var/lib/stx-patch")
                || rel.starts_with("var/lib/rpm")
                || rel == "trace"
                || rel.starts_with("var/tmp")
            {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("l {:?}", std::fs::read_link(&path).unwrap())
            } else if m.is_dir() {
                stack.push(path.clone());
                format!("d {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid())
            } else {
                // Hard-link groups by the first path seen with the inode.
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
                format!(
                    "f {:o} {}:{} {} {} {}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    hex::encode(Sha256::digest(std::fs::read(&path).unwrap())),
                    if m.nlink() > 1 { first } else { String::new() }
                )
            };
            files.insert(rel, desc);
        }
    }
    State {
        files,
        qa: rpm_lines(root, &["-qa"]),
        va: rpm_lines(root, &["-Va", "--nodeps"]),
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
                    name: s.name.clone(),
                    arch: s.arch.clone(),
                    evr: Evr::new(0, &s.version, &s.release),
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
    std::fs::create_dir_all(base.join("bin")).unwrap();
    std::fs::create_dir_all(base.join("var/lib/rpm")).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static");
    std::fs::copy(busybox, base.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", base.join("bin/sh")).unwrap();
    assert!(
        Command::new("rpm")
            .arg("--root")
            .arg(&base)
            .args(["--dbpath", "/var/lib/rpm", "--initdb"])
            .status()
            .unwrap()
            .success()
    );
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
    let child = |root: &Path| {
        Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("STX_CRASH_ROOT", root)
            .env("STX_CRASH_RPMS", &rpms)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    assert!(child(&probe).wait().unwrap().success());
    let full = started.elapsed();
    let after = state(&probe);
    assert_ne!(before, after);
    assert!(
        after.qa.iter().all(|p| p.contains("-2.0-1")),
        "{:?}",
        after.qa
    );
    assert_eq!(
        after.va,
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
    let (mut saw_before, mut saw_after) = (0, 0);
    let root = dir.path().join("root");
    for kill in 0..KILLS {
        copy_root(&base, &root);
        let mut process = child(&root);
        // Anywhere from the process start to a little past the usual end.
        let wait = Duration::from_micros(random() % (full.as_micros() as u64 * 6 / 5 + 1));
        std::thread::sleep(wait);
        let _ = process.kill(); // SIGKILL
        let _ = process.wait();
        let (_, recovery) = BuiltinInstaller::open(&root).unwrap();
        let now = state(&root);
        if now == before {
            saw_before += 1;
        } else if now == after {
            saw_after += 1;
        } else {
            let diff: Vec<String> = now
                .files
                .iter()
                .filter(|(k, v)| before.files.get(*k) != Some(v) && after.files.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: {v}"))
                .take(10)
                .collect();
            panic!(
                "kill {kill} after {wait:?} ({recovery:?}): a mix of before and after\n{diff:#?}\nqa {:?}\nva {:?}",
                now.qa, now.va
            );
        }
        assert!(
            recovery == Recovery::Clean
                || recovery == Recovery::RolledBack
                || recovery == Recovery::RolledForward
        );
    }
    eprintln!("{KILLS} kills over {full:?}: {saw_before} before, {saw_after} after");
    assert_eq!(saw_before + saw_after, KILLS);
}
