//! The System page (release, mode, patches, strategy, hosts by personality, alarms) and the
//! Alarms page.

use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use host_state::{AdminState, Availability, InstallState, PatchState};
use maud::{Markup, html};
use orchestrator::{Alarm, Strategy};

use super::layout::Page;
use super::{Shared, session_or_login};
use crate::inventory::HostRecord;
use crate::service::Patches;

pub(super) async fn system_page(
    axum::extract::State(web): Shared,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let session = session_or_login!(web, headers, uri);
    let service = &web.service;
    let summary = Summary {
        release: service.config().release.clone(),
        mode: crate::service::SystemInfo::mode(service.config().single_controller),
        active_controller: service.active_controller(),
    };
    let body = system(
        &summary,
        &service.hosts(),
        &service.alarms(),
        service.strategy().as_ref(),
        &service.patches(),
    );
    web.render(&headers, &session, Page::System, body)
}

pub(super) async fn alarms_page(
    axum::extract::State(web): Shared,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let session = session_or_login!(web, headers, uri);
    let body = html! {
        h1 { "Alarms" }
        section id="alarms-live" data-live { (alarm_table(&web.service.alarms())) }
    };
    web.render(&headers, &session, Page::Alarms, body)
}

/// The system's few facts the page shows.
struct Summary {
    release: String,
    mode: &'static str,
    active_controller: Option<String>,
}

fn system(
    info: &Summary,
    hosts: &[HostRecord],
    alarms: &[Alarm],
    strategy: Option<&Strategy>,
    patches: &Patches,
) -> Markup {
    let applied = patches
        .iter()
        .filter(|p| matches!(p.state, PatchState::Applied | PatchState::Committed))
        .count();
    html! {
        h1 { "System" }
        section id="system-live" data-live {
            table.fields {
                tr { th { "Software Version" } td id="software-version" { (info.release) } }
                tr { th { "System Mode" } td id="system-mode" { (info.mode) } }
                tr { th { "Active Controller" } td id="active-controller" {
                    (info.active_controller.as_deref().unwrap_or("this controller (not a managed host)"))
                } }
                tr { th { "Patches" } td { (patches.len()) " (" (applied) " applied)" } }
                @match strategy {
                    Some(s) => tr { th { "Patch Strategy" } td {
                        a href="/orchestration" { (s.state.as_str()) }
                        " (" (s.completion_percentage()) "%)"
                    } },
                    None => tr { th { "Patch Strategy" } td { "none" } },
                }
            }
            h2 { "Hosts" }
            (hosts_summary(hosts))
            h2 { "Active Alarms" }
            (alarm_table(alarms))
        }
    }
}

fn hosts_summary(hosts: &[HostRecord]) -> Markup {
    let mut personalities: Vec<&str> = hosts.iter().map(|h| h.personality).collect();
    personalities.sort();
    personalities.dedup();
    let count = |f: &dyn Fn(&HostRecord) -> bool| hosts.iter().filter(|h| f(h)).count();
    let locked = |h: &HostRecord| h.administrative == AdminState::Locked;
    let offline = |h: &HostRecord| h.availability == Availability::Offline;
    let installing = |h: &HostRecord| h.state == InstallState::Installing;
    html! {
        table.grid id="hosts-summary" {
            thead { tr { th { "Personality" } th { "Hosts" } th { "Patch Current" } th { "Locked" } th { "Offline" } th { "Installing" } } }
            tbody {
                @for p in &personalities {
                    @let mine = |h: &HostRecord| h.personality == *p;
                    tr {
                        td { (p) }
                        td { (count(&|h| mine(h))) }
                        td { (count(&|h| mine(h) && h.patch_current)) }
                        td { (count(&|h| mine(h) && locked(h))) }
                        td { (count(&|h| mine(h) && offline(h))) }
                        td { (count(&|h| mine(h) && installing(h))) }
                    }
                }
                tr.total {
                    td { "all" }
                    td id="hosts-total" { (hosts.len()) }
                    td id="hosts-current" { (count(&|h| h.patch_current)) }
                    td { (count(&locked)) }
                    td { (count(&offline)) }
                    td { (count(&installing)) }
                }
            }
        }
    }
}

/// The alarm table (or the sentence saying there are none).
fn alarm_table(alarms: &[Alarm]) -> Markup {
    html! {
        @if alarms.is_empty() {
            p.empty id="no-alarms" { "No active alarms." }
        } @else {
            table.grid id="alarms" {
                thead { tr { th { "Alarm ID" } th { "Reason Text" } th { "Entity ID" } th { "Severity" } th { "Time Stamp" } } }
                tbody {
                    @for a in alarms {
                        tr class=(a.severity) {
                            td { (a.alarm_id) }
                            td { (a.reason_text) }
                            td { (a.entity_instance_id) }
                            td { (a.severity) }
                            td { (crate::alarms::timestamp(a)) }
                        }
                    }
                }
            }
        }
    }
}
