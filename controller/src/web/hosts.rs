//! The Hosts page: every host's states, with Install, Lock, Unlock and Swact buttons greyed
//! out (with the reason) when the controller would refuse.

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{Page, SWACT_UNAVAILABLE, action_button, yes_no};
use super::login::Posted;
use super::session::{Flash, Level};
use super::{Shared, line_flash, see_other, session_or_login};
use crate::http::log_text;
use crate::inventory::{HostRecord, LockRefusal};

pub(super) async fn hosts_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let service = &web.service;
    let active = service.active_controller();
    let body = hosts(
        &service.hosts(),
        &session.csrf,
        active.as_deref(),
        service.config().single_controller,
        service.is_pair(),
    );
    web.render(&headers, &session, Page::Hosts, body)
}

pub(super) async fn host_action(
    State(web): Shared,
    UrlPath(action): UrlPath<String>,
    Posted { session, form }: Posted,
) -> Response {
    let Some(host) = form
        .get("host")
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
    else {
        web.sessions
            .flash(&session, Flash::new(Level::Error, "Choose a host.".into()));
        return see_other("/hosts");
    };
    let service = &web.service;
    let result = match action.as_str() {
        "install" => service.install(host.clone(), false).await,
        "lock" => service.lock(host.clone(), false).await,
        "unlock" => service.unlock(host.clone()).await,
        "swact" => {
            web.sessions
                .flash(&session, Flash::new(Level::Error, SWACT_UNAVAILABLE.into()));
            return see_other("/hosts");
        }
        other => {
            web.sessions.flash(
                &session,
                Flash::new(Level::Error, format!("Unknown host action {other:?}.")),
            );
            return see_other("/hosts");
        }
    };
    tracing::info!(target: "audit", "dashboard: {} host {} {}", session.operator.name, log_text(&action), log_text(&host));
    web.sessions.flash(&session, line_flash(result));
    see_other("/hosts")
}

fn hosts(
    hosts: &[HostRecord],
    csrf: &str,
    active_controller: Option<&str>,
    simplex: bool,
    pair: bool,
) -> Markup {
    html! {
        h1 { "Hosts" }
        section id="hosts-live" data-live {
            @if hosts.is_empty() {
                p.empty { "No host has reported to this controller yet." }
            } @else {
                table.grid id="hosts" {
                    thead { tr {
                        th { "Hostname" } th { "IP Address" } th { "Personality" }
                        th { "Administrative" } th { "Operational" } th { "Availability" }
                        th { "Patch Current" } th { "Reboot Required" } th { "Release" } th { "State" } th { "Actions" }
                    } }
                    tbody {
                        @for h in hosts {
                            @let name = h.hostname.as_str();
                            tr id={"host-" (name)} data-current=(h.patch_current) {
                                td { (name) }
                                td { (h.ip) }
                                td { (h.personality) }
                                td { (h.administrative) }
                                td { (h.operational) }
                                td { (h.availability) }
                                // As Horizon: "Pending" until the host reports against the
                                // latest repository change.
                                td.current {
                                    @if h.interim_state { "Pending" } @else { (yes_no(h.patch_current)) }
                                }
                                td { (yes_no(h.requires_reboot)) }
                                td { (h.sw_version) }
                                td {
                                    (h.state)
                                    @if h.patch_failed { " (failed)" }
                                    @if let Some(e) = &h.last_error { br; small.error { (e) } }
                                    // Health checks and rollbacks, where the host has them.
                                    @if let Some(health) = &h.health {
                                        br; small.health data-health=(health_state(health.state)) {
                                            "health: " (health_state(health.state))
                                        }
                                    }
                                    @if !h.held_patches.is_empty() {
                                        br; small.held {
                                            "rolled back from: "
                                            (h.held_patches.iter().cloned().collect::<Vec<_>>().join(", "))
                                        }
                                    }
                                }
                                td.actions { (host_actions(h, csrf, active_controller, simplex, pair)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn health_state(state: host_state::protocol::HealthState) -> &'static str {
    use host_state::protocol::HealthState;
    match state {
        HealthState::Passed => "passed",
        HealthState::Warned => "warned",
        HealthState::Failed => "failed",
        HealthState::AfterReboot => "after reboot",
    }
}

fn host_actions(
    h: &HostRecord,
    csrf: &str,
    active_controller: Option<&str>,
    simplex: bool,
    pair: bool,
) -> Markup {
    let name = h.hostname.as_str();
    let is_active = active_controller == Some(name);
    let lock_refused = h.lock_refusal(pair && is_active).map(LockRefusal::short);
    let fields = [("host", name)];
    let is_controller = h.personality == "controller";
    let swact_refused = if simplex {
        Some("Simplex system: there is no other controller.")
    } else if !pair {
        Some(SWACT_UNAVAILABLE)
    } else if !is_active {
        Some("Only the active controller can be swacted.")
    } else {
        None
    };
    html! {
        (action_button("/hosts/action/install", "Install", csrf, &fields, h.install_refusal(), None))
        (action_button("/hosts/action/lock", "Lock", csrf, &fields, lock_refused, Some("Lock this host?")))
        (action_button("/hosts/action/unlock", "Unlock", csrf, &fields, h.unlock_refusal(), None))
        @if is_controller {
            (action_button("/hosts/action/swact", "Swact", csrf, &fields, swact_refused, Some("Swact: make the other controller active?")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_state::{AdminState, Availability, InstallState};

    /// A worker as `query-hosts` shows it, unlocked, idle and current.
    fn worker() -> HostRecord {
        HostRecord {
            administrative: AdminState::Unlocked,
            allow_insvc_patching: true,
            availability: Availability::Available,
            boot_id: String::new(),
            duplicated_pkgs: Default::default(),
            hostname: "compute-0".into(),
            installed: Default::default(),
            interim_state: false,
            ip: String::new(),
            last_error: None,
            missing_pkgs: Vec::new(),
            nodetype: "worker",
            operational: host_state::OperState::Enabled,
            patch_current: true,
            patch_failed: false,
            personality: "worker",
            reboot_pending: false,
            requires_reboot: false,
            secs_since_ack: 0,
            stale_details: false,
            state: InstallState::Idle,
            subfunctions: Vec::new(),
            sw_version: "19.01".into(),
            to_remove: Vec::new(),
            held_patches: Default::default(),
            health: None,
        }
    }

    #[test]
    fn a_host_needing_a_reboot_must_be_locked_to_install() {
        let records = [HostRecord {
            allow_insvc_patching: false,
            patch_current: false,
            requires_reboot: true,
            ..worker()
        }];
        let page = hosts(&records, "tok", None, false, false).into_string();
        assert!(page.contains("lock the host first"));
        assert!(!page.contains("health:") && !page.contains("rolled back from"));
    }

    #[test]
    fn a_rolled_back_host_shows_its_health_and_what_it_is_held_back_from() {
        let failed = host_state::protocol::HealthReport {
            state: host_state::protocol::HealthState::Failed,
            detail: "required.d/10-api failed".into(),
            rolled_back: ["P1".to_owned()].into(),
        };
        let records = [HostRecord {
            patch_failed: true,
            state: InstallState::InstallFailed,
            held_patches: ["P1".to_owned(), "P2".to_owned()].into(),
            health: Some(failed),
            ..worker()
        }];
        let shown = hosts(&records, "tok", None, false, false).into_string();
        assert!(shown.contains(r#"data-health="failed""#), "{shown}");
        assert!(shown.contains("rolled back from: P1, P2"), "{shown}");
    }
}
