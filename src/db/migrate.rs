//! Migrations with refinery, through its tokio-postgres runner (refinery has no
//! sqlx driver). The SQL lives in `migrations/`, embedded at build time.

use anyhow::Context;
use sqlx::PgPool;

refinery::embed_migrations!("migrations");

/// Applies every pending migration to the database at `url`.
pub async fn run(url: &str) -> anyhow::Result<()> {
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL to run migrations (TLS is not used for migrations)")?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended with an error");
        }
    });
    let report = migrations::runner()
        .run_async(&mut client)
        .await
        .context("applying migrations")?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied migration");
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// The newest migration version this build knows.
pub fn latest_version() -> i64 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version() as i64)
        .max()
        .unwrap_or(0)
}

/// Whether the database answers and carries every migration of this build.
pub async fn is_current(pool: &PgPool) -> bool {
    let applied: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT max(version)::bigint FROM refinery_schema_history")
            .fetch_one(pool)
            .await;
    matches!(applied, Ok(Some(v)) if v >= latest_version())
}
