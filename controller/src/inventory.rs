//! Hosts in the patching API (`query_hosts`, `host_install_async`, `drop_host`) and the
//! inventory actions behind `system host-list|host-show|host-lock|host-unlock`.

use std::collections::BTreeMap;

use host_state::{AdminState, Availability, InstallState, OperState, PackageChange};
use serde::Serialize;

use crate::hosts::now;
use crate::state::{App, HostView, Snapshot};

/// One host as the patching API, `system` and the dashboard show it: the original's host
/// dict (reference §4) plus the inventory states. Serialized, it is that dict (fields in
/// the JSON's alphabetical key order, so the bytes do not move).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HostRecord {
    pub(crate) administrative: AdminState,
    /// No reboot-required change is pending: an install may run unlocked.
    pub(crate) allow_insvc_patching: bool,
    pub(crate) availability: Availability,
    pub(crate) boot_id: String,
    pub(crate) duplicated_pkgs: BTreeMap<String, String>,
    pub(crate) hostname: String,
    /// Packages to upgrade or downgrade: name → the installed `evr@arch`.
    pub(crate) installed: BTreeMap<String, String>,
    /// The host has not yet reported against the latest repository change.
    pub(crate) interim_state: bool,
    pub(crate) ip: String,
    pub(crate) last_error: Option<String>,
    pub(crate) missing_pkgs: Vec<String>,
    pub(crate) nodetype: &'static str,
    pub(crate) operational: OperState,
    pub(crate) patch_current: bool,
    pub(crate) patch_failed: bool,
    pub(crate) personality: &'static str,
    pub(crate) reboot_pending: bool,
    pub(crate) requires_reboot: bool,
    pub(crate) secs_since_ack: u64,
    pub(crate) stale_details: bool,
    pub(crate) state: InstallState,
    pub(crate) subfunctions: Vec<String>,
    pub(crate) sw_version: String,
    pub(crate) to_remove: Vec<String>,
    /// Patches the host is held back from (`host-rollback`); absent when none.
    #[serde(skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub(crate) held_patches: std::collections::BTreeSet<String>,
    /// The host's last health check outcome; absent without health checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) health: Option<host_state::protocol::HealthReport>,
}

impl HostRecord {
    /// Why a lock would be refused now (`active_of_pair`: it is the pair's active controller).
    pub(crate) fn lock_refusal(&self, active_of_pair: bool) -> Option<LockRefusal> {
        let installing = self.state == InstallState::Installing;
        LockRefusal::check(self.administrative, active_of_pair, installing, false)
    }

    /// Why an unlock would be refused now, in a few words.
    pub(crate) fn unlock_refusal(&self) -> Option<&'static str> {
        (self.administrative != AdminState::Locked).then_some("The host is not locked.")
    }

    /// Why an install order would do nothing now, in a few words: nothing to install, one
    /// running, nobody to hear it, or (the agent's rule, "Node must be locked.") a
    /// reboot-required change on an unlocked host.
    pub(crate) fn install_refusal(&self) -> Option<&'static str> {
        if self.patch_current {
            Some("The host is patch current.")
        } else if self.state == InstallState::Installing {
            Some("The host is installing patches.")
        } else if self.availability == Availability::Offline {
            Some("The host is offline.")
        } else if self.administrative != AdminState::Locked && !self.allow_insvc_patching {
            Some("A reboot-required patch is pending: lock the host first.")
        } else {
            None
        }
    }

    fn of(h: &HostView, now: u64) -> HostRecord {
        let mut installed = BTreeMap::new();
        let mut to_remove = Vec::new();
        let mut missing = Vec::new();
        for change in &h.diff.changes {
            match change {
                PackageChange::Upgrade { from, .. } | PackageChange::Downgrade { from, .. } => {
                    installed.insert(
                        from.id.name.clone(),
                        format!("{}@{}", from.id.evr, from.id.arch),
                    );
                }
                PackageChange::Remove(from) => to_remove.push(from.id.name.clone()),
                PackageChange::Missing(to) => missing.push(to.id.name.clone()),
            }
        }
        let f = &h.facts;
        HostRecord {
            administrative: f.admin,
            allow_insvc_patching: !h.diff.requires_reboot(),
            availability: f.availability,
            boot_id: f.boot_id.clone(),
            duplicated_pkgs: BTreeMap::new(),
            hostname: f.hostname.clone(),
            installed,
            interim_state: h.interim,
            ip: f.ip.clone(),
            last_error: h.last_error.clone(),
            missing_pkgs: missing,
            nodetype: f.personality.as_str(),
            operational: f.oper,
            patch_current: h.patch_current(),
            patch_failed: h.install_state == InstallState::InstallFailed,
            personality: f.personality.as_str(),
            reboot_pending: f.reboot_pending,
            requires_reboot: h.requires_reboot(),
            secs_since_ack: now.saturating_sub(f.last_report),
            stale_details: false,
            state: h.install_state,
            subfunctions: f.subfunctions.clone(),
            sw_version: f.sw_version.clone(),
            to_remove,
            held_patches: h.held_patches.clone(),
            health: h.health.clone(),
        }
    }
}

/// Why a lock, unlock or install was refused; the texts are the original's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostActionError {
    /// No host has that name or address.
    #[error("Unknown host specified: {0}")]
    UnknownHost(String),
    /// The lock rule refused.
    #[error("{}", .refusal.message(.host))]
    Lock {
        /// The host.
        host: String,
        /// Which rule.
        refusal: LockRefusal,
    },
    /// Only a locked host can be unlocked.
    #[error("Host {0} is not locked.")]
    NotLocked(String),
    /// A swact needs a pair.
    #[error(
        "Swact needs a controller pair: this controller runs without a peer (host_name, peer)."
    )]
    NoPair,
    /// A swact names a host that is not one of the pair.
    #[error("{0} is not a controller of this pair.")]
    NotAController(String),
    /// A forced swact (sent to the standby) names the standby instead of the active one.
    #[error("{host} is not the active controller ({active} is); force-swact the active one.")]
    ForceNotActive {
        /// The host named.
        host: String,
        /// The active one.
        active: String,
    },
    /// A swact names the standby.
    #[error("{host} is not the active controller; {active} is.")]
    NotActive {
        /// The host named.
        host: String,
        /// The active one.
        active: String,
    },
    /// The pair refused or failed the swact.
    #[error("{0}")]
    Swact(String),
    /// A host rollback named no patch (and not `--all`), or one it cannot hold back.
    #[error("{0}")]
    Rollback(String),
}

/// Why a host cannot be locked now: the rule the API enforces and the dashboard greys its
/// button by, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockRefusal {
    /// It is locked already.
    AlreadyLocked,
    /// It is the active controller of a pair (swact first).
    ActiveController,
    /// It is installing (unless forced).
    Installing,
}

impl LockRefusal {
    /// The rule, checked in this order.
    pub(crate) fn check(
        admin: AdminState,
        active_of_pair: bool,
        installing: bool,
        force: bool,
    ) -> Option<LockRefusal> {
        if admin == AdminState::Locked {
            Some(LockRefusal::AlreadyLocked)
        } else if active_of_pair {
            Some(LockRefusal::ActiveController)
        } else if installing && !force {
            Some(LockRefusal::Installing)
        } else {
            None
        }
    }

    /// The API's words (the original's).
    pub(crate) fn message(self, host: &str) -> String {
        match self {
            LockRefusal::AlreadyLocked => format!("Host {host} is already locked."),
            LockRefusal::ActiveController => "Can not lock an active controller.".to_owned(),
            LockRefusal::Installing => {
                format!("Host {host} is installing patches; wait for it to finish or use --force.")
            }
        }
    }

    /// The dashboard's words beside a greyed-out Lock button.
    pub(crate) fn short(self) -> &'static str {
        match self {
            LockRefusal::AlreadyLocked => "The host is locked.",
            LockRefusal::ActiveController => "Can not lock an active controller.",
            LockRefusal::Installing => "The host is installing patches.",
        }
    }
}

/// Every host, in the registry's order.
pub(crate) fn host_records(snapshot: &Snapshot) -> Vec<HostRecord> {
    let now = now();
    snapshot
        .hosts
        .iter()
        .map(|h| HostRecord::of(h, now))
        .collect()
}

/// One host by name or address.
pub(crate) fn host_record(snapshot: &Snapshot, name: &str) -> Result<HostRecord, HostActionError> {
    snapshot
        .hosts
        .iter()
        .find(|h| h.facts.hostname == name || h.facts.ip == name)
        .map(|h| HostRecord::of(h, now()))
        .ok_or_else(|| HostActionError::UnknownHost(name.to_owned()))
}

/// The host named (by name or IP), or the original's error.
fn resolve(app: &App, name: &str) -> Result<String, HostActionError> {
    app.with_hosts(|hosts| (hosts.find(name), false))
        .ok_or_else(|| HostActionError::UnknownHost(name.to_owned()))
}

/// Orders an install on a host (by name or IP): the original's info line, or its refusal.
pub(crate) fn install(app: &App, name: &str, force: bool) -> Result<String, HostActionError> {
    install_soaking(app, name, force, 0)
}

/// [`install`], the host's health checks then to keep passing for `soak_secs`.
pub(crate) fn install_soaking(
    app: &App,
    name: &str,
    force: bool,
    soak_secs: u64,
) -> Result<String, HostActionError> {
    let hostname = resolve(app, name)?;
    app.with_hosts(|hosts| (hosts.order_install(&hostname, force, soak_secs), true));
    app.metrics.install_ordered(&hostname);
    app.orders.notify_waiters();
    tracing::info!(target: "audit", "install ordered on {hostname} (force: {force})");
    Ok(format!("Patch installation request sent to {hostname}.\n"))
}

/// Holds a host back from applied patches (`patches`, or with `all` every applied patch not
/// committed): its desired set leaves their packages out, so its next install returns it to
/// the versions it had before them while the other hosts keep them.
pub(crate) fn hold_back(
    app: &App,
    name: &str,
    patches: &[String],
    all: bool,
) -> Result<String, HostActionError> {
    use patch_store::RepoState;
    let hostname = resolve(app, name)?;
    let snapshot = app.snapshot();
    let store = snapshot.patches();
    let chosen: std::collections::BTreeSet<String> = if all {
        store
            .values()
            .filter(|p| p.repo_state == RepoState::Applied)
            .map(|p| p.metadata.id.clone())
            .collect()
    } else {
        if patches.is_empty() {
            return Err(HostActionError::Rollback(
                "Name the patches to roll the host back from, or give --all".into(),
            ));
        }
        for id in patches {
            match store.get(id).map(|p| p.repo_state) {
                None => {
                    return Err(HostActionError::Rollback(format!(
                        "Patch {id} does not exist"
                    )));
                }
                Some(RepoState::Committed) => {
                    return Err(HostActionError::Rollback(format!(
                        "Patch {id} is committed: its packages replaced the older ones for good"
                    )));
                }
                Some(RepoState::Available) => {
                    return Err(HostActionError::Rollback(format!(
                        "Patch {id} is not applied: there is nothing to roll back"
                    )));
                }
                Some(RepoState::Applied) => {}
            }
        }
        patches.iter().cloned().collect()
    };
    let held = app
        .with_hosts(|hosts| (hosts.hold(&hostname, Some(chosen.clone())), true))
        .ok_or_else(|| HostActionError::UnknownHost(name.to_owned()))?;
    tracing::info!(target: "audit", "host {hostname} held back from {chosen:?}");
    let list =
        |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(" ");
    Ok(format!(
        "{hostname} is held back from: {}. Its next install returns it to the versions before them (sw-patch host-install {hostname}); sw-patch host-release {hostname} lets it take them again.\n",
        if held.is_empty() {
            "nothing".to_owned()
        } else {
            list(&held)
        }
    ))
}

/// Lets a held-back host take every applied patch again (its next install installs them).
pub(crate) fn release(app: &App, name: &str) -> Result<String, HostActionError> {
    let hostname = resolve(app, name)?;
    app.with_hosts(|hosts| (hosts.hold(&hostname, None), true))
        .ok_or_else(|| HostActionError::UnknownHost(name.to_owned()))?;
    tracing::info!(target: "audit", "host {hostname} released");
    Ok(format!(
        "{hostname} takes every applied patch again; install them with sw-patch host-install {hostname}.\n"
    ))
}

/// Forgets a host until it reports again.
pub(crate) fn drop_host(app: &App, name: &str) -> Result<String, HostActionError> {
    let hostname = resolve(app, name)?;
    app.forget_host(&hostname);
    app.with_hosts(|hosts| ((), hosts.drop_host(&hostname)));
    Ok(format!("{hostname} has been dropped\n"))
}

/// Locks a host; the reply as `system host-lock` shows it. Works on the registry directly
/// (no snapshot rebuild), so a strategy locking 100 hosts costs 100 small updates.
pub(crate) fn lock(app: &App, name: &str, force: bool) -> Result<String, HostActionError> {
    let result = app.with_hosts(|hosts| {
        let Some(hostname) = hosts.find(name) else {
            return (Err(HostActionError::UnknownHost(name.to_owned())), false);
        };
        let entry = &hosts.hosts[&hostname];
        let active_of_pair =
            app.ha.is_some() && app.active_controller().as_deref() == Some(hostname.as_str());
        let installing = entry.effective_install_state() == InstallState::Installing;
        if let Some(refusal) =
            LockRefusal::check(entry.facts.admin, active_of_pair, installing, force)
        {
            let host = hostname.clone();
            return (Err(HostActionError::Lock { host, refusal }), false);
        }
        hosts.set_admin(&hostname, AdminState::Locked);
        (Ok(hostname), true)
    });
    let hostname = result?;
    app.orders.notify_waiters();
    Ok(format!("Host {hostname} is locked.\n"))
}

/// Unlocks a host (ordering the reboot a reboot-required install waits for).
pub(crate) fn unlock(app: &App, name: &str) -> Result<String, HostActionError> {
    let result = app.with_hosts(|hosts| {
        let Some(hostname) = hosts.find(name) else {
            return (Err(HostActionError::UnknownHost(name.to_owned())), false);
        };
        let entry = &hosts.hosts[&hostname];
        if entry.facts.admin != AdminState::Locked {
            return (Err(HostActionError::NotLocked(hostname)), false);
        }
        let reboot = hosts.unlock(&hostname);
        (Ok((hostname, reboot)), true)
    });
    let (hostname, reboot) = result?;
    app.orders.notify_waiters();
    let info = if reboot {
        format!("Host {hostname} is unlocked and rebooting to finish installing patches.\n")
    } else {
        format!("Host {hostname} is unlocked.\n")
    };
    Ok(info)
}

/// `system host-swact [--force] <controller>`: the active controller hands over to the standby;
/// with `force`, sent to the standby, the standby takes over from an active that is gone.
pub(crate) fn swact(app: &App, name: &str, force: bool) -> Result<String, HostActionError> {
    let Some(ha) = &app.ha else {
        return Err(HostActionError::NoPair);
    };
    let state = ha.state();
    let peer = ha.peer_status().map(|p| p.host);
    if name != ha.host && Some(name) != peer.as_deref() && name != state.active {
        return Err(HostActionError::NotAController(name.to_owned()));
    }
    if force && !ha.is_active() {
        if name != state.active {
            return Err(HostActionError::ForceNotActive {
                host: name.to_owned(),
                active: state.active,
            });
        }
        ha.force_takeover().map_err(HostActionError::Swact)
    } else if name != state.active {
        Err(HostActionError::NotActive {
            host: name.to_owned(),
            active: state.active,
        })
    } else {
        ha.swact().map_err(HostActionError::Swact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_rule_reads_the_same_in_the_api_and_the_dashboard() {
        use AdminState::{Locked, Unlocked};
        assert_eq!(
            LockRefusal::check(Locked, true, true, false),
            Some(LockRefusal::AlreadyLocked)
        );
        assert_eq!(
            LockRefusal::check(Unlocked, true, true, true),
            Some(LockRefusal::ActiveController)
        );
        assert_eq!(
            LockRefusal::check(Unlocked, false, true, false),
            Some(LockRefusal::Installing)
        );
        assert_eq!(LockRefusal::check(Unlocked, false, true, true), None);
        let refused = HostActionError::Lock {
            host: "compute-0".into(),
            refusal: LockRefusal::Installing,
        };
        assert_eq!(
            refused.to_string(),
            "Host compute-0 is installing patches; wait for it to finish or use --force."
        );
        assert_eq!(LockRefusal::AlreadyLocked.short(), "The host is locked.");
    }
}
