//! Benchmark (not a test): records per second and Odoo calls of a first mirror,
//! against the fake Odoo with a fixed delay per call, for several batch sizes.
//! Ignored by default; run it with
//!
//! ```text
//! TEST_DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
//!   cargo test --release --test it -- --ignored --nocapture bench::odoo_bench
//! ```
//!
//! Settings: `BENCH_RECORDS` (default 5000), `BENCH_CALL_DELAY_MS` (20),
//! `BENCH_BATCH_SIZES` (50,200,500,1000). The floor for each run is the time the
//! fewest possible calls would take (one `search_read` per batch of records, each
//! paying the call delay); the ratio says how far the mirror is from it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::TestApp;
use fake_odoo::{FakeOdoo, FakeOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn first_mirror_throughput_by_batch_size() {
    let records: usize = env_or("BENCH_RECORDS", "5000").parse().unwrap();
    let delay_ms: u64 = env_or("BENCH_CALL_DELAY_MS", "20").parse().unwrap();
    let sizes: Vec<i64> = env_or("BENCH_BATCH_SIZES", "50,200,500,1000")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let mut results = Vec::new();
    println!(
        "\nfirst mirror of {records} res.partner records, {delay_ms} ms per Odoo call\n\
         {:>6} {:>9} {:>10} {:>7} {:>9} {:>7} {:>11} {:>9} {:>6}",
        "batch",
        "seconds",
        "records/s",
        "calls",
        "calls/1k",
        "counts",
        "search_read",
        "floor s",
        "ratio"
    );
    for &batch in &sizes {
        let fake = FakeOdoo::start(FakeOptions::default()).await;
        // Spread over 60 days, a tenth imported in one transaction (one second).
        for i in 0..records - records / 10 {
            let age = Duration::from_secs(((i * 7919) % (60 * 86_400)) as u64 + 300);
            fake.late_commit(
                "res.partner",
                json!({"name": format!("P{i}"), "email": format!("p{i}@x.org")}),
                age,
            );
        }
        let bulk: Vec<Value> = (0..records / 10)
            .map(|i| json!({"name": format!("B{i}")}))
            .collect();
        fake.bulk_insert("res.partner", bulk);
        let app = TestApp::spawn_with(|c| {
            c.odoo.tick = Duration::from_millis(200);
            c.odoo.call_delay = Duration::ZERO;
        })
        .await;
        let manager = app.manager("boss", "boss-phone").await;
        fake.set_call_delay(Duration::from_millis(delay_ms));
        fake.reset_calls();
        let start = Instant::now();
        let (code, resp) = manager
            .post(
                "/api/v1/odoo/connections",
                &json!({"url": fake.url, "database": "odoo", "username": "bot", "api_key": "bot-api-key",
                        "models": ["res.partner"], "batch_size": batch, "initial_range_days": 0,
                        "poll_interval_seconds": 3600}),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{resp}");
        let id = resp["id"].as_str().unwrap().to_string();
        loop {
            let (_, s) = manager
                .get(&format!("/api/v1/odoo/connections/{id}/status"))
                .await;
            if s["sync_status"] == "done" {
                assert_eq!(s["models"]["res.partner"]["records"], json!(records), "{s}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "mirror too slow: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = start.elapsed().as_secs_f64();
        let mut by_method: BTreeMap<String, usize> = BTreeMap::new();
        for (_, method) in fake.calls() {
            *by_method.entry(method).or_default() += 1;
        }
        let calls: usize = by_method.values().sum();
        let floor = (records as f64 / batch as f64).ceil() * delay_ms as f64 / 1000.0;
        println!(
            "{batch:>6} {secs:>9.2} {:>10.0} {calls:>7} {:>9.1} {:>7} {:>11} {floor:>9.2} {:>6.2}",
            records as f64 / secs,
            calls as f64 * 1000.0 / records as f64,
            by_method.get("search_count").copied().unwrap_or(0),
            by_method.get("search_read").copied().unwrap_or(0),
            secs / floor,
        );
        results.push(json!({
            "batch_size": batch, "records": records, "call_delay_ms": delay_ms, "seconds": secs,
            "records_per_second": records as f64 / secs, "calls": by_method, "floor_seconds": floor,
        }));
    }
    let out = json!({
        "command": "cargo test --release --test it -- --ignored --nocapture bench::odoo_bench",
        "machine": format!("{} cores", std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(0)),
        "results": results,
    });
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("odoo_bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    println!("results written to {}", path.display());
}
