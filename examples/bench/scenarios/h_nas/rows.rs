//! (h) The table rows and JSON details: both configurations' samples pooled over
//! their windows, the NAS's against the unconstrained server's.

use serde_json::json;

use super::{APP_TYPE, Config, EVENT_TENANT, EVENTS, NAS_MEMORY, Setup, Window};
use crate::report::{Goal, Row};
use crate::scenarios::Outcome;
use crate::server::Usage;
use crate::stats::Summary;
use crate::{Ctx, mb};

/// Every sample of one configuration.
fn gather(windows: &[Window], config: Config, f: impl Fn(&Window) -> &Vec<f64>) -> Summary {
    Summary::of(
        windows
            .iter()
            .filter(|w| w.config == config)
            .flat_map(|w| f(w).iter().copied())
            .collect(),
    )
}

/// CPU over all windows of one configuration (% of one core): server, PostgreSQL,
/// load generator.
fn cpu(windows: &[Window], config: Config) -> (f64, f64, f64) {
    let ws: Vec<&Window> = windows.iter().filter(|w| w.config == config).collect();
    let wall: f64 = ws.iter().map(|w| w.usage.wall_secs).sum::<f64>().max(1e-9);
    let avg = |f: fn(&Usage) -> f64| {
        ws.iter()
            .map(|w| f(&w.usage) * w.usage.wall_secs)
            .sum::<f64>()
            / wall
    };
    (
        avg(|u| u.cpu_pct),
        avg(|u| u.pg_cpu_pct),
        avg(|u| u.bench_cpu_pct),
    )
}

pub(super) fn outcome(ctx: &mut Ctx, setup: &Setup, windows: &[Window]) -> Outcome {
    use Config::{Free, Nas};
    let (empty_nas, empty_free) = (
        gather(windows, Nas, |w| &w.empty_ms),
        gather(windows, Free, |w| &w.empty_ms),
    );
    let (ev_nas, ev_free) = (
        gather(windows, Nas, |w| &w.event_ms),
        gather(windows, Free, |w| &w.event_ms),
    );
    let push_nas = gather(windows, Nas, |w| &w.push_ms);
    let (warm_nas, warm_free) = (
        gather(windows, Nas, |w| &w.warm_ms),
        gather(windows, Free, |w| &w.warm_ms),
    );
    let hwm = |c: Config| {
        windows
            .iter()
            .filter(|w| w.config == c)
            .map(|w| w.hwm_kib)
            .max()
            .unwrap_or(0)
    };
    let cg_peak = windows
        .iter()
        .filter_map(|w| w.cgroup["max_usage_in_bytes"].as_u64())
        .max()
        .unwrap_or(0);
    let failcnt: u64 = windows
        .iter()
        .filter_map(|w| w.cgroup["failcnt"].as_u64())
        .max()
        .unwrap_or(0);
    let (cpu_nas, pg_nas, bench_nas) = cpu(windows, Nas);
    let (cpu_free, pg_free, _) = cpu(windows, Free);
    let n = setup.fleet.len();
    let base = "the same on an unconstrained server (no cgroup, no taskset), same run";
    let loads: Vec<&str> = windows
        .iter()
        .filter_map(|w| w.server["loadavg_after"].as_str())
        .collect();
    let rows = vec![
        Row::new("h", "NAS (1 core, 1 GB): v2 pull, no events, p99", empty_nas.p99, "ms")
            .vs(empty_free.p99, base)
            .goal(Goal::ValueBelow(200.0))
            .detail(&format!(
                "{} pulls by {n} devices (each every {} s) on the NAS, {} unconstrained; every answer had 0 events; seed: 'Cache Miss (No events) < 200ms'",
                empty_nas.n, ctx.sizes.h_period_secs, empty_free.n
            )),
        Row::new("h", "NAS: v2 pull, no events, p50", empty_nas.p50, "ms").vs(empty_free.p50, base),
        Row::new("h", "NAS: v2 pull, no events, max", empty_nas.max, "ms").vs(empty_free.max, base),
        Row::new("h", "NAS: first v2 pull of each device after a server start, p99", warm_nas.p99, "ms")
            .vs(warm_free.p99, base)
            .detail(&format!(
                "each window's warm-up on a freshly started server, {n} devices over {} s, not in the rows above: max {:.1} ms on the NAS vs {:.1} ms, p50 {:.1} vs {:.1} ms",
                ctx.sizes.h_warm_secs, warm_nas.max, warm_free.max, warm_nas.p50, warm_free.p50
            )),
        Row::new("h", &format!("NAS: v2 pull of exactly {EVENTS} events, max"), ev_nas.max, "ms")
            .vs(ev_free.max, base)
            .goal(Goal::ValueBelow(1000.0))
            .detail(&format!(
                "{} pulls on the NAS ({} unconstrained), each right after another device pushed {EVENTS} new kpi_data rows (push p50 {:.1} ms on the NAS) and the pull horizon passed them; each answer held exactly those {EVENTS} events; seed: 'Cache Miss (100 events) < 1000ms'",
                ev_nas.n, ev_free.n, push_nas.p50
            )),
        Row::new("h", &format!("NAS: v2 pull of {EVENTS} events, p50"), ev_nas.p50, "ms").vs(ev_free.p50, base),
        Row::new("h", "NAS: server peak memory in the 1 GiB cgroup (max_usage_in_bytes)", cg_peak as f64 / 1e6, "MB")
            .detail(&format!(
                "limit {NAS_MEMORY} bytes, failcnt {failcnt} (times the limit was hit); what the kernel charged to the group: the server's anonymous memory and kernel memory, and page cache it brought in; the binary's pages, already in the page cache when it started, stay charged where they were first read, so VmHWM (below) is higher"
            )),
        Row::new("h", "NAS: server peak RSS (VmHWM)", mb(hwm(Nas)), "MB")
            .vs(mb(hwm(Free)), base),
        Row::new("h", &format!("NAS: server CPU with {n} devices pulling"), cpu_nas, "% core")
            .vs(cpu_free, base)
            .detail(&format!(
                "PostgreSQL (every postgres process on the machine) {pg_nas:.1}% on the NAS vs {pg_free:.1}%; load generator {bench_nas:.1}% (on CPU 1); loadavg after each window: {}",
                loads.join(" | ")
            )),
    ];
    ctx.notes.push(format!(
        "(h) simulated NAS: the server ran under `taskset -c 0` in the cgroup v1 memory group {} (memory.limit_in_bytes {NAS_MEMORY}), {}; the load generator (this tool) was pinned to CPU 1; all were restored after each NAS window. The baseline windows started the server plainly with nothing pinned. PostgreSQL is not in the memory cgroup. The table's '(h) server peak RSS in this scenario' row is the server that logged the fleet in, not a measured one.",
        setup.group.path.display(),
        match setup.postmaster {
            Some(pm) => format!("the local PostgreSQL (postmaster pid {pm} and all its processes) was pinned to CPU 0 too"),
            None => "PostgreSQL is not on this machine and was not pinned".to_string(),
        }
    ));
    let details = json!({
        "devices": n, "app_type": APP_TYPE, "period_secs": ctx.sizes.h_period_secs,
        "window_secs": ctx.sizes.h_window_secs, "warm_secs": ctx.sizes.h_warm_secs,
        "rounds": ctx.sizes.h_rounds, "event_pulls_per_window": ctx.sizes.h_event_pulls,
        "events_per_pull": EVENTS, "event_tenant": EVENT_TENANT,
        "nas": {
            "memory_limit_bytes": NAS_MEMORY, "cgroup": setup.group.path.display().to_string(),
            "server_cpus": "0", "postgres_cpus": setup.postmaster.map(|_| "0"),
            "postmaster_pid": setup.postmaster, "load_generator_cpus": "1",
            "server_peak_cgroup_bytes": cg_peak, "server_peak_vmhwm_kib": hwm(Nas),
        },
        "unconstrained": {"server_peak_vmhwm_kib": hwm(Free)},
        "no_event_pull_ms": {"nas": empty_nas.to_json(), "unconstrained": empty_free.to_json()},
        "event_pull_ms": {"nas": ev_nas.to_json(), "unconstrained": ev_free.to_json()},
        "cpu_pct_of_one_core": {
            "nas": {"server": cpu_nas, "postgres": pg_nas, "bench": bench_nas},
            "unconstrained": {"server": cpu_free, "postgres": pg_free},
        },
        "windows": windows.iter().map(Window::to_json).collect::<Vec<_>>(),
        "seed": "docs/seeds/bridgecore-smart-sync.md, Benchmarks: Cache Miss (No events) < 200ms; Cache Miss (100 events) < 1000ms",
    });
    Outcome { rows, details }
}
