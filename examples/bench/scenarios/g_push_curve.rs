//! (g) The push latency curve over TCP: pushes of 1 to 1,000 new kpi_data
//! rows, each size timed on the scenario's server (the database relay on, the default)
//! and on a second server process over the same database with
//! `NAS_SYNC_DB_TCP_RELAY=off` (sqlx's own TCP socket, Nagle's algorithm on), rounds
//! interleaved. Goal: no step of 40 ms anywhere in the curve (no size more than 40 ms
//! above the straight line from 1 to 1,000 rows); the direct connection shows where
//! the delayed-ACK stall used to be.

use std::time::Instant;

use serde_json::{Value, json};
use uuid::Uuid;

use super::Outcome;
use crate::client::{Api, kpi_row};
use crate::report::{Goal, Row};
use crate::server::ServerProcess;
use crate::{Ctx, PASSWORD, stats};

const TENANT: &str = "t-g";
const UNIX_DIR: &str = "/var/run/postgresql";
const SIZES: [usize; 11] = [1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000];

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let rounds = if ctx.quick { 5 } else { 15 };
    let t = Instant::now();
    ctx.add_user("g-manager", "manager", None, TENANT).await?;
    let relay_dev = ctx.api.login("g-manager", PASSWORD, "g-relay").await?;
    let mut direct = ServerProcess::start_with(
        &ctx.server.bin,
        &ctx.db_url,
        &ctx.log_path,
        &[("NAS_SYNC_DB_TCP_RELAY", "off")],
    )
    .await?;
    let direct_api = Api::new(&direct.base)?;
    let direct_dev = direct_api.login("g-manager", PASSWORD, "g-direct").await?;
    // A reference where PostgreSQL's Unix socket is at hand: no TCP at all.
    let unix_url = (std::path::Path::new(UNIX_DIR)
        .join(".s.PGSQL.5432")
        .exists()
        && !ctx.db_url.contains('?'))
    .then(|| format!("{}?host={UNIX_DIR}", ctx.db_url));
    let mut unix = match &unix_url {
        Some(url) => Some(ServerProcess::start(&ctx.server.bin, url, &ctx.log_path).await?),
        None => None,
    };
    let unix_api = unix.as_ref().map(|u| Api::new(&u.base)).transpose()?;
    let unix_dev = match &unix_api {
        Some(api) => Some(api.login("g-manager", PASSWORD, "g-unix").await?),
        None => None,
    };
    ctx.phase_done("(g) second server (relay off)", t);

    let t = Instant::now();
    let mut curve = Vec::new();
    let mut rows_out = Vec::new();
    let (mut relay_medians, mut direct_medians) = (Vec::new(), Vec::new());
    for n in SIZES {
        let (mut relay, mut plain, mut local) = (Vec::new(), Vec::new(), Vec::new());
        // One untimed push per side first (connection and plan caches).
        for round in 0..=rounds {
            let mut sides = vec![
                (&ctx.api, &relay_dev, &mut relay),
                (&direct_api, &direct_dev, &mut plain),
            ];
            if let (Some(api), Some(dev)) = (&unix_api, &unix_dev) {
                sides.push((api, dev, &mut local));
            }
            for (api, dev, out) in sides {
                let rows: Vec<Value> = (0..n)
                    .map(|i| kpi_row(Uuid::new_v4(), &format!("store-{}", i % 20), i, 0))
                    .collect();
                let started = Instant::now();
                api.push_kpi(dev, &rows).await?;
                if round > 0 {
                    out.push(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        let (r, d) = (stats::median(&relay), stats::median(&plain));
        let u = (!local.is_empty()).then(|| stats::median(&local));
        ctx.progress(format!(
            "  (g) {n} rows: relay {r:.1} ms, direct {d:.1} ms, unix socket {}",
            u.map_or("-".into(), |u| format!("{u:.1} ms"))
        ));
        relay_medians.push(r);
        direct_medians.push(d);
        curve.push(json!({"rows": n, "relay_ms": relay, "direct_ms": plain,
            "unix_ms": local, "relay_median_ms": r, "direct_median_ms": d,
            "unix_median_ms": u}));
        rows_out.push(
            Row::new(
                "g",
                &format!("push of {n} rows (median of {rounds})"),
                r,
                "ms",
            )
            .vs(
                d,
                "the same push on a server with NAS_SYNC_DB_TCP_RELAY=off (Nagle on)",
            )
            .detail(&u.map_or(String::new(), |u| {
                format!("over PostgreSQL's Unix socket: {u:.1} ms")
            })),
        );
    }
    ctx.phase_done("(g) measure", t);
    let _ = direct.stop().await;
    if let Some(u) = unix.as_mut() {
        let _ = u.stop().await;
    }

    // A stall is a step above the curve's own growth: the largest excess of a size's
    // median over the straight line from the smallest to the largest push.
    let step = |m: &[f64]| {
        let (first, last) = (m[0], m[m.len() - 1]);
        let (n0, n1) = (SIZES[0] as f64, SIZES[SIZES.len() - 1] as f64);
        let slope = (last - first) / (n1 - n0);
        SIZES
            .iter()
            .zip(m)
            .map(|(n, v)| v - (first + slope * (*n as f64 - n0)))
            .fold(0.0, f64::max)
    };
    rows_out.push(
        Row::new(
            "g",
            "largest excess over the straight line from 1 to 1,000 rows (relay)",
            step(&relay_medians),
            "ms",
        )
        .goal(Goal::ValueBelow(40.0))
        .detail(&format!(
            "direct connection: {:.1} ms",
            step(&direct_medians)
        )),
    );
    Ok(Outcome {
        rows: rows_out,
        details: json!({ "rounds": rounds, "curve": curve }),
    })
}
