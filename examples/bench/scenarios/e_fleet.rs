//! (e) A fleet at rest: 500 devices each syncing every 30 s at a random phase for a
//! while (3 minutes; `--quick` 40 s): a delta pull (until `has_more` is false) every
//! cycle, and a 1-row push every 5th cycle (each device at a random offset, so a fifth
//! of the fleet pushes in any cycle). Measures the server's CPU (CPU time over wall
//! time, in % of one core) and resident memory (VmRSS every second: average and max).
//!
//! Every other device names its tables in each pull as the Insight apps do
//! (`forms`, `submissions`, `team`, `kpi_data`), the others name none: both halves'
//! pull latencies are reported side by side.
//!
//! Baseline: the same server idle for 30 s (`--quick` 10 s) just before the load.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use super::Outcome;
use super::d_concurrent::INSIGHT_TABLES;
use crate::client::kpi_row;
use crate::report::{Goal, Row};
use crate::stats::{self, Summary};
use crate::{Ctx, mb};

/// What one device did.
#[derive(Default)]
struct Tally {
    pull_ms: Vec<f64>,
    /// Pulls of the devices naming their tables.
    named_pull_ms: Vec<f64>,
    push_ms: Vec<f64>,
    rows_pulled: usize,
    errors: Vec<String>,
}

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.sizes.e_devices;
    let period = Duration::from_secs(ctx.sizes.e_period_secs);
    let load_for = Duration::from_secs(ctx.sizes.e_secs);
    let devices = ctx.fleet(n).await?;

    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, dev) in devices.into_iter().enumerate() {
        let api = ctx.api.clone();
        tasks.push(tokio::spawn(async move {
            let named = i % 2 == 0;
            let (cursor, _, _) = match named {
                true => api.sync_down_tables(&dev, None, &INSIGHT_TABLES).await?,
                false => api.sync_down(&dev, None, Some(5000)).await?,
            };
            anyhow::Ok((dev, cursor, named))
        }));
    }
    let mut fleet = Vec::with_capacity(n);
    for task in tasks {
        fleet.push(task.await??);
    }
    ctx.phase_done(&format!("(e) first sync of {n} devices"), t);

    ctx.progress(format!("  (e) idle baseline: {} s", ctx.sizes.e_idle_secs));
    let sampler = ctx.server.sample();
    tokio::time::sleep(Duration::from_secs(ctx.sizes.e_idle_secs)).await;
    let idle = sampler.finish().await;

    ctx.progress(format!(
        "  (e) {n} devices, a pull every {} s, a 1-row push every 5th cycle, for {} s",
        period.as_secs(),
        load_for.as_secs()
    ));
    let t = Instant::now();
    let sampler = ctx.server.sample();
    let start = tokio::time::Instant::now();
    let deadline = start + load_for;
    let mut tasks = Vec::with_capacity(n);
    for (dev, cursor, named) in fleet {
        let api = ctx.api.clone();
        let phase = Duration::from_millis(stats::random_below(period.as_millis() as u64));
        let offset = stats::random_below(5);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut cursor = cursor;
            let store = dev.store.clone().unwrap_or_else(|| "store-0".into());
            for k in 0u64.. {
                let at = start + phase + period * k as u32;
                if at >= deadline {
                    break;
                }
                tokio::time::sleep_until(at).await;
                let t0 = Instant::now();
                let pulled = match named {
                    true => {
                        api.sync_down_tables(&dev, Some(cursor.clone()), &INSIGHT_TABLES)
                            .await
                    }
                    false => api.sync_down(&dev, Some(cursor.clone()), None).await,
                };
                match pulled {
                    Ok((c, rows, _)) => {
                        cursor = c;
                        tally.rows_pulled += rows;
                        let ms = t0.elapsed().as_secs_f64() * 1e3;
                        match named {
                            true => tally.named_pull_ms.push(ms),
                            false => tally.pull_ms.push(ms),
                        }
                    }
                    Err(e) => tally.errors.push(format!("{e:#}")),
                }
                if (k + offset) % 5 == 4 {
                    let t0 = Instant::now();
                    let row = kpi_row(Uuid::new_v4(), &store, k as usize, 0);
                    match api.push_kpi(&dev, &[row]).await {
                        Ok(_) => tally.push_ms.push(t0.elapsed().as_secs_f64() * 1e3),
                        Err(e) => tally.errors.push(format!("{e:#}")),
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await?;
        all.pull_ms.extend(tally.pull_ms);
        all.named_pull_ms.extend(tally.named_pull_ms);
        all.push_ms.extend(tally.push_ms);
        all.rows_pulled += tally.rows_pulled;
        all.errors.extend(tally.errors);
    }
    let busy = sampler.finish().await;
    ctx.phase_done(&format!("(e) {n} devices for {} s", load_for.as_secs()), t);

    let pulls = Summary::of(all.pull_ms.clone());
    let named_pulls = Summary::of(all.named_pull_ms.clone());
    let every_pull = Summary::of(
        all.pull_ms
            .iter()
            .chain(&all.named_pull_ms)
            .copied()
            .collect(),
    );
    let pushes = Summary::of(all.push_ms.clone());
    let idle_label = "the same server idle, just before";
    let rows = vec![
        Row::new("e", &format!("{n} devices every {} s: server CPU", period.as_secs()), busy.cpu_pct, "% core")
            .vs(idle.cpu_pct, idle_label)
            .goal(Goal::ValueBelow(5.0))
            .detail(&format!(
                "{} pulls (p50 {:.1} ms, p99 {:.1} ms), {} 1-row pushes (p50 {:.1} ms), {} rows pulled, {} errors; PostgreSQL CPU {:.1}% (idle {:.1}%){}",
                every_pull.n, every_pull.p50, every_pull.p99, pushes.n, pushes.p50, all.rows_pulled, all.errors.len(),
                busy.pg_cpu_pct, idle.pg_cpu_pct,
                all.errors.first().map(|e| format!("; first: {e}")).unwrap_or_default()
            )),
        Row::new("e", "pull naming the Insight tables: latency p99", named_pulls.p99, "ms")
            .vs(pulls.p99, "the other half of the fleet, naming no tables")
            .detail(&format!("{} pulls, p50 {:.1} ms (naming none: p50 {:.1} ms)", named_pulls.n, named_pulls.p50, pulls.p50)),
        Row::new("e", "server RSS, average", mb(busy.rss_avg_kib as u64), "MB")
            .vs(mb(idle.rss_avg_kib as u64), idle_label),
        Row::new("e", "server RSS, max", mb(busy.rss_max_kib), "MB")
            .vs(mb(idle.rss_max_kib), idle_label)
            .goal(Goal::ValueBelow(100.0)),
    ];
    if !all.errors.is_empty() {
        ctx.notes.push(format!(
            "(e) {} of {} requests failed; first: {}",
            all.errors.len(),
            pulls.n + named_pulls.n + pushes.n + all.errors.len(),
            all.errors[0]
        ));
    }
    let details = json!({
        "devices": n, "period_secs": period.as_secs(), "load_secs": load_for.as_secs(),
        "idle": idle.to_json(), "load": busy.to_json(),
        "pull_ms": pulls.to_json(), "named_pull_ms": named_pulls.to_json(), "push_ms": pushes.to_json(),
        "rows_pulled": all.rows_pulled, "errors": all.errors.len(),
        "first_errors": all.errors.iter().take(5).collect::<Vec<_>>(),
    });
    Ok(Outcome { rows, details })
}
