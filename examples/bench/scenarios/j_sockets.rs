//! (j) Real time at scale: 1,000 devices each holding a WebSocket open on the server
//! process (one socket per device, as apps do; a device may hold 8 at most), a change
//! every socket may see, and how long each poke takes from the push request to the message
//! read; plus the server's resident memory per idle socket (the server runs as its own
//! process, so its memory is measured alone).
//!
//! The server runs with room for 1,000 connections from the load generator's one
//! address (`NAS_SYNC_MAX_CONNECTIONS_PER_ADDRESS`), as it would behind a NAS's LAN of
//! many addresses.
//!
//! Baseline: the push alone (the same push answered, no socket reading), so the table
//! shows what fanning a poke out to every socket adds.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

use super::Outcome;
use crate::client::{Api, kpi_row};
use crate::report::{Goal, Row};
use crate::server::ServerProcess;
use crate::{Ctx, PASSWORD, mb, stats};

const TENANT: &str = "t-j";

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let sockets = ctx.sizes.j_sockets;
    let rounds = ctx.sizes.j_rounds;
    let t = Instant::now();
    ctx.add_user("j-manager", "manager", None, TENANT).await?;
    let pairs: Vec<(String, String)> = (0..=sockets)
        .map(|i| ("j-manager".to_string(), format!("j-device-{i}")))
        .collect();
    let (mut devices, _) = ctx.api.login_many(&pairs, PASSWORD, 4).await?;
    let writer = devices.pop().context("no writer")?;
    ctx.phase_done(&format!("(j) log in {} devices", sockets + 1), t);
    // A fresh process for the sockets (the tokens stay valid): the logins' password
    // hashing leaves memory behind that would hide what the sockets take.
    let t = Instant::now();
    ctx.server.stop().await;
    ctx.server = ServerProcess::start_with(
        &ctx.server.bin.clone(),
        &ctx.db_url,
        &ctx.log_path,
        &[
            ("NAS_SYNC_MAX_CONNECTIONS", "4096"),
            ("NAS_SYNC_MAX_CONNECTIONS_PER_ADDRESS", "4096"),
        ],
    )
    .await?;
    ctx.api = Api::new(&ctx.server.base)?;
    let ws_base = ctx.api.base.replace("http://", "ws://");
    let url = |token: &str| format!("{ws_base}/api/v1/sync/ws?access_token={token}");
    // Warm up the paths a socket uses, then measure the idle server.
    drop(
        tokio_tungstenite::connect_async(url(&writer.token))
            .await
            .context("first socket")?,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = ctx.server.rss_kib();
    let mut streams = Vec::with_capacity(sockets);
    for (i, dev) in devices.iter().enumerate() {
        let (ws, _) = tokio_tungstenite::connect_async(url(&dev.token))
            .await
            .with_context(|| format!("socket {i}"))?;
        streams.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = ctx.server.rss_kib();
    let per_socket_kib = rss_after.saturating_sub(rss_before) as f64 / sockets as f64;
    ctx.phase_done(&format!("(j) open {sockets} sockets"), t);

    // Every socket reads in a task of its own and reports when a poke arrives.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut readers = Vec::with_capacity(sockets);
    for ws in streams {
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            let (_, mut read) = ws.split();
            while let Some(Ok(msg)) = read.next().await {
                if msg.is_text() {
                    let _ = tx.send(Instant::now());
                }
            }
        }));
    }
    let t = Instant::now();
    let mut latencies = Vec::with_capacity(sockets * rounds);
    let mut push_ms = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Spaced out, so every round is a fresh poke rather than a coalesced one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let row = kpi_row(Uuid::new_v4(), "store-1", round, 0);
        let sent = Instant::now();
        ctx.api.push_kpi(&writer, &[row]).await?;
        push_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        for _ in 0..sockets {
            let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .context("a socket missed a poke for 30 s")?
                .context("the readers stopped")?;
            latencies.push(at.duration_since(sent).as_secs_f64() * 1000.0);
        }
    }
    ctx.phase_done(&format!("(j) {rounds} pokes to {sockets} sockets"), t);
    for r in readers {
        r.abort();
    }
    latencies.sort_by(f64::total_cmp);
    let p50 = stats::percentile(&latencies, 0.50);
    let p99 = stats::percentile(&latencies, 0.99);
    let max = latencies.last().copied().unwrap_or(0.0);
    let push = stats::median(&push_ms);
    let rows = vec![
        Row::new(
            "j",
            &format!("poke delivered to {sockets} sockets, p99"),
            p99,
            "ms",
        )
        .vs(push, "the push's own answer (median)")
        .goal(Goal::ValueBelow(100.0))
        .detail(&format!("p50 {p50:.1} ms, max {max:.1} ms")),
        Row::new("j", "server memory per idle socket", per_socket_kib, "KiB")
            .goal(Goal::ValueBelow(20.0))
            .detail(&format!(
                "RSS idle {:.1} MB, with {sockets} sockets {:.1} MB",
                mb(rss_before),
                mb(rss_after)
            )),
    ];
    Ok(Outcome {
        rows,
        details: json!({
            "sockets": sockets, "rounds": rounds, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "push_median_ms": push, "rss_idle_kib": rss_before, "rss_sockets_kib": rss_after,
            "kib_per_socket": per_socket_kib,
        }),
    })
}
