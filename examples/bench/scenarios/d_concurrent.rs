//! (d) 200 devices (logged in through the API, a manager and nine store users) doing
//! empty delta pulls at once:
//!
//! 1. closed loop: 200 requests always in flight (each device pulls again as soon as
//!    its answer arrives) for ~10 s: requests/s and latency percentiles;
//! 2. open loop: requests scheduled on a timer at a fixed rate for ~10 s, whatever
//!    the answers do; latency counts from the *scheduled* send time, so a stalled
//!    server is not hidden (no coordinated omission): p50/p99/max, achieved rate. A
//!    curve of five rates, a fifth of the goal's rate (5,000/s) to all of it, so a
//!    step shows where it starts.
//!
//! Both loads again with the pulls naming their tables as the Insight apps do
//! (`forms`, `submissions`, `team`, `kpi_data`: the seed's selective sync), against
//! the pulls that name none in the same run.
//!
//! Baseline: the same loads against `GET /health` (no database), the open loop at
//! the goal's rate. One reqwest
//! client, HTTP/1.1 keep-alive. The server's CPU during each load is recorded too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Outcome;
use crate::Ctx;
use crate::client::{Api, Device};
use crate::report::{Goal, Row};
use crate::stats::Summary;

/// The tables the Insight apps name in every pull.
pub const INSIGHT_TABLES: [&str; 4] = ["forms", "submissions", "team", "kpi_data"];

/// What one load request does.
#[derive(Clone)]
enum Target {
    /// An empty delta pull by device `i % len`, from its caught-up cursor.
    Pull(Arc<Vec<(Device, String)>>),
    /// The same, naming the Insight tables (from a cursor of that scope).
    PullNamed(Arc<Vec<(Device, String)>>),
    Health,
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Pull(_) => "empty delta pull",
            Target::PullNamed(_) => "empty delta pull naming tables",
            Target::Health => "GET /health",
        }
    }

    /// One request; `Ok(false)` when a pull was not empty.
    async fn hit(&self, api: &Api, i: usize) -> anyhow::Result<bool> {
        match self {
            Target::Pull(devs) => {
                let (dev, cursor) = &devs[i % devs.len()];
                let page = api.pull(dev, Some(cursor), None).await?;
                Ok(page.rows == 0)
            }
            Target::PullNamed(devs) => {
                let (dev, cursor) = &devs[i % devs.len()];
                let page = api.pull_tables(dev, Some(cursor), &INSIGHT_TABLES).await?;
                Ok(page.rows == 0)
            }
            Target::Health => api.health().await.map(|_| true),
        }
    }
}

/// Latencies and counts of one load.
struct Load {
    lat_ms: Vec<f64>,
    errors: usize,
    non_empty: usize,
    first_error: Option<String>,
    /// Completed requests per second over the measured window.
    rate: f64,
    cpu: Option<crate::server::Usage>,
}

impl Load {
    fn summary(&self) -> Summary {
        Summary::of(self.lat_ms.clone())
    }

    fn to_json(&self) -> Value {
        json!({
            "latency_ms": self.summary().to_json(), "errors": self.errors,
            "non_empty_pulls": self.non_empty, "first_error": self.first_error,
            "achieved_rate": self.rate, "resources": self.cpu.map(super::super::server::Usage::to_json),
        })
    }
}

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.sizes.d_devices;
    let devices = ctx.fleet(n).await?;
    // Catch every device up (the load tenant has no rows yet: one page each).
    let t = Instant::now();
    let mut tasks = Vec::new();
    for dev in devices {
        let api = ctx.api.clone();
        tasks.push(tokio::spawn(async move {
            let (cursor, _, _) = api.sync_down(&dev, None, None).await?;
            anyhow::Ok((dev, cursor))
        }));
    }
    let mut caught_up = Vec::with_capacity(n);
    for task in tasks {
        caught_up.push(task.await??);
    }
    ctx.phase_done(&format!("(d) first sync of {n} devices"), t);
    // The same devices' cursors for the Insight tables (a scope of its own).
    let mut named = Vec::with_capacity(n);
    for (dev, _) in &caught_up {
        let (cursor, _, _) = ctx.api.sync_down_tables(dev, None, &INSIGHT_TABLES).await?;
        named.push((dev.clone(), cursor));
    }
    let pull = Target::Pull(Arc::new(caught_up));
    let pull_named = Target::PullNamed(Arc::new(named));

    let secs = ctx.sizes.d_closed_secs;
    let rate = ctx.sizes.d_rate;
    let open_secs = ctx.sizes.d_open_secs;
    let mut results: Vec<(String, Load)> = Vec::new();
    let t = Instant::now();
    for target in [pull.clone(), pull_named.clone(), Target::Health] {
        ctx.progress(format!(
            "  (d) closed loop, {n} in flight, {secs} s: {}",
            target.name()
        ));
        let sampler = ctx.server.sample();
        let mut load = closed_loop(&ctx.api, &target, n, secs).await;
        load.cpu = Some(sampler.finish().await);
        report_progress(ctx, &load);
        results.push((format!("closed {}", target.name()), load));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The curve: a fifth of the goal's rate to all of it, for the pulls; the goal's
    // rate for /health.
    let curve: Vec<u64> = (1..=5).map(|k| rate * k / 5).collect();
    let mut loads: Vec<(Target, u64, String)> = curve
        .iter()
        .map(|r| (pull.clone(), *r, format!("open {r} {}", pull.name())))
        .collect();
    loads.push((
        pull_named.clone(),
        rate,
        format!("open {rate} {}", pull_named.name()),
    ));
    loads.push((Target::Health, rate, format!("open {rate} GET /health")));
    for (target, r, key) in loads {
        ctx.progress(format!(
            "  (d) open loop, {r}/s for {open_secs} s: {}",
            target.name()
        ));
        let sampler = ctx.server.sample();
        let mut load = open_loop(&ctx.api, &target, r, open_secs).await;
        load.cpu = Some(sampler.finish().await);
        report_progress(ctx, &load);
        results.push((key, load));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    ctx.phase_done("(d) measure", t);

    let get = |k: &str| results.iter().find(|(name, _)| name == k).map(|(_, l)| l);
    let (Some(cp), Some(ch), Some(op), Some(oh)) = (
        get("closed empty delta pull"),
        get("closed GET /health"),
        get(&format!("open {rate} empty delta pull")),
        get(&format!("open {rate} GET /health")),
    ) else {
        anyhow::bail!("a load did not run");
    };
    let (Some(cn), Some(on)) = (
        get(&format!("closed {}", pull_named.name())),
        get(&format!("open {rate} {}", pull_named.name())),
    ) else {
        anyhow::bail!("a load naming tables did not run");
    };
    let (cps, chs, ops, ohs) = (cp.summary(), ch.summary(), op.summary(), oh.summary());
    let (cns, ons) = (cn.summary(), on.summary());
    let unnamed = "the same load naming no tables";
    let health = "the same load on GET /health (no database)";
    let errs = |l: &Load| {
        let cpu = l.cpu.map_or(String::new(), |u| {
            format!(
                "CPU in % of one core: server {:.0}, PostgreSQL {:.0}, load generator {:.0}",
                u.cpu_pct, u.pg_cpu_pct, u.bench_cpu_pct
            )
        });
        format!(
            "{} errors, {} non-empty pulls, {cpu}{}",
            l.errors,
            l.non_empty,
            l.first_error
                .as_deref()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        )
    };
    let rows = vec![
        Row::new(
            "d",
            &format!("closed loop, {n} in flight: throughput"),
            cp.rate,
            "req/s",
        )
        .vs(ch.rate, health)
        .goal(Goal::ValueAtLeast(10_000.0))
        .detail(&errs(cp)),
        Row::new("d", "closed loop: latency p50", cps.p50, "ms").vs(chs.p50, health),
        Row::new("d", "closed loop: latency p99", cps.p99, "ms").vs(chs.p99, health),
        Row::new(
            "d",
            &format!("open loop {rate}/s: achieved rate"),
            op.rate,
            "req/s",
        )
        .vs(oh.rate, health)
        .detail(&errs(op)),
        Row::new(
            "d",
            &format!("open loop {rate}/s: latency p50"),
            ops.p50,
            "ms",
        )
        .vs(ohs.p50, health),
        Row::new(
            "d",
            &format!("open loop {rate}/s: latency p99"),
            ops.p99,
            "ms",
        )
        .vs(ohs.p99, health)
        .goal(Goal::ValueBelow(10.0)),
        Row::new(
            "d",
            &format!("open loop {rate}/s: latency max"),
            ops.max,
            "ms",
        )
        .vs(ohs.max, health),
    ];
    let mut rows = rows;
    rows.extend([
        Row::new(
            "d",
            "closed loop naming the Insight tables: throughput",
            cn.rate,
            "req/s",
        )
        .vs(cp.rate, unnamed)
        .goal(Goal::RatioAtLeast(0.9))
        .detail(&errs(cn)),
        Row::new("d", "closed loop naming tables: latency p99", cns.p99, "ms").vs(cps.p99, unnamed),
        Row::new(
            "d",
            &format!("open loop {rate}/s naming tables: latency p99"),
            ons.p99,
            "ms",
        )
        .vs(ops.p99, unnamed)
        .goal(Goal::ValueBelow(10.0))
        .detail(&format!("achieved {:.0}/s; {}", on.rate, errs(on))),
    ]);
    for r in &curve[..curve.len() - 1] {
        let Some(l) = get(&format!("open {r} empty delta pull")) else {
            continue;
        };
        let sm = l.summary();
        rows.push(
            Row::new("d", &format!("open loop {r}/s: latency p99"), sm.p99, "ms").detail(&format!(
                "achieved {:.0}/s, p50 {:.2} ms, max {:.1} ms; {}",
                l.rate,
                sm.p50,
                sm.max,
                errs(l)
            )),
        );
    }
    let details = json!({
        "devices": n, "closed_secs": secs, "open_rate": rate, "open_secs": open_secs,
        "loads": results.iter().map(|(k, l)| json!({"load": k, "result": l.to_json()})).collect::<Vec<_>>(),
        "note": "open-loop latency counts from the scheduled send time (tokio timer, 1 ms granularity)",
    });
    Ok(Outcome { rows, details })
}

fn report_progress(ctx: &Ctx, load: &Load) {
    let s = load.summary();
    let (server, pg) = load.cpu.map_or((0.0, 0.0), |u| (u.cpu_pct, u.pg_cpu_pct));
    ctx.progress(format!(
        "      {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {} errors, CPU server {server:.0}%, PostgreSQL {pg:.0}%",
        load.rate, s.p50, s.p99, s.max, load.errors
    ));
}

/// `workers` requests always in flight for `secs`; the first second is warm-up.
async fn closed_loop(api: &Api, target: &Target, workers: usize, secs: u64) -> Load {
    let start = Instant::now();
    let warm = start + Duration::from_secs(1);
    let end = warm + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let api = api.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(f64, Result<bool, String>)> = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    return out;
                }
                let r = target.hit(&api, w).await.map_err(|e| format!("{e:#}"));
                if t0 >= warm {
                    out.push((t0.elapsed().as_secs_f64() * 1e3, r));
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(v) = t.await {
            all.extend(v);
        }
    }
    // Completed within the window: requests that started in it.
    let window = (Instant::now() - warm).as_secs_f64().max(1e-9);
    collect(all, window)
}

/// Requests scheduled at `rate`/s for `secs`, each in a task of its own; latency from
/// the scheduled time.
async fn open_loop(api: &Api, target: &Target, rate: u64, secs: u64) -> Load {
    let total = (rate * secs) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + interval * i as u32;
        tokio::time::sleep_until(at.into()).await;
        let api = api.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let r = target.hit(&api, i).await.map_err(|e| format!("{e:#}"));
            (at.elapsed().as_secs_f64() * 1e3, r)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        if let Ok(v) = t.await {
            all.push(v);
        }
    }
    let window = (Instant::now() - start).as_secs_f64().max(1e-9);
    collect(all, window)
}

fn collect(all: Vec<(f64, Result<bool, String>)>, window_secs: f64) -> Load {
    let mut load = Load {
        lat_ms: Vec::with_capacity(all.len()),
        errors: 0,
        non_empty: 0,
        first_error: None,
        rate: all.len() as f64 / window_secs,
        cpu: None,
    };
    for (ms, r) in all {
        match r {
            Ok(empty) => {
                load.lat_ms.push(ms);
                if !empty {
                    load.non_empty += 1;
                }
            }
            Err(e) => {
                load.errors += 1;
                load.first_error.get_or_insert(e);
            }
        }
    }
    load
}
