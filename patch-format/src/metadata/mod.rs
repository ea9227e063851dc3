//! `metadata.xml`: the typed patch metadata, and its reader and writer.

mod read;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::FormatError;

pub use read::parse_metadata_xml;
pub use write::metadata_xml;

/// The release status of a patch (`<status>`). The original stores the string verbatim; the
/// three codes it knows are typed, anything else is kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// `REL`: released; the only status that can be committed.
    Released,
    /// `DEV`: development (the original `make_patch` default).
    Development,
    /// `OBS`: obsolete; raises the "obsolete patch" alarm.
    Obsolete,
    /// Any other string found in an existing patch.
    Other(String),
}

impl Status {
    /// The code as written in `metadata.xml`.
    pub fn as_str(&self) -> &str {
        match self {
            Status::Released => "REL",
            Status::Development => "DEV",
            Status::Obsolete => "OBS",
            Status::Other(s) => s,
        }
    }

    /// Parses a status as found in metadata: the three codes (and their long names, as the
    /// Debian `make_patch` accepts), anything else kept verbatim.
    pub fn from_metadata(text: &str) -> Status {
        match text {
            "REL" | "release" | "Released" => Status::Released,
            "DEV" | "development" | "Development" => Status::Development,
            "OBS" | "obsolete" | "Obsolete" => Status::Obsolete,
            other => Status::Other(other.to_owned()),
        }
    }
}

impl FromStr for Status {
    type Err = FormatError;
    /// Parses a status given by a user: only the three codes (or their long names).
    fn from_str(s: &str) -> Result<Self, FormatError> {
        match Status::from_metadata(s) {
            Status::Other(_) => Err(FormatError::InvalidPatch(format!(
                "unknown status {s:?}: use REL, DEV or OBS"
            ))),
            known => Ok(known),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node type ("personality") that a patch can add new packages to. Ordered as the original
/// sorts them in `metadata.xml` (alphabetically by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Personality {
    /// `controller`
    Controller,
    /// `controller-worker` (all-in-one)
    ControllerWorker,
    /// `controller-worker-lowlatency`
    ControllerWorkerLowlatency,
    /// `storage`
    Storage,
    /// `worker`
    Worker,
    /// `worker-lowlatency`
    WorkerLowlatency,
}

impl Personality {
    /// All six, in metadata order.
    pub const ALL: [Personality; 6] = [
        Personality::Controller,
        Personality::ControllerWorker,
        Personality::ControllerWorkerLowlatency,
        Personality::Storage,
        Personality::Worker,
        Personality::WorkerLowlatency,
    ];

    /// The name used in `<personality type="…">` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Personality::Controller => "controller",
            Personality::ControllerWorker => "controller-worker",
            Personality::ControllerWorkerLowlatency => "controller-worker-lowlatency",
            Personality::Storage => "storage",
            Personality::Worker => "worker",
            Personality::WorkerLowlatency => "worker-lowlatency",
        }
    }
}

impl FromStr for Personality {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        Personality::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                FormatError::InvalidPatch(format!(
                    "unknown node type {s:?}: expected one of controller, controller-worker, \
                     controller-worker-lowlatency, storage, worker, worker-lowlatency"
                ))
            })
    }
}

impl fmt::Display for Personality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A semantic check script carried in `semantics.tar`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SemanticAction {
    /// `pre-apply`: run before the patch is applied; a non-zero exit refuses the apply.
    PreApply,
    /// `pre-remove`: run before the patch is removed.
    PreRemove,
}

impl SemanticAction {
    /// Both actions.
    pub const ALL: [SemanticAction; 2] = [SemanticAction::PreApply, SemanticAction::PreRemove];

    /// `pre-apply` or `pre-remove`, as in `<action>` and the `semantics.tar` member path.
    pub fn as_str(self) -> &'static str {
        match self {
            SemanticAction::PreApply => "pre-apply",
            SemanticAction::PreRemove => "pre-remove",
        }
    }
}

impl FromStr for SemanticAction {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        SemanticAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| FormatError::InvalidPatch(format!("unknown semantic action {s:?}")))
    }
}

/// An in-service restart script carried as an extra outer member (the Debian variant's
/// `<restart_script>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartScript {
    /// The outer member name and installed script name, `<PATCH_ID>_<basename>`.
    pub name: String,
    /// SHA-256 of the script, hex. Written as the `sha256` attribute of `<restart_script>` so
    /// that the script — which the original leaves outside both signatures — is covered by
    /// the signed metadata. Readers that do not know the attribute ignore it.
    pub sha256: String,
}

/// Everything in a patch's `metadata.xml` (reference §2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchMetadata {
    /// Patch ID, e.g. `STX_19.01_PATCH_0002`; also the file name stem `<id>.patch`.
    pub id: String,
    /// The release the patch is for (`sw_version`), e.g. `19.01`.
    pub sw_version: String,
    /// One-line summary.
    pub summary: String,
    /// Description; may span lines, kept exactly (never stripped).
    pub description: String,
    /// Install instructions shown to the operator.
    pub install_instructions: String,
    /// Warnings shown to the operator.
    pub warnings: String,
    /// REL / DEV / OBS.
    pub status: Status,
    /// The patch can only be removed with `--removeunremovable`.
    pub unremovable: bool,
    /// Hosts must be locked and rebooted to install it.
    pub reboot_required: bool,
    /// The patch may only be applied to the running release (not during an upgrade).
    pub apply_active_release_only: bool,
    /// New packages each node type must install (package names).
    pub personalities: BTreeMap<Personality, BTreeSet<String>>,
    /// RPM file names in `software.tar`.
    pub contents: BTreeSet<String>,
    /// IDs of patches that must be in the repository first.
    pub requires: BTreeSet<String>,
    /// Semantic check scripts carried in `semantics.tar`.
    pub semantics: BTreeSet<SemanticAction>,
    /// In-service restart script, if any.
    pub restart_script: Option<RestartScript>,
}

impl PatchMetadata {
    /// Metadata with the given ID and release and everything else empty: status DEV,
    /// reboot required (the original's defaults).
    pub fn new(id: impl Into<String>, sw_version: impl Into<String>) -> Self {
        PatchMetadata {
            id: id.into(),
            sw_version: sw_version.into(),
            summary: String::new(),
            description: String::new(),
            install_instructions: String::new(),
            warnings: String::new(),
            status: Status::Development,
            unremovable: false,
            reboot_required: true,
            apply_active_release_only: false,
            personalities: BTreeMap::new(),
            contents: BTreeSet::new(),
            requires: BTreeSet::new(),
            semantics: BTreeSet::new(),
            restart_script: None,
        }
    }

    /// Checks the values that end up in file names and paths.
    pub fn validate(&self) -> Result<(), FormatError> {
        validate_patch_id(&self.id).map_err(|r| FormatError::metadata("id", r.to_string()))?;
        validate_token(&self.sw_version)
            .map_err(|r| FormatError::metadata("sw_version", r.to_string()))?;
        for req in &self.requires {
            validate_patch_id(req)
                .map_err(|r| FormatError::metadata("requires/req_patch_id", r.to_string()))?;
        }
        for rpm in &self.contents {
            validate_rpm_file_name(rpm)
                .map_err(|r| FormatError::metadata("contents/rpm", r.to_string()))?;
        }
        for (personality, packages) in &self.personalities {
            for package in packages {
                validate_token(package).map_err(|r| {
                    FormatError::metadata(
                        format!("personality type=\"{personality}\"/package"),
                        r.to_string(),
                    )
                })?;
            }
        }
        if let Some(script) = &self.restart_script {
            validate_member_name(&script.name)
                .map_err(|r| FormatError::metadata("restart_script", r.to_string()))?;
            if script.sha256.len() != 64 || !script.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FormatError::metadata(
                    "restart_script",
                    "sha256 attribute must be 64 hex digits",
                ));
            }
        }
        Ok(())
    }
}

/// Why a name that ends up in a file name or path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is over 255 bytes (its first 32 characters shown).
    #[error("{start:?}… is longer than 255 bytes")]
    TooLong {
        /// Its first 32 characters.
        start: String,
    },
    /// A patch ID over 128 characters.
    #[error("{0:?} is longer than 128 characters")]
    IdTooLong(String),
    /// The name starts with `.` or `-`.
    #[error("{0:?} must not start with '.' or '-'")]
    BadStart(String),
    /// The name holds a character outside the allowed set.
    #[error("{name:?} contains {bad:?}; allowed: letters, digits and . _ - + ~ ^ :")]
    BadCharacter {
        /// The name.
        name: String,
        /// The first character not allowed.
        bad: char,
    },
    /// An RPM file name not ending in `.rpm`.
    #[error("{0:?} does not end in .rpm")]
    NotRpm(String),
    /// Empty, `.` or `..`.
    #[error("{0:?} is not a file name")]
    NotAFileName(String),
    /// An archive member name over 255 bytes.
    #[error("name is longer than 255 bytes")]
    MemberTooLong,
    /// A member name with a directory part.
    #[error("{0:?} has a directory part; members must be bare names")]
    DirectoryPart(String),
    /// A member name with control characters.
    #[error("{0:?} contains control characters")]
    ControlCharacters(String),
}

/// A patch ID must be usable as a file name: 1–128 characters from `A-Z a-z 0-9 . _ -`,
/// not starting with `.` or `-`.
pub fn validate_patch_id(id: &str) -> Result<(), NameError> {
    validate_token(id)?;
    if id.len() > 128 {
        return Err(NameError::IdTooLong(id.to_owned()));
    }
    Ok(())
}

/// A name used in a path: non-empty, `A-Z a-z 0-9 . _ - + ~ ^ :`, not starting with `.`/`-`.
fn validate_token(value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty);
    }
    if value.len() > 255 {
        return Err(NameError::TooLong {
            start: value.chars().take(32).collect(),
        });
    }
    if value.starts_with('.') || value.starts_with('-') {
        return Err(NameError::BadStart(value.to_owned()));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-+~^:".contains(*c)))
    {
        return Err(NameError::BadCharacter {
            name: value.to_owned(),
            bad,
        });
    }
    Ok(())
}

/// An RPM file name in `contents`/`software.tar`: a bare name ending in `.rpm`.
pub fn validate_rpm_file_name(name: &str) -> Result<(), NameError> {
    validate_member_name(name)?;
    if !name.ends_with(".rpm") {
        return Err(NameError::NotRpm(name.to_owned()));
    }
    Ok(())
}

/// A bare archive member name: no directory part, no `..`, no control characters.
pub(crate) fn validate_member_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(NameError::NotAFileName(name.to_owned()));
    }
    if name.len() > 255 {
        return Err(NameError::MemberTooLong);
    }
    if name.contains('/') || name.contains('\\') {
        return Err(NameError::DirectoryPart(name.to_owned()));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(NameError::ControlCharacters(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personality_order_is_alphabetical() {
        let mut names: Vec<_> = Personality::ALL.iter().map(|p| p.as_str()).collect();
        let sorted = {
            let mut s = names.clone();
            s.sort();
            s
        };
        assert_eq!(names, sorted);
        names.dedup();
        assert_eq!(names.len(), 6);
        assert_eq!(
            "storage".parse::<Personality>().unwrap(),
            Personality::Storage
        );
        assert!("compute".parse::<Personality>().is_err());
    }

    #[test]
    fn status_codes() {
        assert_eq!("REL".parse::<Status>().unwrap(), Status::Released);
        assert_eq!(Status::from_metadata("Obsolete"), Status::Obsolete);
        assert_eq!(Status::from_metadata("weird").as_str(), "weird");
        assert!("O".parse::<Status>().is_err());
    }

    #[test]
    fn ids_and_names_are_checked() {
        for good in ["STX_19.01_PATCH_0002", "TS_15.12_PATCH_0001", "a"] {
            validate_patch_id(good).unwrap();
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "a b",
            "a\0b",
            &"x".repeat(129),
            &"é".repeat(200),
        ] {
            assert!(validate_patch_id(bad).is_err(), "{bad:?}");
        }
        validate_rpm_file_name("sysinv-1.0-230.tis.x86_64.rpm").unwrap();
        for bad in ["x.tar", "../x.rpm", "/x.rpm", "a/b.rpm", ".rpm/..", ".."] {
            assert!(validate_rpm_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
