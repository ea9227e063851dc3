//! Test helpers (feature `test-support`): real RPMs built with the `rpm` crate's builder, so
//! no binary fixtures are needed anywhere in the workspace.

use std::path::{Path, PathBuf};

/// A package to build.
#[derive(Clone, Debug)]
pub struct TestRpm {
    /// Package name.
    pub name: String,
    /// Epoch (0 = none).
    pub epoch: u32,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture.
    pub arch: String,
    /// Files: absolute install path and content.
    pub files: Vec<(String, Vec<u8>)>,
}

impl TestRpm {
    /// A package with one file `/usr/share/<name>/VERSION` holding `name-version-release`.
    pub fn new(name: &str, version: &str, release: &str) -> Self {
        TestRpm {
            name: name.into(),
            epoch: 0,
            version: version.into(),
            release: release.into(),
            arch: "x86_64".into(),
            files: vec![(
                format!("/usr/share/{name}/VERSION"),
                format!("{name}-{version}-{release}\n").into_bytes(),
            )],
        }
    }

    /// Adds a file.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), content.into()));
        self
    }

    /// The file name rpmbuild would give it.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }

    /// Builds it into `dir` under its canonical file name; returns the path.
    pub fn build(&self, dir: &Path) -> PathBuf {
        let path = dir.join(self.file_name());
        self.build_as(&path);
        path
    }

    /// Builds it to `path`, with gzip payload compression.
    pub fn build_as(&self, path: &Path) {
        let mut builder = rpm::PackageBuilder::new(
            &self.name,
            &self.version,
            "Apache-2.0",
            &self.arch,
            "stx-patch test package",
        );
        builder
            .release(self.release.clone())
            .using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::Gzip));
        if self.epoch != 0 {
            builder.epoch(self.epoch);
        }
        for (file, content) in &self.files {
            builder
                .with_file_contents(content.clone(), rpm::FileOptions::new(file.as_str()))
                .expect("valid test file");
        }
        let package = builder.build().expect("test RPM builds");
        package.write_file(path).expect("test RPM is written");
    }
}

/// The payload compressors `rpmbuild` can write (`%_binary_payload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// `w9.gzdio`.
    Gzip,
    /// `w9.bzdio`.
    Bzip2,
    /// `w6.xzdio`: CentOS 7, RHEL 8 and 9, StarlingX.
    Xz,
    /// `w6.lzdio` (legacy lzma).
    Lzma,
    /// `w19.zstdio`: Fedora.
    Zstd,
}

impl Payload {
    /// Every compressor.
    pub const ALL: [Payload; 5] = [
        Payload::Gzip,
        Payload::Bzip2,
        Payload::Xz,
        Payload::Lzma,
        Payload::Zstd,
    ];

    fn macro_value(self) -> &'static str {
        match self {
            Payload::Gzip => "w9.gzdio",
            Payload::Bzip2 => "w9.bzdio",
            Payload::Xz => "w6.xzdio",
            Payload::Lzma => "w6.lzdio",
            Payload::Zstd => "w19.zstdio",
        }
    }
}

/// One path of a [`SpecRpm`].
#[derive(Clone, Debug)]
pub enum SpecEntry {
    /// A regular file: path, content, mode, owner, group, `%files` directive (`%config`,
    /// `%config(noreplace)`, `%ghost`, `%caps(cap_net_raw=ep)`, or empty).
    File {
        /// Absolute path.
        path: String,
        /// Content.
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner name.
        user: String,
        /// Group name.
        group: String,
        /// `%files` directive.
        directive: String,
    },
    /// A hard link to an earlier file of the same package.
    HardLink {
        /// Absolute path.
        path: String,
        /// The file it links to (absolute).
        to: String,
    },
    /// A symbolic link.
    Symlink {
        /// Absolute path.
        path: String,
        /// Link target, as written.
        target: String,
    },
    /// A root-owned 0644 file of `size` zero bytes, made sparse in the build tree (for
    /// packages whose sizes need rpm's 64-bit header form).
    Zeros {
        /// Absolute path.
        path: String,
        /// Size in bytes.
        size: u64,
    },
    /// A directory the package owns (`%dir`).
    Dir {
        /// Absolute path.
        path: String,
        /// Permission bits.
        mode: u32,
    },
}

/// A package built by the real `rpmbuild` from a generated spec file: what every StarlingX,
/// CentOS and RHEL build produces (file digests, hard-link sets, scriptlets, payload
/// compressor as rpm writes them). File times are clamped to a fixed `SOURCE_DATE_EPOCH` so
/// two builds of one spec are the same package.
#[derive(Clone, Debug)]
pub struct SpecRpm {
    /// Package name.
    pub name: String,
    /// Epoch (0: none).
    pub epoch: u32,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// `noarch` or `x86_64`.
    pub arch: String,
    /// Paths.
    pub entries: Vec<SpecEntry>,
    /// Scriptlet sections (`%pre`, `%post -p /sbin/ldconfig`, …) and their bodies.
    pub scripts: Vec<(String, String)>,
    /// `Requires:` lines.
    pub requires: Vec<String>,
    /// Payload compressor.
    pub payload: Payload,
    /// `%_binary_filedigest_algorithm` (1 MD5, 8 SHA-256, 10 SHA-512).
    pub digest_algorithm: u32,
}

/// Whether `rpmbuild` is installed (the README's test command installs it).
pub fn rpmbuild_available() -> bool {
    std::process::Command::new("rpmbuild")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl SpecRpm {
    /// An empty x86_64 package with an xz payload and SHA-256 file digests.
    pub fn new(name: &str, version: &str, release: &str) -> Self {
        SpecRpm {
            name: name.into(),
            epoch: 0,
            version: version.into(),
            release: release.into(),
            arch: "x86_64".into(),
            entries: Vec::new(),
            scripts: Vec::new(),
            requires: Vec::new(),
            payload: Payload::Xz,
            digest_algorithm: 8,
        }
    }

    /// Adds a root-owned 0644 file.
    pub fn file(self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.file_with(path, content, 0o644, "root", "root", "")
    }

    /// Adds a file with every attribute.
    pub fn file_with(
        mut self,
        path: &str,
        content: impl Into<Vec<u8>>,
        mode: u32,
        user: &str,
        group: &str,
        directive: &str,
    ) -> Self {
        self.entries.push(SpecEntry::File {
            path: path.into(),
            content: content.into(),
            mode,
            user: user.into(),
            group: group.into(),
            directive: directive.into(),
        });
        self
    }

    /// Adds a hard link to an earlier file.
    pub fn hard_link(mut self, path: &str, to: &str) -> Self {
        self.entries.push(SpecEntry::HardLink {
            path: path.into(),
            to: to.into(),
        });
        self
    }

    /// Adds a symbolic link.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(SpecEntry::Symlink {
            path: path.into(),
            target: target.into(),
        });
        self
    }

    /// Adds a file of `size` zero bytes (sparse while building: a 4 GiB file costs no disk
    /// until it is installed).
    pub fn zeros(mut self, path: &str, size: u64) -> Self {
        self.entries.push(SpecEntry::Zeros {
            path: path.into(),
            size,
        });
        self
    }

    /// Adds an owned directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(SpecEntry::Dir {
            path: path.into(),
            mode,
        });
        self
    }

    /// Adds a scriptlet (`section` as in a spec: `%post`, `%pre -p /bin/true`).
    pub fn script(mut self, section: &str, body: &str) -> Self {
        self.scripts.push((section.into(), body.into()));
        self
    }

    /// Sets the payload compressor.
    pub fn payload(mut self, payload: Payload) -> Self {
        self.payload = payload;
        self
    }

    /// The file name rpmbuild gives it.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }

    /// The spec file text (the build tree is copied from `tree`).
    pub fn spec(&self, tree: &Path) -> String {
        let mut s = format!(
            "Name: {}\nVersion: {}\nRelease: {}\nSummary: stx-patch test package\nLicense: Apache-2.0\n\
             BuildArch: {}\nAutoReqProv: no\n",
            self.name, self.version, self.release, self.arch
        );
        if self.epoch != 0 {
            s.push_str(&format!("Epoch: {}\n", self.epoch));
        }
        for r in &self.requires {
            s.push_str(&format!("Requires: {r}\n"));
        }
        s.push_str("%description\nBuilt by the stx-patch tests with rpmbuild.\n");
        s.push_str(&format!(
            "%install\nmkdir -p %{{buildroot}}\ncp -a '{}'/. %{{buildroot}}/\n",
            tree.display()
        ));
        s.push_str("%files\n");
        let quote = |p: &str| format!("\"{p}\"");
        for entry in &self.entries {
            match entry {
                SpecEntry::File {
                    path,
                    mode,
                    user,
                    group,
                    directive,
                    ..
                } => s.push_str(&format!(
                    "%attr({mode:04o},{user},{group}) {directive} {}\n",
                    quote(path)
                )),
                SpecEntry::HardLink { path, to } => {
                    // A hard link carries the attributes of the file it links to.
                    let (mode, user, group) = self
                        .entries
                        .iter()
                        .find_map(|e| match e {
                            SpecEntry::File {
                                path,
                                mode,
                                user,
                                group,
                                ..
                            } if path == to => Some((*mode, user.clone(), group.clone())),
                            _ => None,
                        })
                        .expect("a hard link names an earlier file");
                    s.push_str(&format!(
                        "%attr({mode:04o},{user},{group}) {}\n",
                        quote(path)
                    ));
                }
                SpecEntry::Symlink { path, .. } => s.push_str(&format!("{}\n", quote(path))),
                SpecEntry::Zeros { path, .. } => {
                    s.push_str(&format!("%attr(0644,root,root) {}\n", quote(path)))
                }
                SpecEntry::Dir { path, mode } => s.push_str(&format!(
                    "%dir %attr({mode:04o},root,root) {}\n",
                    quote(path)
                )),
            }
        }
        for (section, body) in &self.scripts {
            s.push_str(&format!("{section}\n{body}\n"));
        }
        s
    }

    /// Builds it with `rpmbuild` into `dir`; returns the path. Panics with rpmbuild's output
    /// when the build fails (a test set-up error).
    pub fn build(&self, dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let work = dir.join(format!(
            ".rpmbuild-{}-{}-{}",
            self.name, self.version, self.release
        ));
        let _ = std::fs::remove_dir_all(&work);
        let tree = work.join("tree");
        std::fs::create_dir_all(&tree).expect("build tree");
        let at = |p: &str| tree.join(p.trim_start_matches('/'));
        for entry in &self.entries {
            match entry {
                SpecEntry::File {
                    path,
                    content,
                    mode,
                    ..
                } => {
                    let p = at(path);
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
                    std::fs::write(&p, content).expect("file");
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode & 0o777))
                        .expect("mode");
                }
                SpecEntry::HardLink { path, to } => {
                    let p = at(path);
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
                    std::fs::hard_link(at(to), &p).expect("hard link");
                }
                SpecEntry::Symlink { path, target } => {
                    let p = at(path);
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
                    std::os::unix::fs::symlink(target, &p).expect("symlink");
                }
                SpecEntry::Zeros { path, size } => {
                    let p = at(path);
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
                    std::fs::File::create(&p)
                        .and_then(|f| f.set_len(*size))
                        .expect("sparse file");
                }
                SpecEntry::Dir { path, .. } => std::fs::create_dir_all(at(path)).expect("dir"),
            }
        }
        let spec = work.join(format!("{}.spec", self.name));
        std::fs::write(&spec, self.spec(&tree)).expect("spec");
        let define = |k: &str, v: &str| ["--define".to_owned(), format!("{k} {v}")];
        let mut cmd = std::process::Command::new("rpmbuild");
        cmd.arg("-bb").arg("--quiet").arg("--nodeps");
        for (k, v) in [
            ("_topdir", work.join("top").to_string_lossy().into_owned()),
            ("_binary_payload", self.payload.macro_value().to_owned()),
            (
                "_binary_filedigest_algorithm",
                self.digest_algorithm.to_string(),
            ),
            ("debug_package", "%{nil}".to_owned()),
            ("__os_install_post", "%{nil}".to_owned()),
            ("_build_id_links", "none".to_owned()),
            ("clamp_mtime_to_source_date_epoch", "1".to_owned()),
            ("use_source_date_epoch_as_buildtime", "1".to_owned()),
            ("_buildhost", "stx-patch-tests".to_owned()),
        ] {
            cmd.args(define(k, &v));
        }
        let out = cmd
            .arg(&spec)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .expect("rpmbuild runs (install rpm: ./scripts/test.sh does)");
        assert!(
            out.status.success(),
            "rpmbuild failed for {}:\n{}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let built = work
            .join("top/RPMS")
            .join(&self.arch)
            .join(self.file_name());
        let dest = dir.join(self.file_name());
        std::fs::rename(&built, &dest).expect("rpmbuild wrote the package");
        let _ = std::fs::remove_dir_all(&work);
        dest
    }
}

/// Roots that packages are installed into by the tests and demos: a static shell for
/// scriptlets and an rpm database, as a StarlingX host has them.
pub mod roots {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Where the hosts keep their rpm database (passed as `--dbpath`: Debian's rpm would
    /// otherwise use `~/.rpmdb`).
    pub const RPM_DBPATH: &str = "/var/lib/rpm";

    /// A statically linked busybox on this machine (it runs inside any root), if any.
    pub fn static_busybox() -> Option<PathBuf> {
        ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| {
                Command::new("ldd")
                    .arg(p)
                    .env("LC_ALL", "C")
                    .output()
                    .is_ok_and(|o| {
                        let text = [o.stdout, o.stderr].concat();
                        String::from_utf8_lossy(&text).contains("not a dynamic")
                    })
            })
    }

    /// Gives `root` a `/bin/sh` (a copy of `busybox`) so scriptlets can run chrooted in it.
    pub fn give_shell(root: &Path, busybox: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::copy(busybox, root.join("bin/busybox"))?;
        std::os::unix::fs::symlink("busybox", root.join("bin/sh"))
    }

    /// `rpm --root <root> --dbpath /var/lib/rpm`.
    pub fn rpm(root: &Path) -> Command {
        let mut c = Command::new("rpm");
        c.arg("--root").arg(root).args(["--dbpath", RPM_DBPATH]);
        c
    }

    /// Runs an rpm command: whether it succeeded and its output lines (stdout then stderr,
    /// without Debian's reminder that rpm is not dpkg).
    pub fn run_rpm(mut cmd: Command) -> (bool, Vec<String>) {
        let out = cmd
            .output()
            .expect("rpm runs (./scripts/test.sh installs it)");
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            .filter(|l| !l.contains("use Alien instead") && !l.contains("assuming you know"))
            .map(str::to_owned)
            .collect();
        (out.status.success(), lines)
    }

    /// The sorted output lines of `rpm --root <root> <args>` (`-qa`, `-Va`, …).
    pub fn rpm_lines(root: &Path, args: &[&str]) -> Vec<String> {
        let mut cmd = rpm(root);
        cmd.args(args);
        let (_, mut lines) = run_rpm(cmd);
        lines.sort();
        lines
    }

    /// Creates an empty rpm database in `root`.
    pub fn init_rpmdb(root: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(root.join(RPM_DBPATH.trim_start_matches('/')))?;
        let mut cmd = rpm(root);
        cmd.arg("--initdb");
        match run_rpm(cmd) {
            (true, _) => Ok(()),
            (false, lines) => Err(std::io::Error::other(format!(
                "rpm --initdb in {}: {}",
                root.display(),
                lines.join("; ")
            ))),
        }
    }

    /// `rpm -U --oldpackage --nodeps --nosignature` of `files` into `root`, as an image
    /// build or an administrator would.
    pub fn rpm_upgrade(root: &Path, files: &[PathBuf]) -> (bool, Vec<String>) {
        let mut cmd = rpm(root);
        cmd.args(["-U", "--oldpackage", "--nodeps", "--nosignature"])
            .args(files);
        run_rpm(cmd)
    }
}
