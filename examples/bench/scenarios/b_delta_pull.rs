//! (b) Cost follows change: a delta pull of 100 changed rows from a tenant with
//! 10,000 kpi_data rows and from one with 1,000,000 (separate tenants and users in the
//! same database). Each device first syncs fully (limit 5000); then, per round, 100
//! different rows of each tenant are updated in SQL (`UPDATE ... WHERE id = ANY`), the
//! horizon is waited for, and the delta pull is timed. Rounds alternate tenants;
//! medians are compared: 1M/10k should stay under 1.3.
//!
//! Baseline: `SELECT to_jsonb(t) FROM kpi_data t WHERE id = ANY($1)` for the same 100
//! ids, timed right after each pull.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Outcome;
use crate::client::Device;
use crate::report::{Goal, Row};
use crate::{Ctx, PASSWORD, db, stats};

const CHANGED: usize = 100;

struct Side {
    label: String,
    tenant: String,
    rows: i64,
    dev: Device,
    cursor: String,
    ids: Vec<Uuid>,
    pull_ms: Vec<f64>,
    base_ms: Vec<f64>,
    full_sync_secs: f64,
}

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let rounds = ctx.sizes.b_rounds;
    let mut sides = Vec::new();
    let mut loads = Vec::new();
    for (label, rows) in [("small", ctx.sizes.b_small), ("large", ctx.sizes.b_large)] {
        let tenant = format!("t-b-{label}");
        let user = format!("b-{label}-manager");
        ctx.add_user(&user, "manager", None, &tenant).await?;
        let t = Instant::now();
        let secs = db::load_kpi_rows(&ctx.pool, &tenant, rows, |done, secs| {
            eprintln!(
                "        {tenant}: loaded {done} of {rows} rows ({:.0} rows/s)",
                done as f64 / secs
            );
        })
        .await?;
        ctx.phase_done(&format!("(b) load {rows} rows into {tenant}"), t);
        loads.push(json!({"tenant": tenant, "rows": rows, "load_secs": secs}));
        let dev = ctx
            .api
            .login(&user, PASSWORD, &format!("b-{label}-device"))
            .await?;
        sides.push(Side {
            label: label.to_string(),
            tenant,
            rows,
            dev,
            cursor: String::new(),
            ids: Vec::new(),
            pull_ms: Vec::new(),
            base_ms: Vec::new(),
            full_sync_secs: 0.0,
        });
    }
    let t = Instant::now();
    let vacuum_secs = db::settle_storage(&ctx.pool).await?;
    ctx.phase_done("(b) vacuum + checkpoint", t);
    db::settle(&ctx.pool).await?;

    for side in &mut sides {
        let t = Instant::now();
        let (cursor, got, pages) = ctx.api.sync_down(&side.dev, None, Some(5000)).await?;
        anyhow::ensure!(
            got == side.rows as usize,
            "full sync of {}: {got} rows, expected {}",
            side.tenant,
            side.rows
        );
        side.cursor = cursor;
        side.full_sync_secs = ctx.phase_done(
            &format!(
                "(b) full sync of {} rows ({pages} pages of 5000)",
                side.rows
            ),
            t,
        );
        side.ids = db::sample_rows(&ctx.pool, &side.tenant, (rounds * CHANGED) as i64)
            .await?
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
    }

    let t = Instant::now();
    for round in 0..rounds {
        for side in &mut sides {
            let ids = &side.ids[round * CHANGED..(round + 1) * CHANGED];
            sqlx::query("UPDATE kpi_data SET value = value + 1 WHERE id = ANY($1)")
                .bind(ids)
                .execute(&ctx.pool)
                .await
                .context("updating 100 rows")?;
            db::settle(&ctx.pool).await?;

            let started = Instant::now();
            let page = ctx.api.pull(&side.dev, Some(&side.cursor), None).await?;
            side.pull_ms.push(started.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(
                page.kpi_rows == CHANGED && page.rows == CHANGED && !page.has_more,
                "delta pull of {} round {round}: {} rows (has_more {}), expected {CHANGED}",
                side.tenant,
                page.rows,
                page.has_more
            );
            side.cursor = page.cursor;

            let started = Instant::now();
            let docs: Vec<Value> =
                sqlx::query_scalar("SELECT to_jsonb(t) FROM kpi_data t WHERE id = ANY($1)")
                    .bind(ids)
                    .fetch_all(&ctx.pool)
                    .await
                    .context("baseline read")?;
            side.base_ms.push(started.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(docs.len() == CHANGED, "baseline read {} rows", docs.len());
        }
        if (round + 1) % 10 == 0 {
            ctx.progress(format!("  (b) {} of {rounds} rounds", round + 1));
        }
    }
    ctx.phase_done(&format!("(b) {rounds} rounds of delta pulls"), t);

    let (small, large) = (&sides[0], &sides[1]);
    let base_label = "sqlx: SELECT to_jsonb(t) FROM kpi_data t WHERE id = ANY(100 ids)";
    let mut rows = Vec::new();
    for s in [small, large] {
        let p = stats::Summary::of(s.pull_ms.clone());
        rows.push(
            Row::new(
                "b",
                &format!("delta pull 100 rows, tenant of {} rows (median)", s.rows),
                p.p50,
                "ms",
            )
            .vs(stats::median(&s.base_ms), base_label)
            .detail(&format!(
                "{} pulls: p90 {:.2} ms, max {:.2} ms",
                p.n, p.p90, p.max
            )),
        );
    }
    rows.push(
        Row::new(
            "b",
            &format!(
                "delta pull: {} rows / {} rows tenant",
                large.rows, small.rows
            ),
            stats::median(&large.pull_ms),
            "ms",
        )
        .vs(
            stats::median(&small.pull_ms),
            "the same pull in the small tenant",
        )
        .goal(Goal::RatioBelow(1.3)),
    );
    rows.push(
        Row::new(
            "b",
            &format!("full sync of {} rows, limit 5000 (one run)", large.rows),
            large.rows as f64 / large.full_sync_secs,
            "rows/s",
        )
        .detail("informative: how a device catches up on the large tenant"),
    );
    let details = json!({
        "loads": loads,
        "vacuum_checkpoint_secs": vacuum_secs,
        "rounds": rounds,
        "sides": sides.iter().map(|s| json!({
            "label": s.label, "tenant": s.tenant, "rows": s.rows,
            "full_sync_secs": s.full_sync_secs,
            "pull_ms": stats::Summary::of(s.pull_ms.clone()).to_json(),
            "baseline_ms": stats::Summary::of(s.base_ms.clone()).to_json(),
            "pull_ms_all": s.pull_ms, "baseline_ms_all": s.base_ms,
        })).collect::<Vec<_>>(),
    });
    Ok(Outcome { rows, details })
}
