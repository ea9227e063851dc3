//! The builtin installer on real RPMs in temporary roots: install, upgrade, remove, rollback on
//! error, and recovery from a stop at every single step.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agent::{BuiltinInstaller, InstallError, Recovery, Transaction, TransactionPackage};
use host_state::InstalledPackage;
use patch_format::testing::TestRpm;
use patch_format::{Evr, PackageId};

/// Everything under a root except the installer's own state and directories: path → (kind,
/// mode, content). Directories are left out because, as with rpm, a removal leaves the
/// parent directories a package did not own (the conformance suite compares them with rpm).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if rel.starts_with("var/lib/stx-patch") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, ('l', 0, target.to_string_lossy().as_bytes().to_vec()));
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, ('f', mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn pkg(rpm: &TestRpm, dir: &Path, patch: Option<&str>) -> TransactionPackage {
    TransactionPackage {
        package: InstalledPackage {
            id: PackageId::new(
                rpm.name.clone(),
                Evr::new(rpm.epoch, &rpm.version, &rpm.release),
                rpm.arch.clone(),
            ),
            patch: patch.map(str::to_owned),
            reboot_required: false,
        },
        rpm: rpm.build(dir),
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    rpms: PathBuf,
    root: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let rpms = dir.path().join("rpms");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&rpms).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "compute-0\n").unwrap();
    Setup {
        _dir: dir,
        rpms,
        root,
    }
}

fn base_v1() -> TestRpm {
    TestRpm::new("sysinv", "1.0", "230")
        .file("/usr/lib/sysinv/api.py", "VERSION = 230\n")
        .file("/usr/lib/sysinv/old_only.py", "legacy\n")
}

fn base_v2() -> TestRpm {
    TestRpm::new("sysinv", "1.0", "231")
        .file("/usr/lib/sysinv/api.py", "VERSION = 231\n")
        .file("/usr/lib/sysinv/new_only.py", "fresh\n")
}

#[test]
fn install_upgrade_downgrade_remove_round_trip() {
    let s = setup();
    let (mut inst, recovery) = BuiltinInstaller::open(&s.root).unwrap();
    assert_eq!(recovery, Recovery::Clean);
    let empty = snapshot(&s.root);

    inst.apply(&Transaction {
        install: vec![pkg(&base_v1(), &s.rpms, None)],
        remove: vec![],
    })
    .unwrap();
    let v1 = snapshot(&s.root);
    assert_eq!(
        std::fs::read_to_string(s.root.join("usr/lib/sysinv/api.py")).unwrap(),
        "VERSION = 230\n"
    );
    assert!(s.root.join("usr/share/sysinv/VERSION").exists());

    // Upgrade: new content, the file only v1 had is gone, the new one is there.
    let newpkg = TestRpm::new("newpkg", "1.0", "1").file("/usr/bin/newpkg", "#!/bin/sh\n");
    inst.apply(&Transaction {
        install: vec![
            pkg(&base_v2(), &s.rpms, Some("P1")),
            pkg(&newpkg, &s.rpms, Some("P1")),
        ],
        remove: vec![],
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(s.root.join("usr/lib/sysinv/api.py")).unwrap(),
        "VERSION = 231\n"
    );
    assert!(!s.root.join("usr/lib/sysinv/old_only.py").exists());
    assert!(s.root.join("usr/lib/sysinv/new_only.py").exists());
    assert_eq!(inst.installed().len(), 2);
    let record = inst
        .records()
        .find(|r| r.package.id.name == "sysinv")
        .unwrap();
    assert_eq!(record.package.patch.as_deref(), Some("P1"));

    // Remove the patch: downgrade back to v1, remove newpkg — the root is exactly as before.
    inst.apply(&Transaction {
        install: vec![pkg(&base_v1(), &s.rpms, None)],
        remove: vec![("newpkg".into(), "x86_64".into())],
    })
    .unwrap();
    assert_eq!(
        snapshot(&s.root),
        v1,
        "after the downgrade the root equals the v1 root"
    );

    inst.apply(&Transaction {
        install: vec![],
        remove: vec![("sysinv".into(), "x86_64".into())],
    })
    .unwrap();
    assert_eq!(
        snapshot(&s.root),
        empty,
        "removing everything restores the original root"
    );
    assert!(inst.installed().is_empty());
    // The database survives a reopen.
    drop(inst);
    let (inst, recovery) = BuiltinInstaller::open(&s.root).unwrap();
    assert_eq!(recovery, Recovery::Clean);
    assert!(inst.installed().is_empty());
}

#[test]
fn a_stop_at_any_step_leaves_the_root_before_or_after_never_between() {
    let s = setup();
    {
        let (mut inst, _) = BuiltinInstaller::open(&s.root).unwrap();
        inst.apply(&Transaction {
            install: vec![pkg(&base_v1(), &s.rpms, None)],
            remove: vec![],
        })
        .unwrap();
    }
    let before = snapshot(&s.root);
    let newpkg = TestRpm::new("newpkg", "1.0", "1").file("/opt/new/deep/tool", "tool\n");
    let tx = Transaction {
        install: vec![
            pkg(&base_v2(), &s.rpms, Some("P1")),
            pkg(&newpkg, &s.rpms, Some("P1")),
        ],
        remove: vec![],
    };
    // Find the "after" state and the number of steps on a scratch copy.
    let scratch = s.root.with_file_name("scratch");
    copy_tree(&s.root, &scratch);
    let (mut inst, _) = BuiltinInstaller::open(&scratch).unwrap();
    let mut steps = 0;
    inst.apply_with_hook(&tx, &mut |step| steps = steps.max(step))
        .unwrap();
    let after = snapshot(&scratch);
    assert_ne!(before, after);
    assert!(steps >= 6, "only {steps} steps");

    for stop_at in 0..=steps {
        let root = s.root.with_file_name(format!("crash-{stop_at}"));
        copy_tree(&s.root, &root);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (mut inst, _) = BuiltinInstaller::open(&root).unwrap();
            inst.apply_with_hook(&tx, &mut |step| {
                if step == stop_at {
                    panic!("simulated crash at step {step}");
                }
            })
        }));
        assert!(result.is_err(), "step {stop_at} was not reached");
        let (inst, recovery) = BuiltinInstaller::open(&root).unwrap();
        let now = snapshot(&root);
        if stop_at == steps {
            assert_eq!(recovery, Recovery::RolledForward, "stop after commit");
            assert_eq!(now, after);
            assert_eq!(inst.installed().len(), 2);
        } else {
            assert_eq!(recovery, Recovery::RolledBack, "stop at {stop_at}");
            assert_eq!(now, before, "stop at {stop_at}: root not restored");
            assert_eq!(inst.installed().len(), 1);
        }
        // A retry succeeds.
        drop(inst);
        let (mut inst, _) = BuiltinInstaller::open(&root).unwrap();
        inst.apply(&tx).unwrap();
        assert_eq!(snapshot(&root), after);
    }
}

#[test]
fn errors_roll_back_and_unsafe_paths_are_refused() {
    let s = setup();
    let (mut inst, _) = BuiltinInstaller::open(&s.root).unwrap();
    let before = snapshot(&s.root);

    // A file already owned by another package.
    inst.apply(&Transaction {
        install: vec![pkg(&base_v1(), &s.rpms, None)],
        remove: vec![],
    })
    .unwrap();
    let v1 = snapshot(&s.root);
    let thief = TestRpm::new("thief", "1", "1").file("/usr/lib/sysinv/api.py", "stolen\n");
    let err = inst
        .apply(&Transaction {
            install: vec![pkg(&thief, &s.rpms, None)],
            remove: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, InstallError::Conflict { .. }), "{err}");
    assert_eq!(snapshot(&s.root), v1);

    // A symlink in the root that points outside it: writing through it is refused.
    let outside = s.root.with_file_name("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, s.root.join("opt-link")).unwrap();
    let v1 = snapshot(&s.root);
    let escaper = TestRpm::new("escaper", "1", "1").file("/opt-link/evil", "x\n");
    let err = inst
        .apply(&Transaction {
            install: vec![pkg(&escaper, &s.rpms, None)],
            remove: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, InstallError::UnsafePath { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert_eq!(snapshot(&s.root), v1);

    // A corrupt RPM: nothing changes.
    let item = pkg(&TestRpm::new("broken", "1", "1"), &s.rpms, None);
    std::fs::write(&item.rpm, b"\xed\xab\xee\xdbnot really").unwrap();
    let err = inst
        .apply(&Transaction {
            install: vec![item],
            remove: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, InstallError::Package { .. }), "{err}");
    assert_eq!(snapshot(&s.root), v1);
    drop(inst);
    // Removing the package restores the very first root.
    let (mut inst, _) = BuiltinInstaller::open(&s.root).unwrap();
    inst.apply(&Transaction {
        install: vec![],
        remove: vec![("sysinv".into(), "x86_64".into())],
    })
    .unwrap();
    std::fs::remove_file(s.root.join("opt-link")).unwrap();
    assert_eq!(snapshot(&s.root), before);
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}
