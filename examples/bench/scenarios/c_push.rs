//! (c) Pushes of 10,000 kpi_data rows by a manager device (the push maximum): 5,000 new
//! rows and 5,000 updates carrying the right base version; every row must come back
//! applied, without conflict or error. Each timed phase sends `c_pushes` pushes back to
//! back (the updates of one are the new rows of the one before), long enough for the
//! audit sealer (a tick every 2 s) to work alongside; rows/s over the phase, median
//! of `c_rounds` rounds.
//!
//! Three sides, alternating round by round:
//! - **recording**: a server with the audit trail on (the default), which waited for its
//!   sealer to catch up before the phase; how long sealing takes after the last push
//!   is reported too;
//! - **off**: a server with `NAS_SYNC_AUDIT=off` (no sealer anywhere: sealing is
//!   database-wide, so the two cannot share one run of servers);
//! - **baseline**: the same rows written in one statement each, `INSERT INTO kpi_data
//!   (...) SELECT ... FROM jsonb_populate_recordset(NULL::kpi_data, $1) ON CONFLICT (id)
//!   DO UPDATE SET ... RETURNING` the stored rows (its sync triggers fire too), with no
//!   server running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Outcome;
use crate::client::{Api, kpi_row};
use crate::report::{Goal, Row};
use crate::server::ServerProcess;
use crate::{Ctx, PASSWORD, db, stats};

const TENANT: &str = "t-c";

const BASELINE_SQL: &str = "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value, period, updated_at, deleted)
     SELECT r.id, $2, r.store_id, r.metric, r.value, r.period, r.updated_at, coalesce(r.deleted, false)
     FROM jsonb_populate_recordset(NULL::kpi_data, $1) r
     ON CONFLICT (id) DO UPDATE SET metric = EXCLUDED.metric, value = EXCLUDED.value,
         period = EXCLUDED.period, updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted
     RETURNING to_jsonb(kpi_data) - 'tenant_id'";

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Recording,
    Off,
    Baseline,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Recording => "recording",
            Side::Off => "audit off",
            Side::Baseline => "baseline",
        }
    }
}

/// Rows to update: id, store, stored version.
type Existing = Vec<(Uuid, String, i64)>;

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let (n, rounds, pushes) = (ctx.sizes.c_rows, ctx.sizes.c_rounds, ctx.sizes.c_pushes);
    let half = n / 2;
    // The first push of each phase updates loaded rows; later ones, the phase's own.
    let existing = (half * rounds * 3) as i64;
    let t = Instant::now();
    ctx.add_user("c-manager", "manager", None, TENANT).await?;
    db::load_kpi_rows(&ctx.pool, TENANT, existing, |_, _| {}).await?;
    db::settle_storage(&ctx.pool).await?;
    let mut loaded = db::sample_rows(&ctx.pool, TENANT, existing).await?;
    ctx.phase_done(&format!("(c) load {existing} rows to update"), t);

    let (mut rec, mut off, mut base, mut lags) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let t = Instant::now();
    for round in 0..rounds {
        // The baseline runs beside the idle server with the trail off: no sealer.
        let sides = if round % 2 == 0 {
            [Side::Recording, Side::Off, Side::Baseline]
        } else {
            [Side::Off, Side::Baseline, Side::Recording]
        };
        for side in sides {
            let first = loaded.split_off(loaded.len() - half);
            if side != Side::Baseline {
                let audit = if side == Side::Recording { "on" } else { "off" };
                ctx.server.stop().await;
                ctx.server = ServerProcess::start_with(
                    &ctx.server.bin.clone(),
                    &ctx.db_url,
                    &ctx.log_path,
                    &[("NAS_SYNC_AUDIT", audit)],
                )
                .await?;
                ctx.api = Api::new(&ctx.server.base)?;
            }
            if side == Side::Recording {
                // The sealer first seals what the other sides wrote, untimed.
                sealed_within(&ctx.pool, Duration::from_secs(300)).await?;
            }
            let rate = phase(ctx, side != Side::Baseline, first, n, pushes).await?;
            if side == Side::Recording {
                let lag = sealed_within(&ctx.pool, Duration::from_secs(300)).await?;
                lags.push(lag.as_secs_f64());
            }
            ctx.progress(format!(
                "  (c) round {} {}: {pushes} pushes of {n} rows at {rate:.0} rows/s",
                round + 1,
                side.name()
            ));
            match side {
                Side::Recording => rec.push(rate),
                Side::Off => off.push(rate),
                Side::Baseline => base.push(rate),
            }
        }
    }
    // Later scenarios get a fresh default server from the runner.
    ctx.phase_done("(c) measure", t);

    let per_push = |rate: f64| n as f64 / rate;
    let rows = vec![
        Row::new(
            "c",
            &format!("push {n} rows ({half} new + {} updates)", n - half),
            stats::median(&rec),
            "rows/s",
        )
        .vs(
            stats::median(&base),
            "one INSERT ... SELECT FROM jsonb_populate_recordset ... ON CONFLICT DO UPDATE RETURNING (sync triggers fire)",
        )
        .goal(Goal::RatioAtLeast(0.8))
        .detail(&format!(
            "{pushes} pushes back to back, median of {rounds} rounds; {:.2} s per push",
            per_push(stats::median(&rec))
        )),
        Row::new(
            "c",
            "the same pushes, audit trail recording vs off",
            stats::median(&rec),
            "rows/s",
        )
        .vs(
            stats::median(&off),
            "a server with NAS_SYNC_AUDIT=off, same pushes, rounds alternating",
        )
        .goal(Goal::RatioAtLeast(0.9))
        .detail(&format!(
            "sealing done {:.1} s after the last push (median; a tick every 2 s)",
            stats::median(&lags)
        )),
    ];
    let details = json!({
        "rows_per_push": n, "new": n - half, "updates": half, "pushes_per_phase": pushes,
        "rounds": rounds,
        "recording_rows_per_sec": rec, "audit_off_rows_per_sec": off,
        "baseline_rows_per_sec": base, "sealed_after_last_push_secs": lags,
    });
    Ok(Outcome { rows, details })
}

/// `pushes` pushes of `n` rows back to back, through the server or as the baseline
/// statement; rows/s over them all.
async fn phase(
    ctx: &Ctx,
    through_server: bool,
    mut updates: Existing,
    n: usize,
    pushes: usize,
) -> anyhow::Result<f64> {
    let dev = match through_server {
        true => Some(ctx.api.login("c-manager", PASSWORD, "c-device").await?),
        false => None,
    };
    let half = updates.len();
    let started = Instant::now();
    for _ in 0..pushes {
        let new: Vec<(Uuid, String)> = (0..n - half)
            .map(|i| (Uuid::new_v4(), format!("store-{}", i % 20)))
            .collect();
        let mut rows: Vec<Value> = new
            .iter()
            .enumerate()
            .map(|(i, (id, store))| kpi_row(*id, store, i, 0))
            .collect();
        rows.extend(
            updates
                .iter()
                .enumerate()
                .map(|(i, (id, store, version))| kpi_row(*id, store, i + 7, *version)),
        );
        let stored: Vec<Value> = match &dev {
            Some(dev) => {
                let answer = ctx.api.push_kpi(dev, &rows).await?;
                answer["applied"]["kpi_data"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            }
            None => {
                let stored: Vec<Value> = sqlx::query_scalar(BASELINE_SQL)
                    .bind(Value::Array(rows))
                    .bind(TENANT)
                    .fetch_all(&ctx.pool)
                    .await
                    .context("baseline upsert")?;
                anyhow::ensure!(stored.len() == n, "baseline stored {} rows", stored.len());
                stored
            }
        };
        let versions: HashMap<&str, i64> = stored
            .iter()
            .filter_map(|r| Some((r["id"].as_str()?, r["version"].as_i64()?)))
            .collect();
        updates = new
            .into_iter()
            .take(half)
            .map(|(id, store)| {
                let version = versions
                    .get(id.to_string().as_str())
                    .copied()
                    .context("a new row missing from the stored rows")?;
                Ok((id, store, version))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    Ok((n * pushes) as f64 / started.elapsed().as_secs_f64())
}

/// Waits until the audit trail has sealed every history entry written so far; how long
/// that took.
async fn sealed_within(pool: &sqlx::PgPool, bound: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let newest: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM sync_row_history")
        .fetch_one(pool)
        .await?;
    loop {
        let upto: i64 = sqlx::query_scalar(
            "SELECT coalesce((SELECT value::bigint FROM server_meta WHERE key = 'audit_sealed_upto'), 0)",
        )
        .fetch_one(pool)
        .await?;
        if upto >= newest {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < bound,
            "the audit trail sealed up to {upto} of {newest} in {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
