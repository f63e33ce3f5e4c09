//! The benchmark database: created fresh per run, dropped at the end; bulk loads in
//! SQL (`INSERT ... SELECT FROM generate_series`, so the sync triggers fill the change
//! log as they would for any writer); and waiting for the pull horizon.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};

/// A database of its own for one run, on the server of `BENCH_DATABASE_URL`.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
    admin: PgConnectOptions,
}

impl ScratchDb {
    pub async fn create(base_url: &str) -> anyhow::Result<ScratchDb> {
        let admin = PgConnectOptions::from_str(base_url)
            .with_context(|| format!("BENCH_DATABASE_URL is not a PostgreSQL URL: {base_url}"))?;
        let name = format!(
            "nas_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut conn = admin.connect().await.with_context(|| {
            format!("connecting to {base_url} (is PostgreSQL running? scripts/bench.sh starts it)")
        })?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await?;
        Ok(ScratchDb {
            url: with_database(base_url, &name),
            name,
            admin,
        })
    }

    /// `server_version` and the full `version()` string.
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let mut conn = self.admin.connect().await?;
        let v: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok(v)
    }

    pub async fn drop_db(&self) -> anyhow::Result<()> {
        let mut conn = self.admin.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        conn.close().await?;
        Ok(())
    }
}

/// `url` with its database name replaced by `name` (query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = main.find("://").map_or(0, |i| i + 3);
    let host_part = match main[scheme_end..].find('/') {
        Some(i) => &main[..scheme_end + i],
        None => main,
    };
    format!("{host_part}/{name}{query}")
}

/// Waits until every transaction of this database that had started when this was
/// called has finished, so a pull's horizon (`sync_horizon()`, migration V19) is past
/// every change committed before. Other databases' transactions do not hold it.
pub async fn settle(pool: &PgPool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let target: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(pool)
            .await?;
    loop {
        let xmin: i64 = sqlx::query_scalar("SELECT sync_horizon()::text::bigint")
            .fetch_one(pool)
            .await?;
        if xmin >= target {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the pull horizon did not pass xid {target} within 120 s: a long transaction \
             is open in the benchmark's database (see pg_stat_activity)"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Inserts `rows` kpi_data rows for `tenant` (stores `store-0`..`store-19`) in chunks
/// of at most 100,000 rows, one transaction each, calling `progress` after each chunk.
/// The sync triggers write the change log and history for every row.
pub async fn load_kpi_rows(
    pool: &PgPool,
    tenant: &str,
    rows: i64,
    mut progress: impl FnMut(i64, f64),
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let chunk = 100_000;
    let mut done = 0;
    while done < rows {
        let n = chunk.min(rows - done);
        sqlx::query(
            "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value, period)
             SELECT gen_random_uuid(), $1, 'store-' || (g % 20), 'metric-' || (g % 50),
                    round((g % 100000)::numeric / 7, 2), '2026-' || lpad((1 + g % 12)::text, 2, '0')
             FROM generate_series($2::bigint, $3::bigint) g",
        )
        .bind(tenant)
        .bind(done + 1)
        .bind(done + n)
        .execute(pool)
        .await
        .with_context(|| format!("loading kpi_data rows for {tenant}"))?;
        done += n;
        progress(done, started.elapsed().as_secs_f64());
    }
    Ok(started.elapsed().as_secs_f64())
}

/// VACUUM ANALYZE of the sync tables, then a CHECKPOINT: after a bulk load, so that
/// neither autovacuum nor a checkpoint of the load's pages runs during measurements.
pub async fn settle_storage(pool: &PgPool) -> anyhow::Result<f64> {
    let started = Instant::now();
    for sql in [
        "VACUUM (ANALYZE) kpi_data",
        "VACUUM (ANALYZE) sync_changes",
        "VACUUM (ANALYZE) sync_row_history",
        "VACUUM (ANALYZE) devices",
        "CHECKPOINT",
    ] {
        sqlx::query(sql)
            .execute(pool)
            .await
            .with_context(|| format!("running {sql}"))?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// pg_total_relation_size of each table, in bytes.
pub async fn table_sizes(pool: &PgPool, tables: &[&str]) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for t in tables {
        let size: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
            .bind(*t)
            .fetch_one(pool)
            .await
            .with_context(|| format!("size of {t}"))?;
        out.push((t.to_string(), size));
    }
    Ok(out)
}

/// Ids (with store and version) of a tenant's kpi_data rows, in random order.
pub async fn sample_rows(
    pool: &PgPool,
    tenant: &str,
    n: i64,
) -> anyhow::Result<Vec<(uuid::Uuid, String, i64)>> {
    let rows: Vec<(uuid::Uuid, String, i64)> = sqlx::query_as(
        "SELECT id, store_id, version FROM kpi_data WHERE tenant_id = $1 ORDER BY random() LIMIT $2",
    )
    .bind(tenant)
    .bind(n)
    .fetch_all(pool)
    .await
    .with_context(|| format!("sampling kpi_data rows of {tenant}"))?;
    anyhow::ensure!(
        rows.len() as i64 == n,
        "tenant {tenant} has only {} rows, {n} needed",
        rows.len()
    );
    Ok(rows)
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
