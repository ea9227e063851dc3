//! Hosts in the patching API (`query_hosts`, `host_install_async`, `drop_host`) and the
//! inventory actions behind `system host-list|host-show|host-lock|host-unlock`.

use std::collections::BTreeMap;

use axum::response::Response;
use host_state::{AdminState, Availability, InstallState, OperState, PackageChange};
use serde::Serialize;
use serde_json::{Value, json};

use crate::hosts::now;
use crate::http::ok;
use crate::json;
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
}

impl HostRecord {
    fn of(h: &HostView, now: u64) -> HostRecord {
        let mut installed = BTreeMap::new();
        let mut to_remove = Vec::new();
        let mut missing = Vec::new();
        for change in &h.diff.changes {
            match change {
                PackageChange::Upgrade { from, .. } | PackageChange::Downgrade { from, .. } => {
                    installed.insert(from.name.clone(), format!("{}@{}", from.evr, from.arch));
                }
                PackageChange::Remove(from) => to_remove.push(from.name.clone()),
                PackageChange::Missing(to) => missing.push(to.name.clone()),
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

pub(crate) fn query_hosts(snapshot: &Snapshot) -> Value {
    json!({"data": host_records(snapshot)})
}

pub(crate) fn host_list(snapshot: &Snapshot) -> Value {
    json!({"ihosts": host_records(snapshot)})
}

pub(crate) fn host_show(snapshot: &Snapshot, ids: &[String]) -> Response {
    let name = ids.first().map(String::as_str).unwrap_or("");
    match snapshot
        .hosts
        .iter()
        .find(|h| h.facts.hostname == name || h.facts.ip == name)
    {
        Some(h) => ok(json!(HostRecord::of(h, now()))),
        None => ok(json::error(&format!("Unknown host specified: {name}"))),
    }
}

/// The host named (by name or IP) in the first path segment, or the original's error.
fn resolve(app: &App, ids: &[String]) -> Result<String, HostActionError> {
    let name = ids.first().map(String::as_str).unwrap_or("");
    app.with_hosts(|hosts| (hosts.find(name), false))
        .ok_or_else(|| HostActionError::UnknownHost(name.to_owned()))
}

pub(crate) fn host_install_async(app: &App, ids: &[String]) -> Response {
    let name = ids.first().map(String::as_str).unwrap_or("");
    let force = ids.get(1).is_some_and(|f| f == "force");
    ok(json::info_or_error(install(app, name, force)))
}

/// Orders an install on a host (by name or IP): the original's info line, or its refusal.
pub(crate) fn install(app: &App, name: &str, force: bool) -> Result<String, HostActionError> {
    let hostname = resolve(app, &[name.to_owned()])?;
    app.with_hosts(|hosts| (hosts.order_install(&hostname, force), true));
    app.orders.notify_waiters();
    tracing::info!(target: "audit", "install ordered on {hostname} (force: {force})");
    Ok(format!("Patch installation request sent to {hostname}.\n"))
}

pub(crate) fn drop_host(app: &App, ids: &[String]) -> Response {
    let hostname = match resolve(app, ids) {
        Ok(h) => h,
        Err(e) => return ok(json::error(&e.to_string())),
    };
    app.forget_host(&hostname);
    app.with_hosts(|hosts| ((), hosts.drop_host(&hostname)));
    ok(json!({"info": format!("{hostname} has been dropped\n"), "warning": "", "error": ""}))
}

pub(crate) fn host_lock(app: &App, ids: &[String], force: bool) -> Response {
    ok(json::info_or_error(lock(
        app,
        ids.first().map(String::as_str).unwrap_or(""),
        force,
    )))
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

pub(crate) fn host_unlock(app: &App, ids: &[String]) -> Response {
    ok(json::info_or_error(unlock(
        app,
        ids.first().map(String::as_str).unwrap_or(""),
    )))
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
pub(crate) fn host_swact(app: &App, ids: &[String], force: bool) -> Response {
    let name = ids.first().map(String::as_str).unwrap_or("");
    let Some(ha) = &app.ha else {
        return ok(json::error(
            "Swact needs a controller pair: this controller runs without a peer (host_name, peer).",
        ));
    };
    let state = ha.state();
    let peer = ha.peer_status().map(|p| p.host);
    if name != ha.host && Some(name) != peer.as_deref() && name != state.active {
        return ok(json::error(&format!(
            "{name} is not a controller of this pair."
        )));
    }
    let result = if force && !ha.is_active() {
        if name != state.active {
            Err(format!(
                "{name} is not the active controller ({} is); force-swact the active one.",
                state.active
            ))
        } else {
            ha.force_takeover()
        }
    } else if name != state.active {
        Err(format!(
            "{name} is not the active controller; {} is.",
            state.active
        ))
    } else {
        ha.swact()
    };
    match result {
        Ok(info) => ok(json!({"info": info, "warning": "", "error": ""})),
        Err(message) => ok(json::error(&message)),
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
