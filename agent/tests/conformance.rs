//! Conformance with rpm itself: packages built by the real `rpmbuild` (every payload
//! compressor, every feature rpm installs) are installed by the builtin installer into one
//! root and by `rpm --root` from the same files into a second root; after every install,
//! upgrade, downgrade and removal the two roots must be equal — file set, types, modes,
//! owners, sizes, SHA-256, symlink targets, hard-link groups, mtimes, capabilities,
//! `.rpmnew`/`.rpmsave`/`.rpmorig`, the scriptlets' trace — and so must `rpm -qa` and
//! `rpm -Va` on the two databases.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agent::{BuiltinInstaller, InstallError, Transaction, TransactionPackage};
use common::{make_root, rpm_state, tree};
use host_state::InstalledPackage;
use patch_format::testing::roots::{rpm, rpm_upgrade, run_rpm};
use patch_format::testing::{Payload, SpecRpm, rpmbuild_available};
use patch_format::{Evr, PackageId};

/// Two roots side by side: ours (the builtin installer) and rpm's.
struct Pair {
    _dir: tempfile::TempDir,
    ours: PathBuf,
    theirs: PathBuf,
    rpms: PathBuf,
    installer: BuiltinInstaller,
}

fn pair() -> Pair {
    assert!(
        rpmbuild_available(),
        "rpmbuild is not installed (./scripts/test.sh installs rpm)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs, rpms) = (
        dir.path().join("ours"),
        dir.path().join("theirs"),
        dir.path().join("rpms"),
    );
    make_root(&ours);
    make_root(&theirs);
    std::fs::create_dir_all(&rpms).unwrap();
    let (installer, _) = BuiltinInstaller::open(&ours).unwrap();
    assert!(installer.has_rpmdb());
    Pair {
        _dir: dir,
        ours,
        theirs,
        rpms,
        installer,
    }
}

fn item(spec: &SpecRpm, file: &Path) -> TransactionPackage {
    TransactionPackage {
        package: InstalledPackage {
            id: PackageId::new(
                spec.name.clone(),
                Evr::new(spec.epoch, &spec.version, &spec.release),
                spec.arch.clone(),
            ),
            patch: None,
            reboot_required: false,
        },
        rpm: file.to_owned(),
    }
}

impl Pair {
    fn build(&self, spec: &SpecRpm) -> PathBuf {
        spec.build(&self.rpms)
    }

    /// Installs (upgrades, downgrades) `install` and removes `remove` in both roots; returns
    /// the builtin installer's result and whether rpm succeeded.
    fn step(
        &mut self,
        install: &[&SpecRpm],
        remove: &[(&str, &str)],
    ) -> (Result<(), InstallError>, bool) {
        let files: Vec<PathBuf> = install
            .iter()
            .map(|s| self.rpms.join(s.file_name()))
            .collect();
        let tx = Transaction {
            install: install
                .iter()
                .zip(&files)
                .map(|(s, f)| item(s, f))
                .collect(),
            remove: remove
                .iter()
                .map(|(n, a)| ((*n).to_owned(), (*a).to_owned()))
                .collect(),
        };
        let ours = self.installer.apply(&tx);
        let mut ok = true;
        if !files.is_empty() {
            ok &= rpm_upgrade(&self.theirs, &files).0;
        }
        if !remove.is_empty() {
            let mut cmd = rpm(&self.theirs);
            cmd.args(["-e", "--nodeps"]);
            for (n, a) in remove {
                cmd.arg(format!("{n}.{a}"));
            }
            ok &= run_rpm(cmd).0;
        }
        (ours, ok)
    }

    /// A step both installers must take; then the roots must be equal.
    fn both(&mut self, install: &[&SpecRpm], remove: &[(&str, &str)], when: &str) {
        let (ours, theirs) = self.step(install, remove);
        if let Err(e) = ours {
            panic!("{when}: the builtin installer failed: {e}");
        }
        assert!(theirs, "{when}: rpm failed");
        self.assert_same(when);
    }

    /// Asserts the two roots and databases are equal.
    fn assert_same(&self, when: &str) {
        let (ours, our_links) = tree(&self.ours);
        let (theirs, their_links) = tree(&self.theirs);
        let keys: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
        let mut diffs = Vec::new();
        for k in keys {
            match (ours.get(k), theirs.get(k)) {
                (Some(a), Some(b)) if a == b => {}
                _ if k == "trace" => diffs.push(format!(
                    "  trace:\n--- builtin\n{}--- rpm\n{}",
                    std::fs::read_to_string(self.ours.join(k)).unwrap_or_default(),
                    std::fs::read_to_string(self.theirs.join(k)).unwrap_or_default()
                )),
                (a, b) => diffs.push(format!("  {k}:\n    builtin {a:?}\n    rpm     {b:?}")),
            }
        }
        assert!(
            diffs.is_empty(),
            "{when}: the roots differ:\n{}",
            diffs.join("\n")
        );
        assert_eq!(our_links, their_links, "{when}: hard-link groups differ");
        let (ours, theirs) = (rpm_state(&self.ours), rpm_state(&self.theirs));
        assert_eq!(ours.0, theirs.0, "{when}: rpm -qa differs");
        assert_eq!(ours.1, theirs.1, "{when}: rpm -Va differs");
    }

    /// Writes the same administrator edit into both roots (same content, same time).
    fn edit(&self, path: &str, content: &str) {
        for root in [&self.ours, &self.theirs] {
            let p = root.join(path);
            std::fs::write(&p, content).unwrap();
            let t = filetime::FileTime::from_unix_time(1_750_000_000, 0);
            filetime::set_file_times(&p, t, t).unwrap();
        }
    }
}

/// A package with every feature rpm installs; `v` changes contents, and v2 drops one file and
/// adds another.
fn feature_package(name: &str, v: u32, payload: Payload) -> SpecRpm {
    let mut spec = SpecRpm::new(name, &format!("{v}.0"), "1")
        .payload(payload)
        .file_with(
            &format!("/usr/bin/{name}"),
            format!("#!/bin/sh\necho {name} {v}\n"),
            0o755,
            "root",
            "root",
            "",
        )
        .hard_link(
            &format!("/usr/bin/{name}-hard"),
            &format!("/usr/bin/{name}"),
        )
        .hard_link(
            &format!("/usr/sbin/{name}-hard2"),
            &format!("/usr/bin/{name}"),
        )
        .file_with(
            &format!("/usr/bin/{name}-suid"),
            "setuid\n",
            0o4755,
            "root",
            "root",
            "",
        )
        .file_with(
            &format!("/usr/bin/{name}-sgid"),
            "setgid\n",
            0o2755,
            "root",
            "sysinv",
            "",
        )
        .file_with(
            &format!("/usr/bin/{name}-ping"),
            "caps\n",
            0o755,
            "root",
            "root",
            "%caps(cap_net_raw=ep)",
        )
        .file_with(
            &format!("/etc/{name}/{name}.conf"),
            format!("setting = {v}\n"),
            0o640,
            "sysinv",
            "sysinv",
            "%config(noreplace)",
        )
        .file_with(
            &format!("/etc/{name}/plain.conf"),
            format!("plain = {v}\n"),
            0o644,
            "root",
            "root",
            "%config",
        )
        .file_with(
            &format!("/etc/{name}/same.conf"),
            "never changes\n",
            0o644,
            "root",
            "root",
            "%config(noreplace)",
        )
        .file_with(
            &format!("/var/log/{name}.log"),
            "",
            0o600,
            "sysinv",
            "sysinv",
            "%ghost",
        )
        .file_with(
            &format!("/usr/share/{name}/with space/h\u{e9}llo \u{fc}.txt"),
            format!("unicode {v}\n"),
            0o644,
            "root",
            "root",
            "",
        )
        .file_with(
            &format!("/usr/share/{name}/empty-file"),
            "",
            0o644,
            "root",
            "root",
            "",
        )
        .symlink(
            &format!("/usr/share/{name}/rel-link"),
            &format!("../../bin/{name}"),
        )
        .symlink(
            &format!("/usr/share/{name}/abs-link"),
            &format!("/usr/bin/{name}"),
        )
        .symlink(
            &format!("/usr/share/{name}/dangling"),
            "/nonexistent/target",
        )
        .dir(&format!("/usr/share/{name}"), 0o755)
        .dir(&format!("/var/lib/{name}/empty"), 0o750);
    spec = if v == 1 {
        spec.file(&format!("/usr/share/{name}/only-in-1"), "old\n")
    } else {
        spec.file(&format!("/usr/share/{name}/only-in-{v}"), "new\n")
    };
    for section in [
        "%pretrans",
        "%pre",
        "%post",
        "%preun",
        "%postun",
        "%posttrans",
    ] {
        spec = spec.script(
            section,
            &format!("echo \"{section} {name}-{v} $1\" >> /trace"),
        );
    }
    spec
}

#[test]
fn every_payload_compressor_installs_as_rpm_installs_it() {
    let mut p = pair();
    for (n, payload) in Payload::ALL.into_iter().enumerate() {
        let spec = feature_package(&format!("pay{n}"), 1, payload);
        p.build(&spec);
        p.both(&[&spec], &[], &format!("install of a {payload:?} payload"));
    }
    // The comparison saw the features, not their absence in both roots.
    let (nodes, links) = tree(&p.ours);
    let caps = nodes["usr/bin/pay0-ping"].caps.clone();
    assert_eq!(
        caps.as_deref().map(<[u8]>::len),
        Some(20),
        "security.capability is set"
    );
    assert!(links.contains(&vec![
        "usr/bin/pay0".to_owned(),
        "usr/bin/pay0-hard".to_owned(),
        "usr/sbin/pay0-hard2".to_owned()
    ]));
    assert_eq!(nodes["usr/bin/pay0-suid"].mode, 0o4755);
    assert_eq!(
        (
            nodes["usr/bin/pay0-sgid"].mode,
            nodes["usr/bin/pay0-sgid"].gid
        ),
        (0o2755, 169)
    );
    assert_eq!(nodes["etc/pay0/pay0.conf"].uid, 168);
    assert!(
        !nodes.contains_key("var/log/pay0.log"),
        "a %ghost is not created"
    );
    assert!(nodes.contains_key("usr/share/pay0/with space/h\u{e9}llo \u{fc}.txt"));
}

#[test]
fn digest_algorithms_and_config_rules_follow_rpm() {
    let mut p = pair();
    for algo in [1, 10] {
        let mut spec = feature_package(&format!("dig{algo}"), 1, Payload::Xz);
        spec.digest_algorithm = algo;
        p.build(&spec);
        p.both(&[&spec], &[], &format!("file digest algorithm {algo}"));
        // An edited config under any digest algorithm survives an upgrade.
        p.edit(
            &format!("etc/dig{algo}/dig{algo}.conf"),
            "administrator's value\n",
        );
        let mut v2 = feature_package(&format!("dig{algo}"), 2, Payload::Xz);
        v2.digest_algorithm = algo;
        p.build(&v2);
        p.both(
            &[&v2],
            &[],
            &format!("upgrade with digest algorithm {algo}"),
        );
        assert!(
            p.ours
                .join(format!("etc/dig{algo}/dig{algo}.conf.rpmnew"))
                .exists()
        );
    }
}

#[test]
fn upgrade_downgrade_and_removal_follow_rpm() {
    let mut p = pair();
    let (v1, v2) = (
        feature_package("sysinv", 1, Payload::Xz),
        feature_package("sysinv", 2, Payload::Xz),
    );
    p.build(&v1);
    p.build(&v2);
    // A config file no package owns yet, as an administrator left it: kept as .rpmorig.
    for root in [&p.ours, &p.theirs] {
        std::fs::create_dir_all(root.join("etc/sysinv")).unwrap();
    }
    p.edit("etc/sysinv/plain.conf", "hand-written before the package\n");
    p.both(&[&v1], &[], "install over an unowned config");
    assert!(p.ours.join("etc/sysinv/plain.conf.rpmorig").exists());

    // Administrator edits both configs; the upgrade keeps noreplace (+.rpmnew) and saves the
    // plain one (.rpmsave).
    p.edit("etc/sysinv/sysinv.conf", "edited noreplace\n");
    p.edit("etc/sysinv/plain.conf", "edited plain\n");
    p.edit("etc/sysinv/same.conf", "edited, package unchanged\n");
    p.both(&[&v2], &[], "upgrade 1 → 2");
    assert_eq!(
        std::fs::read_to_string(p.ours.join("etc/sysinv/sysinv.conf")).unwrap(),
        "edited noreplace\n"
    );
    assert!(p.ours.join("etc/sysinv/sysinv.conf.rpmnew").exists());
    assert!(p.ours.join("etc/sysinv/plain.conf.rpmsave").exists());
    assert!(!p.ours.join("usr/share/sysinv/only-in-1").exists());
    let trace = std::fs::read_to_string(p.ours.join("trace")).unwrap();
    assert!(
        trace.contains("%preun sysinv-1 1\n%postun sysinv-1 1\n"),
        "{trace}"
    );

    // The patch is removed: back to the base version (a downgrade).
    p.both(&[&v1], &[], "downgrade 2 → 1");

    p.both(&[], &[("sysinv", "x86_64")], "removal");
    assert!(
        p.ours.join("etc/sysinv/sysinv.conf.rpmsave").exists(),
        "an edited config is saved on removal"
    );
}

#[test]
fn shared_files_ordering_and_dependencies_follow_rpm() {
    let mut p = pair();
    let shared = |name: &str, v: &str| {
        SpecRpm::new(name, v, "1")
            .file(&format!("/usr/share/{name}/own"), format!("{name} {v}\n"))
            .file(
                "/usr/share/common/shared.txt",
                "the same bytes in both packages\n",
            )
            .dir("/usr/share/common", 0o755)
            .script("%post", &format!("echo \"%post {name}-{v} $1\" >> /trace"))
            .script(
                "%preun",
                &format!("echo \"%preun {name}-{v} $1\" >> /trace"),
            )
            .script(
                "%posttrans",
                &format!("echo \"%posttrans {name}-{v} $1\" >> /trace"),
            )
    };
    let (a, b, c) = (shared("aaa", "1"), shared("zzz", "1"), shared("mmm", "1"));
    let mut needs = shared("needy", "1");
    needs.requires.push("aaa".into());
    for s in [&a, &b, &c, &needs] {
        p.build(s);
    }
    // Order given: needy first; rpm puts what it requires first.
    p.both(
        &[&needs, &b, &a, &c],
        &[],
        "four packages sharing a file, one requiring another",
    );
    // Removing one owner keeps the shared file; removing all removes it.
    p.both(&[], &[("zzz", "x86_64")], "one sharer removed");
    assert!(p.ours.join("usr/share/common/shared.txt").exists());
    p.both(
        &[],
        &[("aaa", "x86_64"), ("mmm", "x86_64"), ("needy", "x86_64")],
        "every sharer removed",
    );
    assert!(!p.ours.join("usr/share/common/shared.txt").exists());
    // Two upgrades in one transaction: rpm's order of %post, %preun, %posttrans.
    let (a2, b2) = (shared("aaa", "2"), shared("zzz", "2"));
    p.build(&a2);
    p.build(&b2);
    p.both(&[&a, &b], &[], "two packages back at version 1");
    p.both(&[&b2, &a2], &[], "two upgrades in one transaction");
}

#[test]
fn a_failing_pre_or_a_missing_interpreter_changes_nothing() {
    let mut p = pair();
    let good = SpecRpm::new("good", "1", "1").file("/usr/share/good/a", "a\n");
    let failing = SpecRpm::new("failing", "1", "1")
        .file("/usr/share/failing/a", "a\n")
        .script("%pre", "echo \"%pre failing $1\" >> /trace\nexit 3");
    p.build(&good);
    p.build(&failing);
    p.both(&[&good], &[], "a package without scriptlets");
    let before = tree(&p.ours);
    let (ours, theirs) = p.step(&[&failing], &[]);
    let err = ours.unwrap_err();
    assert!(!theirs, "rpm refuses a package whose %pre fails");
    assert!(
        matches!(&err, InstallError::Script { package, scriptlet, .. } if package == "failing" && scriptlet == "%pre"),
        "{err}"
    );
    p.assert_same("a failing %pre");
    assert_eq!(tree(&p.ours).1, before.1);

    // An interpreter the root does not have: refused before any file changes, in words.
    let python = SpecRpm::new("needs-python", "1", "1")
        .file("/usr/share/np/a", "a\n")
        .script("%post -p /usr/bin/python3", "print('hi')");
    p.build(&python);
    let before = tree(&p.ours);
    let tx = Transaction {
        install: vec![item(&python, &p.rpms.join(python.file_name()))],
        remove: vec![],
    };
    let err = p.installer.apply(&tx).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("needs-python")
            && text.contains("%post")
            && text.contains("/usr/bin/python3"),
        "{text}"
    );
    assert_eq!(tree(&p.ours), before, "nothing changed");
    let mut q = rpm(&p.ours);
    q.args(["-q", "needs-python"]);
    assert!(!run_rpm(q).0, "the rpm database does not list it");
}

#[test]
fn packages_rpm_installed_are_upgraded_and_removed_by_rpms_rules() {
    let mut p = pair();
    let (v1, v2) = (
        feature_package("baseos", 1, Payload::Xz),
        feature_package("baseos", 2, Payload::Xz),
    );
    let v1_file = p.build(&v1);
    p.build(&v2);
    // The base OS: installed by rpm itself in both roots (as an image build does).
    for root in [&p.ours, &p.theirs] {
        let (ok, text) = rpm_upgrade(root, std::slice::from_ref(&v1_file));
        assert!(ok, "rpm -U: {text:?}");
    }
    p.edit("etc/baseos/baseos.conf", "edited on the host\n");
    // The installer learns it from rpm's database: an upgrade, not a fresh install.
    let (installer, _) = BuiltinInstaller::open(&p.ours).unwrap();
    p.installer = installer;
    let adopted = p
        .installer
        .records()
        .find(|r| r.package.id.name == "baseos")
        .expect("adopted from rpm's database");
    assert_eq!(adopted.package.id.evr, Evr::new(0, "1.0", "1"));
    assert!(adopted.scripts.preun.is_some() && adopted.scripts.postun.is_some());
    p.both(&[&v2], &[], "upgrade of a package rpm installed");
    p.both(
        &[],
        &[("baseos", "x86_64")],
        "removal of a package rpm installed",
    );
}

/// rpm's 64-bit header form (`LONGFILESIZES`, `LONGARCHIVESIZE`) appears only for a file over
/// 4 GiB: this writes 4 GiB into each root and hashes both, about a minute and 8 GiB of disk,
/// so it runs on demand: `cargo test -p agent --test conformance -- --ignored`.
#[test]
#[ignore = "writes 2 × 4 GiB; run with --ignored"]
fn a_file_over_4_gib_installs_as_rpm_installs_it() {
    let mut p = pair();
    let big = SpecRpm::new("bigfile", "1", "1")
        .payload(Payload::Zstd)
        .zeros("/opt/bigfile/huge", (4 << 30) + 1)
        .file("/opt/bigfile/small", "small\n");
    p.build(&big);
    p.both(&[&big], &[], "a package with a file of 4 GiB + 1 byte");
    let (nodes, _) = tree(&p.ours);
    assert_eq!(nodes["opt/bigfile/huge"].size, (4 << 30) + 1);
}
