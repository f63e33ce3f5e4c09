//! The sealer: turns new `sync_row_history` entries into sealed `audit_log` entries,
//! in history order, per tenant chain.
//!
//! An entry is sealed only once no transaction that could still add an older history
//! entry is running; sealing later ones first would leave that one out of the chain.
//! History ids come from a sequence, taken while the writing transaction already has
//! its transaction id. So a tick notes the newest committed id and the snapshot's
//! `xmax` (no running transaction has an id at or above it); once a later horizon
//! (`sync_horizon()`, which only this database's transactions hold back) has passed
//! that `xmax`, every transaction that took an id up to the noted one has ended, and
//! everything up to it is sealed. One process seals at a time (an
//! advisory lock); the position sealed is `server_meta.audit_sealed_upto`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::mac::{Entry, GENESIS, SealKey};

/// History entries sealed per transaction.
const BATCH: i64 = 2000;
/// Entries per INSERT statement (17 parameters each, under PostgreSQL's 65,535).
const INSERT_ROWS: usize = 500;
/// Columns that are not the row's data: the entry has fields of its own for them.
const NOT_DATA: [&str; 4] = ["id", "tenant_id", "version", "updated_at"];

/// What a tick saw, for the next one: the newest committed history id, and the first
/// transaction id not yet assigned then.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mark {
    upto: i64,
    xmax: i64,
}

/// A history entry and what the audit entry made from it needs.
#[derive(sqlx::FromRow)]
struct HistoryRow {
    id: i64,
    tenant_id: String,
    table_name: String,
    row_id: Uuid,
    version: Option<i64>,
    store_id: Option<String>,
    op: String,
    data: Value,
    /// The version before, if any is kept.
    prev: Option<Value>,
    changed_at: DateTime<Utc>,
    origin_device: Option<String>,
    origin_role: Option<String>,
    origin_user: Option<String>,
    origin: String,
}

/// One tick: seals what the previous tick's mark makes safe; returns how many entries
/// were sealed and the mark for the next tick.
pub async fn tick(pool: &PgPool, key: &SealKey, mark: Option<Mark>) -> sqlx::Result<(u64, Mark)> {
    let mut sealed = 0;
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(super::LOCK)
            .fetch_one(&mut *tx)
            .await?;
        let (xmin, xmax, newest, done): (i64, i64, Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT sync_horizon()::text::bigint,
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                    (SELECT max(id) FROM sync_row_history),
                    (SELECT value FROM server_meta WHERE key = 'audit_sealed_upto')",
        )
        .fetch_one(&mut *tx)
        .await?;
        let next = Mark {
            upto: newest.unwrap_or(0),
            xmax,
        };
        let done: i64 = done.and_then(|d| d.parse().ok()).unwrap_or(0);
        let safe = match mark {
            Some(m) if locked && xmin >= m.xmax && m.upto > done => m.upto,
            _ => return Ok((sealed, next)),
        };
        let n = seal_range(&mut tx, key, done, safe.min(done + BATCH)).await?;
        tx.commit().await?;
        sealed += n;
        if done + BATCH >= safe {
            return Ok((sealed, next));
        }
    }
}

/// Seals the history entries with ids in `(after, upto]`.
async fn seal_range(
    tx: &mut sqlx::PgConnection,
    key: &SealKey,
    after: i64,
    upto: i64,
) -> sqlx::Result<u64> {
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT h.id, h.tenant_id, h.table_name, h.row_id, h.version,
                h.data ->> (SELECT t.scope_column FROM sync_tables t WHERE t.table_name = h.table_name)
                    AS store_id,
                h.op, h.data,
                (SELECT p.data FROM sync_row_history p
                 WHERE p.table_name = h.table_name AND p.row_id = h.row_id AND p.id < h.id
                 ORDER BY p.version DESC, p.id DESC LIMIT 1) AS prev,
                h.changed_at, h.origin_device, h.origin_role, h.origin_user,
                coalesce(h.origin, CASE WHEN h.origin_device IS NULL THEN 'sql' ELSE 'push' END)
                    AS origin
         FROM sync_row_history h WHERE h.id > $1 AND h.id <= $2 ORDER BY h.id",
    )
    .bind(after)
    .bind(upto)
    .fetch_all(&mut *tx)
    .await?;
    let mut heads: HashMap<String, (i64, Vec<u8>)> = HashMap::new();
    let mut sealed: Vec<(Entry, Vec<u8>, Vec<u8>)> = Vec::with_capacity(rows.len());
    let mut count = 0;
    for h in rows {
        let tenant = h.tenant_id;
        let head = match heads.get(&tenant) {
            Some(h) => h.clone(),
            None => head_of(tx, &tenant).await?,
        };
        let entry = Entry {
            tenant_id: tenant.clone(),
            seq: head.0 + 1,
            history_id: h.id,
            table_name: h.table_name,
            row_id: h.row_id,
            version: h.version,
            store_id: h.store_id,
            device_time: h
                .data
                .get("updated_at")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            changed: changes(h.prev.as_ref(), &h.data, h.op == "delete"),
            op: h.op,
            server_time: h.changed_at,
            user_name: h.origin_user,
            device_id: h.origin_device,
            role: h.origin_role,
            origin: h.origin,
        };
        let seal = key.seal(&head.1, &entry);
        heads.insert(tenant, (entry.seq, seal.clone()));
        sealed.push((entry, head.1, seal));
        count += 1;
    }
    for chunk in sealed.chunks(INSERT_ROWS) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO audit_log (tenant_id, seq, history_id, table_name, row_id, version,
                                    store_id, op, changed, server_time, device_time, user_name,
                                    device_id, role, origin, prev_seal, seal) ",
        );
        insert.push_values(chunk, |mut b, (e, prev, seal)| {
            b.push_bind(&e.tenant_id)
                .push_bind(e.seq)
                .push_bind(e.history_id)
                .push_bind(&e.table_name)
                .push_bind(e.row_id)
                .push_bind(e.version)
                .push_bind(&e.store_id)
                .push_bind(&e.op)
                .push_bind(&e.changed)
                .push_bind(e.server_time)
                .push_bind(e.device_time)
                .push_bind(&e.user_name)
                .push_bind(&e.device_id)
                .push_bind(&e.role)
                .push_bind(&e.origin)
                .push_bind(prev)
                .push_bind(seal);
        });
        insert.build().execute(&mut *tx).await?;
    }
    crate::db::set_meta(tx, "audit_sealed_upto", &upto.to_string()).await?;
    Ok(count)
}

/// A tenant's newest entry (its place and seal), or where its chain starts.
async fn head_of(tx: &mut sqlx::PgConnection, tenant: &str) -> sqlx::Result<(i64, Vec<u8>)> {
    let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, seal FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(last) = last {
        return Ok(last);
    }
    let start: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq - 1, prev_seal FROM audit_checkpoints WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(start.unwrap_or((0, GENESIS.to_vec())))
}

/// The columns whose value differs between `before` and `after`, as `[old, new]`; a
/// deletion lists every column as `[old, null]`.
pub fn changes(before: Option<&Value>, after: &Value, deleted: bool) -> Value {
    let empty = Map::new();
    let old = before.and_then(Value::as_object).unwrap_or(&empty);
    let new = after.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    for (name, value) in new {
        if NOT_DATA.contains(&name.as_str()) {
            continue;
        }
        if deleted {
            out.insert(name.clone(), Value::Array(vec![value.clone(), Value::Null]));
            continue;
        }
        let was = old.get(name).cloned().unwrap_or(Value::Null);
        if before.is_none() || was != *value {
            out.insert(name.clone(), Value::Array(vec![was, value.clone()]));
        }
    }
    Value::Object(out)
}

/// Seals everything written before the call: ticks until the mark taken at the start
/// is sealed (bounded; for the CLI and tests, which do not wait for the background
/// task). Returns how many entries were sealed.
pub async fn seal_all(pool: &PgPool, key: &SealKey) -> sqlx::Result<u64> {
    let (mut total, first) = tick(pool, key, None).await?;
    for _ in 0..3000 {
        total += tick(pool, key, Some(first)).await?.0;
        let done: Option<String> =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'audit_sealed_upto'")
                .fetch_optional(pool)
                .await?;
        if done.and_then(|d| d.parse::<i64>().ok()).unwrap_or(0) >= first.upto {
            return Ok(total);
        }
        // Not yet safe (a transaction that began earlier is still open), or another
        // process holds the sealer's lock: wait and look again.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(total)
}

/// How often the audit's own retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Seals every `every` until `shutdown`, and prunes entries older than `keep` (zero:
/// never) once an hour.
pub async fn run(
    pool: PgPool,
    key: SealKey,
    every: Duration,
    keep: Duration,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut mark = None;
    let mut pruned_at: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if !keep.is_zero() && pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(std::time::Instant::now());
            match super::prune::prune(&pool, &key, keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    entries = n,
                    "pruned audit entries older than the audit retention"
                ),
                Err(e) => tracing::warn!(error = %e, "pruning the audit trail failed; will retry"),
            }
        }
        match tick(&pool, &key, mark).await {
            Ok((n, next)) => {
                if n > 0 {
                    metrics::counter!("audit_entries_sealed_total").increment(n);
                }
                mark = Some(next);
            }
            Err(e) => tracing::warn!(error = %e, "sealing the audit trail failed; will retry"),
        }
    }
}
