//! Bounded history: a job that forgets what no device can still need, so storage and
//! query cost stay flat over months.
//!
//! - The change log keeps one entry per row, so it grows only through tombstones
//!   (entries of deleted rows). Tombstones older than the retention period are removed,
//!   and the newest position removed is recorded as the floor (`retained_from` in
//!   `server_meta`) in the same transaction. A cursor below the floor may have missed a
//!   removed tombstone, so its pull answers `RESYNC_REQUIRED`; newer cursors and full
//!   syncs are unaffected (a fresh device never needs a tombstone).
//! - Row history loses versions older than the period, except each live row's latest
//!   version (the base a future `merge` needs).
//! - Horizon marks, recorded push answers and resolved conflicts older than the period
//!   go too, and so do the rows other modules hand in as `Aged` (finished Odoo batches,
//!   BridgeCore local ids): the engine knows them only as a name and a statement.
//!
//! Every delete runs in chunks of its own short transaction, so the job never holds
//! locks that pushes wait for. One process at a time runs it (advisory lock).

use std::time::Duration;

use sqlx::PgPool;

use super::cursor::Position;

/// Rows deleted per statement.
const CHUNK: i64 = 5_000;
/// History ids examined per statement.
const HISTORY_SPAN: i64 = 20_000;
/// Advisory lock key of the job ("nas-sync retention").
const LOCK_KEY: i64 = 0x006e_6173_7265_746e;

/// What the job keeps.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// How long history is kept (`NAS_SYNC_RETENTION_DAYS`); zero turns the job off.
    pub keep: Duration,
    /// A version goes only once the audit trail has sealed the one after it (on unless
    /// `NAS_SYNC_AUDIT=off`: with no sealer, waiting would keep history for good).
    pub wait_for_audit: bool,
}

/// Another module's rows that age out with the same period.
#[derive(Clone, Copy, Debug)]
pub struct Aged {
    /// The name the run reports them under.
    pub what: &'static str,
    /// Deletes those older than `$1` (a timestamptz).
    pub delete_older_than: &'static str,
}

/// What one run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub tombstones: u64,
    pub history: u64,
    pub horizons: u64,
    pub push_answers: u64,
    /// Resolved conflicts (open ones stay until resolved).
    pub conflicts: u64,
    /// The `Aged` rows, by name.
    pub others: std::collections::BTreeMap<&'static str, u64>,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.tombstones
            + self.history
            + self.horizons
            + self.push_answers
            + self.conflicts
            + self.others.values().sum::<u64>()
    }

    /// How many `Aged` rows of that name went.
    pub fn other(&self, what: &str) -> u64 {
        self.others.get(what).copied().unwrap_or(0)
    }
}

/// The oldest position a cursor may hold, if anything was ever pruned.
pub fn parse_floor(value: &str) -> Option<Position> {
    let (xid, seq) = value.split_once(':')?;
    Some(Position {
        xid: xid.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

/// Removes what is older than the policy keeps. `None` when another process holds the job.
pub async fn run_once(
    pool: &PgPool,
    policy: Policy,
    aged: &[Aged],
) -> sqlx::Result<Option<Pruned>> {
    // A connection of its own, closed at the end: were the job dropped half-way
    // (shutdown), the session ends and the lock with it, instead of going back to the
    // pool still held.
    let mut lock = pool.acquire().await?.detach();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut lock)
        .await?;
    if !got {
        return Ok(None);
    }
    let result = prune(pool, policy, aged).await;
    use sqlx::Connection;
    lock.close().await?;
    result.map(Some)
}

async fn prune(pool: &PgPool, policy: Policy, aged: &[Aged]) -> sqlx::Result<Pruned> {
    let cutoff: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now() - make_interval(secs => $1)")
            .bind(policy.keep.as_secs_f64())
            .fetch_one(pool)
            .await?;
    let mut out = Pruned {
        tombstones: prune_tombstones(pool, cutoff).await?,
        history: prune_history(pool, cutoff, policy.wait_for_audit).await?,
        ..Pruned::default()
    };
    for (sql, slot) in [
        (
            "DELETE FROM sync_horizons WHERE at < $1",
            &mut out.horizons as &mut u64,
        ),
        (
            "DELETE FROM push_log WHERE created_at < $1",
            &mut out.push_answers,
        ),
        (
            "DELETE FROM sync_conflicts WHERE status = 'resolved' AND resolved_at < $1",
            &mut out.conflicts,
        ),
    ] {
        *slot = sqlx::query(sql)
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected();
    }
    for a in aged {
        let n = sqlx::query(a.delete_older_than)
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected();
        out.others.insert(a.what, n);
    }
    Ok(out)
}

/// Old tombstones go, chunk by chunk, each chunk raising the floor in its transaction.
async fn prune_tombstones(
    pool: &PgPool,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<u64> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        let (removed, newest): (i64, Option<String>) = sqlx::query_as(
            "WITH gone AS (
                 DELETE FROM sync_changes WHERE (table_name, row_id) IN (
                     SELECT table_name, row_id FROM sync_changes
                     WHERE deleted AND changed_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING tenant_id, xid, seq, event_id),
             -- Event positions below a pruned tombstone's number answer RESYNC_REQUIRED.
             floors AS (
                 INSERT INTO sync_event_counters AS c (tenant_id, retained_from)
                 SELECT tenant_id, max(event_id) FROM gone
                 WHERE event_id IS NOT NULL GROUP BY tenant_id
                 ON CONFLICT (tenant_id) DO UPDATE
                     SET retained_from = greatest(c.retained_from, EXCLUDED.retained_from))
             SELECT count(*),
                    (SELECT xid::text || ':' || seq FROM gone ORDER BY xid DESC, seq DESC LIMIT 1)
             FROM gone",
        )
        .bind(cutoff)
        .bind(CHUNK)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(newest) = newest {
            let current: Option<String> = sqlx::query_scalar(
                "SELECT value FROM server_meta WHERE key = 'retained_from' FOR UPDATE",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let floor = [current.as_deref(), Some(newest.as_str())]
                .into_iter()
                .flatten()
                .filter_map(|v| parse_floor(v).map(|p| (p, v)))
                .max_by_key(|(p, _)| *p)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| newest.clone());
            crate::db::set_meta(&mut tx, "retained_from", &floor).await?;
        }
        tx.commit().await?;
        total += removed as u64;
        if removed < CHUNK {
            return Ok(total);
        }
    }
}

/// Old versions go, except each live row's latest, and only once the audit trail has
/// sealed the version after them (whose changed fields it reads from them), unless the
/// trail is off (`wait_for_audit` false). Ids grow with time, so the old part is a
/// prefix of the id range, walked in spans through the primary key.
async fn prune_history(
    pool: &PgPool,
    cutoff: chrono::DateTime<chrono::Utc>,
    wait_for_audit: bool,
) -> sqlx::Result<u64> {
    let Some((mut from, end)) = old_history_ids(pool, cutoff).await? else {
        return Ok(0);
    };
    let mut total = 0;
    while from <= end {
        let to = (from + HISTORY_SPAN - 1).min(end);
        total += sqlx::query(
            "WITH sealed AS (SELECT CASE WHEN $4 THEN coalesce((SELECT value::bigint FROM server_meta
                                                           WHERE key = 'audit_sealed_upto'), 0)
                                    ELSE 9223372036854775807 END AS upto)
             DELETE FROM sync_row_history h USING sealed
             WHERE h.id BETWEEN $1 AND $2 AND h.changed_at < $3
               AND ((h.op = 'delete' AND h.id <= sealed.upto)
                    OR EXISTS (SELECT 1 FROM sync_row_history n
                               WHERE n.table_name = h.table_name AND n.row_id = h.row_id
                                 AND n.id > h.id AND n.id <= sealed.upto))",
        )
        .bind(from)
        .bind(to)
        .bind(cutoff)
        .bind(wait_for_audit)
        .execute(pool)
        .await?
        .rows_affected();
        from = to + 1;
    }
    Ok(total)
}

/// The id range that may hold versions older than `cutoff`: from the first id to the
/// last one written before it, found by bisection over the primary key (ids and write
/// times grow together; the delete still checks each row's time).
async fn old_history_ids(
    pool: &PgPool,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<Option<(i64, i64)>> {
    let first: Option<(i64, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, changed_at FROM sync_row_history ORDER BY id LIMIT 1")
            .fetch_optional(pool)
            .await?;
    let Some((first, first_at)) = first else {
        return Ok(None);
    };
    if first_at >= cutoff {
        return Ok(None);
    }
    let last: i64 = sqlx::query_scalar("SELECT max(id) FROM sync_row_history")
        .fetch_one(pool)
        .await?;
    // Invariant: some row at or after `lo` is older than the cutoff; none after `hi` is
    // known to be.
    let (mut lo, mut hi) = (first, last);
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        let at: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
            "SELECT changed_at FROM sync_row_history WHERE id >= $1 ORDER BY id LIMIT 1",
        )
        .bind(mid)
        .fetch_optional(pool)
        .await?;
        match at {
            Some(at) if at < cutoff => lo = mid,
            _ => hi = mid - 1,
        }
    }
    Ok(Some((first, lo)))
}

/// Runs the job every `every` until `shutdown`; a `keep` of zero turns it off.
pub async fn run(
    pool: PgPool,
    policy: Policy,
    every: Duration,
    aged: Vec<Aged>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if policy.keep.is_zero() {
        tracing::info!("history retention is off (NAS_SYNC_RETENTION_DAYS=0)");
        return;
    }
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run_once(&pool, policy, &aged) => r,
        };
        match outcome {
            Ok(Some(p)) if p.total() > 0 => tracing::info!(
                tombstones = p.tombstones,
                history = p.history,
                horizons = p.horizons,
                push_answers = p.push_answers,
                conflicts = p.conflicts,
                others = ?p.others,
                ms = started.elapsed().as_millis() as u64,
                "pruned history older than the retention period"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning old history failed; will retry"),
        }
    }
}
