//! What the installer's real-package tests share: test roots (a static shell, user tables,
//! an rpm database) and a snapshot of a root's tree to compare.
// Each test file uses a part of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use patch_format::testing::roots;
use sha2::{Digest, Sha256};

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nsysinv:x:168:168::/var/lib/sysinv:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nsysinv:x:169:\n";

/// The time of the files a test root starts with.
const SETUP_TIME: i64 = 1_690_000_000;

/// Times in packages (`SOURCE_DATE_EPOCH`) and test edits are before this; directory times
/// after it are the wall clock.
const PACKAGE_TIME_BOUND: i64 = 1_760_000_000;

/// A root a scriptlet can run in: a static shell, user tables with `sysinv`, an rpm database.
pub fn make_root(root: &Path) {
    let busybox = roots::static_busybox()
        .expect("busybox-static is installed (./scripts/test.sh installs it)");
    roots::give_shell(root, &busybox).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(root.join("etc/group"), GROUP).unwrap();
    roots::init_rpmdb(root).unwrap();
    // One time for what the set-up made, so two roots made a second apart compare equal.
    let t = filetime::FileTime::from_unix_time(SETUP_TIME, 0);
    for made in ["bin/busybox", "bin/sh", "etc/passwd", "etc/group"] {
        filetime::set_symlink_file_times(root.join(made), t, t).unwrap();
    }
}

/// One path's state as compared between roots.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub sha256: String,
    pub link: String,
    /// Files and links; directories whose time is a package's.
    pub mtime: Option<i64>,
    pub caps: Option<Vec<u8>>,
}

/// A root's tree (without the installer's state and the rpm database files) and its
/// hard-link groups (sets of paths sharing an inode).
pub fn tree(root: &Path) -> (BTreeMap<String, Node>, BTreeSet<Vec<String>>) {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with("var/lib/stx-patch") || rel.starts_with("var/lib/rpm") {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            let t = m.file_type();
            let (kind, sha256, link) = if t.is_symlink() {
                (
                    'l',
                    String::new(),
                    std::fs::read_link(&path)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if t.is_dir() {
                stack.push(path.clone());
                ('d', String::new(), String::new())
            } else {
                inodes.entry(m.ino()).or_default().push(rel.clone());
                (
                    'f',
                    hex::encode(Sha256::digest(std::fs::read(&path).unwrap())),
                    String::new(),
                )
            };
            // A directory's time is when its last entry came or went (the wall clock in both
            // roots) unless nothing touched it since it got the package's time; the trace is
            // written by scriptlets at run time.
            let timed = (kind != 'd' || m.mtime() < PACKAGE_TIME_BOUND) && rel != "trace";
            nodes.insert(
                rel,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if kind == 'd' { 0 } else { m.size() },
                    sha256,
                    link,
                    mtime: timed.then(|| m.mtime()),
                    caps: if kind == 'f' {
                        xattr::get(&path, "security.capability").ok().flatten()
                    } else {
                        None
                    },
                },
            );
        }
    }
    let links = inodes.into_values().filter(|v| v.len() > 1).map(|mut v| {
        v.sort();
        v
    });
    (nodes, links.collect())
}

/// `rpm -qa` and `rpm -Va` of a root, sorted.
pub fn rpm_state(root: &Path) -> (Vec<String>, Vec<String>) {
    (
        roots::rpm_lines(root, &["-qa"]),
        roots::rpm_lines(root, &["-Va"]),
    )
}
