//! Console sessions on the web side: a random token in an HttpOnly, SameSite=Strict
//! cookie (Secure behind HTTPS), and the `Console` extractor, which finds the signed-in
//! manager through `auth::console` (where the sessions are stored and checked).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use sqlx::PgPool;

use crate::auth::Principal;
use crate::auth::console;
use crate::auth::users::User;
use crate::config::Config;
use crate::state::AppState;

/// The session cookie.
pub const COOKIE: &str = "nas_sync_admin";
/// The sign-in form's CSRF cookie (double submit: there is no session yet).
pub const PRE_COOKIE: &str = "nas_sync_admin_signin";
pub use crate::auth::console::CONSOLE_DEVICE;

/// A signed-in manager.
#[derive(Clone, Debug)]
pub struct Console {
    /// The manager, as the domains take a caller.
    pub who: Principal,
    /// The session's CSRF token: every form sends it back.
    pub csrf: String,
    /// A message left by the previous action, shown once.
    pub flash: Option<String>,
    session: console::SessionId,
}

pub use crate::auth::console::random_token;

/// A cookie's value from the request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the cookie gets `Secure`: configured, or the request came over HTTPS
/// through a proxy (`X-Forwarded-Proto: https`; a client that lies only makes its own
/// cookie unusable over plain HTTP).
pub fn secure(config: &Config, headers: &HeaderMap) -> bool {
    config.admin_secure_cookie
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for the console's path; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/admin; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Starts a session for `user` (a manager whose password was checked); returns the
/// cookie's value.
pub async fn create(pool: &PgPool, config: &Config, user: &User) -> sqlx::Result<String> {
    console::start(pool, user, config.admin_session_ttl).await
}

/// Ends the session.
pub async fn end(pool: &PgPool, console: &Console) -> sqlx::Result<()> {
    console::end(pool, &console.session).await?;
    tracing::info!(username = %console.who.username, "admin console sign-out");
    Ok(())
}

/// Leaves a message for the session's next page.
pub async fn flash(pool: &PgPool, console: &Console, message: &str) -> sqlx::Result<()> {
    console::flash(pool, &console.session, message).await
}

/// Not signed in (or the session ended): pages go to the sign-in form.
pub struct SignIn;

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        Redirect::to("/admin/login").into_response()
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, COOKIE) else {
            return Err(SignIn.into_response());
        };
        let take_flash = parts.method == Method::GET;
        match console::load(&state.pool, &token, take_flash).await {
            Ok(Some(found)) => Ok(Console {
                who: found.who,
                csrf: found.csrf,
                flash: found.flash,
                session: found.session,
            }),
            Ok(None) => Err(SignIn.into_response()),
            Err(e) => Err(crate::error::AppError::from(e).into_response()),
        }
    }
}
