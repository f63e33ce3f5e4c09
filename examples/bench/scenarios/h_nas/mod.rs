//! (h) The BridgeCore smart-sync seed's own headline numbers on a simulated 1 GB
//! one-core NAS: "Cache Miss (No events) < 200ms" and "Cache Miss (100 events)
//! < 1000ms" (`docs/seeds/bridgecore-smart-sync.md`, Benchmarks), for a fleet of 500
//! devices.
//!
//! The NAS: the server runs under `taskset -c 0` inside a cgroup v1 memory group
//! limited to 1 GiB (`nas.rs`); the local PostgreSQL (postmaster and every process it
//! has; new backends inherit its affinity) is pinned to CPU 0 too, and the load
//! generator (this tool) to CPU 1, for each NAS window only, and restored after it.
//!
//! Each window starts a fresh server. The fleet (500 devices of the load tenant,
//! logged in as for (d) and (e)) first pulls once each, spread over a few seconds
//! (warm-up, not measured), then each device does a v2 pull (`POST /api/v2/sync/pull`,
//! app type `store_app`) at a random phase of a 30 s period for the whole window: the
//! background load and, since nothing changes in that tenant, the samples of "a pull
//! that finds no events" (each answer must have none). Meanwhile, a few times per
//! window, a manager device of another tenant pushes 100 new `kpi_data` rows through
//! the API, the tool waits for the pull horizon (`db::settle`), and a caught-up store
//! device of that tenant pulls: it must get exactly those 100 events in one answer.
//!
//! Baseline: the same windows on a server started plainly (no cgroup, no pinning),
//! in the same run, in the order NAS, plain, plain, NAS, ... (drift hits both).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Outcome;
use crate::client::{Api, Device, kpi_row};
use crate::nas::{self, MemCgroup, Pinned};
use crate::server::{ServerProcess, Usage};
use crate::stats::{self, Summary};
use crate::{Ctx, PASSWORD, db};

mod rows;

/// The simulated NAS's memory: 1 GiB.
const NAS_MEMORY: u64 = 1 << 30;
/// What every device pulls.
const APP_TYPE: &str = "store_app";
/// Rows pushed before each measured pull with events.
const EVENTS: usize = 100;
/// The tenant, store and users of the 100-event pulls.
const EVENT_TENANT: &str = "t-nas";
const EVENT_STORE: &str = "store-nas";
/// A pull slower than this (ms) is listed with its time in the JSON.
const SLOW_MS: f64 = 50.0;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Config {
    /// Server under `taskset -c 0` and the 1 GiB cgroup; PostgreSQL on CPU 0 too.
    Nas,
    /// Started plainly, nothing pinned.
    Free,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Nas => "nas",
            Config::Free => "unconstrained",
        }
    }
}

/// What stays the same across windows.
struct Setup {
    bin: PathBuf,
    fleet: Arc<Vec<Device>>,
    writer: Device,
    reader: Device,
    /// The local PostgreSQL postmaster, when PostgreSQL runs on this machine.
    postmaster: Option<u32>,
    group: MemCgroup,
}

/// What one window measured.
struct Window {
    config: Config,
    round: usize,
    warm_ms: Vec<f64>,
    /// Pulls of the warm-up and the window over `SLOW_MS`: (ms since the server was
    /// ready, latency ms), to see whether slow ones bunch (at the start, say).
    slow: Vec<(f64, f64)>,
    empty_ms: Vec<f64>,
    event_ms: Vec<f64>,
    push_ms: Vec<f64>,
    settle_ms: Vec<f64>,
    usage: Usage,
    hwm_kib: u64,
    /// Pid, allowed CPUs, cgroup membership and resident memory by kind at the end,
    /// how it exited, the machine's load average before and after.
    server: Value,
    cgroup: Value,
    pinned: Value,
}

impl Window {
    fn to_json(&self) -> Value {
        json!({
            "config": self.config.name(), "round": self.round,
            "warm_up_pull_ms": Summary::of(self.warm_ms.clone()).to_json(),
            "slow_pulls_at_ms_since_ready": self.slow.iter().map(|(at, ms)| json!({"at": at, "ms": ms})).collect::<Vec<_>>(),
            "no_event_pull_ms": Summary::of(self.empty_ms.clone()).to_json(),
            "event_pull_ms": self.event_ms, "push_100_ms": self.push_ms, "settle_ms": self.settle_ms,
            "resources": self.usage.to_json(), "server_vmhwm_kib": self.hwm_kib,
            "server": self.server, "cgroup": self.cgroup, "pinned": self.pinned,
        })
    }
}

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let n = ctx.sizes.h_devices;
    // Preflight, before the slow logins: two CPUs to split, taskset, the cgroup.
    let me = std::process::id();
    let mine = nas::cpu_list(me).context("the simulated NAS needs taskset")?;
    anyhow::ensure!(
        [0, 1].iter().all(|c| nas::parse_cpus(&mine).contains(c)),
        "the simulated NAS puts the server on CPU 0 and the load generator on CPU 1, \
         but this process may only run on CPUs {mine}"
    );
    let group_name = format!("nas-bench-h-{}", &Uuid::new_v4().simple().to_string()[..10]);
    let group = MemCgroup::create(&group_name, NAS_MEMORY)
        .context("the simulated NAS needs a cgroup v1 memory group")?;
    ctx.progress(format!(
        "  (h) memory cgroup {} (limit {NAS_MEMORY} bytes)",
        group.path.display()
    ));

    let fleet = ctx.fleet(n).await?;
    let t = Instant::now();
    ctx.add_user("nas-manager", "manager", None, EVENT_TENANT)
        .await?;
    ctx.add_user("nas-store", "store", Some(EVENT_STORE), EVENT_TENANT)
        .await?;
    let writer = ctx
        .api
        .login("nas-manager", PASSWORD, "nas-writer-01")
        .await?;
    let reader = ctx
        .api
        .login("nas-store", PASSWORD, "nas-reader-01")
        .await?;
    // Everyone caught up (the load tenant may hold rows of (d) and (e)).
    let caught = catch_up(&ctx.api, &fleet, 32).await?;
    catch_up(&ctx.api, std::slice::from_ref(&reader), 1).await?;
    ctx.phase_done(
        &format!("(h) v2 catch-up of {n} devices ({caught} events)"),
        t,
    );
    let postmaster = nas::local_postmaster(&ctx.pool).await?;
    let setup = Setup {
        bin: ctx.server.bin.clone(),
        fleet: Arc::new(fleet),
        writer,
        reader,
        postmaster,
        group,
    };

    let mut windows: Vec<Window> = Vec::new();
    let t = Instant::now();
    for round in 0..ctx.sizes.h_rounds {
        let order = if round % 2 == 0 {
            [Config::Nas, Config::Free]
        } else {
            [Config::Free, Config::Nas]
        };
        for config in order {
            let w = run_window(ctx, &setup, config, round).await?;
            let (e, v) = (
                Summary::of(w.empty_ms.clone()),
                Summary::of(w.event_ms.clone()),
            );
            ctx.progress(format!(
                "      {}: no events p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} pulls); 100 events p50 {:.1} ms, max {:.1} ms; CPU server {:.1}%, PostgreSQL {:.1}%; load {}",
                config.name(), e.p50, e.p99, e.max, e.n, v.p50, v.max,
                w.usage.cpu_pct, w.usage.pg_cpu_pct, w.server["loadavg_after"].as_str().unwrap_or("?")
            ));
            windows.push(w);
        }
    }
    ctx.phase_done("(h) measure", t);
    Ok(rows::outcome(ctx, &setup, &windows))
}

/// v2 pulls (up to 5,000 events a page) until `has_more` is false, for every device,
/// `concurrency` at a time; the events seen.
async fn catch_up(api: &Api, devices: &[Device], concurrency: usize) -> anyhow::Result<usize> {
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(devices.len());
    for dev in devices {
        let (api, gate, dev) = (api.clone(), gate.clone(), dev.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut seen = 0;
            loop {
                let v = api.pull_v2(&dev, APP_TYPE, Some(5000)).await?;
                seen += v["events"].as_array().map_or(0, Vec::len);
                if v["has_more"] != json!(true) {
                    return anyhow::Ok(seen);
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.context("catch-up task")??;
    }
    Ok(total)
}

/// One pull that must find no events: its time in ms, or what was wrong.
async fn empty_pull(api: &Api, dev: &Device) -> Result<f64, String> {
    let t0 = Instant::now();
    let v = api
        .pull_v2(dev, APP_TYPE, None)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let events = v["events"].as_array().map_or(usize::MAX, Vec::len);
    if events != 0 || v["new_events_count"] != json!(0) || v["has_more"] != json!(false) {
        return Err(format!(
            "{}: expected no events, got {events} (new_events_count {}, has_more {})",
            dev.device_id, v["new_events_count"], v["has_more"]
        ));
    }
    Ok(ms)
}

/// Starts the server of `config`, warms the fleet up, measures one window, stops it.
async fn run_window(
    ctx: &Ctx,
    setup: &Setup,
    config: Config,
    round: usize,
) -> anyhow::Result<Window> {
    let sizes = &ctx.sizes;
    let n = setup.fleet.len();
    ctx.progress(format!(
        "  (h) round {}, {} server: {n} devices, a v2 pull every {} s for {} s, {} pulls of {EVENTS} events",
        round + 1,
        config.name(),
        sizes.h_period_secs,
        sizes.h_window_secs,
        sizes.h_event_pulls
    ));
    let load_before = nas::loadavg();
    let mut pinned = None;
    let mut server = match config {
        Config::Free => ServerProcess::start(&setup.bin, &ctx.db_url, &ctx.log_path).await?,
        Config::Nas => {
            let me = std::process::id();
            let mut wanted = vec![("load generator (bench)", me, "1", false)];
            if let Some(pm) = setup.postmaster {
                wanted.insert(
                    0,
                    ("PostgreSQL postmaster and its processes", pm, "0", true),
                );
            }
            pinned = Some(Pinned::pin(&wanted)?);
            // The window's own peak: max_usage_in_bytes starts again from the usage now.
            setup.group.write("memory.max_usage_in_bytes", "0")?;
            let procs = setup.group.procs_path().display().to_string();
            let wrapper = [
                "sh".to_string(),
                "-c".to_string(),
                r#"echo $$ > "$0" && exec taskset -c 0 "$@""#.to_string(),
                procs,
            ];
            let server =
                ServerProcess::start_wrapped(&setup.bin, &ctx.db_url, &ctx.log_path, &[], &wrapper)
                    .await
                    .context("starting the server in the memory cgroup under taskset -c 0")?;
            let cpus = nas::allowed_cpus(server.pid);
            anyhow::ensure!(
                setup.group.contains(server.pid) && cpus.as_deref() == Some("0"),
                "the NAS server (pid {}) is not where it should be: in {}: {}, CPUs {cpus:?} (want 0)",
                server.pid,
                setup.group.path.display(),
                setup.group.contains(server.pid)
            );
            server
        }
    };
    let api = Api::new(&server.base)?;

    // Warm-up: every device (and the reader) once, spread over a few seconds.
    let warm_for = Duration::from_secs(sizes.h_warm_secs);
    let ready = tokio::time::Instant::now();
    let since_ready = move |at: tokio::time::Instant| (at - ready).as_secs_f64() * 1e3;
    let start = ready;
    let mut tasks = Vec::with_capacity(n);
    for (i, dev) in setup.fleet.iter().cloned().enumerate() {
        let api = api.clone();
        let at = start + warm_for * i as u32 / n.max(1) as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            (since_ready(at), empty_pull(&api, &dev).await)
        }));
    }
    let mut warm_ms = Vec::with_capacity(n);
    let mut wrong: Vec<String> = Vec::new();
    let mut slow = Vec::new();
    for t in tasks {
        match t.await? {
            (at, Ok(ms)) => {
                warm_ms.push(ms);
                if ms > SLOW_MS {
                    slow.push((at, ms));
                }
            }
            (_, Err(e)) => wrong.push(e),
        }
    }
    if let Err(e) = empty_pull(&api, &setup.reader).await {
        wrong.push(e);
    }
    anyhow::ensure!(
        wrong.is_empty(),
        "(h) {} server: {} of {} warm-up pulls were wrong; first: {}",
        config.name(),
        wrong.len(),
        n + 1,
        wrong[0]
    );

    // The window: the fleet's pulls in the background, the 100-event pulls between.
    let period = Duration::from_secs(sizes.h_period_secs);
    let window = Duration::from_secs(sizes.h_window_secs);
    let sampler = server.sample();
    let start = tokio::time::Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::with_capacity(n);
    for dev in setup.fleet.iter() {
        let (api, dev) = (api.clone(), dev.clone());
        let phase = Duration::from_millis(stats::random_below(period.as_millis() as u64));
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(f64, Result<f64, String>)> = Vec::new();
            for k in 0u32.. {
                let at = start + phase + period * k;
                if at >= deadline {
                    break;
                }
                tokio::time::sleep_until(at).await;
                out.push((since_ready(at), empty_pull(&api, &dev).await));
            }
            out
        }));
    }
    let events = event_pulls(ctx, setup, &api, start, window).await;
    if events.is_err() {
        for t in &tasks {
            t.abort();
        }
    }
    let mut empty_ms = Vec::new();
    for t in tasks {
        for (at, r) in t.await.unwrap_or_default() {
            match r {
                Ok(ms) if ms > SLOW_MS => {
                    empty_ms.push(ms);
                    slow.push((at, ms));
                }
                Ok(ms) => empty_ms.push(ms),
                Err(e) => wrong.push(e),
            }
        }
    }
    let usage = sampler.finish().await;
    let hwm_kib = server.hwm_kib();
    let mut server_json = json!({
        "pid": server.pid, "cpus": nas::allowed_cpus(server.pid),
        "in_memory_cgroup": setup.group.contains(server.pid),
        "memory": nas::rss_kinds(server.pid), "loadavg_before": load_before,
    });
    let cgroup = match config {
        Config::Nas => setup.group.stats(),
        Config::Free => Value::Null,
    };
    server_json["exit"] = json!(server.stop().await);
    server_json["loadavg_after"] = json!(nas::loadavg());
    let pinned_json = pinned.as_ref().map_or(Value::Null, Pinned::to_json);
    if let Some(mut p) = pinned {
        let problems = p.restore();
        anyhow::ensure!(
            problems.is_empty(),
            "restoring CPU affinities: {}",
            problems.join("; ")
        );
    }
    let (event_ms, push_ms, settle_ms) = events?;
    anyhow::ensure!(
        wrong.is_empty(),
        "(h) {} server: {} of {} fleet pulls failed or found events; first: {} (cgroup: {cgroup})",
        config.name(),
        wrong.len(),
        wrong.len() + empty_ms.len(),
        wrong[0]
    );
    Ok(Window {
        config,
        round,
        warm_ms,
        slow,
        empty_ms,
        event_ms,
        push_ms,
        settle_ms,
        usage,
        hwm_kib,
        server: server_json,
        cgroup,
        pinned: pinned_json,
    })
}

/// `h_event_pulls` times, evenly over the window: the writer pushes 100 new rows, the
/// horizon passes them, the reader pulls and must get exactly those 100 events.
/// (pull ms, push ms, settle ms) of each.
async fn event_pulls(
    ctx: &Ctx,
    setup: &Setup,
    api: &Api,
    start: tokio::time::Instant,
    window: Duration,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let m = ctx.sizes.h_event_pulls.max(1);
    let (mut pulls, mut pushes, mut settles) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..m {
        tokio::time::sleep_until(start + window * (2 * k as u32 + 1) / (2 * m as u32)).await;
        let ids: Vec<Uuid> = (0..EVENTS).map(|_| Uuid::new_v4()).collect();
        let rows: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| kpi_row(*id, EVENT_STORE, i, 0))
            .collect();
        let t0 = Instant::now();
        api.push_kpi(&setup.writer, &rows).await?;
        pushes.push(t0.elapsed().as_secs_f64() * 1e3);
        settles.push(db::settle(&ctx.pool).await?.as_secs_f64() * 1e3);
        let t0 = Instant::now();
        let v = api.pull_v2(&setup.reader, APP_TYPE, Some(1000)).await?;
        pulls.push(t0.elapsed().as_secs_f64() * 1e3);
        let pushed: HashSet<String> = ids.iter().map(Uuid::to_string).collect();
        check_events(&v, &pushed)
            .with_context(|| format!("(h) pull {} of {m} after a {EVENTS}-row push", k + 1))?;
    }
    Ok((pulls, pushes, settles))
}

/// The answer holds exactly the pushed rows, once each, as `create` events of
/// `kpi_data`, in one page.
fn check_events(v: &Value, pushed: &HashSet<String>) -> anyhow::Result<()> {
    let events = v["events"].as_array().context("no events array")?;
    anyhow::ensure!(
        events.len() == EVENTS
            && v["new_events_count"] == json!(EVENTS)
            && v["has_more"] == json!(false),
        "expected exactly {EVENTS} events in one answer, got {} (new_events_count {}, has_more {})",
        events.len(),
        v["new_events_count"],
        v["has_more"]
    );
    let got: HashSet<String> = events
        .iter()
        .filter_map(|e| e["uuid"].as_str().map(str::to_string))
        .collect();
    anyhow::ensure!(
        got == *pushed,
        "the events are not the {EVENTS} rows pushed: {} of them match",
        got.intersection(pushed).count()
    );
    let odd = events
        .iter()
        .find(|e| e["model"] != json!("kpi_data") || e["event"] != json!("create"));
    anyhow::ensure!(
        odd.is_none(),
        "unexpected event {}",
        odd.unwrap_or(&Value::Null)
    );
    Ok(())
}
