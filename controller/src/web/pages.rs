//! The dashboard's pages, rendered from the API answers (the same JSON the CLIs read). maud
//! escapes every value it inserts.

use maud::{DOCTYPE, Markup, html};
use serde_json::{Map, Value};

use crate::inventory::{HostRecord, LockRefusal};
use host_state::{AdminState, Availability, InstallState};

use super::session::Flash;

/// Which page the navigation marks as current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    System,
    Patches,
    Hosts,
    Orchestration,
    Alarms,
    None,
}

const NAV: [(Page, &str, &str); 5] = [
    (Page::System, "/system", "System"),
    (Page::Patches, "/patches", "Patches"),
    (Page::Hosts, "/hosts", "Hosts"),
    (Page::Orchestration, "/orchestration", "Patch Orchestration"),
    (Page::Alarms, "/alarms", "Alarms"),
];

/// Why the swact button is greyed out: the patching service runs on one controller daemon.
pub(crate) const SWACT_UNAVAILABLE: &str =
    "Swact needs a standby patching controller; this controller runs without a peer.";

/// Percent-encodes for a URL path segment or query value.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · StarlingX Software Management" }
            link rel="stylesheet" href="/static/dashboard.css";
            script src="/static/dashboard.js" defer {}
        }
    }
}

/// A page for a signed-in operator.
pub(crate) fn layout(
    page: Page,
    csrf: &str,
    flashes: &[Flash],
    system_line: &str,
    body: Markup,
) -> Markup {
    let title = NAV
        .iter()
        .find(|(p, _, _)| *p == page)
        .map_or("Dashboard", |(_, _, t)| t);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    div.brand { "StarlingX " span { "Software Management" } }
                    div.sysline { (system_line) }
                    form.logout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" id="logout" { "Log out" }
                    }
                }
                nav {
                    @for (p, href, label) in NAV {
                        a href=(href) class=[(p == page).then_some("current")] { (label) }
                    }
                }
                main {
                    @if !flashes.is_empty() {
                        div.flashes id="messages" {
                            @for f in flashes {
                                div class={"flash " (f.level.class())} role="alert" { (f.text) }
                            }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page without the navigation (login, refusals).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                header { div.brand { "StarlingX " span { "Software Management" } } }
                main { (body) }
            }
        }
    }
}

pub(crate) fn message_page(title: &str, message: &str) -> Markup {
    html! {
        h1 { (title) }
        p.message { (message) }
    }
}

pub(crate) fn login_link(body: Markup) -> Markup {
    html! {
        (body)
        p { a href="/system" { "Back to the dashboard" } }
    }
}

pub(crate) fn login(csrf: &str, next: Option<&str>, error: Option<&str>) -> Markup {
    bare(
        "Log in",
        html! {
            h1 { "Log in" }
            @if let Some(e) = error {
                div.flash.error role="alert" id="login-error" { (e) }
            }
            form.login method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                label for="token" { "Operator token" }
                input type="password" name="token" id="token" autocomplete="current-password" required autofocus;
                button type="submit" id="login" { "Log in" }
                p.hint { "Use one of the controller's API tokens (auth_tokens)." }
            }
        },
    )
}

/// A button in a one-button form that posts the CSRF token and `fields`; greyed out with
/// the reason when not allowed.
fn action_button(
    action: &str,
    label: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    refused: Option<&str>,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            input type="hidden" name="csrf" value=(csrf);
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            @match refused {
                Some(reason) => button type="submit" disabled title=(reason) data-action=(label) { (label) },
                None => button type="submit" data-action=(label) { (label) },
            }
        }
    }
}

fn load_error(what: &str, e: &str) -> Markup {
    html! { div.flash.error role="alert" { "Cannot read " (what) ": " (e) } }
}

// ---- System ----

pub(crate) struct SystemInfo {
    pub(crate) release: String,
    pub(crate) mode: &'static str,
    pub(crate) active_controller: Option<String>,
}

pub(crate) fn system(
    info: &SystemInfo,
    hosts: &[HostRecord],
    alarms: Result<&Value, String>,
    strategy: Result<&Value, String>,
    patches: Result<&Value, String>,
) -> Markup {
    html! {
        h1 { "System" }
        section id="system-live" data-live {
            table.fields {
                tr { th { "Software Version" } td id="software-version" { (info.release) } }
                tr { th { "System Mode" } td id="system-mode" { (info.mode) } }
                tr { th { "Active Controller" } td id="active-controller" {
                    (info.active_controller.as_deref().unwrap_or("this controller (not a managed host)"))
                } }
                @match &patches {
                    Ok(pd) => {
                        @let pd = pd.as_object().cloned().unwrap_or_default();
                        @let applied = pd.values().filter(|p| text(p, "patchstate") == "Applied" || text(p, "patchstate") == "Committed").count();
                        tr { th { "Patches" } td { (pd.len()) " (" (applied) " applied)" } }
                    }
                    Err(e) => tr { th { "Patches" } td { (load_error("patches", e)) } }
                }
                @match &strategy {
                    Ok(s) if !s.is_null() => tr { th { "Patch Strategy" } td {
                        a href="/orchestration" { (text(s, "state")) }
                        " (" (num(s, "current-phase-completion-percentage")) "%)"
                    } },
                    Ok(_) => tr { th { "Patch Strategy" } td { "none" } },
                    Err(e) => tr { th { "Patch Strategy" } td { (load_error("the strategy", e)) } },
                }
            }
            h2 { "Hosts" }
            (hosts_summary(hosts))
            h2 { "Active Alarms" }
            @match &alarms {
                Ok(a) => (alarm_table(a)),
                Err(e) => (load_error("alarms", e)),
            }
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

// ---- Patches ----

pub(crate) fn patches(pd: Result<&Value, String>, csrf: &str, max_upload: u64) -> Markup {
    let empty = Map::new();
    let (pd, error) = match &pd {
        Ok(v) => (v.as_object().unwrap_or(&empty), None),
        Err(e) => (&empty, Some(e.as_str())),
    };
    let committable: Vec<&String> = pd
        .iter()
        .filter(|(_, p)| text(p, "repostate") == "Applied" && text(p, "patchstate") == "Applied")
        .map(|(id, _)| id)
        .collect();
    let commit_all = committable
        .iter()
        .map(|id| format!("id={}", url_encode(id)))
        .collect::<Vec<_>>()
        .join("&");
    // As `sw-patch query`: the repo state shows when no host has reported a patch state.
    let show_repo = pd.values().any(|p| text(p, "patchstate") == "n/a");
    html! {
        h1 { "Patches" }
        section id="patches-live" data-live {
            @if let Some(e) = error { (load_error("patches", e)) }
            @if pd.is_empty() && error.is_none() {
                p.empty id="no-patches" { "No patches are uploaded. Upload a .patch file below." }
            } @else {
                table.grid id="patches" {
                    thead { tr {
                        th { "Patch ID" } th { "RR" } th { "Release" }
                        @if show_repo { th { "Repo State" } }
                        th { "Patch State" } th { "Summary" } th { "Actions" }
                    } }
                    tbody {
                        @for (id, p) in pd {
                            @let repo = text(p, "repostate");
                            @let state = text(p, "patchstate");
                            tr id={"patch-" (id)} data-state=(state) {
                                td { a href={"/patches/show/" (url_encode(id))} { (id) } }
                                td { (text(p, "reboot_required")) }
                                td { (text(p, "sw_version")) }
                                @if show_repo { td.repo { (repo) } }
                                td.state { (state) }
                                td { (text(p, "summary")) }
                                td.actions { (patch_actions(id, p, repo, state, csrf, "/patches")) }
                            }
                        }
                    }
                }
            }
            @if !committable.is_empty() {
                p { a.button href={"/patches/commit?" (commit_all)} id="commit-all" { "Commit all applied patches…" } }
            }
        }
        section.panel {
            h2 { "Upload patches" }
            form id="upload-form" method="post" action="/patches/upload" enctype="multipart/form-data" {
                // The token goes first: the server checks it before reading any file.
                input type="hidden" name="csrf" value=(csrf);
                input type="file" name="file" id="upload-file" accept=".patch" multiple required;
                button type="submit" id="upload" { "Upload" }
                progress id="upload-progress" max="100" value="0" hidden {}
                span id="upload-status" {}
            }
            p.hint { "Signed .patch files up to " (max_upload >> 20) " MiB each. They are verified as they arrive." }
        }
    }
}

fn patch_actions(id: &str, p: &Value, repo: &str, state: &str, csrf: &str, back: &str) -> Markup {
    let unremovable = text(p, "unremovable") == "Y";
    let apply_refused = match repo {
        "Available" => None,
        "Committed" => Some("Committed patches stay applied."),
        _ => Some("Already applied."),
    };
    let remove_refused = match repo {
        "Applied" if unremovable => Some("This patch is unremovable."),
        "Applied" => None,
        "Committed" => Some("Committed patches cannot be removed."),
        _ => Some("Not applied."),
    };
    let delete_refused = match repo {
        "Available" if state == "Available" || state == "n/a" => None,
        "Available" => Some("Hosts still have this patch installed; install them first."),
        _ => Some("Remove the patch before deleting it."),
    };
    let fields = [("id", id), ("back", back)];
    html! {
        (action_button("/patches/action/apply", "Apply", csrf, &fields, apply_refused, None))
        (action_button("/patches/action/remove", "Remove", csrf, &fields, remove_refused, Some("Remove this patch?")))
        (action_button("/patches/action/delete", "Delete", csrf, &fields, delete_refused, Some("Delete this patch from the controller?")))
        @if repo == "Applied" && state == "Applied" {
            a.button href={"/patches/commit?id=" (url_encode(id))} data-action="Commit" { "Commit…" }
        }
    }
}

pub(crate) fn patch_details(id: &str, shown: &Value, required_by: &str, csrf: &str) -> Markup {
    let Some(m) = shown.get("metadata").and_then(|m| m.get(id)) else {
        let error = text(shown, "error").trim().to_owned();
        return html! {
            h1 { (id) }
            div.flash.error role="alert" {
                @if error.is_empty() { (id) " is unrecognized" } @else { (error) }
            }
            p { a href="/patches" { "Back to the patches" } }
        };
    };
    let contents = list(shown.get("contents").and_then(|c| c.get(id)));
    let requires = list(m.get("requires"));
    let mut personalities: Vec<(String, Vec<String>)> = m
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("personality-")
                        .map(|p| (p.to_owned(), list(Some(v))))
                })
                .collect()
        })
        .unwrap_or_default();
    personalities.sort();
    let repo = text(m, "repostate");
    let state = text(m, "patchstate");
    let back = format!("/patches/show/{}", url_encode(id));
    html! {
        h1 { (id) }
        section id="patch-live" data-live {
            table.fields id="patch-details" {
                tr { th { "Release" } td { (text(m, "sw_version")) } }
                tr { th { "Patch State" } td id="patch-state" { (state) } }
                tr { th { "Repo State" } td { (repo) } }
                tr { th { "Status" } td { (text(m, "status")) } }
                tr { th { "Unremovable" } td { (text(m, "unremovable")) } }
                tr { th { "RR" } td { (text(m, "reboot_required")) } }
                tr { th { "Apply Active Release Only" } td { (text(m, "apply_active_release_only")) } }
                @for (key, label) in [("summary", "Summary"), ("description", "Description"), ("install_instructions", "Install Instr"), ("warnings", "Warnings")] {
                    @if !text(m, key).is_empty() { tr { th { (label) } td.pre { (text(m, key)) } } }
                }
                @if !requires.is_empty() { tr { th { "Requires" } td.pre { (requires.join("\n")) } } }
                @if !required_by.trim().is_empty() { tr { th { "Required By" } td.pre { (required_by.trim()) } } }
                @for (personality, packages) in &personalities {
                    tr { th { "Packages (" (personality) ")" } td.pre { (packages.join("\n")) } }
                }
                @if !text(m, "restart_script").is_empty() { tr { th { "Restart Script" } td { (text(m, "restart_script")) } } }
                tr { th { "Contents" } td.pre { (contents.join("\n")) } }
            }
            div.actions { (patch_actions(id, m, repo, state, csrf, &back)) }
        }
        p { a href="/patches" { "Back to the patches" } }
    }
}

/// The commit's confirmation: the dry run's answer ("would free …") and the button.
pub(crate) fn commit_confirm(
    ids: &[String],
    plan: &Value,
    messages: &[Flash],
    csrf: &str,
) -> Markup {
    let patches = list(plan.get("patches"));
    let refused = messages
        .iter()
        .any(|f| f.level == super::session::Level::Error);
    html! {
        h1 { "Commit patches" }
        @for f in messages {
            div class={"flash " (f.level.class())} role="alert" id=[(f.level == super::session::Level::Info).then_some("commit-plan")] { (f.text) }
        }
        @if !patches.is_empty() {
            p { "These patches become permanent: they can no longer be removed, and the files they replace are deleted." }
            ul id="commit-patches" { @for p in &patches { li { (p) } } }
        }
        @if refused {
            p { a href="/patches" { "Back to the patches" } }
        } @else {
            form method="post" action="/patches/commit" {
                input type="hidden" name="csrf" value=(csrf);
                @for id in ids { input type="hidden" name="id" value=(id); }
                button type="submit" id="commit-confirm" { "Commit" }
                " "
                a href="/patches" { "Cancel" }
            }
        }
    }
}

// ---- Hosts ----

pub(crate) fn hosts(
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

fn host_actions(
    h: &HostRecord,
    csrf: &str,
    active_controller: Option<&str>,
    simplex: bool,
    pair: bool,
) -> Markup {
    let name = h.hostname.as_str();
    let locked = h.administrative == AdminState::Locked;
    let installing = h.state == InstallState::Installing;
    let offline = h.availability == Availability::Offline;
    let install_refused = if h.patch_current {
        Some("The host is patch current.")
    } else if installing {
        Some("The host is installing patches.")
    } else if offline {
        Some("The host is offline.")
    } else if !locked && !h.allow_insvc_patching {
        Some("A reboot-required patch is pending: lock the host first.")
    } else {
        None
    };
    let is_active = active_controller == Some(name);
    let lock_refused = LockRefusal::check(h.administrative, pair && is_active, installing, false)
        .map(LockRefusal::short);
    let unlock_refused = (!locked).then_some("The host is not locked.");
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
        (action_button("/hosts/action/install", "Install", csrf, &fields, install_refused, None))
        (action_button("/hosts/action/lock", "Lock", csrf, &fields, lock_refused, Some("Lock this host?")))
        (action_button("/hosts/action/unlock", "Unlock", csrf, &fields, unlock_refused, None))
        @if is_controller {
            (action_button("/hosts/action/swact", "Swact", csrf, &fields, swact_refused, Some("Swact: make the other controller active?")))
        }
    }
}

// ---- Patch orchestration ----

fn percent_bar(id: Option<String>, pct: u64) -> Markup {
    html! {
        span.bar {
            progress id=[id] max="100" value=(pct.min(100)) {}
            " " (pct) "%"
        }
    }
}

pub(crate) fn orchestration(
    strategy: Result<&Value, String>,
    plan: Option<&Value>,
    csrf: &str,
) -> Markup {
    html! {
        h1 { "Patch Orchestration" }
        @if let Some(plan) = plan { (dry_run(plan)) }
        section id="strategy-live" data-live {
            @match &strategy {
                Err(e) => (load_error("the strategy", e)),
                Ok(s) if s.is_null() => p.empty id="no-strategy" { "No patch strategy exists. Create one below." },
                Ok(s) => (strategy_view(s, csrf)),
            }
        }
        @if matches!(&strategy, Ok(s) if s.is_null()) { (create_form(csrf)) }
    }
}

fn select(name: &str, label: &str, options: &[&str], default: &str) -> Markup {
    html! {
        label for=(name) { (label) }
        select name=(name) id=(name) {
            @for o in options { option value=(o) selected[*o == default] { (o) } }
        }
    }
}

fn create_form(csrf: &str) -> Markup {
    html! {
        section.panel {
            h2 { "Create Strategy" }
            form.create id="create-strategy" method="post" action="/orchestration/create" {
                input type="hidden" name="csrf" value=(csrf);
                (select("controller-apply-type", "Controller Apply Type", &["serial", "ignore"], "serial"))
                (select("storage-apply-type", "Storage Apply Type", &["serial", "parallel", "ignore"], "serial"))
                (select("worker-apply-type", "Worker Apply Type", &["serial", "parallel", "ignore"], "serial"))
                label for="max-parallel-worker-hosts" { "Max Parallel Worker Hosts (parallel only)" }
                input type="number" name="max-parallel-worker-hosts" id="max-parallel-worker-hosts" min="2" max="100" value="2";
                (select("default-instance-action", "Default Instance Action", &["stop-start", "migrate"], "stop-start"))
                (select("alarm-restrictions", "Alarm Restrictions", &["strict", "relaxed"], "strict"))
                label for="max-failed-hosts" { "Max Failed Hosts" }
                input type="number" name="max-failed-hosts" id="max-failed-hosts" min="0" value="0";
                div.buttons {
                    button type="submit" id="create" { "Create Strategy" }
                    button type="submit" name="dry-run" value="1" id="dry-run" { "Dry Run (plan only)" }
                }
            }
        }
    }
}

fn dry_run(plan: &Value) -> Markup {
    let stages = plan
        .get("stages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    html! {
        section.panel id="dry-run-plan" {
            h2 { "Dry run: " (num(plan, "total-stages")) " stages" }
            p { "Predicted duration: " (minutes(num(plan, "predicted-duration-min-seconds")))
                " to " (minutes(num(plan, "predicted-duration-max-seconds"))) ". Nothing was stored." }
            ol {
                @for s in &stages {
                    li { (text(s, "stage-name")) ": "
                        (list(s.get("steps")).len()) " steps"
                        @let hosts = hosts_of(s);
                        @if !hosts.is_empty() { " — " (hosts.join(", ")) }
                    }
                }
            }
        }
    }
}

fn minutes(secs: u64) -> String {
    if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

/// The hosts a stage's steps name.
fn hosts_of(stage: &Value) -> Vec<String> {
    let mut names: Vec<String> = stage
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| text(s, "entity-type") == "hosts")
        .flat_map(|s| list(s.get("entity-names")))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn strategy_view(s: &Value, csrf: &str) -> Markup {
    let state = text(s, "state");
    let apply = s.get("apply-phase").cloned().unwrap_or(Value::Null);
    let stages = apply
        .get("stages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let paused = state == "applying" && !stages.iter().any(|st| flag(st, "inprogress"));
    let current_stage = num(&apply, "current-stage");
    let apply_refused = match state {
        "ready-to-apply" => None,
        "applying" if paused => None,
        "applying" => Some("The strategy is being applied."),
        "applied" => Some("The strategy is applied."),
        "building" => Some("The strategy is being built."),
        "aborting" | "aborted" | "abort-failed" | "abort-timeout" => {
            Some("The strategy was aborted.")
        }
        _ => Some("The strategy is not ready to apply."),
    };
    let abort_refused = match state {
        "applying" | "apply-failed" | "apply-timeout" => None,
        _ => Some("Nothing is being applied."),
    };
    let delete_refused = match state {
        "building" => Some("The strategy is being built."),
        "applying" => Some("The strategy is being applied; abort it first."),
        "aborting" => Some("The strategy is being aborted."),
        _ => None,
    };
    html! {
        table.fields id="strategy" data-state=(state) {
            tr { th { "Strategy UUID" } td { (text(s, "uuid")) } }
            tr { th { "Controller Apply Type" } td { (text(s, "controller-apply-type")) } }
            tr { th { "Storage Apply Type" } td { (text(s, "storage-apply-type")) } }
            tr { th { "Worker Apply Type" } td { (text(s, "worker-apply-type")) } }
            @if text(s, "worker-apply-type") == "parallel" {
                tr { th { "Max Parallel Worker Hosts" } td { (num(s, "max-parallel-worker-hosts")) } }
            }
            tr { th { "Default Instance Action" } td { (text(s, "default-instance-action")) } }
            tr { th { "Alarm Restrictions" } td { (text(s, "alarm-restrictions")) } }
            tr { th { "Max Failed Hosts" } td { (num(s, "max-failed-hosts")) } }
            tr { th { "Current Phase" } td { (text(s, "current-phase")) } }
            tr { th { "Current Phase Completion" } td { (percent_bar(Some("strategy-progress".into()), num(s, "current-phase-completion-percentage"))) } }
            tr { th { "State" } td id="strategy-state" { (state) } }
            @for phase in ["build-phase", "apply-phase", "abort-phase"] {
                @if let Some(p) = s.get(phase) {
                    @if !text(p, "reason").is_empty() {
                        tr { th { (phase) " reason" } td.error { (text(p, "reason")) } }
                    }
                }
            }
        }
        div.actions id="strategy-actions" {
            (action_button("/orchestration/action/apply", "Apply All", csrf, &[], apply_refused, Some("Apply every stage?")))
            (action_button("/orchestration/action/abort", "Abort", csrf, &[], abort_refused, Some("Abort the strategy? The running step finishes first.")))
            (action_button("/orchestration/action/delete", "Delete", csrf, &[], delete_refused, Some("Delete the strategy?")))
        }
        @for phase in ["build-phase", "apply-phase", "abort-phase"] {
            @if let Some(p) = s.get(phase) {
                @if num(p, "total-stages") > 0 {
                    (phase_view(phase, p, state, paused, current_stage, csrf))
                }
            }
        }
    }
}

fn phase_view(
    name: &str,
    p: &Value,
    state: &str,
    paused: bool,
    current: u64,
    csrf: &str,
) -> Markup {
    let stages = p
        .get("stages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    html! {
        section.phase id=(name) {
            h2 {
                (text(p, "phase-name")) " phase: " span.result { (text(p, "result")) }
                " " (percent_bar(None, num(p, "completion-percentage")))
            }
            @for st in &stages {
                @let id = num(st, "stage-id");
                @let steps = st.get("steps").and_then(Value::as_array).cloned().unwrap_or_default();
                @let done = num(st, "current-step").min(steps.len() as u64);
                @let pct = if steps.is_empty() { 0 } else if text(st, "result") == "success" { 100 } else { done * 100 / steps.len() as u64 };
                details.stage open[flag(st, "inprogress")] id={(name) "-stage-" (id)} {
                    summary {
                        "Stage " (id) ": " (text(st, "stage-name")) " — " span.result { (text(st, "result")) }
                        " " (percent_bar(None, pct))
                        @if !text(st, "reason").is_empty() { " " span.error { (text(st, "reason")) } }
                    }
                    @if name == "apply-phase" {
                        @let refused = if (state == "ready-to-apply" && id == 0) || (paused && id == current) { None } else { Some("Stages are applied in order, one at a time.") };
                        (action_button("/orchestration/action/apply", "Apply Stage", csrf, &[("stage-id", &id.to_string())], refused, None))
                    }
                    table.grid.steps {
                        thead { tr { th { "Step" } th { "Name" } th { "Entities" } th { "Result" } th { "Reason" } th { "Started" } th { "Ended" } } }
                        tbody {
                            @for step in &steps {
                                tr {
                                    td { (num(step, "step-id")) }
                                    td { (text(step, "step-name")) }
                                    td { (list(step.get("entity-names")).join(", ")) }
                                    td { (text(step, "result")) }
                                    td { (text(step, "reason")) }
                                    td { (text(step, "start-date-time")) }
                                    td { (text(step, "end-date-time")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---- Alarms ----

pub(crate) fn alarms(alarms: Result<&Value, String>) -> Markup {
    html! {
        h1 { "Alarms" }
        section id="alarms-live" data-live {
            @match &alarms {
                Ok(a) => (alarm_table(a)),
                Err(e) => (load_error("alarms", e)),
            }
        }
    }
}

fn alarm_table(alarms: &Value) -> Markup {
    let alarms = alarms.as_array().cloned().unwrap_or_default();
    html! {
        @if alarms.is_empty() {
            p.empty id="no-alarms" { "No active alarms." }
        } @else {
            table.grid id="alarms" {
                thead { tr { th { "Alarm ID" } th { "Reason Text" } th { "Entity ID" } th { "Severity" } th { "Time Stamp" } } }
                tbody {
                    @for a in &alarms {
                        tr class=(text(a, "severity")) {
                            td { (text(a, "alarm_id")) }
                            td { (text(a, "reason_text")) }
                            td { (text(a, "entity_instance_id")) }
                            td { (text(a, "severity")) }
                            td { (text(a, "timestamp")) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_escaped() {
        let pd = json!({"P<1>": {"repostate": "Available", "patchstate": "Available",
            "summary": "<script>alert(1)</script>", "sw_version": "19.01", "reboot_required": "N"}});
        let page = patches(Ok(&pd), "tok", 1 << 30).into_string();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("/patches/show/P%3C1%3E"));
    }

    #[test]
    fn refused_actions_are_greyed_with_the_reason() {
        let pd = json!({"P1": {"repostate": "Applied", "patchstate": "Partial-Apply", "unremovable": "Y"}});
        let page = patches(Ok(&pd), "tok", 1 << 30).into_string();
        assert!(page.contains("disabled title=\"This patch is unremovable.\""));
        assert!(page.contains("disabled title=\"Already applied.\""));
        assert!(
            !page.contains("Commit…"),
            "only fully applied patches commit"
        );
    }

    #[test]
    fn a_host_needing_a_reboot_must_be_locked_to_install() {
        let hosts = [HostRecord {
            administrative: AdminState::Unlocked,
            allow_insvc_patching: false,
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
            patch_current: false,
            patch_failed: false,
            personality: "worker",
            reboot_pending: false,
            requires_reboot: true,
            secs_since_ack: 0,
            stale_details: false,
            state: InstallState::Idle,
            subfunctions: Vec::new(),
            sw_version: "19.01".into(),
            to_remove: Vec::new(),
        }];
        let page = super::hosts(&hosts, "tok", None, false, false).into_string();
        assert!(page.contains("lock the host first"));
    }

    #[test]
    fn url_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(url_encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(url_encode("STX_19.01_PATCH_0001"), "STX_19.01_PATCH_0001");
    }
}
