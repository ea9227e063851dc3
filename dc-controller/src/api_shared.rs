//! What the dcmanager API's handlers share: their state and their error answers.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::db::{Db, DbError};
use crate::model::Access;

/// The handlers' state.
#[derive(Clone)]
pub(crate) struct Api {
    /// The database.
    pub(crate) db: Db,
    /// The operators' tokens.
    pub(crate) tokens: Arc<Vec<Vec<u8>>>,
    /// The system controller's own patching API.
    pub(crate) reference: Arc<Access>,
    /// Makes the strategy runner look at once.
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

/// An error answer: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// The answer to a database error: 404, 400 with its reason, else 500.
pub(crate) fn failure(e: DbError) -> Response {
    match e {
        DbError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        DbError::Refused(m) => error(StatusCode::BAD_REQUEST, m),
        e => {
            tracing::error!("{e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}
