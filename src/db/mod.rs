//! The database: creating it when missing, the connection pool (retrying the first
//! connection so start order does not matter), and the migration runner.

pub mod backup;
pub mod migrate;
pub mod relay;
pub mod schedule;
pub mod sql;

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Parses `DATABASE_URL`, forcing UTC so timestamps render as RFC 3339 with `+00:00`.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let opts =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    Ok(opts
        .options([("timezone", "UTC")])
        .application_name("nas-sync"))
}

/// Creates the database named in the URL when it does not exist yet, retrying the
/// server connection until `timeout` so a database container may start after us.
pub async fn ensure_database(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let opts = connect_options(url)?;
    let name = opts.get_database().unwrap_or("postgres").to_string();
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match try_create(&opts, &name).await {
            Ok(created) => {
                if created {
                    tracing::info!(database = %name, "created database");
                }
                return Ok(());
            }
            Err(e) if is_connect_error(&e) && started.elapsed() < timeout => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                    "database not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("connecting to PostgreSQL for database '{name}'"));
            }
        }
    }
}

fn is_connect_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut
    ) || matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("57P03"))
}

/// Returns whether the database had to be created.
async fn try_create(opts: &PgConnectOptions, name: &str) -> Result<bool, sqlx::Error> {
    // Connecting to the target first covers the common case and users without CREATEDB.
    match opts.connect().await {
        Ok(conn) => {
            conn.close().await?;
            return Ok(false);
        }
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("3D000") => {}
        Err(e) => return Err(e),
    }
    let mut admin = opts.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE {}", sql::Ident(name));
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
        {
            Ok(_) => {}
            // Another instance created it between our check and our CREATE.
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e),
        }
    }
    admin.close().await?;
    Ok(!exists)
}

/// What the database layer needs from the settings (`Config::db`).
#[derive(Clone, Debug)]
pub struct DbSettings {
    /// `DATABASE_URL`.
    pub url: String,
    /// How long the first connection is retried (compose start order).
    pub connect_timeout: Duration,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// Reach a TCP database through the relay (`relay`).
    pub tcp_relay: bool,
}

/// Creates the database if needed, applies migrations, and opens the pool.
pub async fn prepare(settings: &DbSettings) -> anyhow::Result<PgPool> {
    ensure_database(&settings.url, settings.connect_timeout).await?;
    migrate::run(&settings.url).await?;
    pool(settings).await
}

/// Opens the connection pool (the database must exist). A TCP database is reached
/// through the relay of `relay` (no Nagle stalls) unless `NAS_SYNC_DB_TCP_RELAY=off`.
pub async fn pool(settings: &DbSettings) -> anyhow::Result<PgPool> {
    let opts = relay::route(connect_options(&settings.url)?, settings.tcp_relay).await;
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(opts)
        .await
        .context("opening the database pool")
}

/// The database's size, as PostgreSQL writes it ("12 MB").
pub async fn size_pretty(pool: &PgPool) -> sqlx::Result<String> {
    sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
        .fetch_one(pool)
        .await
}

/// Sets one `server_meta` value (inside the caller's transaction).
/// Names the path the rest of the transaction writes synced rows by, for the audit
/// trail (`push` when a device writes and nothing else is named, `sql` when nothing
/// is set): `bridgecore`, `inbox`, `console`, `odoo_mirror`, `odoo_write_back`, `cli`.
pub async fn set_origin(conn: &mut sqlx::PgConnection, origin: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT set_config('nas_sync.origin', $1, true)")
        .bind(origin)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn set_meta(conn: &mut sqlx::PgConnection, key: &str, value: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO server_meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(key)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}
