//! One RPM as the installer sees it: its header (files with every attribute rpm installs,
//! scriptlets, dependencies) and a streaming reader of its payload, whatever compressor
//! rpmbuild used.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path};

use rpm::{FileType, IndexTag};
use serde::{Deserialize, Serialize};

/// `%config`.
pub(crate) const FLAG_CONFIG: u32 = 1;
/// `%config(noreplace)`.
pub(crate) const FLAG_NOREPLACE: u32 = 1 << 4;
/// `%ghost`: recorded, never created.
pub(crate) const FLAG_GHOST: u32 = 1 << 6;

/// What kind of entry a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A device, fifo or socket (refused at install).
    Special,
}

/// One path of a package, with everything rpm records of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Relative to the root (`usr/bin/x`).
    pub path: String,
    /// Its kind.
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner name (resolved in the root's `/etc/passwd`).
    pub user: String,
    /// Group name (resolved in the root's `/etc/group`).
    pub group: String,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Size in bytes (regular files).
    pub size: u64,
    /// rpm's file flags (`%config`, `noreplace`, `%ghost`, …).
    pub flags: u32,
    /// rpm's digest algorithm number and the hex digest (regular files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<(u32, String)>,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// File capabilities in `cap_from_text` form (`%caps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<String>,
}

impl FileInfo {
    /// A `%config` file.
    pub fn is_config(&self) -> bool {
        self.flags & FLAG_CONFIG != 0
    }
    /// A `%ghost`.
    pub fn is_ghost(&self) -> bool {
        self.flags & FLAG_GHOST != 0
    }
    /// rpm's rule for two packages owning one path: identical type, mode, owner, group,
    /// link target and content (directories may always be shared).
    pub fn same_as(&self, other: &FileInfo) -> bool {
        if self.is_ghost() || other.is_ghost() {
            return true;
        }
        if self.kind != other.kind {
            return false;
        }
        match self.kind {
            FileKind::Dir => true,
            FileKind::Symlink => {
                self.user == other.user && self.group == other.group && self.link == other.link
            }
            _ => {
                self.mode == other.mode
                    && self.user == other.user
                    && self.group == other.group
                    && self.size == other.size
                    && self.digest == other.digest
            }
        }
    }
}

/// A scriptlet: interpreter (with arguments) and body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// The interpreter and its arguments (`/bin/sh` when the package names none).
    pub prog: Vec<String>,
    /// The script text (none for `%post -p /sbin/ldconfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// The scriptlets of a package.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scripts {
    /// `%pretrans`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrans: Option<Script>,
    /// `%pre`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<Script>,
    /// `%post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<Script>,
    /// `%preun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preun: Option<Script>,
    /// `%postun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postun: Option<Script>,
    /// `%posttrans`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posttrans: Option<Script>,
}

impl Scripts {
    /// The scriptlets a package runs when it is installed, with their rpm names.
    pub fn install_side(&self) -> impl Iterator<Item = (&'static str, &Script)> {
        named([
            ("%pretrans", &self.pretrans),
            ("%pre", &self.pre),
            ("%post", &self.post),
            ("%posttrans", &self.posttrans),
        ])
    }

    /// The scriptlets a package runs when it is replaced or removed.
    pub fn erase_side(&self) -> impl Iterator<Item = (&'static str, &Script)> {
        named([("%preun", &self.preun), ("%postun", &self.postun)])
    }
}

fn named<'a, const N: usize>(
    scripts: [(&'static str, &'a Option<Script>); N],
) -> impl Iterator<Item = (&'static str, &'a Script)> {
    scripts
        .into_iter()
        .filter_map(|(name, s)| s.as_ref().map(|s| (name, s)))
}

/// The payload compressors rpm writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compressor {
    None,
    Gzip,
    Bzip2,
    Xz,
    Lzma,
    Zstd,
}

/// The header of one RPM, read without its payload.
#[derive(Debug)]
pub(crate) struct Header {
    pub name: String,
    /// Every path of the header, in header order.
    pub files: Vec<FileInfo>,
    /// For each file, the hard-link set it belongs to (an index into nothing: equal numbers
    /// are one inode), `None` when it has one link.
    pub link_sets: Vec<Option<usize>>,
    pub scripts: Scripts,
    /// Names the package provides (its own name included; its file paths count as provided
    /// too when packages are ordered) and requires.
    pub provides: Vec<String>,
    pub requires: Vec<String>,
    payload_offset: u64,
    compressor: Compressor,
    /// The most the payload may decompress to (see [`payload_bound`]).
    payload_bound: u64,
}

/// Reads the header of `rpm_path`. `Err` says what is wrong in words.
pub(crate) fn read_header(rpm_path: &Path) -> Result<Header, String> {
    // The rpm crate may panic on malformed input: a bad package is an error, never a crash.
    std::panic::catch_unwind(|| parse_header(rpm_path))
        .unwrap_or_else(|_| Err("malformed RPM header (the reader gave up on it)".into()))
}

fn parse_header(rpm_path: &Path) -> Result<Header, String> {
    let file =
        File::open(rpm_path).map_err(|e| format!("cannot open {}: {e}", rpm_path.display()))?;
    let mut reader = BufReader::new(file);
    let metadata = rpm::PackageMetadata::parse(&mut reader)
        .map_err(|e| format!("not a readable RPM ({e})"))?;
    let h = &metadata.header;
    let name = metadata
        .get_name()
        .map_err(|e| format!("no package name ({e})"))?
        .to_owned();
    let entries = metadata
        .get_file_entries()
        .map_err(|e| format!("cannot read the file list ({e})"))?;
    let mut files = Vec::with_capacity(entries.len());
    for entry in &entries {
        let raw = entry.path().to_string_lossy().into_owned();
        let path =
            safe_relative(&raw).map_err(|reason| format!("unsafe path {raw:?}: {reason}"))?;
        let kind = match entry.file_type() {
            FileType::Regular => FileKind::Regular,
            FileType::Dir => FileKind::Dir,
            FileType::SymbolicLink => FileKind::Symlink,
            _ => FileKind::Special,
        };
        files.push(FileInfo {
            path,
            kind,
            mode: u32::from(entry.permissions()) & 0o7777,
            user: entry.user().to_owned(),
            group: entry.group().to_owned(),
            mtime: entry.modified_at().into(),
            size: entry.size() as u64,
            flags: entry.flags().bits(),
            digest: entry
                .digest()
                .filter(|d| !d.as_hex().is_empty())
                .map(|d| (d.algorithm() as u32, d.as_hex().to_ascii_lowercase())),
            link: entry.linkto().filter(|l| !l.is_empty()).map(str::to_owned),
            caps: entry.caps().filter(|c| !c.is_empty()).map(str::to_owned),
        });
    }
    // Hard-link sets: several regular files with one (device, inode) pair.
    let inodes = h
        .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEINODES)
        .unwrap_or_default();
    let devices = h
        .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEDEVICES)
        .unwrap_or_default();
    let mut by_identity: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        if f.kind == FileKind::Regular
            && !f.is_ghost()
            && let (Some(&ino), Some(&dev)) = (inodes.get(i), devices.get(i))
        {
            by_identity.entry((dev, ino)).or_default().push(i);
        }
    }
    let mut link_sets = vec![None; files.len()];
    for (set, members) in by_identity
        .into_values()
        .filter(|m| m.len() > 1)
        .enumerate()
    {
        for i in members {
            link_sets[i] = Some(set);
        }
    }
    let script = |body: IndexTag, prog: IndexTag| -> Option<Script> {
        let body = h.get_entry_data_as_string(body).ok().map(str::to_owned);
        let prog: Option<Vec<String>> = h
            .get_entry_data_as_string_array(prog)
            .map(|v| v.into_iter().map(str::to_owned).collect())
            .or_else(|_| h.get_entry_data_as_string(prog).map(|s| vec![s.to_owned()]))
            .ok()
            .filter(|v: &Vec<String>| !v.is_empty());
        if body.is_none() && prog.is_none() {
            return None;
        }
        Some(Script {
            prog: prog.unwrap_or_else(|| vec!["/bin/sh".to_owned()]),
            body,
        })
    };
    let scripts = Scripts {
        pretrans: script(IndexTag::RPMTAG_PRETRANS, IndexTag::RPMTAG_PRETRANSPROG),
        pre: script(IndexTag::RPMTAG_PREIN, IndexTag::RPMTAG_PREINPROG),
        post: script(IndexTag::RPMTAG_POSTIN, IndexTag::RPMTAG_POSTINPROG),
        preun: script(IndexTag::RPMTAG_PREUN, IndexTag::RPMTAG_PREUNPROG),
        postun: script(IndexTag::RPMTAG_POSTUN, IndexTag::RPMTAG_POSTUNPROG),
        posttrans: script(IndexTag::RPMTAG_POSTTRANS, IndexTag::RPMTAG_POSTTRANSPROG),
    };
    let names = |tag: IndexTag| -> Vec<String> {
        h.get_entry_data_as_string_array(tag)
            .map(|v| v.into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut provides = names(IndexTag::RPMTAG_PROVIDENAME);
    provides.push(name.clone());
    let requires = names(IndexTag::RPMTAG_REQUIRENAME)
        .into_iter()
        .filter(|r| !r.starts_with("rpmlib("))
        .collect();
    let compressor = match h.get_entry_data_as_string(IndexTag::RPMTAG_PAYLOADCOMPRESSOR) {
        Ok("gzip") | Err(_) => Compressor::Gzip,
        Ok("bzip2") => Compressor::Bzip2,
        Ok("xz") => Compressor::Xz,
        Ok("lzma") => Compressor::Lzma,
        Ok("zstd") => Compressor::Zstd,
        Ok("identity") => Compressor::None,
        Ok(other) => return Err(format!("unknown payload compressor {other:?}")),
    };
    Ok(Header {
        name,
        payload_bound: payload_bound(&files),
        files,
        link_sets,
        scripts,
        provides,
        requires,
        payload_offset: metadata.get_package_segment_offsets().payload,
        compressor,
    })
}

/// The most a payload can decompress to for the files its header lists: every file's
/// content, and for every entry a cpio header (110 bytes), its name (`./` + path + NUL) and
/// padding, then the trailer. rpm's entries for files over 4 GiB have smaller headers, hard
/// links carry their content once and ghosts none, so a real payload stays below this;
/// whatever goes beyond it is not this header's payload (a compression bomb stops here, after
/// as many bytes as the header declares, not after a fixed terabyte).
fn payload_bound(files: &[FileInfo]) -> u64 {
    const ENTRY: u64 = 110 + 3 + 3 + 3;
    const TRAILER: u64 = 110 + 11 + 3 + 64 * 1024;
    files.iter().fold(TRAILER, |bound, f| {
        bound
            .saturating_add(f.size)
            .saturating_add(ENTRY + f.path.len() as u64)
    })
}

impl Header {
    /// A streaming reader of the payload's files (the cpio archive decompressed on the fly;
    /// memory stays bounded whatever the package size).
    pub(crate) fn payload(&self, rpm_path: &Path) -> Result<rpm::PackageReader, String> {
        let head = File::open(rpm_path)
            .map_err(|e| format!("cannot open {}: {e}", rpm_path.display()))?
            .take(self.payload_offset);
        // The rpm crate parses the lead and headers again from `head`, then finds a plain cpio
        // archive after them (already decompressed here, so every compressor is read alike).
        let input: Box<dyn BufRead> = Box::new(BufReader::with_capacity(
            256 * 1024,
            head.chain(self.decompressed(rpm_path)?),
        ));
        rpm::PackageReader::parse(input).map_err(|e| format!("cannot read the payload: {e}"))
    }

    /// The payload's cpio archive, decompressed, cut off at [`payload_bound`].
    fn decompressed(&self, rpm_path: &Path) -> Result<std::io::Take<Box<dyn Read>>, String> {
        let mut body =
            File::open(rpm_path).map_err(|e| format!("cannot open {}: {e}", rpm_path.display()))?;
        body.seek(SeekFrom::Start(self.payload_offset))
            .map_err(|e| format!("cannot read the payload: {e}"))?;
        let body = BufReader::with_capacity(256 * 1024, body);
        let decoded: Box<dyn Read> = match self.compressor {
            Compressor::None => Box::new(body),
            Compressor::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(body)),
            Compressor::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(body)),
            Compressor::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(body)),
            Compressor::Lzma => {
                let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX)
                    .map_err(|e| format!("lzma decoder: {e}"))?;
                Box::new(liblzma::bufread::XzDecoder::new_stream(body, stream))
            }
            Compressor::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(body)
                    .map_err(|e| format!("zstd decoder: {e}"))?,
            ),
        };
        Ok(decoded.take(self.payload_bound))
    }
}

/// An RPM path (`/usr/bin/x`) as a path relative to the root, refusing `..`, `.` and anything
/// that is not a plain name.
pub(crate) fn safe_relative(raw: &str) -> Result<String, String> {
    let path = Path::new(raw);
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => {
                let name = name.to_str().ok_or("the path is not UTF-8")?;
                parts.push(name.to_owned());
            }
            Component::ParentDir => {
                return Err("it contains '..' (it would escape the root)".into());
            }
            Component::CurDir | Component::Prefix(_) => {
                return Err("it is not a plain absolute path".into());
            }
        }
    }
    if parts.is_empty() {
        return Err("it names the root itself".into());
    }
    if !raw.starts_with('/') {
        return Err("it is not absolute".into());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use patch_format::testing::{Payload, SpecRpm, TestRpm, rpmbuild_available};

    /// Every real payload fits its bound; one whose header understates it is cut off there.
    #[test]
    fn the_payload_is_bounded_by_what_the_header_declares() {
        let dir = tempfile::tempdir().unwrap();
        let mut packages = vec![
            TestRpm::new("plain", "1.0", "1")
                .file("/usr/share/plain/a", vec![7u8; 100_000])
                .file("/usr/share/plain/b", "b")
                .build(dir.path()),
        ];
        if rpmbuild_available() {
            for payload in [Payload::Gzip, Payload::Xz, Payload::Zstd] {
                packages.push(
                    SpecRpm::new("real", "1.0", "1")
                        .file("/usr/bin/real", vec![1u8; 100_000])
                        .hard_link("/usr/bin/real-link", "/usr/bin/real")
                        .symlink("/usr/bin/real-sym", "real")
                        .dir("/usr/share/real", 0o755)
                        .file("/usr/share/real/empty", "")
                        .payload(payload)
                        .build(&dir.path().join(format!("{payload:?}"))),
                );
            }
        }
        for rpm in &packages {
            let mut header = read_header(rpm).unwrap();
            let mut all = Vec::new();
            let n = header
                .decompressed(rpm)
                .unwrap()
                .read_to_end(&mut all)
                .unwrap() as u64;
            assert!(n < header.payload_bound, "{}: {n} bytes", rpm.display());
            // A header that declares less than the payload holds.
            header.payload_bound = payload_bound(&[]);
            let cut = header
                .decompressed(rpm)
                .unwrap()
                .read_to_end(&mut Vec::new());
            assert!(
                cut.unwrap() as u64 <= header.payload_bound && n > header.payload_bound,
                "{}",
                rpm.display()
            );
        }
    }

    #[test]
    fn paths_are_kept_inside() {
        assert_eq!(safe_relative("/usr/bin/x").unwrap(), "usr/bin/x");
        assert_eq!(
            safe_relative("/usr/share/a b/é").unwrap(),
            "usr/share/a b/é"
        );
        for bad in ["/../etc/passwd", "/usr/../../x", "relative/x", "/"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }
}
