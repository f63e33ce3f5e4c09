//! Integer event ids over the change log, for clients that keep a `last_event_id`
//! (BridgeCore's). The design and why it never skips a late commit are in
//! docs/architecture.md ("Event ids"); in short:
//!
//! - a change-log entry gets a number only once its writer has finished (its xid is
//!   below the horizon), in `(xid, seq)` order, by `sync_number_events` under the
//!   tenant's counter row lock, held until commit, so numbers become visible in
//!   increasing order and a late commit is numbered after everything numbered before;
//! - a row's new change clears its entry's number (a trigger), so each row appears
//!   once, at its latest change, as with cursors;
//! - a page reads the counter and the entries after a position in one statement (one
//!   snapshot): when it ends the log, the counter is the position to resume from.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::SyncCtx;
use super::registry::Table;
use crate::error::{AppError, AppResult};

/// Most events in one page.
pub const MAX_LIMIT: i64 = 5000;

/// What a page asks for.
pub struct EventQuery<'a> {
    pub tenant: &'a str,
    pub tables: &'a [&'a Table],
    /// A store device's store: other stores' rows are left out.
    pub store: Option<&'a str>,
    /// Events after this id; 0 for everything.
    pub after: i64,
    pub limit: i64,
}

/// One event: a row's latest change.
#[derive(Debug)]
pub struct Event {
    pub event_id: i64,
    pub table: String,
    pub row_id: Uuid,
    pub version: i64,
    pub deleted: bool,
    pub updated_at: DateTime<Utc>,
    /// The row as stored (without `tenant_id`); `None` once it is gone (hard delete).
    pub row: Option<Value>,
}

/// A page of events.
#[derive(Debug)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Where the next page starts: the last event given, or (at the end of the log)
    /// the tenant's last event id.
    pub last_event_id: i64,
    pub has_more: bool,
    /// The position asked for was ahead of the database (a restore): the page starts
    /// from the beginning instead.
    pub restarted: bool,
    pub now: DateTime<Utc>,
}

/// One row of the page statement.
#[derive(sqlx::FromRow)]
struct PageRow {
    last: i64,
    floor: i64,
    now: DateTime<Utc>,
    /// Entries read before the page-size cut.
    fetched: Option<i64>,
    event_id: Option<i64>,
    table_name: Option<String>,
    row_id: Option<Uuid>,
    version: Option<i64>,
    deleted: Option<bool>,
    updated_at: Option<DateTime<Utc>>,
    doc: Option<String>,
}

/// Numbers what has finished since the last numbering, then reads one page.
pub async fn page(ctx: &SyncCtx, q: &EventQuery<'_>) -> AppResult<EventPage> {
    if q.tables.is_empty() {
        return Err(AppError::validation("models", "no table to read"));
    }
    let limit = q.limit.clamp(1, MAX_LIMIT);
    number(ctx, q.tenant).await?;
    let mut rows = read(ctx, q, q.after, limit).await?;
    let (last, floor) = rows.first().map_or((0, 0), |r| (r.last, r.floor));
    let restarted = q.after > last;
    if restarted {
        // Ahead of the database (restored from a backup): everything again.
        rows = read(ctx, q, 0, limit).await?;
    } else if q.after > 0 && q.after < floor {
        return Err(AppError::ResyncRequired(
            "events before this position were pruned (NAS_SYNC_RETENTION_DAYS)".into(),
        ));
    }
    let now = rows.first().map_or_else(Utc::now, |r| r.now);
    let last = rows.first().map_or(last, |r| r.last);
    let fetched = rows.first().and_then(|r| r.fetched).unwrap_or(0);
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(event_id), Some(table), Some(row_id), Some(version), Some(deleted), Some(at)) = (
            r.event_id,
            r.table_name,
            r.row_id,
            r.version,
            r.deleted,
            r.updated_at,
        ) else {
            continue;
        };
        let row = match r.doc {
            Some(doc) => Some(serde_json::from_str(&doc).map_err(anyhow::Error::from)?),
            None => None,
        };
        events.push(Event {
            event_id,
            table,
            row_id,
            version,
            deleted,
            updated_at: at,
            row,
        });
    }
    // More when the log had more than `limit`, or the byte cut left some out.
    let has_more = fetched > limit || (events.len() as i64) < fetched;
    events.truncate(limit as usize);
    let from = if restarted { 0 } else { q.after };
    let last_event_id = match events.last() {
        Some(e) if has_more => e.event_id,
        _ => last.max(from),
    };
    Ok(EventPage {
        events,
        last_event_id,
        has_more,
        restarted,
        now,
    })
}

/// Numbers tenant `$1`'s finished, unnumbered changes, when it has any.
pub const NUMBER_SQL: &str = "SELECT sync_number_events($1)
     WHERE (SELECT xid FROM sync_changes WHERE tenant_id = $1 AND event_id IS NULL
            ORDER BY xid LIMIT 1) < sync_horizon()";

/// Numbers the tenant's finished, unnumbered changes (a no-op read when there are
/// none, so most pulls write nothing).
///
/// The test reads the tenant's oldest unnumbered change in index order: as an `EXISTS`,
/// the generic plan PostgreSQL caches for a prepared statement scanned the whole
/// change log when another tenant held millions of unnumbered entries (9 s a pull).
async fn number(ctx: &SyncCtx, tenant: &str) -> sqlx::Result<()> {
    sqlx::query(NUMBER_SQL)
        .bind(tenant)
        .execute(&ctx.pool)
        .await
        .map(|_| ())
}

async fn read(
    ctx: &SyncCtx,
    q: &EventQuery<'_>,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<PageRow>> {
    let names: Vec<&str> = q.tables.iter().map(|t| t.name.as_str()).collect();
    let sql = format!(
        "WITH meta AS (
             SELECT coalesce(c.last_event_id, 0) AS last, coalesce(c.retained_from, 0) AS floor,
                    statement_timestamp() AS now
             FROM (SELECT 1) one
             LEFT JOIN sync_event_counters c ON c.tenant_id = $1),
         f AS (
             SELECT event_id, table_name, row_id, version, deleted, updated_at,
                    coalesce(doc_bytes, 0) AS bytes
             FROM sync_changes
             WHERE tenant_id = $1 AND event_id > $2 AND table_name = ANY($3)
               AND ($4::text IS NULL OR store_id IS NULL OR store_id = $4)
             ORDER BY event_id
             LIMIT $5),
         -- Rows stop once the page holds $6 bytes (always at least one row).
         e AS (
             SELECT * FROM (
                 SELECT f.*, count(*) OVER () AS fetched,
                        sum(bytes) OVER (ORDER BY event_id ROWS UNBOUNDED PRECEDING) - bytes AS before
                 FROM f) s
             WHERE before < $6)
         SELECT m.last, m.floor, m.now, e.fetched, e.event_id, e.table_name, e.row_id, e.version,
                e.deleted, e.updated_at, {} AS doc
         FROM meta m LEFT JOIN e ON true
         ORDER BY e.event_id",
        super::pull::row_docs(q.tables)
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(q.tenant)
        .bind(after)
        .bind(&names)
        .bind(q.store)
        .bind(limit + 1)
        .bind(ctx.limits.max_page_bytes as i64)
        .fetch_all(&ctx.pool)
        .await
}
