//! Patch states derived from repo states and host reports (reference §4, `check_patch_states`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::protocol::RepoState;
use patch_format::Evr;
use serde::{Deserialize, Serialize};

use crate::{HostDiff, HostFacts, PackageChange, PackageKey};

/// A patch's state across the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatchState {
    /// Not in the repository, and no host has it.
    Available,
    /// In the repository; some hosts do not have it yet.
    PartialApply,
    /// In the repository and on every host.
    Applied,
    /// Out of the repository; some hosts still have it.
    PartialRemove,
    /// Committed.
    Committed,
    /// No hosts known.
    NotApplicable,
}

impl PatchState {
    /// The original's strings (`Partial-Apply`, `n/a`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PatchState::Available => "Available",
            PatchState::PartialApply => "Partial-Apply",
            PatchState::Applied => "Applied",
            PatchState::PartialRemove => "Partial-Remove",
            PatchState::Committed => "Committed",
            PatchState::NotApplicable => "n/a",
        }
    }

    /// Partial-Apply or Partial-Remove.
    pub fn is_partial(self) -> bool {
        matches!(self, PatchState::PartialApply | PatchState::PartialRemove)
    }
}

impl fmt::Display for PatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the derivation needs to know about a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchInfo {
    /// Patch ID.
    pub id: String,
    /// Where it sits in the store.
    pub repo_state: RepoState,
    /// Its release.
    pub sw_version: String,
    /// Its packages: name, arch, version.
    pub packages: BTreeMap<PackageKey, Evr>,
}

/// Derives every patch's state.
///
/// * No hosts: every patch is `n/a` (the original set only the first one — bug 9).
/// * A patch whose apply or remove not every host has re-reported since (`interim`: patch →
///   hosts still to report) starts Partial-Apply / Partial-Remove; otherwise it starts at its
///   repo state.
/// * For each out-of-date host on the patch's release, a pending change to one of the patch's
///   packages makes an Applied patch Partial-Apply when the host has less than the patch's
///   version (upgrade or missing), and an Available patch Partial-Remove when the host still
///   has the patch's version or newer (downgrade or remove). Versions are compared per patch,
///   so a newer patch's pending upgrade never drags an older, installed one back to
///   Partial-Apply (the Debian fork's bug 17).
/// * Committed patches are never demoted.
/// * An Applied patch some host is held back from (`held`, a host rollback) is
///   Partial-Apply: that host runs without it on purpose.
pub fn derive_patch_states(
    patches: &[PatchInfo],
    hosts: &[(&HostFacts, &HostDiff)],
    interim: &BTreeMap<String, BTreeSet<String>>,
    held: &BTreeSet<String>,
) -> BTreeMap<String, PatchState> {
    if hosts.is_empty() {
        return patches
            .iter()
            .map(|p| (p.id.clone(), PatchState::NotApplicable))
            .collect();
    }
    let mut states = BTreeMap::new();
    for patch in patches {
        let pending = interim.get(&patch.id).is_some_and(|h| !h.is_empty());
        let mut state = match (patch.repo_state, pending) {
            (RepoState::Committed, _) => PatchState::Committed,
            (RepoState::Available, true) => PatchState::PartialRemove,
            (RepoState::Applied, true) => PatchState::PartialApply,
            (RepoState::Available, false) => PatchState::Available,
            (RepoState::Applied, false) => PatchState::Applied,
        };
        if state == PatchState::Applied && held.contains(&patch.id) {
            state = PatchState::PartialApply;
        }
        if state != PatchState::Committed {
            for (host, diff) in hosts {
                if diff.is_empty() || host.sw_version != patch.sw_version {
                    continue;
                }
                for change in &diff.changes {
                    let Some(patch_evr) = patch.packages.get(&change.key()) else {
                        continue;
                    };
                    let installed: Option<&Evr> = match change {
                        PackageChange::Missing(_) => None,
                        PackageChange::Upgrade { from, .. }
                        | PackageChange::Downgrade { from, .. }
                        | PackageChange::Remove(from) => Some(&from.id.evr),
                    };
                    match patch.repo_state {
                        RepoState::Applied if installed.is_none_or(|i| i < patch_evr) => {
                            state = PatchState::PartialApply;
                        }
                        RepoState::Available
                            if installed.is_some_and(|i| i >= patch_evr)
                                && !matches!(change, PackageChange::Upgrade { .. }) =>
                        {
                            state = PatchState::PartialRemove;
                        }
                        _ => {}
                    }
                }
            }
        }
        states.insert(patch.id.clone(), state);
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DesiredPackage, InstalledPackage};
    use patch_format::{PackageId, Personality};

    fn host(name: &str, release: &str) -> HostFacts {
        HostFacts {
            hostname: name.into(),
            ip: "192.168.204.3".into(),
            personality: Personality::Worker,
            subfunctions: vec!["worker".into()],
            sw_version: release.into(),
            admin: Default::default(),
            oper: Default::default(),
            availability: Default::default(),
            install_state: Default::default(),
            reboot_pending: false,
            boot_id: "b1".into(),
            last_report: 0,
            installed: BTreeMap::new(),
        }
    }

    fn inst(name: &str, evr: &str) -> InstalledPackage {
        InstalledPackage {
            id: PackageId::new(name, Evr::parse(evr).unwrap(), "x86_64"),
            patch: None,
            reboot_required: false,
        }
    }

    fn want(name: &str, evr: &str) -> DesiredPackage {
        DesiredPackage {
            id: PackageId::new(name, Evr::parse(evr).unwrap(), "x86_64"),
            path: String::new(),
            from_base: false,
            size: 0,
            sha256: String::new(),
            patch: None,
            reboot_required: false,
        }
    }

    fn patch(id: &str, state: RepoState, pkgs: &[(&str, &str)]) -> PatchInfo {
        PatchInfo {
            id: id.into(),
            repo_state: state,
            sw_version: "19.01".into(),
            packages: pkgs
                .iter()
                .map(|(n, e)| {
                    (
                        (n.to_string(), "x86_64".to_string()),
                        Evr::parse(e).unwrap(),
                    )
                })
                .collect(),
        }
    }

    fn up(name: &str, from: &str, to: &str) -> PackageChange {
        PackageChange::Upgrade {
            from: inst(name, from),
            to: want(name, to),
        }
    }

    fn down(name: &str, from: &str, to: &str) -> PackageChange {
        PackageChange::Downgrade {
            from: inst(name, from),
            to: want(name, to),
        }
    }

    use PatchState::*;
    use RepoState as R;

    /// (case, patches, per-host changes, interim, expected states)
    #[test]
    fn patch_state_rules() {
        type Case<'a> = (
            &'a str,
            Vec<PatchInfo>,
            Vec<Vec<PackageChange>>,
            Vec<(&'a str, &'a str)>,
            Vec<PatchState>,
        );
        let cases: Vec<Case> = vec![
            (
                "no hosts: every patch n/a (bug 9: not only the first)",
                vec![
                    patch("P1", R::Applied, &[]),
                    patch("P2", R::Available, &[]),
                    patch("P3", R::Committed, &[]),
                ],
                vec![],
                vec![],
                vec![NotApplicable, NotApplicable, NotApplicable],
            ),
            (
                "all hosts current: repo state",
                vec![
                    patch("P1", R::Applied, &[("a", "1-2")]),
                    patch("P2", R::Available, &[("b", "1-2")]),
                ],
                vec![vec![], vec![]],
                vec![],
                vec![Applied, Available],
            ),
            (
                "applied, a host still on the old version: Partial-Apply",
                vec![patch("P1", R::Applied, &[("a", "1-2")])],
                vec![vec![up("a", "1-1", "1-2")], vec![]],
                vec![],
                vec![PartialApply],
            ),
            (
                "applied new package missing on a host: Partial-Apply",
                vec![patch("P1", R::Applied, &[("new", "1-1")])],
                vec![vec![PackageChange::Missing(want("new", "1-1"))]],
                vec![],
                vec![PartialApply],
            ),
            (
                "removed, a host still has it: Partial-Remove",
                vec![patch("P1", R::Available, &[("a", "1-2")])],
                vec![vec![down("a", "1-2", "1-1")]],
                vec![],
                vec![PartialRemove],
            ),
            (
                "removed new package still installed: Partial-Remove",
                vec![patch("P1", R::Available, &[("new", "1-1")])],
                vec![vec![PackageChange::Remove(inst("new", "1-1"))]],
                vec![],
                vec![PartialRemove],
            ),
            (
                "available patch never installed: its pending upgrade is not a Partial-Remove",
                vec![
                    patch("P1", R::Available, &[("a", "1-2")]),
                    patch("P0", R::Applied, &[("a", "1-1")]),
                ],
                vec![vec![up("a", "1-0", "1-1")]],
                vec![],
                vec![Available, PartialApply],
            ),
            (
                "interim: hosts have not re-reported since apply/remove",
                vec![
                    patch("P1", R::Applied, &[]),
                    patch("P2", R::Available, &[]),
                    patch("P3", R::Committed, &[]),
                ],
                vec![vec![]],
                vec![("P1", "h0"), ("P2", "h0"), ("P3", "h0")],
                vec![PartialApply, PartialRemove, Committed],
            ),
            (
                "bug 17: a newer RR patch pending does not demote the older applied one",
                vec![
                    patch("P1", R::Applied, &[("a", "1-2")]),
                    patch("P2", R::Applied, &[("a", "1-3")]),
                ],
                vec![vec![up("a", "1-2", "1-3")]],
                vec![],
                vec![Applied, PartialApply],
            ),
            (
                "committed is never demoted",
                vec![patch("P1", R::Committed, &[("a", "1-2")])],
                vec![vec![up("a", "1-1", "1-2")]],
                vec![],
                vec![Committed],
            ),
        ];
        for (case, patches, changes, interim, expected) in cases {
            let facts: Vec<HostFacts> = (0..changes.len())
                .map(|i| host(&format!("h{i}"), "19.01"))
                .collect();
            let diffs: Vec<HostDiff> = changes
                .into_iter()
                .map(|c| HostDiff { changes: c })
                .collect();
            let hosts: Vec<(&HostFacts, &HostDiff)> = facts.iter().zip(&diffs).collect();
            let mut interim_map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (p, h) in interim {
                interim_map.entry(p.into()).or_default().insert(h.into());
            }
            let states = derive_patch_states(&patches, &hosts, &interim_map, &BTreeSet::new());
            let got: Vec<PatchState> = patches.iter().map(|p| states[&p.id]).collect();
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn a_patch_a_host_is_held_back_from_is_partial_apply_unless_committed() {
        let patches = vec![
            patch("P1", R::Applied, &[("a", "1-2")]),
            patch("P2", R::Committed, &[("b", "1-2")]),
            patch("P3", R::Applied, &[("c", "1-2")]),
        ];
        let h = host("h0", "19.01");
        let current = HostDiff { changes: vec![] };
        let held = BTreeSet::from(["P1".to_owned(), "P2".to_owned()]);
        let states = derive_patch_states(&patches, &[(&h, &current)], &BTreeMap::new(), &held);
        assert_eq!(states["P1"], PatchState::PartialApply);
        assert_eq!(states["P2"], PatchState::Committed);
        assert_eq!(states["P3"], PatchState::Applied);
    }

    #[test]
    fn hosts_on_another_release_do_not_count() {
        let patches = vec![patch("P1", R::Applied, &[("a", "1-2")])];
        let h = host("h0", "18.03");
        let diff = HostDiff {
            changes: vec![up("a", "1-1", "1-2")],
        };
        let states = derive_patch_states(
            &patches,
            &[(&h, &diff)],
            &BTreeMap::new(),
            &BTreeSet::from(["HELD".to_owned()]),
        );
        assert_eq!(states["P1"], Applied);
        assert_eq!(Applied.as_str(), "Applied");
        assert_eq!(NotApplicable.to_string(), "n/a");
        assert!(PartialRemove.is_partial());
    }
}
