//! Devices: bound to a user at login (until it signs out or an operator releases the
//! device: `auth::session`), revocable by the operator, carrying their per-device sync
//! state (last pull and push, cursor, sync count).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::Principal;

/// A device as the operator and the state route see it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Device {
    pub tenant_id: String,
    pub device_id: String,
    pub username: String,
    pub device_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_pull_at: Option<DateTime<Utc>>,
    pub last_push_at: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub sync_count: i64,
    pub revoked_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT d.tenant_id, d.device_id, u.username, d.device_name, d.created_at,
        d.last_pull_at, d.last_push_at, d.cursor, d.sync_count, d.revoked_at
    FROM devices d JOIN users u ON u.id = d.user_id";

/// Every device, or those of one tenant, most recently synced first.
pub async fn list(pool: &PgPool, tenant: Option<&str>) -> sqlx::Result<Vec<Device>> {
    let sql = format!(
        "{SELECT} WHERE $1::text IS NULL OR d.tenant_id = $1
         ORDER BY greatest(d.last_pull_at, d.last_push_at) DESC NULLS LAST, d.device_id"
    );
    sqlx::query_as::<_, Device>(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .fetch_all(pool)
        .await
}

pub async fn get(pool: &PgPool, tenant: &str, device_id: &str) -> sqlx::Result<Option<Device>> {
    let sql = format!("{SELECT} WHERE d.tenant_id = $1 AND d.device_id = $2");
    sqlx::query_as::<_, Device>(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(device_id)
        .fetch_optional(pool)
        .await
}

/// Revokes a device: its access and refresh tokens fail with `DEVICE_REVOKED` at
/// once (every request checks the device). Returns false when no such device exists.
pub async fn revoke(pool: &PgPool, tenant: &str, device_id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE devices SET revoked_at = coalesce(revoked_at, now())
         WHERE tenant_id = $1 AND device_id = $2",
    )
    .bind(tenant)
    .bind(device_id)
    .execute(pool)
    .await?
    .rows_affected()
        > 0;
    if done {
        tracing::warn!(tenant, device_id, "device revoked");
        // Every server process closes the device's open WebSockets.
        sqlx::query("SELECT pg_notify('nas_sync_revoke', json_build_object('t', $1::text, 'd', $2::text)::text)")
            .bind(tenant)
            .bind(device_id)
            .execute(pool)
            .await?;
    }
    Ok(done)
}

/// Forgets a device's sync state; its next pull without a cursor is a full sync.
pub async fn reset_state(pool: &PgPool, tenant: &str, device_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE devices SET cursor = NULL, last_pull_at = NULL, last_push_at = NULL, sync_count = 0
         WHERE tenant_id = $1 AND device_id = $2",
    )
    .bind(tenant)
    .bind(device_id)
    .execute(pool)
    .await?;
    Ok(())
}

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

    /// Flushes every second until `shutdown`, then once more.
    pub async fn run(
        self: std::sync::Arc<Self>,
        pool: PgPool,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = interval.tick() => false,
            };
            if let Err(e) = self.flush(&pool).await {
                tracing::warn!(error = %e, "writing pull bookkeeping failed; will retry");
            }
            if stopping {
                return;
            }
        }
    }
}
