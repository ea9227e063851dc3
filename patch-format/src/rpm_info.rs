//! RPM identity: header inspection (never the payload), file-name parsing, `rpmvercmp` order.

use std::cmp::Ordering;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{FormatError, Limits};

/// An RPM epoch:version-release, ordered exactly as rpm's `rpmvercmp` (epoch first; then
/// alternating numeric/alpha segments; `~` sorts before anything, `^` after the base version
/// but before any further segment). The comparison is rpm-rs's own (`rpm-version`).
///
/// Equality is rpm equality: `1.0` equals `1.00`, as rpm considers them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Evr {
    /// Epoch; 0 when the package has none.
    pub epoch: u32,
    /// Upstream version.
    pub version: String,
    /// Package release.
    pub release: String,
}

impl Evr {
    /// Builds an EVR.
    pub fn new(epoch: u32, version: impl Into<String>, release: impl Into<String>) -> Self {
        Evr {
            epoch,
            version: version.into(),
            release: release.into(),
        }
    }

    /// Parses `[epoch:]version[-release]`.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let bad =
            || FormatError::InvalidPatch(format!("{text:?} is not an [epoch:]version-release"));
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => (e.parse::<u32>().map_err(|_| bad())?, rest),
            None => (0, text),
        };
        let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
        if version.is_empty() {
            return Err(bad());
        }
        Ok(Evr::new(epoch, version, release))
    }

    fn as_rpm(&self) -> rpm_version::Evr<'_> {
        rpm_version::Evr::new(
            std::borrow::Cow::Owned(self.epoch.to_string()),
            std::borrow::Cow::Borrowed(self.version.as_str()),
            std::borrow::Cow::Borrowed(self.release.as_str()),
        )
    }
}

impl Ord for Evr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_rpm().cmp(&other.as_rpm())
    }
}

impl PartialOrd for Evr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Evr {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Evr {}

impl fmt::Display for PackageId {
    /// `name-[epoch:]version-release.arch`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}.{}", self.name, self.evr, self.arch)
    }
}

impl fmt::Display for Evr {
    /// `[epoch:]version-release`, the epoch shown only when non-zero (as the original agent's
    /// version strings).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        write!(f, "{}", self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
        }
        Ok(())
    }
}

/// The parts of an RPM file name, split as the original's
/// `((([^:]):)?)(.*)-([^-]+)-(.*)\.([^\.]*)$` does on the name without `.rpm` (but accepting
/// multi-digit epochs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpmFileName {
    /// Epoch prefix (`1:name-…`), rarely present in file names.
    pub epoch: Option<String>,
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture.
    pub arch: String,
}

impl RpmFileName {
    /// Splits `name-version-release.arch.rpm`.
    pub fn parse(file_name: &str) -> Result<Self, FormatError> {
        let bad = |why: &str| FormatError::Rpm {
            file: file_name.to_owned(),
            reason: format!("file name is not name-version-release.arch.rpm: {why}"),
        };
        let stem = file_name
            .strip_suffix(".rpm")
            .ok_or_else(|| bad("no .rpm suffix"))?;
        let (epoch, stem) = match stem.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (Some(e.to_owned()), rest)
            }
            _ => (None, stem),
        };
        let (nvr, arch) = stem
            .rsplit_once('.')
            .ok_or_else(|| bad("no architecture"))?;
        let (nv, release) = nvr.rsplit_once('-').ok_or_else(|| bad("no release"))?;
        let (name, version) = nv.rsplit_once('-').ok_or_else(|| bad("no version"))?;
        if name.is_empty() || version.is_empty() || release.is_empty() || arch.is_empty() {
            return Err(bad("empty part"));
        }
        Ok(RpmFileName {
            epoch,
            name: name.to_owned(),
            version: version.to_owned(),
            release: release.to_owned(),
            arch: arch.to_owned(),
        })
    }
}

/// A package build as rpm names it (NEVRA): name, epoch:version-release, architecture. The
/// one identity every crate uses for a package: the store's records, the repositories'
/// index entries, a host's installed and desired packages, the agent's rpmdb entries.
/// Read from an RPM's header (the payload is never read). Serialized flat:
/// `{"name", "epoch", "version", "release", "arch"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageId {
    /// Package name.
    pub name: String,
    /// Epoch, version, release.
    #[serde(flatten)]
    pub evr: Evr,
    /// Architecture (`x86_64`, `noarch`, …).
    pub arch: String,
}

impl PackageId {
    /// A package id.
    pub fn new(name: impl Into<String>, evr: Evr, arch: impl Into<String>) -> PackageId {
        PackageId {
            name: name.into(),
            evr,
            arch: arch.into(),
        }
    }

    /// `(name, arch)`: what one installed package is keyed by (one version of each).
    pub fn key(&self) -> (String, String) {
        (self.name.clone(), self.arch.clone())
    }

    /// Reads the header of the RPM at `path`.
    pub fn inspect(path: &Path, limits: &Limits) -> Result<Self, FormatError> {
        let file = std::fs::File::open(path).map_err(FormatError::io(path))?;
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::from_reader(std::io::BufReader::new(file), &label, limits)
    }

    /// Reads an RPM header from a stream, consuming only the lead and both headers.
    pub fn from_reader(
        reader: impl Read,
        label: &str,
        limits: &Limits,
    ) -> Result<Self, FormatError> {
        let err = |reason: String| FormatError::Rpm {
            file: label.to_owned(),
            reason,
        };
        let area = read_header_area(reader, limits.max_rpm_header_size).map_err(err)?;
        // The rpm crate indexes its buffers with offsets taken from the file; the bounds read
        // above make that safe for sizes, and catching a panic keeps a malformed entry offset
        // from taking the process down.
        let parsed = std::panic::catch_unwind(|| rpm::PackageMetadata::parse(&mut &area[..]))
            .map_err(|_| err("malformed RPM header".into()))?
            .map_err(|e| err(format!("cannot read the RPM header: {e}")))?;
        if parsed.is_source_package() {
            return Err(err("is a source RPM; patches carry binary RPMs".into()));
        }
        let text = |v: Result<&str, rpm::Error>, tag: &str| {
            v.map(str::to_owned)
                .map_err(|e| err(format!("header has no {tag}: {e}")))
        };
        let epoch = match parsed.get_epoch() {
            Ok(e) => e,
            Err(rpm::Error::TagNotFound(_)) => 0,
            Err(e) => return Err(err(format!("bad epoch: {e}"))),
        };
        Ok(PackageId {
            name: text(parsed.get_name(), "name")?,
            evr: Evr::new(
                epoch,
                text(parsed.get_version(), "version")?,
                text(parsed.get_release(), "release")?,
            ),
            arch: text(parsed.get_arch(), "arch")?,
        })
    }

    /// `name-version-release.arch.rpm`, the name rpmbuild gives the file.
    pub fn canonical_file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.evr.version, self.evr.release, self.arch
        )
    }

    /// Checks that a file name states this package: name, version, release and arch equal,
    /// and the epoch too when the file name carries one.
    pub fn check_file_name(&self, file_name: &str) -> Result<(), FormatError> {
        let parsed = RpmFileName::parse(file_name)?;
        let same = parsed.name == self.name
            && parsed.version == self.evr.version
            && parsed.release == self.evr.release
            && parsed.arch == self.arch
            && parsed
                .epoch
                .as_deref()
                .is_none_or(|e| e.parse::<u32>().ok() == Some(self.evr.epoch));
        if same {
            Ok(())
        } else {
            Err(FormatError::Rpm {
                file: file_name.to_owned(),
                reason: format!(
                    "the file name does not match the package header ({}, epoch {}): rename it {}",
                    self.canonical_file_name(),
                    self.evr.epoch,
                    self.canonical_file_name()
                ),
            })
        }
    }
}

/// RPM lead size and header magic.
const LEAD_SIZE: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// rpm's own bound on the number of index entries in a header.
const MAX_INDEX_ENTRIES: u64 = 0xffff;

/// Reads lead + signature header (+ padding) + main header into memory, refusing sizes above
/// `max` before allocating anything.
fn read_header_area(mut reader: impl Read, max: u64) -> Result<Vec<u8>, String> {
    let mut area = vec![0u8; LEAD_SIZE];
    reader
        .read_exact(&mut area)
        .map_err(|e| format!("too short for an RPM lead: {e}"))?;
    if area[..4] != LEAD_MAGIC {
        return Err("not an RPM file (bad lead magic)".into());
    }
    for (which, pad) in [("signature header", true), ("header", false)] {
        let start = area.len();
        area.resize(start + 16, 0);
        reader
            .read_exact(&mut area[start..])
            .map_err(|e| format!("truncated {which}: {e}"))?;
        let intro = &area[start..];
        if intro[..4] != HEADER_MAGIC {
            return Err(format!("bad {which} magic"));
        }
        let entries = u64::from(u32::from_be_bytes([
            intro[8], intro[9], intro[10], intro[11],
        ]));
        let data = u64::from(u32::from_be_bytes([
            intro[12], intro[13], intro[14], intro[15],
        ]));
        if entries > MAX_INDEX_ENTRIES {
            return Err(format!("{which} claims {entries} index entries"));
        }
        let padding = if pad { (8 - data % 8) % 8 } else { 0 };
        let rest = entries * 16 + data + padding;
        if area.len() as u64 + rest > max {
            return Err(format!(
                "{which} is larger than the {max}-byte limit for RPM headers"
            ));
        }
        let start = area.len();
        area.resize(start + rest as usize, 0);
        reader
            .read_exact(&mut area[start..])
            .map_err(|e| format!("truncated {which}: {e}"))?;
    }
    Ok(area)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from rpm's own test suite (tests/rpmvercmp.at).
    const RPMVERCMP: &[(&str, &str, i32)] = &[
        ("1.0", "1.0", 0),
        ("1.0", "2.0", -1),
        ("2.0", "1.0", 1),
        ("2.0.1", "2.0.1", 0),
        ("2.0", "2.0.1", -1),
        ("2.0.1", "2.0", 1),
        ("2.0.1a", "2.0.1a", 0),
        ("2.0.1a", "2.0.1", 1),
        ("2.0.1", "2.0.1a", -1),
        ("5.5p1", "5.5p1", 0),
        ("5.5p1", "5.5p2", -1),
        ("5.5p2", "5.5p1", 1),
        ("5.5p10", "5.5p10", 0),
        ("5.5p1", "5.5p10", -1),
        ("5.5p10", "5.5p1", 1),
        ("10xyz", "10.1xyz", -1),
        ("10.1xyz", "10xyz", 1),
        ("xyz10", "xyz10", 0),
        ("xyz10", "xyz10.1", -1),
        ("xyz10.1", "xyz10", 1),
        ("xyz.4", "xyz.4", 0),
        ("xyz.4", "8", -1),
        ("8", "xyz.4", 1),
        ("xyz.4", "2", -1),
        ("2", "xyz.4", 1),
        ("5.5p2", "5.6p1", -1),
        ("5.6p1", "5.5p2", 1),
        ("5.6p1", "6.5p1", -1),
        ("6.5p1", "5.6p1", 1),
        ("6.0.rc1", "6.0", 1),
        ("6.0", "6.0.rc1", -1),
        ("10b2", "10a1", 1),
        ("10a2", "10b2", -1),
        ("1.0aa", "1.0aa", 0),
        ("1.0a", "1.0aa", -1),
        ("1.0aa", "1.0a", 1),
        ("10.0001", "10.0001", 0),
        ("10.0001", "10.1", 0),
        ("10.1", "10.0001", 0),
        ("10.0001", "10.0039", -1),
        ("10.0039", "10.0001", 1),
        ("4.999.9", "5.0", -1),
        ("5.0", "4.999.9", 1),
        ("20101121", "20101121", 0),
        ("20101121", "20101122", -1),
        ("20101122", "20101121", 1),
        ("2_0", "2_0", 0),
        ("2.0", "2_0", 0),
        ("2_0", "2.0", 0),
        ("a", "a", 0),
        ("a+", "a+", 0),
        ("a+", "a_", 0),
        ("a_", "a+", 0),
        ("+a", "+a", 0),
        ("+a", "_a", 0),
        ("_a", "+a", 0),
        ("+_", "+_", 0),
        ("_+", "+_", 0),
        ("_+", "_+", 0),
        ("+", "_", 0),
        ("_", "+", 0),
        ("1.0~rc1", "1.0~rc1", 0),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc2", -1),
        ("1.0~rc2", "1.0~rc1", 1),
        ("1.0~rc1~git123", "1.0~rc1~git123", 0),
        ("1.0~rc1~git123", "1.0~rc1", -1),
        ("1.0~rc1", "1.0~rc1~git123", 1),
        ("1.0^", "1.0^", 0),
        ("1.0^", "1.0", 1),
        ("1.0", "1.0^", -1),
        ("1.0^git1", "1.0^git1", 0),
        ("1.0^git1", "1.0", 1),
        ("1.0", "1.0^git1", -1),
        ("1.0^git1", "1.0^git2", -1),
        ("1.0^git2", "1.0^git1", 1),
        ("1.0^git1", "1.01", -1),
        ("1.01", "1.0^git1", 1),
        ("1.0^20160101", "1.0^20160101", 0),
        ("1.0^20160101", "1.0.1", -1),
        ("1.0.1", "1.0^20160101", 1),
        ("1.0^20160101^git1", "1.0^20160101^git1", 0),
        ("1.0^20160102", "1.0^20160101^git1", 1),
        ("1.0^20160101^git1", "1.0^20160102", -1),
        ("1.0~rc1^git1", "1.0~rc1^git1", 0),
        ("1.0~rc1^git1", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc1^git1", -1),
        ("1.0^git1~pre", "1.0^git1~pre", 0),
        ("1.0^git1", "1.0^git1~pre", 1),
        ("1.0^git1~pre", "1.0^git1", -1),
    ];

    #[test]
    fn rpmvercmp_vectors() {
        for &(a, b, expected) in RPMVERCMP {
            let got = Evr::new(0, a, "").cmp(&Evr::new(0, b, ""));
            assert_eq!(got as i32, expected, "rpmvercmp({a}, {b})");
        }
    }

    #[test]
    fn epoch_dominates_then_release() {
        assert!(Evr::new(1, "1.0", "1") > Evr::new(0, "9.9", "9"));
        assert!(Evr::new(0, "1.0", "2.tis") > Evr::new(0, "1.0", "1.tis"));
        assert!(Evr::new(0, "1.0", "10") > Evr::new(0, "1.0", "9"));
        assert_eq!(Evr::parse("2:1.0-3").unwrap(), Evr::new(2, "1.0", "3"));
        assert_eq!(Evr::parse("1.0-3").unwrap().to_string(), "1.0-3");
        assert_eq!(Evr::new(2, "1.0", "3").to_string(), "2:1.0-3");
        assert!(Evr::parse("x:1").is_err());
    }

    #[test]
    fn file_names_split_like_the_original() {
        let f = RpmFileName::parse("sysinv-1.0-230.tis.x86_64.rpm").unwrap();
        assert_eq!(
            (
                f.name.as_str(),
                f.version.as_str(),
                f.release.as_str(),
                f.arch.as_str()
            ),
            ("sysinv", "1.0", "230.tis", "x86_64")
        );
        let f = RpmFileName::parse("1:python-foo-bar-2.3-4.el7.noarch.rpm").unwrap();
        assert_eq!(f.epoch.as_deref(), Some("1"));
        assert_eq!(f.name, "python-foo-bar");
        for bad in ["x.rpm", "a-1.x86_64.rpm", "a-1-2.rpm", "a-1-2.x86_64"] {
            assert!(RpmFileName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_area_refuses_garbage_without_allocating() {
        let limits = Limits::default();
        for junk in [
            &b""[..],
            b"hello",
            &[0xed, 0xab, 0xee, 0xdb][..],
            &[0u8; 200][..],
        ] {
            assert!(PackageId::from_reader(junk, "x.rpm", &limits).is_err());
        }
        // A lead followed by a header claiming 4 GiB of data: refused by size, not by OOM.
        let mut huge = vec![0u8; 96];
        huge[..4].copy_from_slice(&LEAD_MAGIC);
        huge.extend_from_slice(&HEADER_MAGIC);
        huge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        let err = PackageId::from_reader(&huge[..], "x.rpm", &limits).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
