//! The Distributed Cloud page of a system controller: its subclouds with their availability
//! and patching sync status, their groups, and the subcloud patch strategy with each
//! subcloud's step. Read from the dcmanager API (`dcmanager_url`, with the operator token in
//! `dcmanager_token_file`) at each render; the page says why when it cannot be.

use std::time::Duration;

use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::Page;
use super::{Shared, session_or_login};

/// How long the dcmanager API may take to answer one read.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer read (5,000 subclouds' steps are about 1 MiB).
const MAX_ANSWER: usize = 32 << 20;

pub(super) async fn dc_page(
    axum::extract::State(web): Shared,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let session = session_or_login!(web, headers, uri);
    let config = web.service.config();
    let body = match &config.dcmanager_url {
        Some(url) => match read(url, config).await {
            Ok(state) => page(&state),
            Err(why) => html! {
                h1 { "Distributed Cloud" }
                p.message id="dc-error" { "The dcmanager API cannot be read: " (why) }
            },
        },
        None => html! {
            h1 { "Distributed Cloud" }
            p.message id="dc-error" {
                "This controller is not a distributed cloud's system controller: set dcmanager_url and dcmanager_token_file to show its subclouds here."
            }
        },
    };
    web.render(&headers, &session, Page::DistributedCloud, body)
}

/// What the page shows, as the dcmanager API gives it.
struct DcState {
    subclouds: Vec<Value>,
    groups: Vec<Value>,
    strategy: Option<Value>,
    steps: Vec<Value>,
}

/// Reads the page's state from the dcmanager API at `url` with the token of `config` (read
/// from its file at each view, so a rotated token is picked up).
async fn read(url: &str, config: &crate::config::ControllerConfig) -> Result<DcState, String> {
    let token = config.dcmanager_token().map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let get = |path: &'static str| {
        let client = client.clone();
        let token = token.clone();
        let url = format!("{}/v1.0/{path}", url.trim_end_matches('/'));
        async move {
            let mut answer = client
                .get(&url)
                .header("X-Auth-Token", token)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = answer.status();
            let mut body = Vec::new();
            while let Some(chunk) = answer.chunk().await.map_err(|e| format!("{url}: {e}"))? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(format!("{url}: answer larger than {MAX_ANSWER} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Ok::<_, String>((status, value))
        }
    };
    let (subclouds, groups, strategy, steps) = tokio::join!(
        get("subclouds"),
        get("subcloud-groups"),
        get("sw-update-strategy?type=patch"),
        get("sw-update-strategy/steps"),
    );
    let list = |answer: Result<(reqwest::StatusCode, Value), String>, key: &str| {
        let (status, value) = answer?;
        if !status.is_success() {
            return Err(format!(
                "{key}: {status}: {}",
                value["error"].as_str().unwrap_or_default()
            ));
        }
        Ok(value[key].as_array().cloned().unwrap_or_default())
    };
    let (status, strategy) = strategy?;
    Ok(DcState {
        subclouds: list(subclouds, "subclouds")?,
        groups: list(groups, "subcloud_groups")?,
        strategy: status.is_success().then_some(strategy),
        steps: list(steps, "strategy-steps")?,
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn time(v: &Value) -> String {
    v.as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The CSS class of a state cell (the dashboard's own colours for good, bad, busy).
fn class(state: &str) -> &'static str {
    match state {
        "online" | "in-sync" | "complete" | "managed" => "ok",
        "offline" | "out-of-sync" | "failed" | "aborted" => "bad",
        "unknown" | "initial" | "unmanaged" => "",
        _ => "busy",
    }
}

fn page(state: &DcState) -> Markup {
    let group_name = |id: &Value| -> String {
        state
            .groups
            .iter()
            .find(|g| g["id"] == *id)
            .map_or_else(|| text(id), |g| text(&g["name"]))
    };
    let in_sync = state
        .subclouds
        .iter()
        .filter(|s| s["sync_status"] == "in-sync")
        .count();
    html! {
        h1 { "Distributed Cloud" }
        section id="dc-live" data-live {
            h2 { "Subclouds" }
            p id="dc-summary" { (state.subclouds.len()) " subclouds, " (in_sync) " in sync" }
            table.grid id="subclouds" {
                thead { tr {
                    th { "Name" } th { "Group" } th { "Management" } th { "Availability" }
                    th { "Patching Sync" } th { "Detail" }
                } }
                tbody {
                    @for s in &state.subclouds {
                        tr data-subcloud=(text(&s["name"])) {
                            td { (text(&s["name"])) }
                            td { (group_name(&s["group_id"])) }
                            td class=(class(&text(&s["management-state"]))) { (text(&s["management-state"])) }
                            td class=(class(&text(&s["availability-status"]))) { (text(&s["availability-status"])) }
                            td class=(class(&text(&s["sync_status"]))) { (text(&s["sync_status"])) }
                            td { (text(&s["sync-detail"])) }
                        }
                    }
                }
            }
            h2 { "Subcloud Groups" }
            table.grid id="subcloud-groups" {
                thead { tr { th { "Name" } th { "Update Apply Type" } th { "Max Parallel Subclouds" } th { "Description" } } }
                tbody {
                    @for g in &state.groups {
                        tr {
                            td { (text(&g["name"])) }
                            td { (text(&g["update_apply_type"])) }
                            td { (text(&g["max_parallel_subclouds"])) }
                            td { (text(&g["description"])) }
                        }
                    }
                }
            }
            h2 { "Subcloud Patch Strategy" }
            @match &state.strategy {
                None => p id="dc-strategy" { "No strategy." },
                Some(s) => {
                    table.fields id="dc-strategy" {
                        tr { th { "State" } td class=(class(&text(&s["state"]))) id="dc-strategy-state" { (text(&s["state"])) } }
                        tr { th { "Subcloud Apply Type" } td { (text(&s["subcloud-apply-type"])) } }
                        tr { th { "Max Parallel Subclouds" } td { (text(&s["max-parallel-subclouds"])) } }
                        tr { th { "Stop On Failure" } td { (text(&s["stop-on-failure"])) } }
                        tr { th { "Max Failed Subclouds" } td { (text(&s["max-failed-subclouds"])) } }
                        tr { th { "Progress" } td id="dc-progress" {
                            (text(&s["progress"]["complete"])) " of " (text(&s["progress"]["total"])) " complete, "
                            (text(&s["progress"]["failed"])) " failed, "
                            (text(&s["progress"]["in-progress"])) " in progress"
                        } }
                    }
                    table.grid id="strategy-steps" {
                        thead { tr {
                            th { "Subcloud" } th { "Stage" } th { "State" } th { "Details" }
                            th { "Started" } th { "Finished" }
                        } }
                        tbody {
                            @for st in &state.steps {
                                tr data-step=(text(&st["cloud"])) {
                                    td { (text(&st["cloud"])) }
                                    td { (text(&st["stage"])) }
                                    td class=(class(&text(&st["state"]))) { (text(&st["state"])) }
                                    td { (text(&st["details"])) }
                                    td { (time(&st["started-at"])) }
                                    td { (time(&st["finished-at"])) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
