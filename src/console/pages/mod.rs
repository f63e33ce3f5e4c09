//! The console's pages, one file each: sign-in, Overview, Devices, Users, Conflicts,
//! History, Odoo. Handlers check the session (and on POST its CSRF token), call the same
//! services as the API routes, and after an action redirect to the page with a
//! one-shot message (post, redirect, get).

pub mod conflicts;
pub mod devices;
pub mod history;
pub mod login;
pub mod odoo;
pub mod overview;
pub mod users;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{self, Console};
use super::{Fields, Refused, csrf, layout};
use crate::error::AppResult;
use crate::state::AppState;
use axum::extract::rejection::FormRejection;

/// The fields of a signed-in POST, once its CSRF token is checked; `Err` is the
/// refusal page.
pub fn posted(
    console: &Console,
    form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Fields, Refused> {
    let fields = Fields::from(form)?;
    if csrf::matches(&console.csrf, fields.get("csrf")) {
        Ok(fields)
    } else {
        tracing::warn!(username = %console.who.username, "admin console: a form without the right CSRF token was refused");
        Err(Refused(Box::new(csrf::refused())))
    }
}

/// After an action: the outcome as the next page's message, then back to `to`.
pub async fn done(
    state: &AppState,
    console: &Console,
    outcome: AppResult<String>,
    to: &str,
) -> Response {
    let message = match outcome {
        Ok(m) => m,
        Err(e) => {
            if e.status().is_server_error() {
                return failed(&e);
            }
            format!("Not done: {}", e.message())
        }
    };
    if let Err(e) = session::flash(&state.pool, console, &message).await {
        return crate::error::AppError::from(e).into_response();
    }
    Redirect::to(to).into_response()
}

/// A page that failed to load.
pub fn failed(e: &crate::error::AppError) -> Response {
    if e.status().is_server_error() {
        tracing::warn!(error = %e, "admin console page failed");
    }
    layout::problem(
        if e.status().is_server_error() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            e.status()
        },
        &e.message(),
    )
}
