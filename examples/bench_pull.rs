//! Benchmark for invariant 5, cost follows change: the time of a delta pull of 100
//! changed rows with a small table (the baseline) and with a large one, measured in
//! the same run against the real server, reported as a ratio.
//!
//! ```sh
//! BENCH_DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
//!   cargo run --release --example bench_pull -- 1000 200000
//! ```
//! Uses two scratch databases on that server and drops them afterwards.

use std::time::{Duration, Instant};

use nas_sync::auth::{Role, users};
use nas_sync::{AppState, Config};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection};

const CHANGED: i64 = 100;
const RUNS: usize = 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let small = *args.first().unwrap_or(&1_000);
    let large = *args.get(1).unwrap_or(&200_000);
    let base = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());

    let t_small = measure(&base, small).await?;
    let t_large = measure(&base, large).await?;
    println!(
        "machine: {} cores; command: cargo run --release --example bench_pull -- {small} {large}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("delta pull of {CHANGED} changed rows, median of {RUNS}:");
    println!(
        "  table of {small:>9} rows: {:>8.2} ms (baseline)",
        t_small.as_secs_f64() * 1e3
    );
    println!(
        "  table of {large:>9} rows: {:>8.2} ms",
        t_large.as_secs_f64() * 1e3
    );
    println!(
        "  ratio large/small: {:.2} (rows ratio {:.0})",
        t_large.as_secs_f64() / t_small.as_secs_f64(),
        large as f64 / small as f64
    );
    Ok(())
}

async fn measure(base: &str, rows: usize) -> anyhow::Result<Duration> {
    let name = format!("nas_bench_{}", uuid::Uuid::new_v4().simple());
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => anyhow::bail!("BENCH_DATABASE_URL needs a database path"),
    };
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "NAS_SYNC_RATE_LIMIT" => Some("off".into()),
        "NAS_SYNC_JWT_SECRET" => Some("bench-secret-0123456789".into()),
        _ => None,
    })?;
    let state = AppState::prepare(config).await?;
    let pool = state.pool.clone();
    users::add(&pool, "default", "bench", Role::Manager, None, "pw").await?;
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value)
         SELECT gen_random_uuid(), 'default', 's' || (g % 20), 'm' || g, g FROM generate_series(1, $1) g",
    )
    .bind(rows as i64)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE").execute(&pool).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(nas_sync::launch(listener, state, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{addr}/api/v1/auth/login"))
        .json(&json!({"username": "bench", "password": "pw", "device_id": "bench-device"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pull = |cursor: Option<String>| {
        let http = http.clone();
        let addr = addr.clone();
        let token = token.clone();
        async move {
            let body = json!({"device_id": "bench-device", "cursor": cursor, "limit": 5000});
            let v: Value = http
                .post(format!("{addr}/api/v1/sync/pull"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(v)
        }
    };
    // Catch up, then change 100 rows.
    let mut cursor = None;
    loop {
        let page = pull(cursor.clone()).await?;
        cursor = page["cursor"].as_str().map(str::to_string);
        if page["has_more"] != json!(true) {
            break;
        }
    }
    sqlx::query(
        "UPDATE kpi_data SET value = value + 1 WHERE id IN (SELECT id FROM kpi_data LIMIT $1)",
    )
    .bind(CHANGED)
    .execute(&pool)
    .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let page = pull(cursor.clone()).await?;
        times.push(started.elapsed());
        let n = page["changes"]["kpi_data"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            n == CHANGED as usize,
            "expected {CHANGED} changed rows, got {n}"
        );
    }
    times.sort();
    let _ = stop.send(());
    let _ = server.await;
    pool.close().await;
    let mut admin = sqlx::postgres::PgConnectOptions::from_url(&base.parse()?)?
        .connect()
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(times[RUNS / 2])
}
