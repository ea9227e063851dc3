//! The Patches pages: the list with the upload form, one patch's details, and the commit's
//! confirmation; their buttons call the service and show its answer.

use axum::extract::{FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::{Markup, html};
use patch_store::CommitPlan;

use super::layout::{Page, action_button, url_encode};
use super::login::Posted;
use super::session::{self, Flash, Level, SessionRef};
use super::{Shared, Web, login, outcome_flashes, see_other, session_or_login};
use crate::http::log_text;
use crate::service::{PatchView, RemoveOptions, ServiceError};

pub(super) async fn patches_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let all = web.service.patches();
    let list: Vec<PatchView<'_>> = all.iter().collect();
    let body = patches(&list, &session.csrf, web.service.config().max_upload_bytes);
    web.render(&headers, &session, Page::Patches, body)
}

pub(super) async fn patch_page(
    State(web): Shared,
    headers: HeaderMap,
    uri: Uri,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let session = session_or_login!(web, headers, uri);
    if patch_format::validate_patch_id(&id).is_err() {
        let body =
            super::layout::message_page("No such patch", &format!("{id:?} is not a patch id."));
        return web.render_status(
            &headers,
            StatusCode::NOT_FOUND,
            &session,
            Page::Patches,
            body,
        );
    }
    // Which patches require this one (the store's words, one per line).
    let required_by = match web.service.what_requires(vec![id.clone()]).await {
        Ok(outcome) => outcome.info.join("\n"),
        Err(_) => String::new(),
    };
    let all = web.service.patches();
    let body = match all.get(&id) {
        Ok(p) => patch_details(p, &required_by, &session.csrf),
        Err(e) => unknown_patch(&id, &e),
    };
    web.render(&headers, &session, Page::Patches, body)
}

pub(super) async fn patch_action(
    State(web): Shared,
    UrlPath(action): UrlPath<String>,
    Posted { session, form }: Posted,
) -> Response {
    let ids = form.all("id");
    let back = form
        .get("back")
        .filter(|b| b.starts_with("/patches"))
        .unwrap_or("/patches")
        .to_owned();
    if !matches!(action.as_str(), "apply" | "remove" | "delete") {
        web.sessions.flash(
            &session,
            Flash::new(Level::Error, format!("Unknown patch action {action:?}.")),
        );
        return see_other("/patches");
    }
    if ids.is_empty() {
        web.sessions.flash(
            &session,
            Flash::new(Level::Error, format!("Choose a patch to {action}.")),
        );
        return see_other(&back);
    }
    let service = &web.service;
    let result = match action.as_str() {
        "apply" => service.apply(ids.clone(), false, false).await,
        "remove" => service.remove(ids.clone(), RemoveOptions::default()).await,
        _ => service.delete(ids.clone()).await,
    };
    tracing::info!(target: "audit", "dashboard: {} {} {}", session.operator.name, log_text(&action), log_text(&ids.join(" ")));
    web.sessions.flash_all(&session, outcome_flashes(result));
    // A deleted patch has no details page to go back to.
    if action == "delete" {
        return see_other("/patches");
    }
    see_other(&back)
}

fn no_patches_to_commit(web: &Web, session: &SessionRef) -> Response {
    web.sessions.flash(
        session,
        Flash::new(Level::Error, "Choose the patches to commit.".into()),
    );
    see_other("/patches")
}

/// The commit's dry run: what it would commit and free, with the button that does it.
pub(super) async fn commit_page(State(web): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let session = session_or_login!(web, headers, uri);
    let pairs = crate::http::parse_query(uri.query().unwrap_or("")).unwrap_or_default();
    let ids: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .collect();
    if ids.is_empty() {
        return no_patches_to_commit(&web, &session);
    }
    let plan = web.service.commit_plan(ids.clone()).await;
    let body = commit_confirm(&ids, plan, &session.csrf);
    web.render(&headers, &session, Page::Patches, body)
}

pub(super) async fn commit(State(web): Shared, Posted { session, form }: Posted) -> Response {
    let ids = form.all("id");
    if ids.is_empty() {
        return no_patches_to_commit(&web, &session);
    }
    let result = web.service.commit(ids.clone()).await;
    tracing::info!(target: "audit", "dashboard: {} commit {}", session.operator.name, log_text(&ids.join(" ")));
    web.sessions.flash_all(&session, outcome_flashes(result));
    see_other("/patches")
}

/// Upload: a multipart form whose first field is the CSRF token, then one or more `file`
/// fields, each streamed into the verifying importer as it arrives.
pub(super) async fn upload(State(web): Shared, headers: HeaderMap, request: Request) -> Response {
    let Some(session) = web.sessions.get(&headers) else {
        return see_other("/login");
    };
    let mut multipart = match Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(e) => return login::bad_form(&format!("the upload is not a multipart form: {e}")),
    };
    // The token comes first (the page's form puts it there), so nothing is read from an
    // unauthenticated form beyond a few bytes.
    let csrf = match multipart.next_field().await {
        Ok(Some(mut field)) if field.name() == Some("csrf") => {
            let mut value = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) if value.len() + chunk.len() <= 256 => {
                        value.extend_from_slice(&chunk)
                    }
                    Ok(None) => break,
                    _ => return login::forbidden_csrf(),
                }
            }
            String::from_utf8(value).unwrap_or_default()
        }
        _ => return login::forbidden_csrf(),
    };
    if !session::same_secret(&csrf, &session.csrf) {
        tracing::warn!(target: "audit", "dashboard upload refused: bad CSRF token");
        return login::forbidden_csrf();
    }
    if !session.operator.may_mutate() {
        tracing::warn!(target: "audit", "dashboard: {} upload refused (reader)", session.operator.name);
        return login::reader_refused(&session.operator);
    }
    // Uploads stream straight into the store: only on the active controller of a pair.
    if let Some((message, _)) = web.service.not_active(|u| u.web.clone()) {
        web.sessions
            .flash(&session, Flash::new(Level::Error, message));
        if headers.contains_key("x-dashboard-upload") {
            return (StatusCode::OK, "refused").into_response();
        }
        return see_other("/patches");
    }
    let mut flashes = Vec::new();
    let mut files = 0;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                flashes.push(Flash::new(
                    Level::Error,
                    format!("The upload was cut short: {e}"),
                ));
                break;
            }
        };
        if field.name() != Some("file") {
            continue;
        }
        let name = field
            .file_name()
            .map(crate::service::basename)
            .unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        files += 1;
        let stream = field.map(|chunk| chunk.map_err(std::io::Error::other));
        match web.service.upload(stream, name.clone(), None).await {
            Ok(outcome) => {
                for line in outcome.info {
                    flashes.push(Flash::new(Level::Info, line));
                }
                for line in outcome.warning {
                    flashes.push(Flash::new(Level::Warning, line));
                }
            }
            Err(e) => {
                if !e.is_refusal() {
                    tracing::error!("dashboard upload of {name}: {e}");
                }
                flashes.push(Flash::new(Level::Error, format!("{name}: {e}")));
            }
        }
    }
    if files == 0 {
        flashes.push(Flash::new(
            Level::Error,
            "Choose a patch file (.patch) to upload.".into(),
        ));
    }
    tracing::info!(target: "audit", "dashboard: {} upload of {files} file(s)", session.operator.name);
    web.sessions.flash_all(&session, flashes);
    // The page's script shows progress and then loads the patches page itself; a redirect
    // it followed would show the messages to the script instead of the operator.
    if headers.contains_key("x-dashboard-upload") {
        return (StatusCode::OK, "uploaded").into_response();
    }
    see_other("/patches")
}

// ---- templates ----

fn patches(list: &[PatchView<'_>], csrf: &str, max_upload: u64) -> Markup {
    let commit_all = list
        .iter()
        .filter(|p| p.committable())
        .map(|p| format!("id={}", url_encode(p.id())))
        .collect::<Vec<_>>()
        .join("&");
    // As `sw-patch query`: the repo state shows when no host has reported a patch state.
    let show_repo = list
        .iter()
        .any(|p| p.state == host_state::PatchState::NotApplicable);
    html! {
        h1 { "Patches" }
        section id="patches-live" data-live {
            @if list.is_empty() {
                p.empty id="no-patches" { "No patches are uploaded. Upload a .patch file below." }
            } @else {
                table.grid id="patches" {
                    thead { tr {
                        th { "Patch ID" } th { "RR" } th { "Release" }
                        @if show_repo { th { "Repo State" } }
                        th { "Patch State" } th { "Summary" } th { "Actions" }
                    } }
                    tbody {
                        @for p in list {
                            @let id = p.id();
                            @let m = &p.record.metadata;
                            tr id={"patch-" (id)} data-state=(p.state.as_str()) {
                                td { a href={"/patches/show/" (url_encode(id))} { (id) } }
                                td { (yn(m.reboot_required)) }
                                td { (m.sw_version) }
                                @if show_repo { td.repo { (p.record.repo_state.as_str()) } }
                                td.state { (p.state.as_str()) }
                                td { (m.summary) }
                                td.actions { (patch_actions(p, csrf, "/patches")) }
                            }
                        }
                    }
                }
            }
            @if !commit_all.is_empty() {
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

/// `Y` or `N`, as the original's metadata says it.
fn yn(b: bool) -> &'static str {
    if b { "Y" } else { "N" }
}

fn patch_actions(p: &PatchView<'_>, csrf: &str, back: &str) -> Markup {
    let id = p.id();
    let fields = [("id", id), ("back", back)];
    html! {
        (action_button("/patches/action/apply", "Apply", csrf, &fields, p.apply_refusal(), None))
        (action_button("/patches/action/remove", "Remove", csrf, &fields, p.remove_refusal(), Some("Remove this patch?")))
        (action_button("/patches/action/delete", "Delete", csrf, &fields, p.delete_refusal(), Some("Delete this patch from the controller?")))
        @if p.committable() {
            a.button href={"/patches/commit?id=" (url_encode(id))} data-action="Commit" { "Commit…" }
        }
    }
}

fn unknown_patch(id: &str, e: &ServiceError) -> Markup {
    html! {
        h1 { (id) }
        div.flash.error role="alert" { (e) }
        p { a href="/patches" { "Back to the patches" } }
    }
}

fn patch_details(p: PatchView<'_>, required_by: &str, csrf: &str) -> Markup {
    let id = p.id();
    let m = &p.record.metadata;
    let back = format!("/patches/show/{}", url_encode(id));
    let join = |set: &std::collections::BTreeSet<String>| {
        set.iter().cloned().collect::<Vec<_>>().join("\n")
    };
    let texts = [
        (&m.summary, "Summary"),
        (&m.description, "Description"),
        (&m.install_instructions, "Install Instr"),
        (&m.warnings, "Warnings"),
    ];
    html! {
        h1 { (id) }
        section id="patch-live" data-live {
            table.fields id="patch-details" {
                tr { th { "Release" } td { (m.sw_version) } }
                tr { th { "Patch State" } td id="patch-state" { (p.state.as_str()) } }
                tr { th { "Repo State" } td { (p.record.repo_state.as_str()) } }
                tr { th { "Status" } td { (m.status.as_str()) } }
                tr { th { "Unremovable" } td { (yn(m.unremovable)) } }
                tr { th { "RR" } td { (yn(m.reboot_required)) } }
                tr { th { "Apply Active Release Only" } td { (yn(m.apply_active_release_only)) } }
                @for (text, label) in texts {
                    @if !text.is_empty() { tr { th { (label) } td.pre { (text) } } }
                }
                @if !m.requires.is_empty() { tr { th { "Requires" } td.pre { (join(&m.requires)) } } }
                @if !required_by.trim().is_empty() { tr { th { "Required By" } td.pre { (required_by.trim()) } } }
                @for (personality, packages) in &m.personalities {
                    tr { th { "Packages (" (personality.as_str()) ")" } td.pre { (join(packages)) } }
                }
                @if let Some(script) = &m.restart_script { tr { th { "Restart Script" } td { (script.name) } } }
                tr { th { "Contents" } td.pre { (join(&m.contents)) } }
            }
            div.actions { (patch_actions(&p, csrf, &back)) }
        }
        p { a href="/patches" { "Back to the patches" } }
    }
}

/// The commit's confirmation: the dry run's answer ("would free …") and the button.
fn commit_confirm(ids: &[String], plan: Result<CommitPlan, ServiceError>, csrf: &str) -> Markup {
    let (patches, message) = match &plan {
        Ok(plan) => (
            plan.patches.clone(),
            Flash::new(
                Level::Info,
                format!(
                    "This commit operation would free {:.2} MiB",
                    plan.bytes_freed as f64 / (1024.0 * 1024.0)
                ),
            ),
        ),
        Err(e) => (Vec::new(), super::error_flash(e)),
    };
    let refused = plan.is_err();
    html! {
        h1 { "Commit patches" }
        div class={"flash " (message.level.class())} role="alert" id=[(!refused).then_some("commit-plan")] { (message.text) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use host_state::PatchState;
    use patch_format::PatchMetadata;
    use patch_store::{PatchRecord, RepoState};

    fn record(id: &str, repo_state: RepoState) -> PatchRecord {
        PatchRecord {
            metadata: PatchMetadata::new(id, "19.01"),
            repo_state,
            packages: Vec::new(),
        }
    }

    #[test]
    fn values_are_escaped() {
        let mut r = record("P<1>", RepoState::Available);
        r.metadata.summary = "<script>alert(1)</script>".into();
        let list = [PatchView {
            record: &r,
            state: PatchState::Available,
        }];
        let page = patches(&list, "tok", 1 << 30).into_string();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("/patches/show/P%3C1%3E"));
    }

    #[test]
    fn refused_actions_are_greyed_with_the_reason() {
        let mut r = record("P1", RepoState::Applied);
        r.metadata.unremovable = true;
        let list = [PatchView {
            record: &r,
            state: PatchState::PartialApply,
        }];
        let page = patches(&list, "tok", 1 << 30).into_string();
        assert!(page.contains("disabled title=\"This patch is unremovable.\""));
        assert!(page.contains("disabled title=\"Already applied.\""));
        assert!(
            !page.contains("Commit…"),
            "only fully applied patches commit"
        );
    }
}
