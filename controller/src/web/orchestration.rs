//! The Patch Orchestration page: the strategy with its phases, stages and steps (or the form
//! that creates one, with a dry run), and its Apply, Abort and Delete buttons — greyed out
//! by the strategy's own rules.

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use maud::{Markup, html};
use orchestrator::api::Action;
use orchestrator::{Phase, Stage, Strategy};
use serde_json::{Value, json};

use super::layout::{Page, action_button};
use super::login::Posted;
use super::session::{Flash, Level};
use super::{Shared, error_flash, see_other, session_or_login};
use crate::http::log_text;
use crate::service::Plan;

pub(super) async fn orchestration_page(
    State(web): Shared,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let session = session_or_login!(web, headers, uri);
    let plan = web.sessions.take_plan(&session);
    let body = orchestration(
        web.service.strategy().as_ref(),
        plan.as_ref(),
        &session.csrf,
    );
    web.render(&headers, &session, Page::Orchestration, body)
}

/// The precheck, run when asked for (it reads every package of the repository).
pub(super) async fn precheck_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let restrictions = uri
        .query()
        .and_then(|q| q.strip_prefix("alarm-restrictions="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(orchestrator::AlarmRestrictions::Strict);
    let request = crate::service::PrecheckRequest {
        patches: Vec::new(),
        alarm_restrictions: restrictions,
        for_strategy: false,
    };
    match web.service.precheck(request).await {
        Ok(precheck) => web.render(
            &headers,
            &session,
            Page::Orchestration,
            precheck_view(&precheck, restrictions),
        ),
        Err(e) => {
            web.sessions.flash(&session, error_flash(&e));
            see_other("/orchestration")
        }
    }
}

pub(super) async fn strategy_create(
    State(web): Shared,
    Posted { session, form }: Posted,
) -> Response {
    // The form's fields are the API's: the API's parser checks them, in its words.
    let mut request = serde_json::Map::new();
    for key in [
        "controller-apply-type",
        "storage-apply-type",
        "worker-apply-type",
        "default-instance-action",
        "alarm-restrictions",
    ] {
        if let Some(v) = form.get(key).filter(|v| !v.is_empty()) {
            request.insert(key.into(), json!(v));
        }
    }
    for key in [
        "max-parallel-worker-hosts",
        "max-failed-hosts",
        "canary-hosts",
        "canary-soak",
        "soak-seconds",
        "alarm-stale-after",
    ] {
        if let Some(v) = form.get(key).map(str::trim).filter(|v| !v.is_empty()) {
            request.insert(key.into(), json!(v));
        }
    }
    // The parallel limit only means something for parallel workers.
    if form.get("worker-apply-type") != Some("parallel") {
        request.remove("max-parallel-worker-hosts");
    }
    let dry_run = form.get("dry-run").is_some();
    let force = form.get("force").is_some();
    let body = Value::Object(request).to_string();
    let options = match orchestrator::api::parse_create(body.as_bytes()) {
        Ok(r) => r.options,
        Err(e) => {
            web.sessions
                .flash(&session, Flash::new(Level::Error, e.to_string()));
            return see_other("/orchestration");
        }
    };
    let service = &web.service;
    if dry_run {
        match service.plan_strategy(options).await {
            Ok(Ok(plan)) => web.sessions.set_plan(&session, plan),
            Ok(Err(reason)) => web.sessions.flash(
                &session,
                Flash::new(Level::Error, format!("Cannot plan a strategy: {reason}")),
            ),
            Err(e) => web.sessions.flash(&session, error_flash(&e)),
        }
        return see_other("/orchestration");
    }
    match service.create_strategy(options, force).await {
        Ok(_) => {
            tracing::info!(target: "audit", "dashboard: {} patch strategy created", session.operator.name);
            web.sessions.flash(
                &session,
                Flash::new(Level::Info, "Strategy created; it is being built.".into()),
            );
        }
        Err(e) => web.sessions.flash(&session, error_flash(&e)),
    }
    see_other("/orchestration")
}

pub(super) async fn strategy_action(
    State(web): Shared,
    UrlPath(action): UrlPath<String>,
    Posted { session, form }: Posted,
) -> Response {
    let stage = match form.get("stage-id").filter(|s| !s.is_empty()) {
        None => None,
        Some(id) => match id.parse::<usize>() {
            Ok(id) => Some(id),
            Err(_) => {
                web.sessions.flash(
                    &session,
                    Flash::new(Level::Error, format!("{id:?} is not a stage number.")),
                );
                return see_other("/orchestration");
            }
        },
    };
    let (act, done) = match (action.as_str(), stage) {
        ("apply", None) => (Action::Apply(None), "Applying every stage."),
        ("apply", Some(_)) => (Action::Apply(stage), "Applying the stage."),
        ("abort", None) => (Action::Abort(None), "Aborting the strategy."),
        ("abort", Some(_)) => (Action::Abort(stage), "Aborting the stage."),
        ("delete", _) => {
            let result = web.service.delete_strategy(false).await;
            return strategy_outcome(&web, &session, &action, result, "Strategy deleted.");
        }
        (other, _) => {
            web.sessions.flash(
                &session,
                Flash::new(Level::Error, format!("Unknown strategy action {other:?}.")),
            );
            return see_other("/orchestration");
        }
    };
    let result = web.service.strategy_action(act).await.map(drop);
    strategy_outcome(&web, &session, &action, result, done)
}

/// The outcome of a strategy action, shown on the orchestration page.
fn strategy_outcome(
    web: &super::Web,
    session: &super::session::SessionRef,
    action: &str,
    result: Result<(), crate::service::ServiceError>,
    done: &str,
) -> Response {
    match result {
        Ok(()) => {
            tracing::info!(target: "audit", "dashboard: {} strategy {}", session.operator.name, log_text(action));
            web.sessions
                .flash(session, Flash::new(Level::Info, done.into()));
        }
        Err(e) => web.sessions.flash(session, error_flash(&e)),
    }
    see_other("/orchestration")
}

// ---- templates ----

fn precheck_view(
    precheck: &crate::service::Precheck,
    restrictions: orchestrator::AlarmRestrictions,
) -> Markup {
    html! {
        h1 { "Precheck" }
        p id="precheck-result" data-result=(precheck.result.as_str()) {
            "Result: " strong { (precheck.result.as_str()) }
            " (" (restrictions.as_str()) " alarm restrictions). "
            a href="/orchestration/precheck" { "Run again" } " · "
            a href="/orchestration/precheck?alarm-restrictions=relaxed" { "Relaxed" } " · "
            a href="/orchestration" { "Back to the strategy" }
        }
        table.list id="precheck" {
            thead { tr { th { "Check" } th { "Result" } th { "Details" } th { "What to do" } } }
            tbody {
                @for c in &precheck.checks {
                    tr data-check=(c.check) data-result=(c.result.as_str()) {
                        td { (c.check) }
                        td.state { (c.result.as_str()) }
                        td { (c.detail) }
                        td { (c.fix) }
                    }
                }
            }
        }
    }
}

fn percent_bar(id: Option<String>, pct: u64) -> Markup {
    html! {
        span.bar {
            progress id=[id] max="100" value=(pct.min(100)) {}
            " " (pct) "%"
        }
    }
}

fn orchestration(strategy: Option<&Strategy>, plan: Option<&Plan>, csrf: &str) -> Markup {
    html! {
        h1 { "Patch Orchestration" }
        @if let Some(plan) = plan { (dry_run(plan)) }
        section id="strategy-live" data-live {
            @match strategy {
                None => p.empty id="no-strategy" { "No patch strategy exists. Create one below." },
                Some(s) => (strategy_view(s, csrf)),
            }
        }
        @if strategy.is_none() { (create_form(csrf)) }
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
                (select("alarm-restrictions", "Alarm Restrictions", &["strict", "relaxed", "baseline"], "strict"))
                label for="alarm-stale-after" { "Ignore Alarms Unchanged For (seconds, optional)" }
                input type="number" name="alarm-stale-after" id="alarm-stale-after" min="1";
                label for="max-failed-hosts" { "Max Failed Hosts" }
                input type="number" name="max-failed-hosts" id="max-failed-hosts" min="0" value="0";
                label for="canary-hosts" { "Canary Hosts (patched first, then a pause)" }
                input type="number" name="canary-hosts" id="canary-hosts" min="0" value="0";
                label for="canary-soak" { "Canary Soak (seconds; go on by itself if healthy)" }
                input type="number" name="canary-soak" id="canary-soak" min="1";
                label for="soak-seconds" { "Health Soak (seconds each host's checks must keep passing)" }
                input type="number" name="soak-seconds" id="soak-seconds" min="1";
                label for="force" { "Create despite precheck warnings" }
                input type="checkbox" name="force" id="force" value="1";
                p { a href="/orchestration/precheck" id="run-precheck" { "Run the precheck" } " — every strategy is created only after it." }
                div.buttons {
                    button type="submit" id="create" { "Create Strategy" }
                    button type="submit" name="dry-run" value="1" id="dry-run" { "Dry Run (plan only)" }
                }
            }
        }
    }
}

fn dry_run(plan: &Plan) -> Markup {
    let (least, most) = plan.predicted_duration();
    html! {
        section.panel id="dry-run-plan" {
            h2 { "Dry run: " (plan.stages.len()) " stages" }
            p { "Predicted duration: " (minutes(least)) " to " (minutes(most)) ". Nothing was stored." }
            ol {
                @for s in &plan.stages {
                    li { (s.name) ": " (s.steps.len()) " steps"
                        @let hosts = s.hosts();
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

fn strategy_view(s: &Strategy, csrf: &str) -> Markup {
    let refused =
        |check: Result<(), orchestrator::ActionRefused>| check.err().map(|e| e.to_string());
    let apply_refused = refused(s.check_apply(None));
    let abort_refused = refused(s.check_abort(None));
    let delete_refused = refused(s.check_delete(false));
    let o = &s.options;
    let state = s.state.as_str();
    let phases = [&s.build_phase, &s.apply_phase, &s.abort_phase];
    html! {
        table.fields id="strategy" data-state=(state) {
            tr { th { "Strategy UUID" } td { (s.uuid) } }
            tr { th { "Controller Apply Type" } td { (o.controller_apply_type.as_str()) } }
            tr { th { "Storage Apply Type" } td { (o.storage_apply_type.as_str()) } }
            tr { th { "Worker Apply Type" } td { (o.worker_apply_type.as_str()) } }
            @if o.worker_apply_type == orchestrator::ApplyType::Parallel {
                tr { th { "Max Parallel Worker Hosts" } td { (o.max_parallel_worker_hosts) } }
            }
            tr { th { "Default Instance Action" } td { (o.default_instance_action.as_str()) } }
            tr { th { "Alarm Restrictions" } td { (o.alarm_restrictions.as_str()) } }
            tr { th { "Max Failed Hosts" } td { (o.max_failed_hosts) } }
            @if let Some(secs) = o.alarm_stale_after_secs {
                tr { th { "Ignore Alarms Unchanged For" } td { (secs) " s" } }
            }
            @if let Some(preview) = s.abort_preview() {
                tr id="abort-preview" {
                    th { "Abort Now Would" }
                    td {
                        @if let Some(why) = &preview.refused { "not be accepted: " (why) }
                        @else {
                            @if let Some(step) = &preview.waits_for { "wait for " (step) " to finish, then " }
                            @if preview.undoes.is_empty() { "undo nothing (nothing to undo)" }
                            @else { "run " (preview.undoes.join("; ")) }
                        }
                    }
                }
            }
            @if let Some(canary) = s.canary_state() {
                tr { th { "Canary Hosts" } td { (o.canary_hosts)
                    @if let Some(soak) = o.canary_soak_secs { " (soak " (soak) " s)" } } }
                tr id="canary-state" data-canary=(canary) { th { "Canary State" } td { (canary) } }
            }
            tr { th { "Current Phase" } td { (s.current_phase.as_str()) } }
            tr { th { "Current Phase Completion" } td { (percent_bar(Some("strategy-progress".into()), s.completion_percentage())) } }
            tr { th { "State" } td id="strategy-state" { (state) } }
            @for p in phases {
                @if !p.reason.is_empty() {
                    tr { th { (p.name.as_str()) "-phase reason" } td.error { (p.reason) } }
                }
            }
        }
        div.actions id="strategy-actions" {
            (action_button("/orchestration/action/apply", "Apply All", csrf, &[], apply_refused.as_deref(), Some("Apply every stage?")))
            (action_button("/orchestration/action/abort", "Abort", csrf, &[], abort_refused.as_deref(), Some("Abort the strategy? The running step finishes first.")))
            (action_button("/orchestration/action/delete", "Delete", csrf, &[], delete_refused.as_deref(), Some("Delete the strategy?")))
        }
        @for p in phases {
            @if !p.stages.is_empty() { (phase_view(s, p, csrf)) }
        }
    }
}

fn phase_view(s: &Strategy, p: &Phase, csrf: &str) -> Markup {
    let name = format!("{}-phase", p.name.as_str());
    let is_apply = std::ptr::eq(p, &s.apply_phase);
    html! {
        section.phase id=(name) {
            h2 {
                (p.name.as_str()) " phase: " span.result { (p.result.as_str()) }
                " " (percent_bar(None, p.completion_percentage()))
            }
            @for st in &p.stages {
                details.stage open[st.inprogress] id={(name) "-stage-" (st.id)} {
                    summary {
                        "Stage " (st.id) ": " (st.name) " — " span.result { (st.result.as_str()) }
                        " " (percent_bar(None, stage_percentage(st)))
                        @if !st.reason.is_empty() { " " span.error { (st.reason) } }
                    }
                    @if is_apply {
                        @let refused = s.check_apply(Some(st.id)).err().map(|e| e.to_string());
                        (action_button("/orchestration/action/apply", "Apply Stage", csrf, &[("stage-id", &st.id.to_string())], refused.as_deref(), None))
                    }
                    table.grid.steps {
                        thead { tr { th { "Step" } th { "Name" } th { "Entities" } th { "Result" } th { "Reason" } th { "Started" } th { "Ended" } } }
                        tbody {
                            @for step in &st.steps {
                                tr {
                                    td { (step.id) }
                                    td { (step.name()) }
                                    td { (step.entity_names.join(", ")) }
                                    td { (step.result.as_str()) }
                                    td { (step.reason) }
                                    td { (step.start_date_time) }
                                    td { (step.end_date_time) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A stage's finished steps, percent.
fn stage_percentage(st: &Stage) -> u64 {
    if st.steps.is_empty() {
        0
    } else if st.result == orchestrator::StepResult::Success {
        100
    } else {
        (st.current_step.min(st.steps.len()) * 100 / st.steps.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::StrategyState;

    /// A strategy still building can be neither applied, aborted nor deleted; the buttons
    /// say why in the strategy's own words.
    #[test]
    fn buttons_are_greyed_by_the_strategys_own_rules() {
        let mut s = Strategy::new(
            orchestrator::StrategyOptions::default(),
            orchestrator::Timing::default(),
            false,
            Vec::new(),
        );
        s.start_build(0);
        assert_eq!(s.state, StrategyState::Building);
        let page = strategy_view(&s, "tok").into_string();
        assert!(
            page.contains("disabled title=\"strategy is being built, can&#39;t delete\"")
                || page.contains("disabled title=\"strategy is being built, can't delete\""),
            "{page}"
        );
        assert!(
            page.contains("disabled title=\"apply not inprogress\""),
            "{page}"
        );
    }
}
