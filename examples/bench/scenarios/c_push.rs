//! (c) One push of 10,000 kpi_data rows by a manager device (the push maximum): 5,000
//! new rows and 5,000 updates of existing rows carrying the right base version; every
//! row must come back applied, without conflict or error. rows/s, median of 3 runs
//! with fresh ids each time.
//!
//! Baseline: the same shape of 10,000 rows (other ids, other existing rows) written in
//! one statement, `INSERT INTO kpi_data (...) SELECT ... FROM
//! jsonb_populate_recordset(NULL::kpi_data, $1) ON CONFLICT (id) DO UPDATE SET ...
//! RETURNING` the stored rows, on the same table: its sync triggers (change log,
//! history, notify) fire too. Runs are interleaved.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Outcome;
use crate::client::kpi_row;
use crate::report::{Goal, Row};
use crate::{Ctx, PASSWORD, db, stats};

const TENANT: &str = "t-c";

const BASELINE_SQL: &str = "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value, period, updated_at, deleted)
     SELECT r.id, $2, r.store_id, r.metric, r.value, r.period, r.updated_at, coalesce(r.deleted, false)
     FROM jsonb_populate_recordset(NULL::kpi_data, $1) r
     ON CONFLICT (id) DO UPDATE SET metric = EXCLUDED.metric, value = EXCLUDED.value,
         period = EXCLUDED.period, updated_at = EXCLUDED.updated_at, deleted = EXCLUDED.deleted
     RETURNING to_jsonb(kpi_data) - 'tenant_id'";

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.sizes.c_rows;
    let rounds = ctx.sizes.c_rounds;
    let half = n / 2;
    // Existing rows to update: one half-batch per run, for nas-sync and the baseline.
    let existing = (half * rounds * 2) as i64;
    let t = Instant::now();
    ctx.add_user("c-manager", "manager", None, TENANT).await?;
    db::load_kpi_rows(&ctx.pool, TENANT, existing, |_, _| {}).await?;
    db::settle_storage(&ctx.pool).await?;
    let dev = ctx.api.login("c-manager", PASSWORD, "c-device").await?;
    let mut pool_rows = db::sample_rows(&ctx.pool, TENANT, existing).await?;
    ctx.phase_done(&format!("(c) load {existing} rows to update"), t);

    let mut nas = Vec::new();
    let mut base = Vec::new();
    let t = Instant::now();
    for round in 0..rounds {
        for kind in ["nas-sync", "baseline"] {
            let updates: Vec<(Uuid, String, i64)> = pool_rows.split_off(pool_rows.len() - half);
            let mut rows: Vec<Value> = (0..n - half)
                .map(|i| kpi_row(Uuid::new_v4(), &format!("store-{}", i % 20), i, 0))
                .collect();
            rows.extend(
                updates
                    .iter()
                    .enumerate()
                    .map(|(i, (id, store, version))| kpi_row(*id, store, i + 7, *version)),
            );
            let started = Instant::now();
            if kind == "nas-sync" {
                ctx.api.push_kpi(&dev, &rows).await?;
            } else {
                let stored: Vec<Value> = sqlx::query_scalar(BASELINE_SQL)
                    .bind(Value::Array(rows))
                    .bind(TENANT)
                    .fetch_all(&ctx.pool)
                    .await
                    .context("baseline upsert")?;
                anyhow::ensure!(stored.len() == n, "baseline stored {} rows", stored.len());
            }
            let secs = started.elapsed().as_secs_f64();
            let rate = n as f64 / secs;
            ctx.progress(format!(
                "  (c) run {} {kind}: {n} rows in {secs:.2} s = {rate:.0} rows/s",
                round + 1
            ));
            if kind == "nas-sync" {
                nas.push(rate);
            } else {
                base.push(rate);
            }
        }
    }
    ctx.phase_done("(c) measure", t);

    let rows = vec![
        Row::new(
            "c",
            &format!("push {n} rows ({half} new + {} updates)", n - half),
            stats::median(&nas),
            "rows/s",
        )
        .vs(
            stats::median(&base),
            "one INSERT ... SELECT FROM jsonb_populate_recordset ... ON CONFLICT DO UPDATE RETURNING (sync triggers fire)",
        )
        .goal(Goal::RatioAtLeast(0.8))
        .detail(&format!(
            "{rounds} runs each; nas-sync {:.2} s per push (median)",
            n as f64 / stats::median(&nas)
        )),
    ];
    let details = json!({
        "rows_per_push": n, "new": n - half, "updates": half, "runs": rounds,
        "nas_sync_rows_per_sec": nas, "baseline_rows_per_sec": base,
    });
    Ok(Outcome { rows, details })
}
