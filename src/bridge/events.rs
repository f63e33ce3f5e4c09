//! Event pulls for BridgeCore clients, both protocols: v1 (`/api/v1/offline-sync/pull`,
//! the client may send `last_event_id`) and v2 (`/api/v2/sync/pull`, the position is
//! the server's). Both read `sync::events` pages of the tables the `app_type` selects
//! and keep the position per user, device and app type (`offline_sync_state`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::BridgeCtx;
use super::app_types::{self, model_table};
use crate::auth::{Principal, Role};
use crate::error::{AppError, AppResult};
use crate::sync::events::{self, Event, EventQuery};
use crate::sync::registry::{Registry, Table};

/// What both protocols ask.
pub struct EventPull<'a> {
    pub app_type: &'a str,
    /// `None`: the stored position.
    pub last_event_id: Option<i64>,
    pub models_filter: Option<&'a [String]>,
    pub limit: Option<i64>,
}

/// A page of events, ready to render in either protocol's shape.
pub struct Pulled {
    pub events: Vec<Rendered>,
    pub last_event_id: i64,
    pub has_more: bool,
    /// The position was ahead of the database (restored): this is a full sync.
    pub restarted: bool,
    pub now: DateTime<Utc>,
}

/// One event with its model name and BridgeCore identity.
pub struct Rendered {
    pub event: Event,
    pub model: String,
    /// The Odoo id for mirrored rows that have one, else the row's UUID.
    pub record_id: Value,
    /// `create`, `write` or `unlink`.
    pub action: &'static str,
    /// `high`, `medium` or `low`.
    pub priority: String,
}

/// Default and largest `limit`.
pub const DEFAULT_LIMIT: i64 = 100;

/// Serves one page and stores the new position.
pub async fn pull(ctx: &BridgeCtx, who: &Principal, req: &EventPull<'_>) -> AppResult<Pulled> {
    let (pulled, any_table) = read(ctx, who, req).await?;
    if any_table {
        save_position(
            ctx,
            who,
            req.app_type,
            pulled.last_event_id,
            pulled.events.len(),
        )
        .await?;
        tracing::info!(device_id = %who.device_id, tenant = %who.tenant, app_type = req.app_type,
            events = pulled.events.len(), last_event_id = pulled.last_event_id, "event pull");
    }
    Ok(pulled)
}

/// The page a pull would serve, without moving the position (`check-updates` and the
/// webhook event list).
pub async fn peek(ctx: &BridgeCtx, who: &Principal, req: &EventPull<'_>) -> AppResult<Pulled> {
    Ok(read(ctx, who, req).await?.0)
}

/// One page, and whether the app type selects any table the caller reads.
async fn read(ctx: &BridgeCtx, who: &Principal, req: &EventPull<'_>) -> AppResult<(Pulled, bool)> {
    let limit = match req.limit {
        None => DEFAULT_LIMIT,
        Some(n) if n < 1 => return Err(AppError::validation("limit", "must be at least 1")),
        Some(n) => n.min(events::MAX_LIMIT),
    };
    if req.last_event_id.is_some_and(|id| id < 0) {
        return Err(AppError::validation("last_event_id", "must be 0 or more"));
    }
    let registry = ctx.sync.registry.current();
    let tables = select_tables(ctx, &registry, who, req.app_type, req.models_filter)?;
    let after = match req.last_event_id {
        Some(id) => id,
        None => stored_position(ctx, who, req.app_type).await?,
    };
    let store = match who.role {
        Role::Store => who.store_id.as_deref(),
        Role::Manager => None,
    };
    if tables.is_empty() {
        // Nothing of this app type is synced here: an empty, current answer.
        let empty = Pulled {
            events: Vec::new(),
            last_event_id: after,
            has_more: false,
            restarted: false,
            now: Utc::now(),
        };
        return Ok((empty, false));
    }
    let page = events::page(
        &ctx.sync,
        &EventQuery {
            tenant: &who.tenant,
            tables: &tables,
            store,
            after,
            limit,
        },
    )
    .await?;
    let models = model_names(ctx, &tables).await?;
    // A mirrored row Odoo has not given an id yet is held back: BridgeCore's clients
    // read `record_id` as an integer. Its write-back updates the row, which numbers it
    // again, so it comes with a later event, with its Odoo id.
    let events: Vec<Rendered> = page
        .events
        .into_iter()
        .map(|e| render(e, &models, &registry))
        .filter(|r| !r.model.contains('.') || r.record_id.is_number())
        .collect();
    let pulled = Pulled {
        events,
        last_event_id: page.last_event_id,
        has_more: page.has_more,
        restarted: page.restarted,
        now: page.now,
    };
    Ok((pulled, true))
}

/// The tables of `app_type` the caller reads, narrowed by `models_filter`.
fn select_tables<'r>(
    ctx: &BridgeCtx,
    registry: &'r Registry,
    who: &Principal,
    app_type: &str,
    models_filter: Option<&[String]>,
) -> AppResult<Vec<&'r Table>> {
    let models = ctx.app_types.get(app_type).ok_or_else(|| {
        AppError::validation(
            "app_type",
            format!(
                "unknown app type; known: {}",
                ctx.app_types.names().join(", ")
            ),
        )
    })?;
    let mut tables = app_types::tables(registry, models, who.role);
    if let Some(filter) = models_filter {
        let wanted: Vec<String> = filter.iter().map(|m| model_table(m)).collect();
        tables.retain(|t| wanted.contains(&t.name));
    }
    Ok(tables)
}

/// Model names of mirrored tables (`odoo_sale_order` → `sale.order`); other tables
/// are their own model.
async fn model_names(ctx: &BridgeCtx, tables: &[&Table]) -> sqlx::Result<HashMap<String, String>> {
    let mirrored: Vec<&str> = tables
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| n.starts_with("odoo_"))
        .collect();
    let mut names: HashMap<String, String> = HashMap::new();
    if !mirrored.is_empty() {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT table_name, model FROM odoo_model_state WHERE table_name = ANY($1)",
        )
        .bind(&mirrored)
        .fetch_all(&ctx.sync.pool)
        .await?;
        names.extend(rows);
    }
    Ok(names)
}

/// The model name of one table (for answers about a single row).
pub async fn model_of(ctx: &BridgeCtx, table: &str) -> sqlx::Result<String> {
    if !table.starts_with("odoo_") {
        return Ok(table.to_string());
    }
    let model: Option<String> =
        sqlx::query_scalar("SELECT model FROM odoo_model_state WHERE table_name = $1 LIMIT 1")
            .bind(table)
            .fetch_optional(&ctx.sync.pool)
            .await?;
    Ok(model.unwrap_or_else(|| table.to_string()))
}

fn render(event: Event, models: &HashMap<String, String>, registry: &Registry) -> Rendered {
    let model = models
        .get(&event.table)
        .cloned()
        .unwrap_or_else(|| event.table.clone());
    let record_id = event
        .row
        .as_ref()
        .and_then(|r| r.get("odoo_id"))
        .filter(|v| v.is_number())
        .cloned()
        .unwrap_or_else(|| json!(event.row_id));
    let action = match (event.deleted, event.version) {
        (true, _) => "unlink",
        (false, 1) => "create",
        (false, _) => "write",
    };
    let urgent = registry.get(&event.table).is_some_and(|t| t.urgent);
    let priority = event
        .row
        .as_ref()
        .and_then(|r| r.get("priority"))
        .and_then(Value::as_str)
        .filter(|p| matches!(*p, "high" | "medium" | "low"))
        .map(str::to_string)
        .unwrap_or_else(|| if urgent { "high" } else { "medium" }.to_string());
    Rendered {
        event,
        model,
        record_id,
        action,
        priority,
    }
}

async fn stored_position(ctx: &BridgeCtx, who: &Principal, app_type: &str) -> sqlx::Result<i64> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT last_event_id FROM offline_sync_state
         WHERE tenant_id = $1 AND user_id = $2 AND device_id = $3 AND app_type = $4",
    )
    .bind(&who.tenant)
    .bind(who.user_id)
    .bind(&who.device_id)
    .bind(app_type)
    .fetch_optional(&ctx.sync.pool)
    .await?;
    Ok(id.unwrap_or(0))
}

async fn save_position(
    ctx: &BridgeCtx,
    who: &Principal,
    app_type: &str,
    last_event_id: i64,
    events: usize,
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH seen AS (
             -- The newest change the position covers: event ids follow (xid, seq), so
             -- it is the highest numbered entry at or below it (an entry renumbered
             -- since only makes this earlier, never later).
             SELECT xid FROM sync_changes
             WHERE tenant_id = $1 AND event_id <= $5 AND event_id IS NOT NULL
             ORDER BY event_id DESC LIMIT 1)
         INSERT INTO offline_sync_state AS s (tenant_id, user_id, device_id, app_type,
             last_event_id, last_sync_time, total_syncs, total_events_synced, seen_xid)
         VALUES ($1, $2, $3, $4, $5, now(), 1, $6, (SELECT xid FROM seen))
         ON CONFLICT (tenant_id, user_id, device_id, app_type) DO UPDATE SET
             last_event_id = EXCLUDED.last_event_id, last_sync_time = now(),
             total_syncs = s.total_syncs + 1,
             total_events_synced = s.total_events_synced + EXCLUDED.total_events_synced,
             seen_xid = EXCLUDED.seen_xid",
    )
    .bind(&who.tenant)
    .bind(who.user_id)
    .bind(&who.device_id)
    .bind(app_type)
    .bind(last_event_id)
    .bind(events as i64)
    .execute(&ctx.sync.pool)
    .await
    .map(|_| ())
}
