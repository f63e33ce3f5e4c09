//! The conflict inbox: conflicts left open by the `manual` rule or strategy, stored
//! with both sides and the base version, and listed (managers: the tenant's; store
//! devices: their own, opened under the same user: a device id that changed hands shows
//! its new user nothing of the old one's). Resolving one is `sync::resolve`, which
//! writes through the push path.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::SyncCtx;
use super::registry::Table;
use crate::auth::{Principal, Role};
use crate::error::{AppError, AppResult};

/// A conflict as the inbox shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Conflict {
    pub id: Uuid,
    pub table: String,
    pub record_id: Uuid,
    pub store_id: Option<String>,
    /// The device whose change met the conflict.
    pub device_id: String,
    /// The BridgeCore `local_id` of that change, if any.
    pub local_id: Option<String>,
    /// The version the device based its change on.
    pub base_version: i64,
    /// That version's row, when the history still has it.
    #[schema(value_type = Option<Object>)]
    pub base_data: Option<Value>,
    /// The server row when the conflict was found.
    #[schema(value_type = Object)]
    pub server_data: Value,
    /// The row (or fields) the device sent.
    #[schema(value_type = Object)]
    pub client_data: Value,
    /// The rule or strategy that left it open (`manual`).
    pub strategy: String,
    /// `open` or `resolved`.
    pub status: String,
    pub resolution: Option<String>,
    /// The row as stored by the resolution.
    #[schema(value_type = Option<Object>)]
    pub resolved_data: Option<Value>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub(super) const SELECT: &str =
    "SELECT id, table_name AS \"table\", row_id AS record_id, store_id, device_id,
    local_id, base_version, base_data, server_data, client_data, strategy, status, resolution,
    resolved_data, resolved_by, resolved_at, created_at FROM sync_conflicts";

/// What a new open conflict records.
pub struct NewConflict<'a> {
    pub table: &'a Table,
    pub record_id: Uuid,
    pub base_version: i64,
    pub server: &'a Value,
    pub client: &'a Value,
    pub strategy: &'a str,
    pub local_id: Option<&'a str>,
}

/// Opens a conflict in the caller's transaction; reads the base version from history.
pub async fn open(conn: &mut PgConnection, who: &Principal, c: NewConflict<'_>) -> AppResult<Uuid> {
    let store = c
        .table
        .scope_column
        .as_ref()
        .and_then(|col| c.server.get(col))
        .and_then(Value::as_str);
    let id = sqlx::query_scalar(
        "INSERT INTO sync_conflicts (tenant_id, table_name, row_id, store_id, device_id, user_id,
             local_id, base_version, base_data, server_data, client_data, strategy)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
             (SELECT data - 'tenant_id' FROM sync_row_history
              WHERE table_name = $2 AND row_id = $3 AND version = $8 ORDER BY id DESC LIMIT 1),
             $9, $10, $11)
         RETURNING id",
    )
    .bind(&who.tenant)
    .bind(&c.table.name)
    .bind(c.record_id)
    .bind(store)
    .bind(&who.device_id)
    .bind(who.user_id)
    .bind(c.local_id)
    .bind(c.base_version)
    .bind(c.server)
    .bind(c.client)
    .bind(c.strategy)
    .fetch_one(conn)
    .await?;
    metrics::counter!("sync_conflicts_opened_total", "table" => c.table.name.clone()).increment(1);
    Ok(id)
}

/// The version `version` of a row, from history (the base of a three-way merge).
pub async fn base(
    conn: &mut PgConnection,
    table: &str,
    row: Uuid,
    version: i64,
) -> sqlx::Result<Option<Value>> {
    sqlx::query_scalar(
        "SELECT data - 'tenant_id' FROM sync_row_history
         WHERE table_name = $1 AND row_id = $2 AND version = $3 ORDER BY id DESC LIMIT 1",
    )
    .bind(table)
    .bind(row)
    .bind(version)
    .fetch_optional(conn)
    .await
}

/// `GET /api/v1/sync/conflicts` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// `open` (default), `resolved` or `all`.
    pub status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Conflicts the caller may see: a manager's tenant's, a store device's own.
pub async fn list(ctx: &SyncCtx, who: &Principal, q: &ListQuery) -> AppResult<Vec<Conflict>> {
    let status = match q.status.as_deref() {
        None | Some("open") => Some("open"),
        Some("resolved") => Some("resolved"),
        Some("all") => None,
        Some(_) => {
            return Err(AppError::validation(
                "status",
                "must be open, resolved or all",
            ));
        }
    };
    let own = (who.role == Role::Store).then_some(who);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(query(ctx, &who.tenant, own, status, limit).await?)
}

/// The open conflicts a device caused under its current user (shown to it on its next
/// pull).
pub async fn open_for_device(ctx: &SyncCtx, who: &Principal) -> sqlx::Result<Vec<Conflict>> {
    query(ctx, &who.tenant, Some(who), Some("open"), 1000).await
}

/// The tenant's conflicts, or with `own` those of the caller's device and user.
async fn query(
    ctx: &SyncCtx,
    tenant: &str,
    own: Option<&Principal>,
    status: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Conflict>> {
    let sql = format!(
        "{SELECT} WHERE tenant_id = $1
           AND ($2::text IS NULL OR (device_id = $2 AND user_id = $3))
           AND ($4::text IS NULL OR status = $4)
         ORDER BY created_at DESC LIMIT $5"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(own.map(|p| p.device_id.as_str()))
        .bind(own.map(|p| p.user_id))
        .bind(status)
        .bind(limit)
        .fetch_all(&ctx.pool)
        .await
}

/// How many of the tenant's conflicts are open.
pub async fn open_count(pool: &sqlx::PgPool, tenant: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM sync_conflicts WHERE tenant_id = $1 AND status = 'open'",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
}
