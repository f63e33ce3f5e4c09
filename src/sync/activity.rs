//! Sync activity: the pull ledger (per device, the latest cursor, when and how many
//! pulls, written once a second) and the pulls and pushes per hour the console charts
//! (`sync_activity`, kept two weeks).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::PgPool;

use crate::auth::Principal;

/// Pull bookkeeping waiting to be written: per device, the latest cursor, when it was
/// issued, and how many pulls. One statement a second writes it all (`flush`), so
/// a fleet's pulls cost no write each; the state and status routes flush first, and a
/// push answers with the pending cursor. A crash loses at most a second of this
/// bookkeeping, never data: cursors live on the devices.
///
/// Entries are kept per token generation (`auth::session`) and written only while the
/// device still has it: pulls of a session that was ended (a device released and taken
/// by another user) never land on the next session's state, and a revoked device's or
/// a disabled user's pulls (answered from memory before the note arrived) on nothing.
#[derive(Debug, Default)]
pub struct PullLedger {
    pending: Mutex<HashMap<Key, Pending>>,
}

/// Tenant, device id and token generation.
type Key = (String, String, i64);

fn key(who: &Principal) -> Key {
    (who.tenant.clone(), who.device_id.clone(), who.generation)
}

#[derive(Debug)]
struct Pending {
    cursor: String,
    at: DateTime<Utc>,
    pulls: i64,
}

impl PullLedger {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Pending>> {
        // The map stays consistent whatever panicked while holding it.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes a finished pull of the caller's device.
    pub fn record(&self, who: &Principal, cursor: String) {
        let at = Utc::now();
        let mut pending = self.entries();
        let entry = pending.entry(key(who)).or_insert_with(|| Pending {
            cursor: String::new(),
            at,
            pulls: 0,
        });
        entry.cursor = cursor;
        entry.at = at;
        entry.pulls += 1;
    }

    /// The cursor of a pull of the caller's device not written yet.
    pub fn pending_cursor(&self, who: &Principal) -> Option<String> {
        self.entries().get(&key(who)).map(|p| p.cursor.clone())
    }

    /// Writes what is pending in one statement; on failure it stays pending.
    pub async fn flush(&self, pool: &PgPool) -> sqlx::Result<()> {
        let batch: Vec<(Key, Pending)> = std::mem::take(&mut *self.entries()).into_iter().collect();
        if batch.is_empty() {
            return Ok(());
        }
        let tenants: Vec<&str> = batch.iter().map(|((t, _, _), _)| t.as_str()).collect();
        let device_ids: Vec<&str> = batch.iter().map(|((_, d, _), _)| d.as_str()).collect();
        let generations: Vec<i64> = batch.iter().map(|((_, _, g), _)| *g).collect();
        let cursors: Vec<&str> = batch.iter().map(|(_, p)| p.cursor.as_str()).collect();
        let times: Vec<DateTime<Utc>> = batch.iter().map(|(_, p)| p.at).collect();
        let pulls: Vec<i64> = batch.iter().map(|(_, p)| p.pulls).collect();
        let written = sqlx::query(
            "UPDATE devices d
             SET last_pull_at = v.at, cursor = v.cursor, sync_count = d.sync_count + v.pulls
             FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[],
                         $6::bigint[])
                  AS v(tenant, device, cursor, at, pulls, generation)
             WHERE d.tenant_id = v.tenant AND d.device_id = v.device
               AND d.token_generation = v.generation
               -- An ended session's pulls (answered from memory in the moment before
               -- its note arrived) leave no trace on the device.
               AND d.revoked_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM users u
                               WHERE u.id = d.user_id AND u.disabled_at IS NOT NULL)",
        )
        .bind(&tenants)
        .bind(&device_ids)
        .bind(&cursors)
        .bind(&times)
        .bind(&pulls)
        .bind(&generations)
        .execute(pool)
        .await;
        if let Err(e) = written {
            // Put it back under anything newer recorded meanwhile.
            let mut pending = self.entries();
            for (key, old) in batch {
                match pending.get_mut(&key) {
                    Some(newer) => newer.pulls += old.pulls,
                    None => {
                        pending.insert(key, old);
                    }
                }
            }
            return Err(e);
        }
        // Pulls per tenant and hour, for the admin console's chart; best effort (the
        // device state above is what matters).
        let activity = sqlx::query(
            "INSERT INTO sync_activity (tenant_id, hour, pulls)
             SELECT tenant, date_trunc('hour', at), sum(pulls)::bigint
             FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) AS v(tenant, at, pulls)
             GROUP BY 1, 2
             ON CONFLICT (tenant_id, hour) DO UPDATE
                SET pulls = sync_activity.pulls + EXCLUDED.pulls",
        )
        .bind(&tenants)
        .bind(&times)
        .bind(&pulls)
        .execute(pool)
        .await;
        if let Err(e) = activity {
            tracing::debug!(error = %e, "counting pulls per hour failed");
        }
        Ok(())
    }

    /// Writes what is pending now, for a reader that shows it (a failure is logged and
    /// left to the next flush).
    pub async fn flush_now(&self, pool: &PgPool) {
        if let Err(e) = self.flush(pool).await {
            tracing::warn!(error = %e, "writing pull bookkeeping failed; will retry");
        }
    }

    /// Flushes every second until `shutdown`, then once more; sweeps the hourly counts
    /// at start and every hour.
    pub async fn run(
        self: std::sync::Arc<Self>,
        pool: PgPool,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            let stopping = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = interval.tick() => false,
            };
            if ticks.is_multiple_of(3600)
                && let Err(e) = prune_hours(&pool).await
            {
                tracing::debug!(error = %e, "sweeping old pull counts failed; will retry");
            }
            ticks += 1;
            if let Err(e) = self.flush(&pool).await {
                tracing::warn!(error = %e, "writing pull bookkeeping failed; will retry");
            }
            if stopping {
                return;
            }
        }
    }
}

/// Hourly counts older than two weeks go (the chart shows one day).
async fn prune_hours(pool: &PgPool) -> sqlx::Result<u64> {
    sqlx::query("DELETE FROM sync_activity WHERE hour < now() - interval '14 days'")
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
}

/// Pulls and pushes in one hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hour {
    pub start: DateTime<Utc>,
    pub pulls: i64,
    pub pushes: i64,
}

/// The tenant's last 24 hours, oldest first, every hour present. Pulls come from the
/// ledger's hourly counts; pushes are the device transactions that changed rows
/// (history), one per push.
pub async fn last_day(pool: &PgPool, tenant: &str) -> sqlx::Result<Vec<Hour>> {
    let now = Utc::now();
    let first = now.duration_trunc(Duration::hours(1)).unwrap_or(now) - Duration::hours(23);
    let rows: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "WITH hours AS (
             SELECT generate_series($2::timestamptz, $2::timestamptz + interval '23 hours',
                                    interval '1 hour') AS hour),
         pushes AS (
             SELECT date_trunc('hour', changed_at) AS hour, count(DISTINCT (origin_device, xid)) AS n
             FROM sync_row_history
             WHERE tenant_id = $1 AND origin_device IS NOT NULL AND changed_at >= $2
             GROUP BY 1)
         SELECT h.hour, coalesce(a.pulls, 0), coalesce(p.n, 0)
         FROM hours h
         LEFT JOIN sync_activity a ON a.tenant_id = $1 AND a.hour = h.hour
         LEFT JOIN pushes p ON p.hour = h.hour
         ORDER BY h.hour",
    )
    .bind(tenant)
    .bind(first)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(start, pulls, pushes)| Hour {
            start,
            pulls,
            pushes,
        })
        .collect())
}
