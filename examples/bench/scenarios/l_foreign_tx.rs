//! (l) Read-your-writes across devices while another database on the same PostgreSQL
//! holds a writing transaction open (NAS owners often share one PostgreSQL between
//! apps). One device pushes a row once a second; another pulls from its cursor until
//! the row is there. The lag is the time from the push's answer to the pull answer
//! that holds the row (a pull's own latency included).
//!
//! Two phases of the same length: quiet, then with a transaction in another database
//! that wrote and stays open for the whole phase (30 s). Before migration V19 the pull
//! horizon was PostgreSQL's cluster-wide `xmin`, and the second phase's rows waited
//! for that transaction to end.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

use super::Outcome;
use crate::client::{Device, kpi_row};
use crate::report::{Goal, Row};
use crate::stats::Summary;
use crate::{Ctx, PASSWORD, db};

const TENANT: &str = "t-l";

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let window = Duration::from_secs(if ctx.quick { 5 } else { 30 });
    ctx.add_user("l-manager", "manager", None, TENANT).await?;
    let writer = ctx.api.login("l-manager", PASSWORD, "l-writer").await?;
    let reader = ctx.api.login("l-manager", PASSWORD, "l-reader").await?;
    let mut cursor = ctx.api.sync_down(&reader, None, None).await?.0;

    let t = Instant::now();
    let quiet = rounds(ctx, &writer, &reader, &mut cursor, window).await?;
    ctx.phase_done("(l) quiet phase", t);

    // Another application's database, with a transaction that wrote and stays open.
    let t = Instant::now();
    let base = ctx.db_url.clone();
    let other = db::ScratchDb::create(&base).await?;
    let mut foreign = sqlx::PgConnection::connect(&other.url)
        .await
        .context("connecting to the other database")?;
    sqlx::query("BEGIN").execute(&mut foreign).await?;
    sqlx::query("CREATE TABLE imports (n int)")
        .execute(&mut foreign)
        .await?;
    let foreign_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut foreign)
        .await?;
    let held = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            )
            .fetch_one(&pool)
            .await
            .map(|xmin| xmin <= foreign_xid)
        }
    };
    anyhow::ensure!(
        held(&ctx.pool).await?,
        "the foreign transaction does not hold PostgreSQL's xmin"
    );
    let loaded = rounds(ctx, &writer, &reader, &mut cursor, window).await;
    let still_open = held(&ctx.pool).await;
    sqlx::query("ROLLBACK").execute(&mut foreign).await?;
    foreign.close().await?;
    other.drop_db().await?;
    let loaded = loaded?;
    anyhow::ensure!(
        still_open?,
        "the foreign transaction ended before the phase did"
    );
    ctx.phase_done(
        &format!(
            "(l) phase with a transaction open {} s in another database",
            window.as_secs()
        ),
        t,
    );

    let (q, f) = (Summary::of(quiet.clone()), Summary::of(loaded.clone()));
    let rows = vec![
        Row::new(
            "l",
            &format!(
                "push-to-pull lag p99, transaction open {} s in another database",
                window.as_secs()
            ),
            f.p99,
            "ms",
        )
        .vs(q.p99, "the same, quiet phase before")
        .goal(Goal::ValueBelow(10.0))
        .detail(&format!(
            "{} rounds each; p50 {:.2} ms (quiet {:.2} ms), max {:.2} ms",
            f.n, f.p50, q.p50, f.max
        )),
    ];
    let details = json!({
        "window_secs": window.as_secs(),
        "quiet_lag_ms": q.to_json(), "foreign_tx_lag_ms": f.to_json(),
        "quiet_samples_ms": quiet, "foreign_tx_samples_ms": loaded,
    });
    Ok(Outcome { rows, details })
}

/// One push a second for `window`; after each, pulls until the row comes. Lags in ms.
async fn rounds(
    ctx: &Ctx,
    writer: &Device,
    reader: &Device,
    cursor: &mut String,
    window: Duration,
) -> anyhow::Result<Vec<f64>> {
    let bound = window + Duration::from_secs(10);
    let started = Instant::now();
    let mut lags = Vec::new();
    let mut n = 0;
    while started.elapsed() < window {
        let round = Instant::now();
        n += 1;
        ctx.api
            .push_kpi(writer, &[kpi_row(Uuid::new_v4(), "store-1", n, 0)])
            .await?;
        let pushed = Instant::now();
        loop {
            let page = ctx.api.pull(reader, Some(cursor), None).await?;
            *cursor = page.cursor;
            if page.kpi_rows > 0 {
                lags.push(pushed.elapsed().as_secs_f64() * 1e3);
                break;
            }
            anyhow::ensure!(
                pushed.elapsed() < bound,
                "a pushed row did not reach another device's pull within {bound:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(rest) = Duration::from_secs(1).checked_sub(round.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    Ok(lags)
}
