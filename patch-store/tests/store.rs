//! The store's rules, messages and crash recovery, with real signed patches and real RPMs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, Personality, SemanticAction, Status};
use patch_sign::{Keyring, PrivateKey};
use patch_store::{ChangeOptions, RepoState, Store, StoreConfig, StoreError};

fn key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(2048).unwrap())
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["feed", "rpms", "patches"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        TestRpm::new("sysinv", "1.0", "230.tis").build(&dir.path().join("feed"));
        TestRpm::new("kernel", "3.10", "1").build(&dir.path().join("feed"));
        Fixture { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn open(&self) -> Store {
        Store::open(StoreConfig {
            root: self.root(),
            running_release: "19.01".into(),
            keyring: Keyring::from_keys(vec![("dev".into(), key().public_key())]),
            limits: Default::default(),
            rpm_keyring: None,
        })
        .unwrap()
    }

    fn open_initialized(&self) -> Store {
        let mut store = self.open();
        store
            .init_release(
                "19.01",
                Some(&self.dir.path().join("feed")),
                &BTreeMap::new(),
            )
            .unwrap();
        store
    }

    /// Builds `<id>.patch` holding the given packages (name, version, release).
    fn patch(
        &self,
        id: &str,
        rpms: &[(&str, &str, &str)],
        edit: impl FnOnce(&mut PatchMetadata),
    ) -> PathBuf {
        let mut metadata = PatchMetadata::new(id, "19.01");
        metadata.status = Status::Released;
        metadata.reboot_required = false;
        edit(&mut metadata);
        let semantics: Vec<SemanticAction> = metadata.semantics.iter().copied().collect();
        let mut builder = PatchBuilder::new(metadata);
        builder.threads(1);
        for (name, version, release) in rpms {
            let rpm = TestRpm::new(name, version, release)
                .file(&format!("/etc/{name}.conf"), format!("{id}\n"))
                .build(&self.dir.path().join("rpms"));
            let personalities: &[Personality] = if *name == "newpkg" {
                &Personality::ALL
            } else {
                &[]
            };
            builder.add_rpm(&rpm, personalities).unwrap();
        }
        for action in semantics {
            let script = self.dir.path().join(format!("{id}-{}.sh", action.as_str()));
            std::fs::write(&script, "#!/bin/sh\necho \"args: $*\"\n[ -z \"$FAIL_CHECK\" ] || exit 1\nexit ${SEMANTIC_EXIT:-0}\n").unwrap();
            builder.semantic_script(action, &script).unwrap();
        }
        builder
            .write_to_dir(&self.dir.path().join("patches"), key())
            .unwrap()
            .0
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn refused(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(StoreError::Refused(m)) => m,
        Err(StoreError::Validation { id, reason }) => format!("validation {id}: {reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn import(store: &mut Store, path: &Path) -> patch_store::Outcome {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    store.import(path, &name).unwrap()
}

#[test]
fn upload_apply_remove_delete_and_the_repository() {
    let f = Fixture::new();
    let mut store = f.open_initialized();
    let counter0 = store.op_counter();
    let p1 = f.patch(
        "P1",
        &[("sysinv", "1.0", "231.tis"), ("newpkg", "1.0", "1")],
        |_| {},
    );
    let out = import(&mut store, &p1);
    assert_eq!(out.info, ["P1 is now available"]);
    assert_eq!(store.patch("P1").unwrap().repo_state, RepoState::Available);
    assert!(store.op_counter() > counter0);
    assert!(store.repo_index("19.01").unwrap().packages.is_empty());

    let out = store
        .apply(&ids(&["P1"]), false, &ChangeOptions::default())
        .unwrap();
    assert_eq!(out.info, ["P1 is now in the repo"]);
    let index = store.repo_index("19.01").unwrap();
    let names: Vec<&str> = index.packages.iter().map(|p| p.id.name.as_str()).collect();
    assert_eq!(names, ["newpkg", "sysinv"]);
    assert_eq!(index.packages[0].personalities, Personality::ALL.to_vec());
    assert!(index.packages[1].personalities.is_empty());
    assert_eq!(index.packages[1].patch.as_deref(), Some("P1"));
    assert_eq!(index.op_counter, store.op_counter());
    let repo_file = store.repo_dir("19.01").join(&index.packages[1].path);
    assert_eq!(
        patch_sign::sha256_of(std::fs::File::open(&repo_file).unwrap())
            .unwrap()
            .1,
        <[u8; 32]>::try_from(hex_decode(&index.packages[1].sha256)).unwrap()
    );
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );

    let out = store
        .apply(&ids(&["P1"]), false, &ChangeOptions::default())
        .unwrap();
    assert_eq!(out.info, ["P1 is already in the repo"]);

    let out = store
        .remove(&ids(&["P1"]), &ChangeOptions::default())
        .unwrap();
    assert_eq!(out.info, ["P1 has been removed from the repo"]);
    assert!(store.repo_index("19.01").unwrap().packages.is_empty());
    let out = store
        .remove(&ids(&["P1"]), &ChangeOptions::default())
        .unwrap();
    assert_eq!(out.info, ["P1 is not in the repo"]);

    let out = store.delete(&ids(&["P1"]), &BTreeMap::new()).unwrap();
    assert_eq!(out.info, ["P1 has been deleted"]);
    assert!(store.patch("P1").is_none());
    assert!(
        std::fs::read_dir(f.root().join("packages/19.01"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );

    // Reopening sees the same state.
    let counter = store.op_counter();
    drop(store);
    let store = f.open();
    assert_eq!(store.op_counter(), counter);
    assert!(store.patches().next().is_none());
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn upload_refusals() {
    let f = Fixture::new();
    let mut store = f.open();
    let p1 = f.patch("P1", &[("sysinv", "1.0", "231.tis")], |_| {});
    assert_eq!(
        refused(store.import(&p1, "P1.patch")),
        "Patch P1 software release (19.01) is not installed"
    );
    store
        .init_release("19.01", Some(&f.dir.path().join("feed")), &BTreeMap::new())
        .unwrap();

    // Not newer than the base load.
    let old = f.patch("OLD", &[("sysinv", "1.0", "229.tis")], |_| {});
    assert_eq!(
        refused(store.import(&old, "OLD.patch")),
        "RPM sysinv-1.0-229.tis.x86_64.rpm in patch OLD must be higher version than original (1.0-230.tis)"
    );
    // File name and metadata disagree; wrong extension.
    let renamed = f.dir.path().join("P9.patch");
    std::fs::copy(&p1, &renamed).unwrap();
    let msg = refused(store.import(&renamed, "P9.patch"));
    assert!(
        msg.starts_with("validation P9: the file name says P9 but the patch metadata says P1"),
        "{msg}"
    );
    assert_eq!(
        refused(store.import(&p1, "P1.tgz")),
        "File must end in .patch extension: P1.tgz"
    );
    // Not a patch at all; signed by someone else.
    let junk = f.dir.path().join("J.patch");
    std::fs::write(&junk, "junk").unwrap();
    let msg = refused(store.import(&junk, "J.patch"));
    assert!(msg.contains("not gzip"), "{msg}");
    let other = PrivateKey::generate(2048).unwrap();
    let rpm = TestRpm::new("sysinv", "1.0", "300").build(&f.dir.path().join("rpms"));
    let mut b = PatchBuilder::new(PatchMetadata::new("EVIL", "19.01"));
    b.add_rpm(&rpm, &[]).unwrap();
    let (evil, _) = b.write_to_dir(f.dir.path(), &other).unwrap();
    assert!(
        refused(store.import(&evil, "EVIL.patch"))
            .starts_with("validation EVIL: Signature check failed")
    );

    let snapshot = tree(&f.root());
    import(&mut store, &p1);
    // Same RPM from another patch.
    let dup = f.patch("P2", &[("sysinv", "1.0", "231.tis")], |_| {});
    assert_eq!(
        refused(store.import(&dup, "P2.patch")),
        "Patch P2 contains rpm sysinv-1.0-231.tis.x86_64.rpm, which is already provided by patch P1"
    );
    // Re-import: metadata only; different contents refused.
    let p1b = f.patch("P1", &[("sysinv", "1.0", "231.tis")], |m| {
        m.summary = "new summary".into()
    });
    let out = store.import(&p1b, "P1.patch").unwrap();
    assert_eq!(out.info, ["P1 is already imported. Updated metadata only"]);
    assert_eq!(store.patch("P1").unwrap().metadata.summary, "new summary");
    let p1c = f.patch("P1", &[("sysinv", "1.0", "232.tis")], |_| {});
    assert_eq!(
        refused(store.import(&p1c, "P1.patch")),
        "Contents of P1 do not match re-imported patch"
    );
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );
    assert_ne!(snapshot, tree(&f.root()));
}

/// Every file under `dir` with its content (for byte-for-byte comparisons).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with(".lock") {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn refused_uploads_leave_the_store_byte_for_byte_unchanged() {
    let f = Fixture::new();
    let mut store = f.open_initialized();
    import(
        &mut store,
        &f.patch("P1", &[("sysinv", "1.0", "231.tis")], |_| {}),
    );
    let before = tree(&f.root());
    let junk = f.dir.path().join("J.patch");
    std::fs::write(&junk, "junk").unwrap();
    let good = std::fs::read(f.patch("T", &[("newpkg", "1", "1")], |_| {})).unwrap();
    let truncated = f.dir.path().join("T.patch");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let renamed = f.dir.path().join("X.patch");
    std::fs::write(&renamed, &good).unwrap();
    for (path, name) in [
        (&junk, "J.patch"),
        (&truncated, "T.patch"),
        (&renamed, "X.patch"),
    ] {
        assert!(store.import(path, name).is_err());
        assert_eq!(before, tree(&f.root()), "{name} changed the store");
    }
}

#[test]
fn apply_and_remove_rules() {
    let f = Fixture::new();
    let mut store = f.open_initialized();
    import(
        &mut store,
        &f.patch("P1", &[("sysinv", "1.0", "231.tis")], |_| {}),
    );
    import(
        &mut store,
        &f.patch("P2", &[("sysinv", "1.0", "232.tis")], |m| {
            m.requires.insert("P1".into());
        }),
    );
    import(
        &mut store,
        &f.patch("U", &[("kernel", "3.10", "2")], |m| m.unremovable = true),
    );
    let opts = ChangeOptions::default();

    assert_eq!(
        refused(store.apply(&ids(&["NOPE"]), false, &opts)),
        "Patch NOPE does not exist"
    );
    assert_eq!(
        refused(store.apply(&ids(&["P2"]), false, &opts)),
        "P1 is required by: P2"
    );
    // Applying both at once satisfies the requirement.
    store.apply(&ids(&["P2", "P1"]), false, &opts).unwrap();
    assert_eq!(
        refused(store.remove(&ids(&["P1"]), &opts)),
        "P1 is required by: P2"
    );
    store.apply(&[], true, &opts).unwrap();
    assert_eq!(store.patch("U").unwrap().repo_state, RepoState::Applied);
    assert_eq!(
        refused(store.remove(&ids(&["U"]), &opts)),
        "Patch U is not removable"
    );
    let forced = ChangeOptions {
        remove_unremovable: true,
        ..ChangeOptions::default()
    };
    let out = store.remove(&ids(&["U"]), &forced).unwrap();
    assert_eq!(out.warning, ["Patch U is not removable"]);

    store
        .report_app_dependencies("app1", &ids(&["P2"]))
        .unwrap();
    assert_eq!(
        refused(store.remove(&ids(&["P2"]), &opts)),
        "P2 is required by application(s): app1"
    );
    let skip = ChangeOptions {
        skip_app_check: true,
        ..ChangeOptions::default()
    };
    store.remove(&ids(&["P2"]), &skip).unwrap();
    assert_eq!(
        refused(store.delete(&ids(&["P1"]), &BTreeMap::new())),
        "Patch P1 not in Available state"
    );
    store.report_app_dependencies("app1", &[]).unwrap();
    assert!(store.app_dependencies().is_empty());

    // A patch for another release with apply_active_release_only.
    store.init_release("20.01", None, &BTreeMap::new()).unwrap();
    let mut m = PatchMetadata::new("NEXT", "20.01");
    m.apply_active_release_only = true;
    let rpm = TestRpm::new("sysinv", "2.0", "1").build(&f.dir.path().join("rpms"));
    let mut b = PatchBuilder::new(m);
    b.add_rpm(&rpm, &[]).unwrap();
    let (next, _) = b
        .write_to_dir(&f.dir.path().join("patches"), key())
        .unwrap();
    import(&mut store, &next);
    assert_eq!(
        refused(store.apply(&ids(&["NEXT"]), false, &opts)),
        "NEXT cannot be applied in an upgrade"
    );
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );
}

#[test]
fn commit_rules_dry_run_and_superseded_packages() {
    let f = Fixture::new();
    let mut store = f.open_initialized();
    import(
        &mut store,
        &f.patch("P1", &[("sysinv", "1.0", "231.tis")], |_| {}),
    );
    import(
        &mut store,
        &f.patch("P2", &[("sysinv", "1.0", "232.tis")], |m| {
            m.requires.insert("P1".into());
        }),
    );
    import(
        &mut store,
        &f.patch("D", &[("kernel", "3.10", "5")], |m| {
            m.status = Status::Development
        }),
    );
    let none = BTreeMap::new();
    assert_eq!(
        refused(store.commit_plan(&ids(&["P2"]), &none)),
        "A commit cannot be performed with non-REL status patches in the system:\nD"
    );
    store.delete(&ids(&["D"]), &none).unwrap();
    assert_eq!(
        refused(store.commit_plan(&ids(&["P2"]), &none)),
        "The following patches are not applied and cannot be committed:\nP1\nP2"
    );
    store
        .apply(&ids(&["P1", "P2"]), false, &ChangeOptions::default())
        .unwrap();
    let plan = store.commit_plan(&ids(&["P2"]), &none).unwrap();
    assert_eq!(plan.patches, ["P1", "P2"]);
    assert_eq!(
        plan.superseded,
        ["packages/19.01/sysinv-1.0-231.tis.x86_64.rpm"]
    );
    assert!(plan.bytes_freed > 0);

    store.commit(&ids(&["P2"]), &none).unwrap();
    assert_eq!(store.patch("P1").unwrap().repo_state, RepoState::Committed);
    assert!(
        !f.root()
            .join("packages/19.01/sysinv-1.0-231.tis.x86_64.rpm")
            .exists()
    );
    let index = store.repo_index("19.01").unwrap();
    assert_eq!(index.packages.len(), 1);
    assert_eq!(index.packages[0].id.evr.release, "232.tis");
    assert_eq!(
        refused(store.remove(&ids(&["P1"]), &ChangeOptions::default())),
        "Patch P1 is committed and cannot be removed"
    );
    let out = store
        .import(&f.dir.path().join("patches/P1.patch"), "P1.patch")
        .unwrap();
    assert_eq!(out.info, ["P1 is committed. Metadata not updated"]);
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );
    // Survives a reopen (P1's record now lacks its superseded file).
    drop(store);
    let store = f.open();
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );
}

#[test]
fn dependencies_and_cycles() {
    let f = Fixture::new();
    let mut store = f.open_initialized();
    import(
        &mut store,
        &f.patch("A", &[("sysinv", "1.0", "231")], |m| {
            m.requires.insert("B".into());
        }),
    );
    import(
        &mut store,
        &f.patch("B", &[("sysinv", "1.0", "232")], |m| {
            m.requires.insert("C".into());
        }),
    );
    import(
        &mut store,
        &f.patch("C", &[("sysinv", "1.0", "233")], |_| {}),
    );
    assert_eq!(
        store.query_dependencies(&ids(&["A"]), false).unwrap(),
        ["A", "B"]
    );
    assert_eq!(
        store.query_dependencies(&ids(&["A"]), true).unwrap(),
        ["A", "B", "C"]
    );
    assert_eq!(
        store.what_requires(&ids(&["C", "A"])).unwrap().info,
        ["C is required by: B", "A is not required by any patches."]
    );

    // C requires A: a cycle, reported instead of looping.
    let c2 = f.patch("C", &[("sysinv", "1.0", "233")], |m| {
        m.requires.insert("A".into());
    });
    store.import(&c2, "C.patch").unwrap();
    let msg = refused(store.query_dependencies(&ids(&["A"]), true));
    assert_eq!(msg, "The requires of these patches form a cycle: A, B, C");
}

#[test]
fn semantic_checks_run_with_patch_states_and_can_refuse() {
    let f = Fixture::new();
    let mut store = f.open_initialized();
    import(
        &mut store,
        &f.patch("S", &[("sysinv", "1.0", "231")], |m| {
            m.semantics.insert(SemanticAction::PreApply);
        }),
    );
    let mut states = BTreeMap::new();
    states.insert("S".to_owned(), host_state::PatchState::Available);
    let opts = ChangeOptions {
        patch_states: states,
        ..ChangeOptions::default()
    };
    // SAFETY of the environment: this test is the only one reading FAIL_CHECK.
    let script = f.root().join("semantics/pre-apply/S");
    let text = std::fs::read_to_string(&script)
        .unwrap()
        .replace("[ -z \"$FAIL_CHECK\" ] || exit 1", "exit 3");
    std::fs::write(&script, text).unwrap();
    let msg = refused(store.apply(&ids(&["S"]), false, &opts));
    assert_eq!(msg, "Semantic check failed for S:\nargs: -p S=Available");
    assert_eq!(store.patch("S").unwrap().repo_state, RepoState::Available);
    let skip = ChangeOptions {
        skip_semantic: true,
        ..opts
    };
    store.apply(&ids(&["S"]), false, &skip).unwrap();
}

#[test]
fn releases_and_the_lock() {
    let f = Fixture::new();
    let mut store = f.open_initialized();
    assert!(matches!(
        Store::open(StoreConfig {
            root: f.root(),
            running_release: "19.01".into(),
            keyring: Keyring::default(),
            limits: Default::default(),
            rpm_keyring: None,
        }),
        Err(StoreError::Locked(_))
    ));
    assert_eq!(
        refused(store.init_release("19.01", None, &BTreeMap::new())),
        "Release 19.01 is the running release and is already initialized"
    );
    assert_eq!(
        refused(store.del_release("19.01")),
        "Cannot delete the running release (19.01)"
    );
    let feed = store.feed_index("19.01").unwrap();
    assert_eq!(feed.packages.len(), 2);
    assert!(
        feed.packages
            .iter()
            .all(|p| p.personalities == Personality::ALL.to_vec())
    );

    let mut only_workers = BTreeMap::new();
    only_workers.insert(Personality::Worker, BTreeSet::from(["kernel".to_owned()]));
    store
        .init_release("20.01", Some(&f.dir.path().join("feed")), &only_workers)
        .unwrap();
    let feed = store.feed_index("20.01").unwrap();
    let kernel = feed
        .packages
        .iter()
        .find(|p| p.id.name == "kernel")
        .unwrap();
    assert_eq!(kernel.personalities, [Personality::Worker]);
    assert_eq!(store.releases(), ["19.01", "20.01"]);
    store.del_release("20.01").unwrap();
    assert_eq!(store.releases(), ["19.01"]);
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );
}

#[test]
fn an_interrupted_import_is_rolled_back_and_a_transition_rolled_forward() {
    let f = Fixture::new();
    let mut store = f.open_initialized();
    import(
        &mut store,
        &f.patch("P1", &[("sysinv", "1.0", "231")], |_| {}),
    );
    import(
        &mut store,
        &f.patch("P2", &[("kernel", "3.10", "2")], |_| {}),
    );
    drop(store);

    // A crash after an import journal and some files, before the metadata file.
    let root = f.root();
    std::fs::write(root.join("packages/19.01/ghost-1-1.x86_64.rpm"), "partial").unwrap();
    std::fs::write(root.join("tmp/upload-123"), "partial upload").unwrap();
    std::fs::write(root.join("repo/rel-19.01/.tmp-index"), "torn").unwrap();
    std::fs::write(
        root.join("journal.json"),
        r#"{"Import":{"metadata_file":"metadata/available/GHOST-metadata.xml","files":["packages/19.01/ghost-1-1.x86_64.rpm"],"counter":99}}"#,
    )
    .unwrap();
    let store = f.open();
    assert!(!root.join("packages/19.01/ghost-1-1.x86_64.rpm").exists());
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );
    assert_eq!(store.op_counter(), 99);
    drop(store);

    // A crash in the middle of applying two patches: one metadata file moved, one not, repo
    // not rebuilt.
    std::fs::rename(
        root.join("metadata/available/P1-metadata.xml"),
        root.join("metadata/applied/P1-metadata.xml"),
    )
    .unwrap();
    std::fs::write(
        root.join("journal.json"),
        r#"{"Transition":{"moves":[["P1","Available","Applied"],["P2","Available","Applied"]],"remove":[],"counter":100}}"#,
    )
    .unwrap();
    let store = f.open();
    assert_eq!(store.patch("P1").unwrap().repo_state, RepoState::Applied);
    assert_eq!(store.patch("P2").unwrap().repo_state, RepoState::Applied);
    assert_eq!(store.repo_index("19.01").unwrap().packages.len(), 2);
    assert_eq!(store.op_counter(), 100);
    assert!(
        store.check_invariants().is_empty(),
        "{:?}",
        store.check_invariants()
    );
}
