//! The tenant's sync status (tables, active devices, last syncs; a store device sees
//! only its own) and a device's own sync state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::SyncCtx;
use crate::auth::{Principal, Role, devices};
use crate::error::{AppError, AppResult};

/// `GET /api/v1/sync/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    pub status: &'static str,
    pub timestamp: DateTime<Utc>,
    pub version: &'static str,
    /// Tables the caller may read.
    pub tables: Vec<String>,
    /// Devices of the tenant that synced in the last 24 hours (for a store device:
    /// itself, 1 or 0).
    pub active_devices: i64,
    /// Last sync per device id: the tenant's devices for a manager, only its own
    /// device for a store device.
    pub last_sync: BTreeMap<String, DateTime<Utc>>,
}

pub async fn status(ctx: &SyncCtx, who: &Principal) -> AppResult<SyncStatus> {
    ctx.pull_ledger.flush(&ctx.pool).await?;
    // A store device sees only itself; managers see the tenant's devices.
    let only = (who.role == Role::Store).then_some(who.device_id.as_str());
    let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT device_id, greatest(last_pull_at, last_push_at)
         FROM devices WHERE tenant_id = $1 AND revoked_at IS NULL
           AND ($2::text IS NULL OR device_id = $2)",
    )
    .bind(&who.tenant)
    .bind(only)
    .fetch_all(&ctx.pool)
    .await?;
    let now = Utc::now();
    let day_ago = now - chrono::Duration::hours(24);
    let last_sync: BTreeMap<String, DateTime<Utc>> = rows
        .into_iter()
        .filter_map(|(d, t)| t.map(|t| (d, t)))
        .collect();
    Ok(SyncStatus {
        status: "online",
        timestamp: now,
        version: env!("CARGO_PKG_VERSION"),
        tables: ctx
            .registry
            .current()
            .readable_by(who.role)
            .map(|t| t.name.clone())
            .collect(),
        active_devices: last_sync.values().filter(|t| **t >= day_ago).count() as i64,
        last_sync,
    })
}

/// `GET /api/v1/sync/state`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceState {
    pub device_id: String,
    pub last_pull_at: Option<DateTime<Utc>>,
    pub last_push_at: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub sync_count: i64,
}

pub async fn device_state(
    ctx: &SyncCtx,
    who: &Principal,
    device_id: Option<&str>,
) -> AppResult<DeviceState> {
    who.check_device(device_id)?;
    ctx.pull_ledger.flush(&ctx.pool).await?;
    let d = devices::get(&ctx.pool, &who.tenant, &who.device_id)
        .await?
        .ok_or_else(|| AppError::NotFound("Unknown device.".into()))?;
    Ok(DeviceState {
        device_id: d.device_id,
        last_pull_at: d.last_pull_at,
        last_push_at: d.last_push_at,
        cursor: d.cursor,
        sync_count: d.sync_count,
    })
}

pub async fn reset(
    ctx: &SyncCtx,
    who: &Principal,
    device_id: Option<&str>,
) -> AppResult<DeviceState> {
    who.check_device(device_id)?;
    // Pulls made before the reset must not be written over it.
    ctx.pull_ledger.flush(&ctx.pool).await?;
    devices::reset_state(&ctx.pool, &who.tenant, &who.device_id).await?;
    tracing::info!(device_id = %who.device_id, tenant = %who.tenant, "sync state reset");
    device_state(ctx, who, None).await
}
