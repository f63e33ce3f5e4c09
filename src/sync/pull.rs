//! Pull: what changed since the device's cursor, each row once in its latest state.
//!
//! One REPEATABLE READ, read-only transaction: its first statement fixes the snapshot
//! and reads the horizon `pg_snapshot_xmin(pg_current_snapshot())`; every transaction
//! below it has finished, so reading the change log in `(xid, seq)` order up to it
//! never skips a row whose writer commits later. The rows themselves are read in the
//! same snapshot, so they match the log entries. Cost follows the number of changes:
//! the log is read through its `(tenant_id, xid, seq)` index, rows by primary key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::cursor::{Cursor, Position, scope_hash};
use super::registry::{Registry, Table};
use crate::app::AppState;
use crate::auth::{Principal, Role, devices};
use crate::error::{AppError, AppResult};

pub const DEFAULT_LIMIT: i64 = 500;
pub const MAX_LIMIT: i64 = 5000;

/// `POST /api/v1/sync/pull` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PullRequest {
    pub device_id: Option<String>,
    /// The `cursor` of the previous answer; absent for a full sync.
    pub cursor: Option<String>,
    /// Older clients: at-least-once from this time, when no cursor is sent.
    pub last_sync_timestamp: Option<String>,
    /// Tables to pull; every readable table when absent.
    pub tables: Option<Vec<String>>,
    /// Rows per page: 500 by default, at most 5000.
    pub limit: Option<i64>,
}

/// A page of changes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PullResponse {
    pub success: bool,
    pub timestamp: DateTime<Utc>,
    pub cursor: String,
    pub has_more: bool,
    #[schema(value_type = Object)]
    pub changes: BTreeMap<String, Vec<Value>>,
    #[schema(value_type = Option<Object>)]
    pub conflicts: Option<Value>,
}

/// The tables a request names, checked against the registry and the caller's role.
pub fn resolve_tables<'a>(
    registry: &'a Registry,
    who: &Principal,
    requested: Option<&[String]>,
) -> AppResult<Vec<&'a Table>> {
    match requested {
        None => Ok(registry.readable_by(who.role).collect()),
        Some(names) => {
            let mut out: Vec<&Table> = Vec::with_capacity(names.len());
            for name in names {
                let table = registry
                    .get(name)
                    .ok_or_else(|| AppError::UnknownTable(name.clone()))?;
                if !table.can_read(who.role) {
                    return Err(AppError::Forbidden(format!(
                        "The role '{}' may not read '{name}'.",
                        who.role.as_str()
                    )));
                }
                if !out.iter().any(|t| t.name == table.name) {
                    out.push(table);
                }
            }
            Ok(out)
        }
    }
}

/// The change-log page: entries after the cursor, below the horizon, in order.
/// Binds: tenant, cursor xid (text), cursor seq, horizon (text), tables, store, limit.
pub const ENTRIES_SQL: &str =
    "SELECT table_name, row_id, xid::text::bigint AS xid, seq, version, updated_at
     FROM sync_changes
     WHERE tenant_id = $1
       AND (xid, seq) > ($2::text::xid8, $3)
       AND xid < $4::text::xid8
       AND table_name = ANY($5)
       AND ($6::text IS NULL OR store_id IS NULL OR store_id = $6)
     ORDER BY xid, seq
     LIMIT $7";

/// The rows of one table for a page. Binds: ids, tenant.
pub fn rows_sql(table: &Table) -> String {
    format!(
        "SELECT t.id, to_jsonb(t) - 'tenant_id' FROM {} t WHERE t.id = ANY($1) AND t.tenant_id = $2",
        table.ident()
    )
}

#[derive(sqlx::FromRow)]
struct Entry {
    table_name: String,
    row_id: Uuid,
    xid: i64,
    seq: i64,
    version: i64,
    updated_at: DateTime<Utc>,
}

/// Serves one page of a pull.
pub async fn pull(state: &AppState, who: &Principal, req: PullRequest) -> AppResult<PullResponse> {
    who.check_device(req.device_id.as_deref())?;
    // Tables added at run time (by another server process, too) must be known before
    // a cursor moves past their first changes: a stale registry is reloaded first.
    for _ in 0..3 {
        match pull_once(state, who, &req).await {
            Ok(Some(page)) => return Ok(page),
            Ok(None) => {}
            Err(AppError::UnknownTable(t)) if !state.registry_is_stale().await? => {
                return Err(AppError::UnknownTable(t));
            }
            Err(AppError::UnknownTable(_)) => {}
            Err(e) => return Err(e),
        }
        state.reload_registry().await?;
    }
    Err(AppError::Unavailable(
        "The table registry keeps changing; retry shortly.".into(),
    ))
}

/// One attempt; `None` when the registry changed since this process loaded it.
async fn pull_once(
    state: &AppState,
    who: &Principal,
    req: &PullRequest,
) -> AppResult<Option<PullResponse>> {
    let registry = state.registry.current();
    let tables = resolve_tables(&registry, who, req.tables.as_deref())?;
    let limit = match req.limit {
        None => DEFAULT_LIMIT,
        Some(n) if n < 1 => return Err(AppError::validation("limit", "must be at least 1")),
        Some(n) => n.min(MAX_LIMIT),
    };
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let store = match who.role {
        Role::Store => who.store_id.as_deref(),
        Role::Manager => None,
    };
    // A full-table-set pull is scoped to "every readable table", so a table added
    // later (all of whose changes are newer than any cursor) does not void cursors.
    let scope = match req.tables {
        None => scope_hash(&who.tenant, store, &["*", &registry.roles_version]),
        Some(_) => {
            crate::odoo::connections::check_ready(&state.pool, &who.tenant, &names).await?;
            scope_hash(&who.tenant, store, &names)
        }
    };
    let legacy_since = match (&req.cursor, &req.last_sync_timestamp) {
        (None, Some(ts)) => Some(super::validate::parse_time(ts).ok_or_else(|| {
            AppError::validation("last_sync_timestamp", "must be an RFC 3339 timestamp")
        })?),
        _ => None,
    };
    let cursor = req
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, &state.keys))
        .transpose()?;

    let mut tx = state
        .pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    // First statement: fixes the snapshot; statement_timestamp() precedes it.
    let (epoch, registry_version, retained_from, horizon, next_xid, now): (
        String,
        Option<String>,
        Option<String>,
        i64,
        i64,
        DateTime<Utc>,
    ) = sqlx::query_as(
        "SELECT (SELECT value FROM server_meta WHERE key = 'epoch'),
                (SELECT value FROM server_meta WHERE key = 'registry_version'),
                (SELECT value FROM server_meta WHERE key = 'retained_from'),
                pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                statement_timestamp()",
    )
    .fetch_one(&mut *tx)
    .await?;
    if registry_version.unwrap_or_default() != registry.version {
        return Ok(None);
    }
    let epoch =
        Uuid::parse_str(&epoch).map_err(|e| anyhow::anyhow!("bad epoch in server_meta: {e}"))?;

    let start = match (cursor, legacy_since) {
        (Some(c), _) => {
            if c.epoch != epoch {
                return Err(AppError::ResyncRequired(
                    "the database was restored or reset".into(),
                ));
            }
            if c.position.xid >= next_xid as u64 && c.position.xid != 0 {
                return Err(AppError::ResyncRequired(
                    "the cursor is ahead of the database".into(),
                ));
            }
            if c.scope != scope {
                return Err(AppError::ResyncRequired(
                    "the cursor was issued for another set of tables".into(),
                ));
            }
            c.position
        }
        (None, Some(since)) => {
            let h: Option<i64> = sqlx::query_scalar(
                "SELECT horizon::text::bigint FROM sync_horizons WHERE at <= $1 ORDER BY at DESC LIMIT 1",
            )
            .bind(since)
            .fetch_optional(&mut *tx)
            .await?;
            h.map_or(Position::START, |h| Position::before_xid(h as u64))
        }
        (None, None) => Position::START,
    };
    // Tombstones up to the floor were pruned (retention): an older position may have
    // missed one. A full sync (no cursor, no timestamp) needs none of them.
    let resumes = req.cursor.is_some() || legacy_since.is_some();
    if resumes
        && let Some(floor) = retained_from
            .as_deref()
            .and_then(super::retention::parse_floor)
        && start < floor
    {
        return Err(AppError::ResyncRequired(
            "the cursor is older than the retained history (NAS_SYNC_RETENTION_DAYS)".into(),
        ));
    }

    let entries: Vec<Entry> = sqlx::query_as(ENTRIES_SQL)
        .bind(&who.tenant)
        .bind(start.xid.to_string())
        .bind(start.seq)
        .bind(horizon.to_string())
        .bind(&names)
        .bind(store)
        .bind(limit + 1)
        .fetch_all(&mut *tx)
        .await?;

    let has_more = entries.len() as i64 > limit;
    let page = &entries[..entries.len().min(limit as usize)];

    let mut ids_by_table: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for e in page {
        ids_by_table
            .entry(e.table_name.as_str())
            .or_default()
            .push(e.row_id);
    }
    // Keyed by table too: ids are unique per table, not across tables.
    let mut docs: BTreeMap<(&str, Uuid), Value> = BTreeMap::new();
    for (table, ids) in &ids_by_table {
        let Some(def) = registry.get(table) else {
            continue;
        };
        let rows: Vec<(Uuid, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(rows_sql(def)))
            .bind(ids)
            .bind(&who.tenant)
            .fetch_all(&mut *tx)
            .await?;
        docs.extend(rows.into_iter().map(|(id, doc)| ((*table, id), doc)));
    }
    tx.commit().await?;

    let mut changes: BTreeMap<String, Vec<Value>> =
        names.iter().map(|n| (n.to_string(), Vec::new())).collect();
    for e in page {
        // A row deleted outside the API (hard DELETE) is gone: send its tombstone.
        let row = docs.remove(&(e.table_name.as_str(), e.row_id)).unwrap_or_else(|| {
            json!({ "id": e.row_id, "version": e.version, "updated_at": e.updated_at, "deleted": true })
        });
        if let Some(list) = changes.get_mut(&e.table_name) {
            list.push(row);
        }
    }

    let position = match page.last() {
        Some(e) if has_more => Position {
            xid: e.xid as u64,
            seq: e.seq,
        },
        // Caught up: every later entry belongs to a transaction at or above the horizon.
        last => {
            let caught_up = Position::before_xid(horizon as u64);
            let last = last
                .map(|e| Position {
                    xid: e.xid as u64,
                    seq: e.seq,
                })
                .unwrap_or(start);
            caught_up.max(last).max(start)
        }
    };
    let cursor = Cursor {
        epoch,
        position,
        scope,
    }
    .encode(&state.keys);
    devices::record_pull(&state.pool, &who.tenant, &who.device_id, &cursor).await?;

    let rows = page.len() as u64;
    metrics::counter!("sync_rows_pulled_total").increment(rows);
    tracing::info!(device_id = %who.device_id, tenant = %who.tenant, rows, has_more,
        full = req.cursor.is_none() && req.last_sync_timestamp.is_none(), "pull");
    Ok(Some(PullResponse {
        success: true,
        timestamp: now,
        cursor,
        has_more,
        changes,
        conflicts: None,
    }))
}
