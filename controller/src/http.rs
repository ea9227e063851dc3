//! Helpers every HTTP adapter shares: the JSON answer, and a controller pair's two rules for
//! mutations — refused (redirected) on a controller that is not active, and answered only
//! once the standby holds the change.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::ha::Urls;
use crate::state::App;

/// A 200 answer with a JSON body.
pub(crate) fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// Waits until the standby holds every change made so far (at once without a pair): what a
/// mutating call does before it answers. `Err` says in words why the change is not on both.
pub(crate) async fn replicated(app: &App) -> Result<(), String> {
    let Some(ha) = app.ha.clone() else {
        return Ok(());
    };
    match tokio::task::spawn_blocking(move || ha.barrier()).await {
        Ok(result) => result,
        Err(e) => Err(format!("replication task failed: {e}")),
    }
}

/// The answer to a mutation sent to a controller that is not active: `307` to the same path
/// on the active one (clients that follow redirects just work; `X-Stx-Active-Url` names it
/// for those that pick their next URL themselves), or `503` when the active one is unknown.
/// The body says it in words: an `Error message:` line, or a fault body when `fault`.
pub(crate) fn not_active_response(
    app: &App,
    pick: fn(&Urls) -> Option<String>,
    uri: &axum::http::Uri,
    fault: bool,
) -> Option<axum::response::Response> {
    use axum::http::header;
    let (message, base) = app.ha.as_ref()?.not_active(pick)?;
    let body = if fault {
        serde_json::json!({"faultcode": "Client", "faultstring": message, "debuginfo": null})
            .to_string()
    } else {
        format!("Error message: {message}\n")
    };
    let content_type = if fault {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = match &base {
        Some(base) => {
            let location = format!(
                "{}{}",
                base.trim_end_matches('/'),
                uri.path_and_query().map_or("/", |p| p.as_str())
            );
            (
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, location),
                    (header::CONTENT_TYPE, content_type.into()),
                ],
                body,
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
    };
    if let Some(base) = base
        && let Ok(v) = axum::http::HeaderValue::from_str(&base)
    {
        response.headers_mut().insert("x-stx-active-url", v);
    }
    Some(response)
}
