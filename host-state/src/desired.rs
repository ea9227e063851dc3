//! The package set a host should have, and how it differs from what it has.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{IndexEntry, RepoIndex};
use patch_format::{PackageId, Personality};
use serde::{Deserialize, Serialize};

use crate::{InstalledPackage, PackageKey};

/// A package a host should have, and where to get it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredPackage {
    /// The package (serialized flat: name, epoch, version, release, arch).
    #[serde(flatten)]
    pub id: PackageId,
    /// Path relative to its repository (`Packages/<arch>/<file>`).
    pub path: String,
    /// From the base load (`feed`) rather than the patches' repository (`repo`).
    pub from_base: bool,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The patch providing it (none for the base load).
    pub patch: Option<String>,
    /// It belongs to a reboot-required patch.
    pub reboot_required: bool,
}

impl DesiredPackage {
    fn from_entry(entry: &IndexEntry, from_base: bool) -> Self {
        DesiredPackage {
            id: entry.id.clone(),
            path: entry.path.clone(),
            from_base,
            size: entry.size,
            sha256: entry.sha256.clone(),
            patch: entry.patch.clone(),
            reboot_required: entry.reboot_required,
        }
    }

    /// `(name, arch)`.
    pub fn key(&self) -> PackageKey {
        self.id.key()
    }
}

/// The desired package set of a host of node type `personality`: the base load's packages
/// for that node type, plus from the patches' repository every upgrade of a package the host
/// has (or its base load has) and every new package listed for its node type; for each
/// name+arch the highest version (rpm order) wins.
pub fn desired_packages(
    personality: Personality,
    feed: &RepoIndex,
    repo: &RepoIndex,
    installed: &BTreeMap<PackageKey, InstalledPackage>,
) -> BTreeMap<PackageKey, DesiredPackage> {
    desired_packages_holding(personality, feed, repo, installed, &BTreeSet::new())
}

/// [`desired_packages`] for a host held back from the patches in `held` (rolled back): their
/// packages are not offered, so each of its packages falls back to the next version the
/// repository or the base load has.
pub fn desired_packages_holding(
    personality: Personality,
    feed: &RepoIndex,
    repo: &RepoIndex,
    installed: &BTreeMap<PackageKey, InstalledPackage>,
    held: &BTreeSet<String>,
) -> BTreeMap<PackageKey, DesiredPackage> {
    let mut desired: BTreeMap<PackageKey, DesiredPackage> = BTreeMap::new();
    let mut offer = |candidate: DesiredPackage| {
        let key = candidate.key();
        if desired
            .get(&key)
            .is_none_or(|current| candidate.id.evr > current.id.evr)
        {
            desired.insert(key, candidate);
        }
    };
    let mut relevant: BTreeSet<PackageKey> = installed.keys().cloned().collect();
    for entry in &feed.packages {
        if entry.personalities.contains(&personality) {
            relevant.insert((entry.id.name.clone(), entry.id.arch.clone()));
            offer(DesiredPackage::from_entry(entry, true));
        }
    }
    for entry in &repo.packages {
        if entry.patch.as_ref().is_some_and(|p| held.contains(p)) {
            continue;
        }
        let key = (entry.id.name.clone(), entry.id.arch.clone());
        if entry.personalities.contains(&personality) || relevant.contains(&key) {
            offer(DesiredPackage::from_entry(entry, false));
        }
    }
    desired
}

/// One difference between installed and desired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageChange {
    /// Desired but not installed (a new package: the original's `missing_pkgs`).
    Missing(DesiredPackage),
    /// Installed older than desired.
    Upgrade {
        /// What is installed.
        from: InstalledPackage,
        /// What it becomes.
        to: DesiredPackage,
    },
    /// Installed newer than desired (a patch was removed).
    Downgrade {
        /// What is installed.
        from: InstalledPackage,
        /// What it becomes.
        to: DesiredPackage,
    },
    /// Installed but not desired at all (the original's `to_remove`).
    Remove(InstalledPackage),
}

impl PackageChange {
    /// `(name, arch)` of the package concerned.
    pub fn key(&self) -> PackageKey {
        match self {
            PackageChange::Missing(to) => to.key(),
            PackageChange::Upgrade { from, .. }
            | PackageChange::Downgrade { from, .. }
            | PackageChange::Remove(from) => (from.id.name.clone(), from.id.arch.clone()),
        }
    }

    /// Whether the change involves a reboot-required patch (installing from one, or taking
    /// away what one installed).
    pub fn requires_reboot(&self) -> bool {
        match self {
            PackageChange::Missing(to) => to.reboot_required,
            PackageChange::Upgrade { from, to } | PackageChange::Downgrade { from, to } => {
                to.reboot_required || from.reboot_required
            }
            PackageChange::Remove(from) => from.reboot_required,
        }
    }
}

/// Installed versus desired for one host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDiff {
    /// The changes, sorted by name and arch.
    pub changes: Vec<PackageChange>,
}

impl HostDiff {
    /// Compares a host's installed packages with its desired set.
    pub fn compute(
        installed: &BTreeMap<PackageKey, InstalledPackage>,
        desired: &BTreeMap<PackageKey, DesiredPackage>,
    ) -> HostDiff {
        let mut changes = Vec::new();
        let keys: BTreeSet<&PackageKey> = installed.keys().chain(desired.keys()).collect();
        for key in keys {
            match (installed.get(key), desired.get(key)) {
                (Some(from), Some(to)) if from.id.evr < to.id.evr => {
                    changes.push(PackageChange::Upgrade {
                        from: from.clone(),
                        to: to.clone(),
                    })
                }
                (Some(from), Some(to)) if from.id.evr > to.id.evr => {
                    changes.push(PackageChange::Downgrade {
                        from: from.clone(),
                        to: to.clone(),
                    })
                }
                (Some(_), Some(_)) => {}
                (Some(from), None) => changes.push(PackageChange::Remove(from.clone())),
                (None, Some(to)) => changes.push(PackageChange::Missing(to.clone())),
                (None, None) => {}
            }
        }
        HostDiff { changes }
    }

    /// Patch Current: nothing to change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether installing this diff needs a locked host and a reboot.
    pub fn requires_reboot(&self) -> bool {
        self.changes.iter().any(PackageChange::requires_reboot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstalledPackage;
    use patch_format::Evr;

    fn entry(
        name: &str,
        evr: &str,
        patch: Option<&str>,
        personalities: &[Personality],
        rr: bool,
    ) -> IndexEntry {
        let evr = Evr::parse(evr).unwrap();
        IndexEntry {
            id: PackageId::new(name, evr.clone(), "x86_64"),
            size: 1,
            sha256: "00".into(),
            path: format!("Packages/x86_64/{name}-{evr}.x86_64.rpm"),
            patch: patch.map(str::to_owned),
            reboot_required: rr,
            personalities: personalities.to_vec(),
        }
    }

    fn installed(list: &[(&str, &str)]) -> BTreeMap<PackageKey, InstalledPackage> {
        list.iter()
            .map(|(name, evr)| {
                (
                    (name.to_string(), "x86_64".to_string()),
                    InstalledPackage {
                        id: PackageId::new(*name, Evr::parse(evr).unwrap(), "x86_64"),
                        patch: None,
                        reboot_required: false,
                    },
                )
            })
            .collect()
    }

    fn index(entries: Vec<IndexEntry>) -> RepoIndex {
        RepoIndex {
            release: "19.01".into(),
            op_counter: 1,
            packages: entries,
            restart_scripts: Vec::new(),
        }
    }

    /// (case, personality, feed, repo, installed) → expected desired versions.
    #[test]
    fn desired_set_rules() {
        use Personality::*;
        let all = Personality::ALL;
        /// (case, node type, feed, repo, installed, expected desired versions)
        type Case = (
            &'static str,
            Personality,
            Vec<IndexEntry>,
            Vec<IndexEntry>,
            Vec<(&'static str, &'static str)>,
            Vec<(&'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "base load only",
                Worker,
                vec![
                    entry("kernel", "3.10-1", None, &all, false),
                    entry("ctl-only", "1-1", None, &[Controller], false),
                ],
                vec![],
                vec![],
                vec![("kernel", "3.10-1")],
            ),
            (
                "an upgrade of an installed package",
                Worker,
                vec![entry("sysinv", "1.0-230", None, &all, false)],
                vec![entry("sysinv", "1.0-231", Some("P1"), &[], false)],
                vec![("sysinv", "1.0-230")],
                vec![("sysinv", "1.0-231")],
            ),
            (
                "highest EVR wins, epoch first",
                Worker,
                vec![entry("sysinv", "1.0-230", None, &all, false)],
                vec![
                    entry("sysinv", "1.0-231", Some("P1"), &[], false),
                    entry("sysinv", "1:0.9-1", Some("P2"), &[], false),
                    entry("sysinv", "1.0-232", Some("P3"), &[], false),
                ],
                vec![("sysinv", "1.0-230")],
                vec![("sysinv", "1:0.9-1")],
            ),
            (
                "new packages only through the personality list",
                Storage,
                vec![],
                vec![
                    entry("newpkg", "1-1", Some("P1"), &[Worker], false),
                    entry("stor", "1-1", Some("P1"), &[Storage], false),
                ],
                vec![],
                vec![("stor", "1-1")],
            ),
            (
                "an upgrade reaches a base-load package even before it is installed",
                Controller,
                vec![entry("sysinv", "1.0-230", None, &all, false)],
                vec![entry("sysinv", "1.0-231", Some("P1"), &[], false)],
                vec![],
                vec![("sysinv", "1.0-231")],
            ),
            (
                "an installed package nobody provides is not desired",
                Worker,
                vec![],
                vec![],
                vec![("orphan", "1-1")],
                vec![],
            ),
        ];
        for (case, personality, feed, repo, inst, expected) in cases {
            let desired =
                desired_packages(personality, &index(feed), &index(repo), &installed(&inst));
            let got: Vec<(String, String)> = desired
                .values()
                .map(|d| (d.id.name.clone(), d.id.evr.to_string()))
                .collect();
            let want: Vec<(String, String)> = expected
                .iter()
                .map(|(n, e)| (n.to_string(), e.to_string()))
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn diff_kinds_and_reboot_required() {
        let feed = index(vec![
            entry("a", "1-1", None, &Personality::ALL, false),
            entry("b", "1-1", None, &Personality::ALL, false),
        ]);
        let repo = index(vec![
            entry("a", "1-2", Some("P1"), &[], true),
            entry("new", "1-1", Some("P2"), &[Personality::Worker], false),
        ]);
        let mut inst = installed(&[("a", "1-1"), ("b", "1-5"), ("gone", "1-1")]);
        let desired = desired_packages(Personality::Worker, &feed, &repo, &inst);
        let diff = HostDiff::compute(&inst, &desired);
        let kinds: Vec<(&str, String)> = diff
            .changes
            .iter()
            .map(|c| {
                let kind = match c {
                    PackageChange::Missing(_) => "missing",
                    PackageChange::Upgrade { .. } => "upgrade",
                    PackageChange::Downgrade { .. } => "downgrade",
                    PackageChange::Remove(_) => "remove",
                };
                (kind, c.key().0)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("upgrade", "a".into()),
                ("downgrade", "b".into()),
                ("remove", "gone".into()),
                ("missing", "new".into())
            ]
        );
        assert!(
            diff.requires_reboot(),
            "a's upgrade comes from a reboot-required patch"
        );

        // Installed exactly as desired: patch current.
        inst = desired
            .values()
            .map(|d| {
                (
                    d.key(),
                    InstalledPackage {
                        id: d.id.clone(),
                        patch: d.patch.clone(),
                        reboot_required: d.reboot_required,
                    },
                )
            })
            .collect();
        let diff = HostDiff::compute(&inst, &desired);
        assert!(diff.is_empty());
        assert!(!diff.requires_reboot());
    }
}
