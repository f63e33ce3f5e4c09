//! BridgeCore sync positions, per user, device and app type: read (`state`) and
//! forgotten (`reset`, so the next pull starts from the beginning).

use chrono::{DateTime, Utc};

use super::BridgeCtx;
use crate::auth::Principal;
use crate::error::AppResult;

/// One stored position.
#[derive(Debug, sqlx::FromRow)]
pub struct Position {
    pub app_type: String,
    pub last_event_id: i64,
    pub last_sync_time: Option<DateTime<Utc>>,
    pub total_syncs: i64,
    pub total_events_synced: i64,
}

/// The caller's position for `app_type`, or its most recently used one.
pub async fn get(
    ctx: &BridgeCtx,
    who: &Principal,
    app_type: Option<&str>,
) -> AppResult<Option<Position>> {
    Ok(sqlx::query_as(
        "SELECT app_type, last_event_id, last_sync_time, total_syncs, total_events_synced
         FROM offline_sync_state
         WHERE tenant_id = $1 AND user_id = $2 AND device_id = $3
           AND ($4::text IS NULL OR app_type = $4)
         ORDER BY last_sync_time DESC NULLS LAST LIMIT 1",
    )
    .bind(&who.tenant)
    .bind(who.user_id)
    .bind(&who.device_id)
    .bind(app_type)
    .fetch_optional(&ctx.sync.pool)
    .await?)
}

/// Forgets the caller's positions (of one app type, or all); returns how many.
pub async fn reset(ctx: &BridgeCtx, who: &Principal, app_type: Option<&str>) -> AppResult<u64> {
    let done = sqlx::query(
        "DELETE FROM offline_sync_state
         WHERE tenant_id = $1 AND user_id = $2 AND device_id = $3
           AND ($4::text IS NULL OR app_type = $4)",
    )
    .bind(&who.tenant)
    .bind(who.user_id)
    .bind(&who.device_id)
    .bind(app_type)
    .execute(&ctx.sync.pool)
    .await?
    .rows_affected();
    tracing::info!(device_id = %who.device_id, tenant = %who.tenant, app_type, positions = done,
        "BridgeCore sync state reset");
    Ok(done)
}
