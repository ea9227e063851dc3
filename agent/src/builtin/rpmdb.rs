//! The root's own rpm database, kept telling the truth: every builtin transaction registers
//! its packages there with `rpm --justdb` (headers only; files and scriptlets are the
//! installer's), after a snapshot of the database that a rollback puts back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::package::{FileInfo, FileKind, Script, Scripts, safe_relative};
use patch_format::{Evr, PackageId};

/// Where rpm keeps its database on StarlingX (CentOS) hosts, relative to the root. Always
/// passed as `--dbpath`: Debian's rpm would otherwise look in `~/.rpmdb`.
pub const DBPATH: &str = "var/lib/rpm";

/// Files that make an rpm database (sqlite, ndb, Berkeley DB back ends).
const DB_MARKERS: [&str; 3] = ["rpmdb.sqlite", "Packages.db", "Packages"];

/// The rpm database of one root.
#[derive(Debug, Clone)]
pub(crate) struct RpmDb {
    root: PathBuf,
}

/// The rpm command line on `root` with the database path.
pub(crate) fn rpm_command(root: &Path) -> Command {
    let mut c = Command::new("rpm");
    c.arg("--root")
        .arg(root)
        .arg("--dbpath")
        .arg(format!("/{DBPATH}"));
    c
}

impl RpmDb {
    /// The database of `root`, if it has one. `Err` when it has one but the `rpm` tool is
    /// missing (the database could not be kept true).
    pub(crate) fn detect(root: &Path) -> Result<Option<RpmDb>, String> {
        let dir = root.join(DBPATH);
        if !DB_MARKERS.iter().any(|m| dir.join(m).is_file()) {
            return Ok(None);
        }
        match Command::new("rpm").arg("--version").output() {
            Ok(out) if out.status.success() => Ok(Some(RpmDb {
                root: root.to_owned(),
            })),
            _ => Err(format!(
                "the root has an rpm database ({}) but the rpm tool is not installed here; \
                 install rpm so that the database stays true",
                dir.display()
            )),
        }
    }

    /// The database of `root`, as it is (no check that it exists).
    pub(crate) fn at(root: &Path) -> RpmDb {
        RpmDb {
            root: root.to_owned(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.join(DBPATH)
    }

    /// Copies the database files to `to` (each copy durable with its directory).
    pub(crate) fn snapshot(&self, to: &Path) -> Result<(), String> {
        std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
        for entry in
            std::fs::read_dir(self.dir()).map_err(|e| format!("{}: {e}", self.dir().display()))?
        {
            let entry = entry.map_err(|e| e.to_string())?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                durable_fs::copy(&entry.path(), &to.join(entry.file_name()))
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Puts the snapshot back: the database is exactly as it was when it was taken.
    pub(crate) fn restore(&self, from: &Path) -> Result<(), String> {
        let dir = self.dir();
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            if entry.file_type().is_ok_and(|t| t.is_file())
                && !from.join(entry.file_name()).exists()
            {
                std::fs::remove_file(entry.path())
                    .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            }
        }
        for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            durable_fs::copy(&entry.path(), &dir.join(entry.file_name()))
                .map_err(|e| e.to_string())?;
        }
        // The removals above (the copies synced the directory as they went).
        durable_fs::sync_dir(&dir).map_err(|e| e.to_string())
    }

    /// Registers `install` (upgrading or downgrading same-name packages) and unregisters
    /// `erase` (`name.arch`), headers only.
    pub(crate) fn register(&self, install: &[PathBuf], erase: &[String]) -> Result<(), String> {
        if !install.is_empty() {
            let mut cmd = rpm_command(&self.root);
            cmd.args([
                "-U",
                "--justdb",
                "--noscripts",
                "--notriggers",
                "--nodeps",
                "--oldpackage",
                "--replacepkgs",
                "--replacefiles",
                "--nosignature",
                "--nodigest",
                "--ignoresize",
            ]);
            cmd.args(install);
            run(cmd, "rpm -U --justdb")?;
        }
        if !erase.is_empty() {
            // Only what rpm lists (a package installed before the database existed is not).
            let listed: BTreeSet<String> = self
                .list()?
                .into_iter()
                .map(|p| super::db_key(&p.id.name, &p.id.arch))
                .collect();
            let known: Vec<&String> = erase.iter().filter(|p| listed.contains(*p)).collect();
            if !known.is_empty() {
                let mut cmd = rpm_command(&self.root);
                cmd.args(["-e", "--justdb", "--noscripts", "--notriggers", "--nodeps"]);
                cmd.args(known);
                run(cmd, "rpm -e --justdb")?;
            }
        }
        Ok(())
    }

    /// Every package the database lists, without its files (one quick query).
    pub(crate) fn list(&self) -> Result<Vec<DbPackage>, String> {
        self.query(&["-qa"], "")
    }

    /// The packages named (`name-version-release.arch`) with their files, requirements and
    /// uninstall scriptlets: what the installer needs to upgrade or remove a package it did
    /// not install itself.
    pub(crate) fn details(&self, nevras: &[String]) -> Result<Vec<DbPackage>, String> {
        if nevras.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["-q"];
        args.extend(nevras.iter().map(String::as_str));
        self.query(&args, &format!(
            "@@preun{SEP}%{{PREUNPROG}}{SEP}%{{PREUN}}\\n@@end\\n\
             @@postun{SEP}%{{POSTUNPROG}}{SEP}%{{POSTUN}}\\n@@end\\n\
             [@@req{SEP}%{{REQUIRENAME}}\\n][@@prov{SEP}%{{PROVIDENAME}}\\n]\
             [@@file{SEP}%{{FILENAMES}}{SEP}%{{FILEMODES}}{SEP}%{{FILEUSERNAME}}{SEP}%{{FILEGROUPNAME}}{SEP}%{{FILEMTIMES}}{SEP}%{{FILESIZES}}{SEP}%{{FILEFLAGS}}{SEP}%{{=FILEDIGESTALGO}}{SEP}%{{FILEDIGESTS}}{SEP}%{{FILELINKTOS}}{SEP}%{{FILECAPS}}\\n]"
        ))
    }

    /// Runs `rpm <args> --qf` with one `@@pkg` line per package, then `more` of it.
    fn query(&self, args: &[&str], more: &str) -> Result<Vec<DbPackage>, String> {
        let qf = format!(
            "@@pkg{SEP}%{{NAME}}{SEP}%{{EPOCHNUM}}{SEP}%{{VERSION}}{SEP}%{{RELEASE}}{SEP}%{{ARCH}}\\n{more}"
        );
        let out = rpm_command(&self.root)
            .args(args)
            .args(["--qf", &qf])
            .output()
            .map_err(|e| format!("cannot run rpm {}: {e}", args[0]))?;
        // rpm reports a bad query format on stderr and still exits 0.
        let stderr = rpm_stderr(&out.stderr);
        if !out.status.success() || stderr.contains("error:") {
            return Err(format!("rpm {} failed: {stderr}", args[0]));
        }
        parse_query(&String::from_utf8_lossy(&out.stdout))
    }
}

/// A package as the rpm database lists it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DbPackage {
    pub id: PackageId,
    pub files: Vec<FileInfo>,
    pub scripts: Scripts,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
}

impl DbPackage {
    /// `name-version-release.arch`, as `rpm -q` takes it.
    pub(crate) fn nevra(&self) -> String {
        format!(
            "{}-{}-{}.{}",
            self.id.name, self.id.evr.version, self.id.evr.release, self.id.arch
        )
    }
}

/// Separates the fields of a query line (no package name, path or script holds it).
const SEP: char = '\u{1f}';

fn parse_query(text: &str) -> Result<Vec<DbPackage>, String> {
    let mut packages: Vec<DbPackage> = Vec::new();
    let mut lines = text.lines();
    let script = |prog: &str, body: String| -> Option<Script> {
        let prog = prog.trim();
        let body = (body.trim() != "(none)" && !body.is_empty()).then_some(body);
        let prog = (prog != "(none)" && !prog.is_empty())
            .then(|| prog.split(' ').map(str::to_owned).collect::<Vec<_>>());
        (body.is_some() || prog.is_some()).then(|| Script {
            prog: prog.unwrap_or_else(|| vec!["/bin/sh".into()]),
            body,
        })
    };
    while let Some(line) = lines.next() {
        let fields: Vec<&str> = line.split(SEP).collect();
        match fields[0] {
            "@@pkg" if fields.len() == 6 => packages.push(DbPackage {
                id: PackageId::new(
                    fields[1],
                    Evr::new(fields[2].parse().unwrap_or(0), fields[3], fields[4]),
                    fields[5],
                ),
                files: Vec::new(),
                scripts: Scripts::default(),
                requires: Vec::new(),
                provides: Vec::new(),
            }),
            "@@req" | "@@prov" if fields.len() == 2 => {
                let pkg = packages.last_mut().ok_or("rpm -q output out of order")?;
                let list = if fields[0] == "@@req" {
                    &mut pkg.requires
                } else {
                    &mut pkg.provides
                };
                if !fields[1].starts_with("rpmlib(") && fields[1] != "(none)" {
                    list.push(fields[1].to_owned());
                }
            }
            "@@preun" | "@@postun" if fields.len() == 3 => {
                // The body runs to the `@@end` line (scripts span lines).
                let mut body = fields[2].to_owned();
                for more in lines.by_ref() {
                    if more == "@@end" {
                        break;
                    }
                    body.push('\n');
                    body.push_str(more);
                }
                let pkg = packages.last_mut().ok_or("rpm -qa output out of order")?;
                let s = script(fields[1], body);
                if fields[0] == "@@preun" {
                    pkg.scripts.preun = s;
                } else {
                    pkg.scripts.postun = s;
                }
            }
            "@@file" if fields.len() == 12 => {
                let pkg = packages.last_mut().ok_or("rpm -qa output out of order")?;
                let mode: u32 = fields[2]
                    .parse()
                    .map_err(|_| format!("bad file mode in {line:?}"))?;
                let kind = match mode & 0o170000 {
                    0o100000 => FileKind::Regular,
                    0o040000 => FileKind::Dir,
                    0o120000 => FileKind::Symlink,
                    _ => FileKind::Special,
                };
                let Ok(path) = safe_relative(fields[1]) else {
                    continue;
                };
                let none = |s: &str| (!s.is_empty() && s != "(none)").then(|| s.to_owned());
                pkg.files.push(FileInfo {
                    path,
                    kind,
                    mode: mode & 0o7777,
                    user: fields[3].into(),
                    group: fields[4].into(),
                    mtime: fields[5].parse().unwrap_or(0),
                    size: fields[6].parse().unwrap_or(0),
                    flags: fields[7].parse().unwrap_or(0),
                    digest: none(fields[9])
                        .map(|d| (fields[8].parse().unwrap_or(0), d.to_ascii_lowercase())),
                    link: none(fields[10]),
                    caps: none(fields[11]),
                });
            }
            _ => {}
        }
    }
    Ok(packages)
}

/// Runs an rpm command line; `Err` names it, with its status and rpm's error lines.
pub(crate) fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}",
        out.status,
        rpm_stderr(&out.stderr)
    ))
}

/// rpm's error output without Debian's reminder that it is not dpkg.
pub(crate) fn rpm_stderr(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| {
            !l.contains("use Alien instead") && !l.contains("assuming you know what you are doing")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_output_parses() {
        let s = '\u{1f}';
        let text = format!(
            "@@pkg{s}foo{s}0{s}1.0{s}1{s}noarch\n@@preun{s}/bin/sh{s}echo a\necho b\n@@end\n@@postun{s}(none){s}(none)\n@@end\n\
             @@file{s}/etc/foo.conf{s}33188{s}root{s}root{s}1700000000{s}9{s}17{s}8{s}ABCD{s}{s}\n\
             @@file{s}/usr/share/foo{s}16877{s}root{s}root{s}1700000000{s}4096{s}0{s}8{s}{s}{s}\n"
        );
        let pkgs = parse_query(&text).unwrap();
        assert_eq!(pkgs.len(), 1);
        let p = &pkgs[0];
        assert_eq!(
            p.scripts.preun.as_ref().unwrap().body.as_deref(),
            Some("echo a\necho b")
        );
        assert_eq!(p.scripts.postun, None);
        assert_eq!(p.files[0].path, "etc/foo.conf");
        assert_eq!(p.files[0].mode, 0o644);
        assert!(p.files[0].is_config());
        assert_eq!(p.files[0].digest, Some((8, "abcd".into())));
        assert_eq!(p.files[1].kind, FileKind::Dir);
    }
}
