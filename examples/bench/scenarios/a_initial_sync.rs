//! (a) Initial sync: a fresh device pulls a tenant's 100,000 kpi_data rows page by
//! page until `has_more` is false, at limit 5000 (the maximum) and 500 (the default);
//! rows/s, with the row count verified. Also at limit 5000 without gzip.
//!
//! Baseline: the same rows read directly with sqlx in pages of the same size, as the
//! JSON a client gets (keyset: `SELECT id, to_jsonb(t) - 'tenant_id' FROM kpi_data t
//! WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, decoded to JSON values).
//! Runs are interleaved (nas-sync, baseline, ...) and the median is reported.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Outcome;
use crate::client::{Api, Device};
use crate::report::{Goal, Row};
use crate::{Ctx, PASSWORD, db, stats};

const TENANT: &str = "t-a";
const USER: &str = "a-manager";

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let rows = ctx.sizes.a_rows;
    let t = Instant::now();
    ctx.add_user(USER, "manager", None, TENANT).await?;
    let load_secs = db::load_kpi_rows(&ctx.pool, TENANT, rows, |done, secs| {
        eprintln!(
            "        loaded {done} of {rows} rows ({:.0} rows/s)",
            done as f64 / secs
        );
    })
    .await?;
    let vacuum_secs = db::settle_storage(&ctx.pool).await?;
    db::settle(&ctx.pool).await?;
    ctx.phase_done(&format!("(a) load {rows} rows + vacuum"), t);

    let plain = ctx.api.without_gzip()?;
    let mut runs: Vec<(&str, i64, Vec<f64>)> = vec![
        ("nas-sync", 5000, vec![]),
        ("baseline", 5000, vec![]),
        ("nas-sync", 500, vec![]),
        ("baseline", 500, vec![]),
        ("nas-sync no gzip", 5000, vec![]),
    ];
    let t = Instant::now();
    for rep in 0..ctx.sizes.a_repeats {
        for (kind, limit, rates) in &mut runs {
            // A fresh device per HTTP run, logged in before the clock starts.
            let api = if *kind == "nas-sync no gzip" {
                &plain
            } else {
                &ctx.api
            };
            let dev = match *kind {
                "baseline" => None,
                _ => Some(
                    api.login(
                        USER,
                        PASSWORD,
                        &format!("a-fresh-{}-{rep}", runs_key(kind, *limit)),
                    )
                    .await?,
                ),
            };
            let started = Instant::now();
            let got = match &dev {
                None => baseline(&ctx.pool, *limit).await?,
                Some(dev) => http_sync(api, dev, *limit).await?,
            };
            let secs = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                got == rows as usize,
                "{kind} limit {limit}: read {got} rows, expected {rows}"
            );
            let rate = got as f64 / secs;
            ctx.progress(format!(
                "  (a) run {} {kind} limit {limit}: {got} rows in {secs:.2} s = {rate:.0} rows/s",
                rep + 1
            ));
            rates.push(rate);
        }
    }
    ctx.phase_done("(a) measure", t);

    let med = |kind: &str, limit: i64| {
        runs.iter()
            .find(|(k, l, _)| *k == kind && *l == limit)
            .map(|(_, _, r)| stats::median(r))
            .unwrap_or(f64::NAN)
    };
    let label = "sqlx keyset pages of the same size, to_jsonb rows decoded";
    let out_rows = vec![
        Row::new(
            "a",
            &format!("initial sync {rows} rows, limit 5000"),
            med("nas-sync", 5000),
            "rows/s",
        )
        .vs(med("baseline", 5000), label)
        .goal(Goal::RatioAtLeast(0.8)),
        Row::new(
            "a",
            &format!("initial sync {rows} rows, limit 500"),
            med("nas-sync", 500),
            "rows/s",
        )
        .vs(med("baseline", 500), label)
        .goal(Goal::RatioAtLeast(0.5)),
        Row::new(
            "a",
            "initial sync, limit 5000, no gzip",
            med("nas-sync no gzip", 5000),
            "rows/s",
        )
        .vs(med("baseline", 5000), label)
        .goal(Goal::RatioAtLeast(0.5)),
    ];
    let details = json!({
        "tenant_rows": rows, "load_secs": load_secs, "vacuum_checkpoint_secs": vacuum_secs,
        "repeats": ctx.sizes.a_repeats,
        "runs_rows_per_sec": runs.iter().map(|(k, l, r)| json!({"kind": k, "limit": l, "rates": r})).collect::<Vec<Value>>(),
    });
    Ok(Outcome {
        rows: out_rows,
        details,
    })
}

/// A device id part naming the run kind.
fn runs_key(kind: &str, limit: i64) -> String {
    format!("{}-{limit}", kind.replace(' ', "-"))
}

/// A fresh device syncs everything; returns the kpi_data rows received.
async fn http_sync(api: &Api, dev: &Device, limit: i64) -> anyhow::Result<usize> {
    let mut cursor: Option<String> = None;
    let mut rows = 0;
    loop {
        let page = api.pull(dev, cursor.as_deref(), Some(limit)).await?;
        rows += page.kpi_rows;
        cursor = Some(page.cursor);
        if !page.has_more {
            return Ok(rows);
        }
    }
}

/// The same rows straight from PostgreSQL, keyset-paged.
async fn baseline(pool: &sqlx::PgPool, limit: i64) -> anyhow::Result<usize> {
    let mut after = Uuid::nil();
    let mut rows = 0;
    loop {
        let page: Vec<(Uuid, Value)> = sqlx::query_as(
            "SELECT id, to_jsonb(t) - 'tenant_id' FROM kpi_data t
             WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(TENANT)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
        .context("baseline page")?;
        rows += page.len();
        match page.last() {
            Some((id, _)) if page.len() as i64 == limit => after = *id,
            _ => return Ok(rows),
        }
    }
}
