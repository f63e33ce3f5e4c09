//! Console sessions: a random token in an HttpOnly, SameSite=Strict cookie (Secure
//! behind HTTPS), its SHA-256 kept server-side in `admin_sessions` with the session's
//! CSRF token, a one-shot message for the next page, and an expiry. Every request
//! checks, in one query, that the session is current and its user a manager who is
//! not disabled; disabling a user or changing its password ends its sessions
//! (`auth::session::end_user_tokens`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::users::User;
use crate::auth::{Principal, Role};
use crate::config::Config;
use crate::state::AppState;

/// The session cookie.
pub const COOKIE: &str = "nas_sync_admin";
/// The sign-in form's CSRF cookie (double submit: there is no session yet).
pub const PRE_COOKIE: &str = "nas_sync_admin_signin";
/// The device id console actions are recorded under (e.g. a conflict's `resolved_by`).
/// Not a valid device id (it has a space), so no device can ever be given it: a device
/// that took the console's name made "Revoke" of itself refuse as "the device you are
/// using".
pub const CONSOLE_DEVICE: &str = "admin console";

/// A signed-in manager.
#[derive(Clone, Debug)]
pub struct Console {
    /// The manager, as the domains take a caller.
    pub who: Principal,
    /// The session's CSRF token: every form sends it back.
    pub csrf: String,
    /// A message left by the previous action, shown once.
    pub flash: Option<String>,
    token_hash: Vec<u8>,
}

/// A new random token (cookie values, CSRF tokens).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

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
/// cookie's value. Expired sessions and old activity counts are swept here.
pub async fn create(pool: &PgPool, config: &Config, user: &User) -> sqlx::Result<String> {
    let token = random_token();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM admin_sessions WHERE expires_at < now()")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sync_activity WHERE hour < now() - interval '14 days'")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO admin_sessions (token_hash, user_id, csrf, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(hash(&token))
    .bind(user.id)
    .bind(random_token())
    .bind(config.admin_session_ttl.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(username = %user.username, tenant = %user.tenant_id, "admin console sign-in");
    Ok(token)
}

/// Ends the session.
pub async fn end(pool: &PgPool, console: &Console) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
        .bind(&console.token_hash)
        .execute(pool)
        .await?;
    tracing::info!(username = %console.who.username, "admin console sign-out");
    Ok(())
}

/// Leaves a message for the session's next page.
pub async fn flash(pool: &PgPool, console: &Console, message: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE admin_sessions SET flash = $2 WHERE token_hash = $1")
        .bind(&console.token_hash)
        .bind(message)
        .execute(pool)
        .await?;
    Ok(())
}

/// The manager, session id, CSRF token and message of a current session.
type Row = (
    Uuid,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
);

async fn load(pool: &PgPool, token: &str, take_flash: bool) -> sqlx::Result<Option<Console>> {
    let token_hash = hash(token);
    // One statement: the session and its user, and the message taken on a page view.
    let row: Option<Row> = sqlx::query_as(
        "WITH s AS (
             SELECT s.token_hash, s.flash FROM admin_sessions s
             WHERE s.token_hash = $1 AND s.expires_at > now() FOR UPDATE),
         taken AS (
             UPDATE admin_sessions a SET flash = NULL FROM s
             WHERE $2 AND a.token_hash = s.token_hash AND s.flash IS NOT NULL)
         SELECT u.id, u.username, u.tenant_id, u.store_id, a.csrf, s.flash,
                extract(epoch FROM a.expires_at)::bigint
         FROM s JOIN admin_sessions a ON a.token_hash = s.token_hash
                JOIN users u ON u.id = a.user_id
         WHERE u.disabled_at IS NULL AND u.role = 'manager'",
    )
    .bind(&token_hash)
    .bind(take_flash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(user_id, username, tenant, store_id, csrf, flash, expires_at)| Console {
            who: Principal {
                user_id,
                username,
                tenant,
                role: Role::Manager,
                store_id,
                device_id: CONSOLE_DEVICE.to_string(),
                generation: 0,
                expires_at,
            },
            csrf,
            flash: if take_flash { flash } else { None },
            token_hash,
        },
    ))
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
        match load(&state.pool, &token, take_flash).await {
            Ok(Some(console)) => Ok(console),
            Ok(None) => Err(SignIn.into_response()),
            Err(e) => Err(crate::error::AppError::from(e).into_response()),
        }
    }
}
