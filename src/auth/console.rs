//! Console sessions as stored: a random token's SHA-256 in `admin_sessions` with the
//! session's CSRF token, a one-shot message for the next page, and an expiry. Loading
//! one checks, in one query, that the session is current and its user a manager who is
//! not disabled; disabling a user or changing its password ends its sessions
//! (`session::end_user_tokens`). The cookie around it is the console's
//! (`console::session`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::users::User;
use super::{Principal, Role};

/// The device id console actions are recorded under (e.g. a conflict's `resolved_by`).
/// Not a valid device id (it has a space), so no device can ever be given it: a device
/// that took the console's name made "Revoke" of itself refuse as "the device you are
/// using".
pub const CONSOLE_DEVICE: &str = "admin console";

/// A new random token (cookie values, CSRF tokens).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Which stored session (the token's hash; the token itself is only in the cookie).
#[derive(Clone, Debug)]
pub struct SessionId(Vec<u8>);

/// A current session.
#[derive(Clone, Debug)]
pub struct Found {
    /// The manager, as the domains take a caller.
    pub who: Principal,
    pub csrf: String,
    /// The message left for this page, when it was taken.
    pub flash: Option<String>,
    pub session: SessionId,
}

/// Starts a session for `user` (a manager whose password was checked) lasting `ttl`;
/// returns its token. Expired sessions are swept here.
pub async fn start(pool: &PgPool, user: &User, ttl: Duration) -> sqlx::Result<String> {
    let token = random_token();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM admin_sessions WHERE expires_at < now()")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO admin_sessions (token_hash, user_id, csrf, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(hash(&token))
    .bind(user.id)
    .bind(random_token())
    .bind(ttl.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(username = %user.username, tenant = %user.tenant_id, "admin console sign-in");
    Ok(token)
}

/// Ends the session.
pub async fn end(pool: &PgPool, session: &SessionId) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
        .bind(&session.0)
        .execute(pool)
        .await?;
    Ok(())
}

/// Leaves a message for the session's next page.
pub async fn flash(pool: &PgPool, session: &SessionId, message: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE admin_sessions SET flash = $2 WHERE token_hash = $1")
        .bind(&session.0)
        .bind(message)
        .execute(pool)
        .await?;
    Ok(())
}

/// The manager, its CSRF token, message, expiry and Odoo user id.
type Row = (
    Uuid,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    Option<i64>,
);

/// The session of `token`, if current; `take_flash` takes its message (a page view).
pub async fn load(pool: &PgPool, token: &str, take_flash: bool) -> sqlx::Result<Option<Found>> {
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
                extract(epoch FROM a.expires_at)::bigint, u.odoo_user_id
         FROM s JOIN admin_sessions a ON a.token_hash = s.token_hash
                JOIN users u ON u.id = a.user_id
         WHERE u.disabled_at IS NULL AND u.role = 'manager'",
    )
    .bind(&token_hash)
    .bind(take_flash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(user_id, username, tenant, store_id, csrf, flash, expires_at, odoo_user_id)| Found {
            who: Principal {
                user_id,
                username,
                tenant,
                role: Role::Manager,
                store_id,
                device_id: CONSOLE_DEVICE.to_string(),
                generation: 0,
                odoo_user_id,
                expires_at,
            },
            csrf,
            flash: if take_flash { flash } else { None },
            session: SessionId(token_hash),
        },
    ))
}
