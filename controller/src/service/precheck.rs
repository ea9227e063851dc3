//! The precheck: whether the cluster is fit to take patches now, as a list of checks that
//! pass, warn or fail, each failure with what to do. `sw-patch precheck` shows it, and every
//! strategy is created only after it (warnings only with `force`).

use std::collections::BTreeSet;

use orchestrator::{AlarmCheck, AlarmRestrictions, Cluster, StrategyState, blocking_alarms};
use patch_store::RepoState;
use serde::Serialize;

use super::{Service, ServiceError, blocking};
use crate::inventory;
use crate::orchestration::now_ms;

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    /// Fine.
    Pass,
    /// Worth a look; a strategy is created anyway only with `force`.
    Warn,
    /// Patching now would go wrong.
    Fail,
}

impl Verdict {
    /// The word tables show.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Check {
    /// What was checked, e.g. `hosts-reporting`.
    pub(crate) check: &'static str,
    /// How it came out.
    pub(crate) result: Verdict,
    /// What was found.
    pub(crate) detail: String,
    /// What to do about it (empty when it passed).
    pub(crate) fix: String,
}

/// Every check, in a fixed order, and the worst outcome.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Precheck {
    /// The worst of the checks.
    pub(crate) result: Verdict,
    /// The checks.
    pub(crate) checks: Vec<Check>,
}

impl Precheck {
    fn of(checks: Vec<Check>) -> Precheck {
        let result = checks
            .iter()
            .map(|c| c.result)
            .max()
            .unwrap_or(Verdict::Pass);
        Precheck { result, checks }
    }

    /// The failing (and, unless `force`, warning) checks as one message, or none when a
    /// strategy may go ahead.
    pub(crate) fn refusal(&self, force: bool) -> Option<String> {
        let blocking: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.result == Verdict::Fail || (c.result == Verdict::Warn && !force))
            .map(|c| {
                format!(
                    "{} {}: {}{}",
                    c.check,
                    c.result.as_str(),
                    c.detail,
                    if c.fix.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", c.fix)
                    }
                )
            })
            .collect();
        if blocking.is_empty() {
            return None;
        }
        let forceable = self.result == Verdict::Warn;
        Some(format!(
            "precheck {}: {}{}",
            self.result.as_str(),
            blocking.join("; "),
            if forceable {
                "; only warnings: --force creates the strategy anyway"
            } else {
                ""
            }
        ))
    }
}

/// What to check for.
#[derive(Clone, Debug)]
pub(crate) struct PrecheckRequest {
    /// Patches about to be applied (none: those applied already and still rolling out).
    pub(crate) patches: Vec<String>,
    /// Which alarms count, as for a strategy.
    pub(crate) alarm_restrictions: AlarmRestrictions,
    /// For a strategy being created: only the checks its build does not make. The build
    /// refuses active alarms and hosts out of service itself, with the original's reasons
    /// (`build-failed`, "active alarms present"), which the original clients expect; an
    /// existing strategy is the create's own refusal.
    pub(crate) for_strategy: bool,
}

impl Service {
    /// Runs every check. Files are hashed off the async threads, without the store's lock.
    pub(crate) async fn precheck(
        &self,
        request: PrecheckRequest,
    ) -> Result<Precheck, ServiceError> {
        let service = self.clone();
        blocking(move || Ok(service.precheck_now(&request))).await
    }

    fn precheck_now(&self, request: &PrecheckRequest) -> Precheck {
        let snapshot = self.app.snapshot();
        let records = inventory::host_records(&snapshot);
        let mut checks = Vec::new();
        if !request.for_strategy {
            checks.push(hosts_reporting(&records));
        }
        checks.extend([
            install_failures(&records),
            self.controllers_in_sync(),
            self.disk_space(request, &snapshot),
            self.repository(),
            required_patches(request, &snapshot),
        ]);
        if !request.for_strategy {
            checks.push(self.alarms_check(request.alarm_restrictions));
            checks.push(self.strategy_check());
        }
        Precheck::of(checks)
    }

    fn controllers_in_sync(&self) -> Check {
        let Some(ha) = self.app.ha.as_ref() else {
            return pass(
                "controllers-in-sync",
                "single controller (no standby to keep in sync)",
            );
        };
        // Asked now: the background check's last answer may predate a standby that died.
        match ha.peer_now() {
            Err(why) => fail(
                "controllers-in-sync",
                format!("the other controller does not answer ({why})"),
                "start it, or check the pair endpoint and its TLS (system show lists both controllers)",
            ),
            Ok(peer) if peer.digest.as_deref() == Some(ha.digest_now().as_str()) => pass(
                "controllers-in-sync",
                &format!("{} answers and is in sync", peer.host),
            ),
            Ok(peer) => fail(
                "controllers-in-sync",
                format!("{} is not in sync with this controller", peer.host),
                "wait for replication to catch up (system show: in_sync), then run the precheck again",
            ),
        }
    }

    fn disk_space(&self, request: &PrecheckRequest, snapshot: &crate::state::Snapshot) -> Check {
        const CHECK: &str = "disk-space";
        let reserve = self.app.config.precheck_disk_reserve_bytes;
        let free = self.app.with_hosts(|hosts| {
            let free: std::collections::BTreeMap<String, Option<u64>> = hosts
                .hosts
                .iter()
                .map(|(name, h)| (name.clone(), h.disk_free_bytes))
                .collect();
            (free, false)
        });
        // Packages of the requested patches not applied yet, for the hosts that have a
        // package of that name installed (an upgrade); applied ones are in each host's diff.
        let incoming: Vec<&patch_store::PackageRecord> = request
            .patches
            .iter()
            .filter_map(|id| snapshot.patches().get(id))
            .filter(|p| p.repo_state == RepoState::Available)
            .flat_map(|p| p.packages.iter())
            .collect();
        let (mut short, mut unknown, mut checked) = (Vec::new(), Vec::new(), 0);
        for host in &snapshot.hosts {
            let name = &host.facts.hostname;
            let pending: u64 = host.diff.changes.iter().map(change_bytes).sum();
            let upgrades: u64 = incoming
                .iter()
                .filter(|p| {
                    host.facts
                        .installed
                        .contains_key(&(p.id.name.clone(), p.id.arch.clone()))
                })
                .map(|p| p.size)
                .sum();
            let needed = pending + upgrades;
            if needed == 0 {
                continue;
            }
            checked += 1;
            // Downloaded, then installed: twice the packages, and the reserve left over.
            let wanted = needed.saturating_mul(2).saturating_add(reserve);
            match free.get(name).copied().flatten() {
                None => unknown.push(name.clone()),
                Some(bytes) if bytes < wanted => short.push(format!(
                    "{name} has {} free and needs {} ({} of packages, twice, plus the {} reserve)",
                    human(bytes),
                    human(wanted),
                    human(needed),
                    human(reserve)
                )),
                Some(_) => {}
            }
        }
        if !short.is_empty() {
            return fail(
                CHECK,
                short.join("; "),
                "free space on those hosts (old logs, images), or lower precheck_disk_reserve_bytes",
            );
        }
        if !unknown.is_empty() {
            return warn(
                CHECK,
                format!("{} did not report free space", unknown.join(", ")),
                "upgrade their agents (free space is reported since this release)",
            );
        }
        pass(
            CHECK,
            &format!("{checked} host(s) receiving packages have room for them"),
        )
    }

    fn repository(&self) -> Check {
        const CHECK: &str = "repository";
        let dirs: Vec<(String, std::path::PathBuf, std::path::PathBuf)> = {
            let store = self.app.hold_store();
            let mut releases: BTreeSet<String> = store.releases().into_iter().collect();
            releases.extend(
                store
                    .patches()
                    .filter(|p| p.repo_state != RepoState::Available)
                    .map(|p| p.metadata.sw_version.clone()),
            );
            releases
                .into_iter()
                .map(|r| (r.clone(), store.feed_dir(&r), store.repo_dir(&r)))
                .collect()
        };
        let snapshot = self.app.snapshot();
        let mut problems = Vec::new();
        let mut entries = 0;
        for (release, feed_dir, repo_dir) in &dirs {
            let Some((feed, repo)) = snapshot.store.indexes.get(release) else {
                continue;
            };
            entries += feed.packages.len() + repo.packages.len();
            problems.extend(patch_store::check_repository(feed_dir, feed));
            problems.extend(patch_store::check_repository(repo_dir, repo));
        }
        if problems.is_empty() {
            return pass(
                CHECK,
                &format!("all {entries} indexed packages present with their checksums"),
            );
        }
        let shown: Vec<String> = problems.iter().take(5).map(ToString::to_string).collect();
        let more = problems.len().saturating_sub(shown.len());
        fail(
            CHECK,
            format!(
                "{}{}",
                shown.join("; "),
                if more > 0 {
                    format!("; {more} more")
                } else {
                    String::new()
                }
            ),
            "restore the files from the standby controller or a backup; for a patch's package, sw-patch remove and delete the patch, then upload and apply it again",
        )
    }

    fn alarms_check(&self, restrictions: AlarmRestrictions) -> Check {
        const CHECK: &str = "alarms";
        let alarms = match self.orch.cluster().alarms() {
            Ok(a) => a,
            Err(e) => return fail(CHECK, e.to_string(), "see the controller's log"),
        };
        let config = &self.app.config;
        let blocking = blocking_alarms(
            &alarms,
            &orchestrator::AlarmRules::plain(restrictions, &config.ignore_alarms),
            AlarmCheck::Query,
            &config.strategy_timing,
            now_ms() / 1000,
            &BTreeSet::new(),
        );
        if blocking.is_empty() {
            return pass(
                CHECK,
                &format!("no alarm blocks patching ({restrictions} restrictions)"),
            );
        }
        let list: Vec<String> = blocking
            .iter()
            .map(|a| {
                format!(
                    "{} on {} ({})",
                    a.alarm_id, a.entity_instance_id, a.severity
                )
            })
            .collect();
        fail(
            CHECK,
            format!("{} active: {}", blocking.len(), list.join(", ")),
            match restrictions {
                AlarmRestrictions::Strict | AlarmRestrictions::Baseline => {
                    "clear them (fm alarm-list), or use --alarm-restrictions relaxed to ignore those that do not affect management"
                }
                AlarmRestrictions::Relaxed => "clear them (fm alarm-list)",
            },
        )
    }

    fn strategy_check(&self) -> Check {
        const CHECK: &str = "strategy";
        match self.orch.current() {
            None => pass(CHECK, "no patch strategy exists"),
            Some(s)
                if matches!(
                    s.state,
                    StrategyState::Building | StrategyState::Applying | StrategyState::Aborting
                ) =>
            {
                fail(
                    CHECK,
                    format!("a patch strategy is in progress ({})", s.state),
                    "wait for it to finish, or abort it (sw-manager patch-strategy abort); then delete it",
                )
            }
            Some(s) => warn(
                CHECK,
                format!("a patch strategy exists ({})", s.state),
                "delete it before creating another (sw-manager patch-strategy delete)",
            ),
        }
    }
}

fn hosts_reporting(records: &[inventory::HostRecord]) -> Check {
    const CHECK: &str = "hosts-reporting";
    let silent: Vec<&str> = records
        .iter()
        .filter(|h| h.availability == host_state::Availability::Offline)
        .map(|h| h.hostname.as_str())
        .collect();
    if !silent.is_empty() {
        return fail(
            CHECK,
            format!("not reporting: {}", silent.join(", ")),
            "start sw-patch-agent on them and check they reach the controller, or remove hosts that are gone (sw-patch drop-host HOST)",
        );
    }
    let locked: Vec<&str> = records
        .iter()
        .filter(|h| h.administrative == host_state::AdminState::Locked)
        .map(|h| h.hostname.as_str())
        .collect();
    if !locked.is_empty() {
        return warn(
            CHECK,
            format!("locked (out of service): {}", locked.join(", ")),
            "unlock them when they should be in service (system host-unlock HOST); a strategy patches them but leaves them locked",
        );
    }
    pass(
        CHECK,
        &format!("all {} hosts report and are enabled", records.len()),
    )
}

fn install_failures(records: &[inventory::HostRecord]) -> Check {
    const CHECK: &str = "install-failures";
    let failed: Vec<String> = records
        .iter()
        .filter(|h| h.patch_failed)
        .map(|h| match &h.last_error {
            Some(e) => format!("{}: {}", h.hostname, e.lines().next().unwrap_or("")),
            None => h.hostname.clone(),
        })
        .collect();
    if failed.is_empty() {
        return pass(CHECK, "no host has a failed install");
    }
    fail(
        CHECK,
        failed.join("; "),
        "fix the cause on each host, then sw-patch host-install HOST",
    )
}

fn required_patches(request: &PrecheckRequest, snapshot: &crate::state::Snapshot) -> Check {
    const CHECK: &str = "required-patches";
    let patches = snapshot.patches();
    let wanted: BTreeSet<&str> = if request.patches.is_empty() {
        patches
            .values()
            .filter(|p| p.repo_state == RepoState::Applied)
            .map(|p| p.metadata.id.as_str())
            .collect()
    } else {
        request.patches.iter().map(String::as_str).collect()
    };
    let (mut missing, mut unapplied) = (Vec::new(), Vec::new());
    for id in &wanted {
        let Some(patch) = patches.get(*id) else {
            missing.push(format!("{id} is not in the store"));
            continue;
        };
        for required in &patch.metadata.requires {
            match patches.get(required) {
                None => missing.push(format!(
                    "{id} requires {required}, which is not in the store"
                )),
                Some(r)
                    if r.repo_state == RepoState::Available
                        && !wanted.contains(required.as_str()) =>
                {
                    unapplied.push(format!("{id} requires {required}, which is not applied"))
                }
                Some(_) => {}
            }
        }
    }
    if !missing.is_empty() {
        return fail(
            CHECK,
            missing.join("; "),
            "upload the missing patches (sw-patch upload FILE)",
        );
    }
    if !unapplied.is_empty() {
        return warn(
            CHECK,
            unapplied.join("; "),
            "apply the required patches first, or with them (sw-patch apply ID…)",
        );
    }
    pass(
        CHECK,
        &format!("{} patch(es) have what they require", wanted.len()),
    )
}

fn change_bytes(change: &host_state::PackageChange) -> u64 {
    use host_state::PackageChange;
    match change {
        PackageChange::Missing(to)
        | PackageChange::Upgrade { to, .. }
        | PackageChange::Downgrade { to, .. } => to.size,
        PackageChange::Remove(_) => 0,
    }
}

/// A size for people: bytes, or the largest binary unit it fills.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn pass(check: &'static str, detail: &str) -> Check {
    Check {
        check,
        result: Verdict::Pass,
        detail: detail.to_owned(),
        fix: String::new(),
    }
}

fn warn(check: &'static str, detail: String, fix: &str) -> Check {
    Check {
        check,
        result: Verdict::Warn,
        detail,
        fix: fix.to_owned(),
    }
}

fn fail(check: &'static str, detail: String, fix: &str) -> Check {
    Check {
        check,
        result: Verdict::Fail,
        detail,
        fix: fix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_refuse_a_strategy_unless_forced_and_failures_always() {
        let warned = Precheck::of(vec![
            pass("repository", "fine"),
            warn("required-patches", "P2 requires P1".into(), "apply P1"),
        ]);
        assert_eq!(warned.result, Verdict::Warn);
        let refusal = warned.refusal(false).unwrap();
        assert!(
            refusal.starts_with("precheck warn: required-patches warn: P2 requires P1 (apply P1)")
                && refusal.contains("--force"),
            "{refusal}"
        );
        assert_eq!(warned.refusal(true), None);
        let failed = Precheck::of(vec![
            fail("repository", "x: missing".into(), "restore it"),
            warn("required-patches", "P2 requires P1".into(), "apply P1"),
        ]);
        let refusal = failed.refusal(true).unwrap();
        assert!(
            refusal.starts_with("precheck fail: repository fail: x: missing (restore it)")
                && !refusal.contains("required-patches")
                && !refusal.contains("--force"),
            "{refusal}"
        );
        assert_eq!(Precheck::of(vec![pass("a", "b")]).refusal(false), None);
    }

    #[test]
    fn sizes_read_in_the_unit_they_fill() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(3 << 10), "3.0 KiB");
        assert_eq!(human(256 << 20), "256.0 MiB");
        assert_eq!(human(1_000_000_000_000_000), "909.5 TiB");
        assert_eq!(human(3 << 50), "3.0 PiB");
    }
}
