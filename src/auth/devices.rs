//! Devices: bound to a user at login (until it signs out or an operator releases the
//! device: `auth::session`), revocable by the operator, carrying their per-device sync
//! state (last pull and push, cursor, sync count).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// A device as the operator and the state route see it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Device {
    pub tenant_id: String,
    pub device_id: String,
    pub username: String,
    pub device_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_pull_at: Option<DateTime<Utc>>,
    pub last_push_at: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub sync_count: i64,
    pub revoked_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT d.tenant_id, d.device_id, u.username, d.device_name, d.created_at,
        d.last_pull_at, d.last_push_at, d.cursor, d.sync_count, d.revoked_at
    FROM devices d JOIN users u ON u.id = d.user_id";

/// Every device, or those of one tenant, most recently synced first.
pub async fn list(pool: &PgPool, tenant: Option<&str>) -> sqlx::Result<Vec<Device>> {
    let sql = format!(
        "{SELECT} WHERE $1::text IS NULL OR d.tenant_id = $1
         ORDER BY greatest(d.last_pull_at, d.last_push_at) DESC NULLS LAST, d.device_id"
    );
    sqlx::query_as::<_, Device>(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .fetch_all(pool)
        .await
}

pub async fn get(pool: &PgPool, tenant: &str, device_id: &str) -> sqlx::Result<Option<Device>> {
    let sql = format!("{SELECT} WHERE d.tenant_id = $1 AND d.device_id = $2");
    sqlx::query_as::<_, Device>(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(device_id)
        .fetch_optional(pool)
        .await
}

/// Revokes a device: its access and refresh tokens fail with `DEVICE_REVOKED` at
/// once (every request checks the device). Returns false when no such device exists.
pub async fn revoke(pool: &PgPool, tenant: &str, device_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE devices SET revoked_at = coalesce(revoked_at, now())
         WHERE tenant_id = $1 AND device_id = $2",
    )
    .bind(tenant)
    .bind(device_id)
    .execute(pool)
    .await?
    .rows_affected()
        > 0;
    if done {
        tracing::warn!(tenant, device_id, "device revoked");
        // Every server process closes the device's open WebSockets.
        sqlx::query("SELECT pg_notify('nas_sync_revoke', json_build_object('t', $1::text, 'd', $2::text)::text)")
            .bind(tenant)
            .bind(device_id)
            .execute(pool)
            .await?;
    }
    Ok(done)
}

/// Forgets a device's sync state; its next pull without a cursor is a full sync.
pub async fn reset_state(pool: &PgPool, tenant: &str, device_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE devices SET cursor = NULL, last_pull_at = NULL, last_push_at = NULL, sync_count = 0
         WHERE tenant_id = $1 AND device_id = $2",
    )
    .bind(tenant)
    .bind(device_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The tenant's devices active in the last 24 hours, and all of them (revoked ones
/// left out of both).
pub async fn counts(pool: &PgPool, tenant: &str) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE greatest(last_seen_at, last_pull_at, last_push_at)
                                  > now() - interval '24 hours'),
                count(*)
         FROM devices WHERE tenant_id = $1 AND revoked_at IS NULL",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
}
