//! Odoo connections (docs/contract.md §7): created only after Odoo accepted the
//! credentials, listed, described with their progress, retried and deleted. The API
//! key is stored sealed for the workers and never returned.
//!
//! - `wire`: request bodies, the view routes answer with, value checks.
//! - `stored`: the stored connection, its client, the scheduler's queries.
//! - `keys`: the API key sealed at rest, opened for the client; plain keys sealed at
//!   start.
//! - `create`: checking a new connection with Odoo and preparing its tables.
//! - `manage`: update, delete, retry.
//! - `status`: progress, failures, readiness (`SYNC_NOT_READY`).

mod create;
mod keys;
mod manage;
mod status;
mod stored;
mod wire;

pub use create::create;
pub use keys::{KeyCounts, KeyError, key_counts, seal_stored_keys};
pub use manage::{delete, retry, update};
pub use status::{MirrorReadiness, check_ready, progress, status};
pub use stored::{Connection, all, load, policy};
pub use wire::{ConnectionView, CreateConnection, UpdateConnection};

use uuid::Uuid;

use super::OdooCtx;
use super::fault::OdooError;
use crate::auth::{Principal, Role};
use crate::error::{AppError, AppResult};
use stored::SELECT;

pub(super) fn require_manager(who: &Principal) -> AppResult<()> {
    if who.role != Role::Manager {
        return Err(AppError::Forbidden(
            "Only managers may manage Odoo connections.".into(),
        ));
    }
    Ok(())
}

/// The caller's connection `id`; another tenant's is reported as absent.
pub async fn get(ctx: &OdooCtx, who: &Principal, id: Uuid) -> AppResult<Connection> {
    require_manager(who)?;
    let conn: Option<Connection> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE id = $1 AND tenant_id = $2"
    )))
    .bind(id)
    .bind(&who.tenant)
    .fetch_optional(&ctx.pool)
    .await?;
    conn.ok_or_else(|| AppError::NotFound("No such Odoo connection.".into()))
}

/// The tenant's Odoo, as BridgeCore's tenant descriptions name it: the URL, database
/// and version of its first connection, if it has one.
pub async fn describe(
    pool: &sqlx::PgPool,
    tenant: &str,
) -> sqlx::Result<Option<(String, String, String)>> {
    sqlx::query_as(
        "SELECT url, database, server_version FROM odoo_connections
         WHERE tenant_id = $1 ORDER BY created_at LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// The caller's tenant's connections.
pub async fn list(ctx: &OdooCtx, who: &Principal) -> AppResult<Vec<ConnectionView>> {
    require_manager(who)?;
    let rows: Vec<Connection> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE tenant_id = $1 ORDER BY created_at"
    )))
    .bind(&who.tenant)
    .fetch_all(&ctx.pool)
    .await?;
    Ok(rows.iter().map(Connection::view).collect())
}

/// Maps a failed first contact to the contract's codes.
pub(super) fn connect_error(e: OdooError) -> AppError {
    match e {
        OdooError::AuthFailed(m) => AppError::OdooAuthFailed(m),
        OdooError::Fault { ref name, .. }
            if name.contains("AccessDenied") || name.contains("AccessError") =>
        {
            AppError::OdooAuthFailed(format!("Odoo refused this user: {}", e.summary()))
        }
        // A proxy's or another server's page is not echoed back.
        OdooError::Http { status, .. } => AppError::OdooUnreachable(format!(
            "Could not talk to Odoo: it answered HTTP {status}."
        )),
        other => AppError::OdooUnreachable(format!("Could not talk to Odoo: {}", other.summary())),
    }
}
