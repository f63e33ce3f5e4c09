//! The admin console at `/admin` (docs/contract.md §10): server-rendered HTML
//! (`maud`), one stylesheet compiled into the binary, no script. Managers sign in with
//! their API password (same login limits); pages call the same services as the API
//! routes (`auth::manage`, `sync::conflicts`, `odoo::connections`).
//!
//! - `session`: the session cookie and the signed-in manager (`Console`);
//! - `csrf`: CSRF tokens, the `Origin` check and the security headers;
//! - `layout`: the page shell and navigation;
//! - `pages`: one file per page.

pub mod csrf;
pub mod layout;
pub mod pages;
pub mod session;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// Where the stylesheet is served (its name changes with the version, so it may be
/// cached for long).
pub const CSS_PATH: &str = concat!("/admin/assets/admin-", env!("CARGO_PKG_VERSION"), ".css");
const CSS: &str = include_str!("assets/admin.css");

/// The console's routes, behind the cross-site guard and the security headers.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(pages::overview::page))
        .route("/admin/", get(pages::overview::page))
        .route(
            "/admin/login",
            get(pages::login::form).post(pages::login::submit),
        )
        .route("/admin/logout", post(pages::login::sign_out))
        .route("/admin/devices", get(pages::devices::page))
        .route(
            "/admin/devices/{device_id}/{action}",
            post(pages::devices::act),
        )
        .route(
            "/admin/users",
            get(pages::users::page).post(pages::users::add),
        )
        .route("/admin/users/{username}/{action}", post(pages::users::act))
        .route("/admin/conflicts", get(pages::conflicts::page))
        .route(
            "/admin/conflicts/{id}/resolve",
            post(pages::conflicts::resolve),
        )
        .route("/admin/history", get(pages::history::page))
        .route("/admin/history/export", get(pages::history::export))
        .route("/admin/odoo", get(pages::odoo::page).post(pages::odoo::add))
        .route("/admin/odoo/{id}/retry", post(pages::odoo::retry))
        .route(CSS_PATH, get(stylesheet))
        .layer(axum::middleware::from_fn(csrf::guard))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::api::middleware::rate_limit,
        ))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
        .into_response()
}

/// A refusal page (a form that could not be read, or without its CSRF token).
pub struct Refused(pub Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// A posted form's fields, in order (a field may repeat).
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// A form body, or the page saying it could not be read.
    pub fn from(
        form: Result<axum::Form<Vec<(String, String)>>, FormRejection>,
    ) -> Result<Fields, Refused> {
        form.map(|axum::Form(f)| Fields(f)).map_err(|e| {
            Refused(Box::new(layout::problem(
                StatusCode::BAD_REQUEST,
                &format!("The form could not be read: {e}"),
            )))
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
