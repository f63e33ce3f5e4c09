//! Keeping cursors honest over time: the horizon clock (wall time to horizon map for
//! legacy `last_sync_timestamp` pulls), and the epoch check at start that detects a
//! restored or moved database and invalidates every cursor (`RESYNC_REQUIRED`).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Records the current horizon when it moved. The time recorded is read after the
/// snapshot, so every transaction below a recorded horizon finished before its time.
pub async fn tick(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query(
        "WITH now_h AS (SELECT sync_horizon() AS h, clock_timestamp() AS at)
         INSERT INTO sync_horizons (at, horizon)
         SELECT at, h FROM now_h
         WHERE NOT EXISTS (SELECT 1 FROM sync_horizons s, now_h WHERE s.horizon = now_h.h)
         ON CONFLICT DO NOTHING",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Runs the horizon clock until `shutdown` fires.
pub async fn run_clock(pool: PgPool, every: Duration, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(e) = tick(&pool).await {
            tracing::warn!(error = %e, "horizon clock tick failed");
        }
        if let Ok(lag) = horizon_lag_seconds(&pool).await {
            metrics::gauge!("sync_horizon_lag_seconds").set(lag);
        }
    }
}

/// Age of this database's oldest running writing transaction: how long pulls may hold
/// changes back (transactions of other databases do not hold the horizon).
pub async fn horizon_lag_seconds(pool: &PgPool) -> sqlx::Result<f64> {
    sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname = current_database()",
    )
    .fetch_one(pool)
    .await
}

/// Checks at start that cursors still mean what they meant: if the cluster changed
/// (restored elsewhere, or restored to an earlier point: new system id or timeline) or
/// transaction ids went backwards, a new epoch is drawn and the log is renumbered
/// below the horizon, so every device resyncs instead of silently skipping rows.
pub async fn check_epoch(pool: &PgPool) -> anyhow::Result<()> {
    // pg_control_* may be restricted to superusers; without them only xids are checked.
    let fingerprint: Option<String> = sqlx::query_scalar(
        "SELECT s.system_identifier::text || ':' || c.timeline_id::text
         FROM pg_control_system() s, pg_control_checkpoint() c",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE server_meta IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'fingerprint'")
            .fetch_optional(&mut *tx)
            .await?;
    let (max_logged, next_xid): (Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT max(xid::text::bigint) FROM sync_changes),
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
    )
    .fetch_one(&mut *tx)
    .await?;

    let moved = matches!((&stored, &fingerprint), (Some(s), Some(f)) if s != f);
    let rewound = max_logged.is_some_and(|m| m >= next_xid);
    if moved || rewound {
        tracing::warn!(
            moved,
            rewound,
            "database restored or moved: drawing a new epoch; every device will resync"
        );
        sqlx::query("UPDATE server_meta SET value = gen_random_uuid()::text WHERE key = 'epoch'")
            .execute(&mut *tx)
            .await?;
        // Event ids given after the backup are lost with it; devices may hold some.
        // New ids start far above them (2^40 changes), so none is given twice.
        sqlx::query("UPDATE sync_event_counters SET last_event_id = last_event_id + 1099511627776")
            .execute(&mut *tx)
            .await?;
        if rewound {
            // Old entries carry xids from the future of this cluster: bring them below
            // the horizon, keeping their order, so full syncs include them.
            sqlx::query("UPDATE sync_changes SET xid = '1'::xid8")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sync_horizons")
                .execute(&mut *tx)
                .await?;
        }
    }
    if let Some(f) = fingerprint {
        crate::db::set_meta(&mut tx, "fingerprint", &f).await?;
    }
    tx.commit().await?;
    Ok(())
}
