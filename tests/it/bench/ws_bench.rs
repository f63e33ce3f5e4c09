//! Benchmark (not a test): 1,000 open WebSockets on one server process, a change
//! every socket may see, and the delivery latency percentiles; plus the server's
//! resident memory per idle socket. The server runs as its own process (the release
//! binary), so its memory is measured alone. Ignored by default; run it with
//!
//! ```text
//! TEST_DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
//!   cargo test --release --test it -- --ignored --nocapture bench::ws_bench
//! ```
//!
//! `BENCH_SOCKETS` (1000) and `BENCH_ROUNDS` (20) change the size.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::StreamExt;
use nas_sync::auth::Role;
use serde_json::{Value, json};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn thousand_sockets_latency_and_memory() {
    let sockets: usize = std::env::var("BENCH_SOCKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let db = TestDb::new().await;
    let mut server = ServerProcess::start(&db.url, &[], Stdio::null()).await;
    let pid = server.child.id();
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    nas_sync::auth::users::add(&pool, "default", "boss", Role::Manager, None, "password")
        .await
        .unwrap();
    let login = |device: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let v: Value = http
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"username": "boss", "password": "password", "device_id": device}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["access_token"].as_str().unwrap().to_string()
        }
    };
    let reader = login("reader").await;
    let writer = login("writer").await;
    // Warm up the paths a socket uses, then measure the idle server.
    let url = format!(
        "{}/api/v1/sync/ws?access_token={reader}",
        base.replace("http://", "ws://")
    );
    drop(tokio_tungstenite::connect_async(&url).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);

    let mut streams = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        streams.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid);
    let per_socket_kib = (rss_after.saturating_sub(rss_before)) as f64 / sockets as f64;

    // Every socket reads in a task of its own and reports when a poke arrives.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    for ws in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (_, mut read) = ws.split();
            while let Some(Ok(msg)) = read.next().await {
                if msg.is_text() {
                    let _ = tx.send(Instant::now());
                }
            }
        });
    }
    let mut latencies_ms: Vec<f64> = Vec::with_capacity(sockets * rounds);
    for round in 0..rounds {
        // Spaced out, so every round is a fresh poke rather than a coalesced one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        let resp = http
            .post(format!("{base}/api/v1/sync/push"))
            .bearer_auth(&writer)
            .json(&json!({"device_id": "writer", "timestamp": now(),
                "changes": {"forms": [{"id": id(), "title": format!("round {round}"), "updated_at": now()}]}}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        for _ in 0..sockets {
            let at = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("a socket missed a poke")
                .unwrap();
            latencies_ms.push(at.duration_since(sent).as_secs_f64() * 1000.0);
        }
    }
    latencies_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99, max) = (
        percentile(&latencies_ms, 0.50),
        percentile(&latencies_ms, 0.99),
        *latencies_ms.last().unwrap(),
    );
    println!(
        "\n{sockets} sockets, {rounds} pokes each (latency from the push request to the message read)\n\
         p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms\n\
         server RSS idle {rss_before} KiB, with {sockets} sockets {rss_after} KiB: {per_socket_kib:.1} KiB per socket"
    );
    let out = json!({
        "command": "cargo test --release --test it -- --ignored --nocapture bench::ws_bench",
        "machine": format!("{} cores", std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(0)),
        "sockets": sockets, "rounds": rounds, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
        "rss_idle_kib": rss_before, "rss_sockets_kib": rss_after, "kib_per_socket": per_socket_kib,
    });
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ws_bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    println!("results written to {}", path.display());
    server.terminate();
}
