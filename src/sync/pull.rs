//! Pull: what changed since the device's cursor, each row once in its latest ctx.
//!
//! A page is one SQL statement (`page_sql`), so one snapshot covers all of it. It reads
//! the horizon `sync_horizon()` (migration V19: the snapshot's oldest running
//! transaction not known to belong to another database); every transaction of this
//! database below it has finished, so reading the change log in `(xid, seq)` order up
//! to it never skips a row whose writer commits later, and a long transaction in
//! another database on the same PostgreSQL holds nothing back. The rows are read in the same statement, so they
//! match the log entries. Cost follows the number of changes: the log is read through
//! its `(tenant_id, xid, seq)` index, rows by primary key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::SyncCtx;
use super::cursor::{Cursor, Position, scope_hash};
use super::registry::{Registry, Table};
use crate::auth::session::Session;
use crate::auth::{Principal, Role};
use crate::db::sql::Literal;
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
    #[schema(format = DateTime)]
    pub last_sync_timestamp: Option<String>,
    /// Tables to pull; every readable table when absent.
    #[schema(min_items = 1)]
    pub tables: Option<Vec<String>>,
    /// Rows per page: 500 by default, at most 5000.
    #[schema(minimum = 1, maximum = 5000)]
    pub limit: Option<i64>,
}

/// A page of changes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PullResponse {
    pub success: bool,
    pub timestamp: DateTime<Utc>,
    pub cursor: String,
    pub has_more: bool,
    /// Rows as PostgreSQL rendered them (`row_to_json` over the registry's columns), passed through unparsed.
    #[schema(value_type = Object)]
    pub changes: BTreeMap<String, Vec<Box<RawValue>>>,
    /// The device's open conflicts in the inbox (`null` when it has none).
    pub conflicts: Option<Vec<super::conflicts::Conflict>>,
}

/// The tables a request names, checked against the registry and the caller's role.
pub fn resolve_tables<'a>(
    registry: &'a Registry,
    who: &Principal,
    requested: Option<&[String]>,
) -> AppResult<Vec<&'a Table>> {
    match requested {
        None => Ok(registry.readable_by(who.role).collect()),
        Some([]) => Err(AppError::validation(
            "tables",
            "name at least one table, or leave it out for every readable table",
        )),
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

/// An SQL expression that renders change-log entry `e`'s row (by primary key, in
/// tenant `$1`) as JSON text without `tenant_id`; NULL when the row is gone.
pub(crate) fn row_docs(tables: &[&Table]) -> String {
    let mut docs = String::from("CASE e.table_name");
    for t in tables {
        docs.push_str(&format!(
            " WHEN {} THEN (SELECT {} FROM {} r
                              WHERE r.id = e.row_id AND r.tenant_id = $1)",
            Literal(&t.name),
            t.row_json_sql("r"),
            t.ident()
        ));
    }
    docs.push_str(" END");
    docs
}

/// A whole page in one statement, so one snapshot covers it without an explicit
/// transaction: the server's bookkeeping (epoch, registry version, retention floor),
/// the horizon `sync_horizon()`, the change-log entries after the cursor and below
/// the horizon through the `(tenant_id, xid, seq)` index, and each entry's row, read by
/// primary key and rendered as JSON text by PostgreSQL. Always at least one row (the
/// bookkeeping); entry columns are NULL when the page is empty.
///
/// Binds: tenant, cursor xid (text), cursor seq, tables, store, limit, device, page bytes,
/// user.
pub fn page_sql(tables: &[&Table]) -> String {
    let docs = row_docs(tables);
    format!(
        "WITH meta AS (
             SELECT (SELECT value FROM server_meta WHERE key = 'epoch') AS epoch,
                    (SELECT value FROM server_meta WHERE key = 'registry_version') AS registry_version,
                    (SELECT value FROM server_meta WHERE key = 'retained_from') AS retained_from,
                    h.horizon, h.unsure,
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,
                    statement_timestamp() AS now,
                    EXISTS (SELECT 1 FROM sync_conflicts WHERE tenant_id = $1
                            AND device_id = $7 AND user_id = $9 AND status = 'open')
                        AS open_conflicts
             FROM sync_horizon_state() h),
         f AS (
             SELECT table_name, row_id, xid, seq, version, updated_at,
                    coalesce(doc_bytes, 0) AS bytes
             FROM sync_changes
             WHERE tenant_id = $1
               AND (xid, seq) > ($2::text::xid8, $3)
               AND xid < (SELECT horizon FROM meta)
               AND table_name = ANY($4)
               AND ($5::text IS NULL OR store_id IS NULL OR store_id = $5)
             ORDER BY xid, seq
             LIMIT $6),
         -- Rows stop once the page holds $8 bytes (always at least one row).
         e AS (
             SELECT * FROM (
                 SELECT f.*, count(*) OVER () AS fetched,
                        sum(bytes) OVER (ORDER BY xid, seq ROWS UNBOUNDED PRECEDING) - bytes AS before
                 FROM f) s
             WHERE before < $8)
         SELECT m.epoch, m.registry_version, m.retained_from, m.horizon::text::bigint AS horizon,
                m.unsure,
                m.next_xid, m.now, m.open_conflicts, e.fetched, e.table_name, e.row_id,
                e.xid::text::bigint AS xid, e.seq, e.version, e.updated_at, {docs} AS doc
         FROM meta m LEFT JOIN e ON true
         ORDER BY e.xid, e.seq"
    )
}

/// One row of the page statement.
#[derive(sqlx::FromRow)]
struct PageRow {
    epoch: String,
    registry_version: Option<String>,
    retained_from: Option<String>,
    horizon: i64,
    /// The horizon is a transaction that ended while the page was read (V19).
    unsure: bool,
    next_xid: i64,
    now: DateTime<Utc>,
    /// The device has conflicts waiting in the inbox.
    open_conflicts: bool,
    /// Entries read before the page-size cut.
    fetched: Option<i64>,
    table_name: Option<String>,
    row_id: Option<Uuid>,
    xid: Option<i64>,
    seq: Option<i64>,
    version: Option<i64>,
    updated_at: Option<DateTime<Utc>>,
    doc: Option<String>,
}

/// Serves one page of a pull.
///
/// `session` is how the caller's session stands: a remembered one
/// (`auth::remembered`) serves an answer from memory, and is checked in PostgreSQL
/// before anything else is read.
pub async fn pull(
    ctx: &SyncCtx,
    who: &Principal,
    mut session: Session,
    req: PullRequest,
) -> AppResult<PullResponse> {
    who.check_device(req.device_id.as_deref())?;
    // Tables added at run time (by another server process, too) must be known before
    // a cursor moves past their first changes: a stale registry is reloaded first.
    for _ in 0..3 {
        match pull_once(ctx, who, &mut session, &req).await {
            Ok(Some(page)) => return Ok(page),
            Ok(None) => {}
            Err(AppError::UnknownTable(t)) if !ctx.registry.is_stale(&ctx.pool).await? => {
                return Err(AppError::UnknownTable(t));
            }
            Err(AppError::UnknownTable(_)) => {}
            Err(e) => return Err(e),
        }
        ctx.registry.reload(&ctx.pool).await?;
    }
    Err(AppError::Unavailable(
        "The table registry keeps changing; retry shortly.".into(),
    ))
}

/// One attempt; `None` when the registry changed since this process loaded it.
async fn pull_once(
    ctx: &SyncCtx,
    who: &Principal,
    session: &mut Session,
    req: &PullRequest,
) -> AppResult<Option<PullResponse>> {
    let registry = ctx.registry.current();
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
        Some(_) => scope_hash(&who.tenant, store, &names),
    };
    // Named tables another module fills must be ready; memory knows it for a while
    // after a check (`quiet::known_ready`), else the database is asked (below).
    let ready_known = req.tables.is_none()
        || !ctx.readiness.needs_check(&names)
        || ctx.quiet.known_ready(&who.tenant, &names);
    let legacy_since = match (&req.cursor, &req.last_sync_timestamp) {
        (None, Some(ts)) => Some(super::validate::parse_time(ts).ok_or_else(|| {
            AppError::validation("last_sync_timestamp", "must be an RFC 3339 timestamp")
        })?),
        _ => None,
    };
    let cursor = req
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, &ctx.keys))
        .transpose()?;

    // Legacy pulls start at the horizon recorded at or before their time. A mark is a
    // fact about the past, so reading it outside the page's snapshot is safe.
    let since_mark = match legacy_since {
        Some(since) => Some({
            session.ensure(&ctx.pool, &ctx.sessions, who).await?;
            sqlx::query_scalar::<_, i64>(
                "SELECT horizon::text::bigint FROM sync_horizons WHERE at <= $1 ORDER BY at DESC LIMIT 1",
            )
            .bind(since)
            .fetch_optional(&ctx.pool)
            .await?
            .map_or(Position::START, |h| Position::before_xid(h as u64))
        }),
        None => None,
    };
    let start = cursor
        .as_ref()
        .map(|c| c.position)
        .or(since_mark)
        .unwrap_or(Position::START);
    // A first sync walks the tables (`walk`); its cursor says where it stands.
    let walk = match (&cursor, legacy_since) {
        (Some(c), _) => c.walk.clone(),
        (None, None) => super::walk::first(&tables),
        (None, Some(_)) => None,
    };

    // Nothing new since the cursor, as this process knows from the change listener:
    // the same cursor back, without the page statement (`quiet`).
    if legacy_since.is_none()
        && ready_known
        && walk.is_none()
        && let Some(c) = &cursor
        && ctx.quiet.nothing_new(
            &who.tenant,
            &who.device_id,
            c,
            scope,
            (&registry.version, &registry.roles_version),
        )
    {
        prime_soon(ctx, &who.tenant);
        if ctx.quiet.claim_conflict_check(&who.tenant, &who.device_id) {
            let (quiet, pool) = (ctx.quiet.clone(), ctx.pool.clone());
            let (tenant, device, user) = (who.tenant.clone(), who.device_id.clone(), who.user_id);
            tokio::spawn(async move {
                if let Err(e) = quiet.check_conflicts(&pool, &tenant, &device, user).await {
                    tracing::debug!(error = %e, "could not check a device's open conflicts");
                }
            });
        }
        return Ok(Some(empty_page(ctx, who, c, &names)));
    }
    // Anything read from here on needs the session checked in PostgreSQL.
    session.ensure(&ctx.pool, &ctx.sessions, who).await?;
    if req.tables.is_some() && ctx.readiness.needs_check(&names) {
        let ticket = ctx.quiet.before_page(&who.tenant);
        ctx.readiness.check(&ctx.pool, &who.tenant, &names).await?;
        ctx.quiet.found_ready(ticket, &who.tenant, &names);
    }
    let ticket = ctx.quiet.before_page(&who.tenant);
    // The walk's rows first; the log from the walk's horizon on once it has ended.
    let (start, walked) = match walk {
        None => (start, None),
        Some(from) => {
            let start = match &cursor {
                Some(_) => start,
                None => Position::before_xid(
                    sqlx::query_scalar::<_, i64>("SELECT sync_horizon()::text::bigint")
                        .fetch_one(&ctx.pool)
                        .await? as u64,
                ),
            };
            let page = super::walk::page(
                &ctx.pool,
                &tables,
                &who.tenant,
                store,
                from,
                limit as usize,
                ctx.limits.max_page_bytes,
            )
            .await?;
            (start, Some(page))
        }
    };
    // Rows the log may add to this page: none while the walk goes on.
    let log_limit = match &walked {
        Some(w) if w.next.is_some() => 0,
        Some(w) => limit - w.rows.len() as i64,
        None => limit,
    };
    let log_bytes = ctx
        .limits
        .max_page_bytes
        .saturating_sub(walked.as_ref().map_or(0, |w| w.bytes))
        .max(1);
    let sql = page_sql(&tables);
    let mut page: Vec<PageRow> = Vec::new();
    // A horizon held by a transaction that ended while the page was read is right for
    // that snapshot, but a new one (once) brings what it held back now.
    for _ in 0..2 {
        page = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&who.tenant)
            .bind(start.xid.to_string())
            .bind(start.seq)
            .bind(&names)
            .bind(store)
            .bind(log_limit + 1)
            .bind(&who.device_id)
            .bind(log_bytes as i64)
            .bind(who.user_id)
            .fetch_all(&ctx.pool)
            .await?;
        if !page.first().is_some_and(|m| m.unsure) {
            break;
        }
        metrics::counter!("sync_pull_horizon_retries_total").increment(1);
    }
    let Some(meta) = page.first() else {
        return Err(anyhow::anyhow!("the page statement returned no row").into());
    };
    if meta.registry_version.as_deref().unwrap_or_default() != registry.version {
        return Ok(None);
    }
    let (horizon, now, open_conflicts) = (meta.horizon, meta.now, meta.open_conflicts);
    let meta_next_xid = meta.next_xid;
    let epoch = Uuid::parse_str(&meta.epoch)
        .map_err(|e| anyhow::anyhow!("bad epoch in server_meta: {e}"))?;
    if let Some(c) = &cursor {
        if c.epoch != epoch {
            return Err(AppError::ResyncRequired(
                "the database was restored or reset".into(),
            ));
        }
        if c.position.xid >= meta.next_xid as u64 && c.position.xid != 0 {
            return Err(AppError::ResyncRequired(
                "the cursor is ahead of the database".into(),
            ));
        }
        if c.scope != scope {
            return Err(AppError::ResyncRequired(
                "the cursor was issued for another set of tables".into(),
            ));
        }
    }
    // Tombstones up to the floor were pruned (retention): an older position may have
    // missed one. A full sync (no cursor, no timestamp) needs none of them.
    let resumes = cursor.is_some() || legacy_since.is_some();
    if resumes
        && let Some(floor) = meta
            .retained_from
            .as_deref()
            .and_then(super::retention::parse_floor)
        && start < floor
    {
        return Err(AppError::ResyncRequired(
            "the cursor is older than the retained history (NAS_SYNC_RETENTION_DAYS)".into(),
        ));
    }

    let fetched = meta.fetched.unwrap_or(0);
    let mut entries: Vec<PageRow> = page
        .into_iter()
        .filter(|r| r.table_name.is_some())
        .collect();
    // More when the log had more than `log_limit`, or the byte cut left some out.
    let log_more = fetched > log_limit || (entries.len() as i64) < fetched;
    entries.truncate(log_limit as usize);

    let mut changes: BTreeMap<String, Vec<Box<RawValue>>> =
        names.iter().map(|n| (n.to_string(), Vec::new())).collect();
    let mut rows = entries.len() as u64;
    let walk_next = match walked {
        None => None,
        Some(w) => {
            // A row the log brings in this page too is sent once, in its log state.
            let in_log: std::collections::HashSet<(&str, Uuid)> = entries
                .iter()
                .filter_map(|e| Some((e.table_name.as_deref()?, e.row_id?)))
                .collect();
            for (table, id, doc) in w.rows {
                if in_log.contains(&(table.as_str(), id)) {
                    continue;
                }
                if let Some(list) = changes.get_mut(&table) {
                    list.push(RawValue::from_string(doc).map_err(anyhow::Error::from)?);
                    rows += 1;
                }
            }
            Some(w.next)
        }
    };
    let mut last = None;
    for e in entries {
        let (Some(table), Some(row_id), Some(xid), Some(seq)) =
            (e.table_name, e.row_id, e.xid, e.seq)
        else {
            continue;
        };
        last = Some(Position {
            xid: xid as u64,
            seq,
        });
        let row = match e.doc {
            // Moved, not copied: a 5,000-row page is megabytes of text.
            Some(doc) => RawValue::from_string(doc).map_err(anyhow::Error::from)?,
            // A row deleted outside the API (hard DELETE) is gone: send its tombstone,
            // with its nullable columns as null (the row schemas require them).
            None => {
                let mut t = json!({
                    "id": row_id, "version": e.version, "updated_at": e.updated_at, "deleted": true
                });
                if let Some(tb) = tables.iter().find(|tb| tb.name == table) {
                    for c in tb.data_columns().filter(|c| c.nullable) {
                        t[c.name.as_str()] = serde_json::Value::Null;
                    }
                }
                serde_json::value::to_raw_value(&t).map_err(anyhow::Error::from)?
            }
        };
        if let Some(list) = changes.get_mut(&table) {
            list.push(row);
        }
    }

    let (position, has_more, walk) = match (walk_next, last) {
        // The walk goes on; the log waits where it will take over.
        (Some(Some(next)), _) => (start, true, Some(next)),
        // The walk ended with the page full: the log from its start, next page.
        (Some(None), _) if log_limit == 0 => (start, true, None),
        (_, Some(last)) if log_more => (last, true, None),
        // Caught up: every later entry belongs to a transaction at or above the horizon.
        (_, last) => (
            Position::before_xid(horizon as u64)
                .max(last.unwrap_or(start))
                .max(start),
            false,
            None,
        ),
    };
    let cursor = Cursor {
        epoch,
        position,
        scope,
        walk,
    }
    .encode(&ctx.keys);
    ctx.pull_ledger.record(who, cursor.clone());

    ctx.quiet.after_page(
        ticket,
        &who.tenant,
        &who.device_id,
        open_conflicts,
        u64::try_from(meta_next_xid).unwrap_or(0),
    );
    prime_soon(ctx, &who.tenant);

    // The device's own open conflicts (docs/contract.md §8), when it has any.
    let conflicts = match open_conflicts {
        true => Some(super::conflicts::open_for_device(ctx, who).await?),
        false => None,
    };
    metrics::counter!("sync_rows_pulled_total").increment(rows);
    tracing::info!(device_id = %who.device_id, tenant = %who.tenant, rows, has_more,
        full = req.cursor.is_none() && req.last_sync_timestamp.is_none(), "pull");
    Ok(Some(PullResponse {
        success: true,
        timestamp: now,
        cursor,
        has_more,
        changes,
        conflicts,
    }))
}

/// Primes the tenant's memory of empty pulls when it is unknown or past half its life
/// (`quiet::claim_prime`), in the background: no pull waits for it.
fn prime_soon(ctx: &SyncCtx, tenant: &str) {
    if ctx.quiet.claim_prime(tenant) {
        let (quiet, pool, tenant) = (ctx.quiet.clone(), ctx.pool.clone(), tenant.to_string());
        tokio::spawn(async move {
            if let Err(e) = quiet.prime(&pool, &tenant).await {
                tracing::debug!(error = %e, "could not prime the memory of empty pulls");
            }
        });
    }
}

/// An empty page answered from memory: the cursor the device sent, nothing else.
fn empty_page(ctx: &SyncCtx, who: &Principal, cursor: &Cursor, names: &[&str]) -> PullResponse {
    let cursor = cursor.encode(&ctx.keys);
    ctx.pull_ledger.record(who, cursor.clone());
    metrics::counter!("sync_pulls_from_memory_total").increment(1);
    tracing::debug!(device_id = %who.device_id, tenant = %who.tenant, "pull answered from memory");
    PullResponse {
        success: true,
        timestamp: Utc::now(),
        cursor,
        has_more: false,
        changes: names.iter().map(|n| (n.to_string(), Vec::new())).collect(),
        conflicts: None,
    }
}
