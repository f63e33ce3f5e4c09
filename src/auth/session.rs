//! A device's session: which user owns the device id, and the token generation its
//! access tokens are checked against on every request (`check_access`, one query).
//!
//! - Ending a device's tokens (`end_device_tokens`: a replayed refresh token) draws a
//!   new generation, so its access tokens fail at their next request, and deletes its
//!   refresh tokens. `end_user_tokens` does it for every device of a user (disabled,
//!   new password).
//! - Releasing a device (`release`: the owner's logout, `nas-sync device release`)
//!   forgets it: owner, tokens and sync state (cursor, counts, push answers, BridgeCore
//!   positions and local ids), so whoever logs in with the id next starts fresh. A
//!   revoked device is never released: it stays revoked.
//!
//! Every ending closes the device's WebSockets (channel `nas_sync_revoke`, reason
//! `SIGNED_OUT`) once its transaction commits.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::Principal;
use super::remembered::{SessionKey, Sessions};
use crate::error::{AppError, AppResult};

/// How a request's session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    /// Checked in PostgreSQL for this request.
    Checked,
    /// Remembered from a recent check (`auth::remembered`): good for an answer from
    /// memory only; check it before reading or writing anything.
    Remembered,
}

impl Session {
    /// Checks a remembered session now (once); a checked one passes as it is.
    pub async fn ensure(
        &mut self,
        pool: &PgPool,
        sessions: &Sessions,
        who: &Principal,
    ) -> AppResult<()> {
        if *self == Session::Remembered {
            check_access(pool, sessions, who.into()).await?;
            *self = Session::Checked;
        }
        Ok(())
    }
}

/// Checks a session against its device: still owned by the token's user, not
/// revoked, the user not disabled, the token's generation still current. A session that
/// passes is remembered in `sessions` (`auth::remembered`).
pub async fn check_access(
    pool: &PgPool,
    sessions: &Sessions,
    key: SessionKey<'_>,
) -> AppResult<()> {
    let ticket = sessions.ticket();
    let row: Option<(bool, Uuid, i64, bool)> = sqlx::query_as(
        "SELECT d.revoked_at IS NOT NULL, d.user_id, d.token_generation, u.disabled_at IS NOT NULL
         FROM devices d JOIN users u ON u.id = d.user_id
         WHERE d.tenant_id = $1 AND d.device_id = $2",
    )
    .bind(key.tenant)
    .bind(key.device_id)
    .fetch_optional(pool)
    .await?;
    match row {
        Some((true, ..)) => Err(AppError::DeviceRevoked),
        Some((false, owner, generation, disabled)) if owner == key.user => {
            if disabled {
                Err(AppError::UserDisabled)
            } else if generation != key.generation {
                Err(ended())
            } else {
                sessions.checked(ticket, key);
                Ok(())
            }
        }
        // Released, or owned by someone else since.
        _ => Err(ended()),
    }
}

/// The answer to a token that was ended.
fn ended() -> AppError {
    AppError::Unauthorized(
        "The session of this device has ended (signed out, released, or its tokens were ended); log in again."
            .into(),
    )
}

/// Closes the device's WebSockets, in every server process, when `conn`'s transaction
/// commits.
async fn close_sockets(conn: &mut PgConnection, tenant: &str, device_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT pg_notify('nas_sync_revoke',
             json_build_object('t', $1::text, 'd', $2::text, 'r', 'SIGNED_OUT')::text)",
    )
    .bind(tenant)
    .bind(device_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends every token of a device, in the caller's transaction: a new generation, its
/// refresh tokens deleted. The device keeps its owner and sync state; its user logs in
/// again. Returns whether the device exists.
pub async fn end_device_tokens(
    conn: &mut PgConnection,
    tenant: &str,
    device_id: &str,
) -> sqlx::Result<bool> {
    // The row lock taken here orders this after any refresh holding the device.
    let found = sqlx::query(
        "UPDATE devices SET token_generation = nextval('device_token_generation')
         WHERE tenant_id = $1 AND device_id = $2",
    )
    .bind(tenant)
    .bind(device_id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    sqlx::query("DELETE FROM refresh_tokens WHERE tenant_id = $1 AND device_id = $2")
        .bind(tenant)
        .bind(device_id)
        .execute(&mut *conn)
        .await?;
    if found {
        close_sockets(conn, tenant, device_id).await?;
    }
    Ok(found)
}

/// Ends every token of every device of a user, its admin console sessions and its
/// BridgeCore tenant sessions, in the
/// caller's transaction.
pub async fn end_user_tokens(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    let devices: Vec<(String, String)> = sqlx::query_as(
        "UPDATE devices SET token_generation = nextval('device_token_generation')
         WHERE user_id = $1 RETURNING tenant_id, device_id",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    // The user's admin console sessions and BridgeCore tenant sessions end too.
    sqlx::query("DELETE FROM admin_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE user_sessions SET ended_at = now() WHERE user_id = $1 AND ended_at IS NULL",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    for (tenant, device_id) in &devices {
        close_sockets(conn, tenant, device_id).await?;
    }
    Ok(())
}

/// What `release` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The device is forgotten; its id is free.
    Done,
    /// No such device in that tenant.
    Unknown,
    /// The device is revoked and stays so.
    Revoked,
}

/// Releases a device (the operator's `device release`): see the module comment.
pub async fn release(pool: &PgPool, tenant: &str, device_id: &str) -> sqlx::Result<Released> {
    let mut tx = pool.begin().await?;
    let released = forget(&mut tx, tenant, device_id, None).await?;
    tx.commit().await?;
    if released == Released::Done {
        tracing::warn!(tenant, device_id, "device released");
    }
    Ok(released)
}

/// Signs the caller out (`POST /api/v1/auth/logout`): releases its device, if the
/// access token is still the device's current one.
pub async fn logout(pool: &PgPool, who: &Principal) -> AppResult<()> {
    let mut tx = pool.begin().await?;
    match forget(&mut tx, &who.tenant, &who.device_id, Some(who)).await? {
        Released::Done => {}
        Released::Revoked => return Err(AppError::DeviceRevoked),
        // Ended by something that committed since this request was checked.
        Released::Unknown => return Err(ended()),
    }
    tx.commit().await?;
    tracing::info!(username = %who.username, tenant = %who.tenant, device_id = %who.device_id, "logout");
    Ok(())
}

/// Deletes the device (its refresh tokens go with it) and its sync state, in `tx`;
/// with `owner`, only while the device is still that caller's, at its generation.
async fn forget(
    tx: &mut PgConnection,
    tenant: &str,
    device_id: &str,
    owner: Option<&Principal>,
) -> sqlx::Result<Released> {
    // First, so that a push or refresh holding the device row finishes before the
    // state below is read, and one starting later finds no device.
    let deleted = sqlx::query(
        "DELETE FROM devices
         WHERE tenant_id = $1 AND device_id = $2 AND revoked_at IS NULL
           AND ($3::uuid IS NULL OR (user_id = $3 AND token_generation = $4))",
    )
    .bind(tenant)
    .bind(device_id)
    .bind(owner.map(|p| p.user_id))
    .bind(owner.map(|p| p.generation))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if !deleted {
        let revoked: Option<bool> = sqlx::query_scalar(
            "SELECT revoked_at IS NOT NULL FROM devices WHERE tenant_id = $1 AND device_id = $2",
        )
        .bind(tenant)
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        return Ok(match revoked {
            Some(true) => Released::Revoked,
            _ => Released::Unknown,
        });
    }
    // The push answers, BridgeCore positions and local ids of the old owner: a new
    // owner's push_id or local_id must never meet them.
    for sql in [
        "DELETE FROM push_log WHERE tenant_id = $1 AND device_id = $2",
        "DELETE FROM offline_sync_state WHERE tenant_id = $1 AND device_id = $2",
        "DELETE FROM offline_local_ids WHERE tenant_id = $1 AND device_id = $2",
    ] {
        sqlx::query(sql)
            .bind(tenant)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
    }
    close_sockets(tx, tenant, device_id).await?;
    Ok(Released::Done)
}
