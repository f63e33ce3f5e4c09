//! (f) Cost with a long history: two tenants with 10,000 kpi_data rows each, one
//! carrying 10 million change-history entries (`--quick`: 1 million), the other 10
//! thousand. The history is bulk-loaded in SQL: for each of N/2 deleted rows, two
//! `sync_row_history` entries (insert v1, delete v2) and one tombstone in
//! `sync_changes`, written with `pg_current_xact_id()` of the loading transactions
//! (old by the time of the measurement). Row ids are md5-derived, so as random as
//! client-generated ones.
//!
//! Then, per round and tenant: a writer device pushes 100 updates of existing rows
//! (timed), the horizon is waited for, and a reader device's delta pull of those 100
//! rows is timed. Medians of 20; the 10M/10k ratio of each should stay under 1.3.
//! The reader gets its first cursor through a `last_sync_timestamp` pull taken after
//! the load (the legacy path; a full sync would page through every tombstone).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::Outcome;
use crate::client::{Device, kpi_row};
use crate::report::{Goal, Row};
use crate::{Ctx, PASSWORD, db, stats};

const CHANGED: usize = 100;
/// Deleted rows per loading transaction (two history entries and a tombstone each).
const CHUNK_ROWS: i64 = 500_000;

const HISTORY_SQL: &str = "INSERT INTO sync_row_history
        (table_name, row_id, tenant_id, version, op, data, xid, origin_device, origin_role)
     SELECT 'kpi_data', r.id, $1, v.version, v.op,
            jsonb_build_object('id', r.id, 'tenant_id', $1, 'version', v.version,
                'updated_at', now(), 'deleted', v.version = 2, 'store_id', 'store-' || (r.g % 20),
                'metric', 'metric-' || (r.g % 50), 'value', r.g % 1000, 'period', '2025-01'),
            pg_current_xact_id(), 'bench-loader', 'manager'
     FROM (SELECT g, md5($1 || ':' || g)::uuid AS id
           FROM generate_series($2::bigint, $3::bigint) g) r
     CROSS JOIN (VALUES (1::bigint, 'insert'), (2::bigint, 'delete')) v(version, op)";

const TOMBSTONES_SQL: &str = "INSERT INTO sync_changes
        (table_name, row_id, tenant_id, store_id, xid, seq, version, updated_at, deleted,
         purged, origin_device, origin_role)
     SELECT 'kpi_data', md5($1 || ':' || g)::uuid, $1, 'store-' || (g % 20), pg_current_xact_id(),
            nextval('sync_changes_seq'), 2, now(), true, true, 'bench-loader', 'manager'
     FROM generate_series($2::bigint, $3::bigint) g";

struct Side {
    tenant: String,
    history: i64,
    load_secs: f64,
    writer: Device,
    reader: Device,
    cursor: String,
    rows: Vec<(uuid::Uuid, String, i64)>,
    push_ms: Vec<f64>,
    pull_ms: Vec<f64>,
}

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let rounds = ctx.sizes.f_rounds;
    let kpi_rows = ctx.sizes.f_rows;
    let mut sides = Vec::new();
    let mut max_xid: i64 = 0;
    for (label, history) in [("big", ctx.sizes.f_big), ("small", ctx.sizes.f_small)] {
        let tenant = format!("t-f-{label}");
        let user = format!("f-{label}-manager");
        ctx.add_user(&user, "manager", None, &tenant).await?;
        let t = Instant::now();
        db::load_kpi_rows(&ctx.pool, &tenant, kpi_rows, |_, _| {}).await?;
        let (secs, xid) = load_history(ctx, &tenant, history).await?;
        max_xid = max_xid.max(xid);
        ctx.phase_done(
            &format!(
                "(f) load {tenant}: {kpi_rows} rows, {history} history entries, {} tombstones",
                history / 2
            ),
            t,
        );
        let writer = ctx
            .api
            .login(&user, PASSWORD, &format!("f-{label}-writer"))
            .await?;
        let reader = ctx
            .api
            .login(&user, PASSWORD, &format!("f-{label}-reader"))
            .await?;
        sides.push(Side {
            tenant,
            history,
            load_secs: secs,
            writer,
            reader,
            cursor: String::new(),
            rows: Vec::new(),
            push_ms: Vec::new(),
            pull_ms: Vec::new(),
        });
    }
    let t = Instant::now();
    let vacuum_secs = db::settle_storage(&ctx.pool).await?;
    ctx.phase_done("(f) vacuum + checkpoint", t);
    let sizes =
        db::table_sizes(&ctx.pool, &["sync_row_history", "sync_changes", "kpi_data"]).await?;
    for (t, bytes) in &sizes {
        ctx.progress(format!("  (f) {t}: {:.0} MiB", db::mib(*bytes)));
    }

    // First cursor after the load: a legacy pull from a time past the load's horizon.
    db::settle(&ctx.pool).await?;
    wait_for_horizon_mark(&ctx.pool, max_xid).await?;
    let since = chrono::Utc::now().to_rfc3339();
    let mut first_rows = Vec::new();
    for side in &mut sides {
        let page = ctx.api.pull_since(&side.reader, &since, Some(5000)).await?;
        let mut rows = page.rows;
        let (cursor, more, _) = if page.has_more {
            ctx.api
                .sync_down(&side.reader, Some(page.cursor), Some(5000))
                .await?
        } else {
            (page.cursor, 0, 0)
        };
        side.cursor = cursor;
        rows += more;
        first_rows.push(json!({"tenant": side.tenant, "rows": rows}));
        side.rows = db::sample_rows(&ctx.pool, &side.tenant, (rounds * CHANGED) as i64).await?;
    }

    let t = Instant::now();
    for round in 0..rounds {
        for side in &mut sides {
            let batch: Vec<Value> = side.rows[round * CHANGED..(round + 1) * CHANGED]
                .iter()
                .enumerate()
                .map(|(i, (id, store, version))| kpi_row(*id, store, round * CHANGED + i, *version))
                .collect();
            let started = Instant::now();
            ctx.api.push_kpi(&side.writer, &batch).await?;
            side.push_ms.push(started.elapsed().as_secs_f64() * 1e3);
            db::settle(&ctx.pool).await?;
            let started = Instant::now();
            let page = ctx.api.pull(&side.reader, Some(&side.cursor), None).await?;
            side.pull_ms.push(started.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(
                page.kpi_rows == CHANGED && page.rows == CHANGED && !page.has_more,
                "delta pull of {} round {round}: {} rows (has_more {}), expected {CHANGED}",
                side.tenant,
                page.rows,
                page.has_more
            );
            side.cursor = page.cursor;
        }
        if (round + 1) % 5 == 0 {
            ctx.progress(format!("  (f) {} of {rounds} rounds", round + 1));
        }
    }
    ctx.phase_done(&format!("(f) {rounds} rounds of push + pull"), t);

    let (big, small) = (&sides[0], &sides[1]);
    let label = format!(
        "the same in the tenant with {} history entries",
        small.history
    );
    let detail = |what: &str, v: &[f64], s: &[f64]| {
        let (b, m) = (
            stats::Summary::of(v.to_vec()),
            stats::Summary::of(s.to_vec()),
        );
        format!(
            "{what} medians: {:.2} ms vs {:.2} ms; p90 {:.2} vs {:.2} ms",
            b.p50, m.p50, b.p90, m.p90
        )
    };
    let rows = vec![
        Row::new(
            "f",
            &format!(
                "delta pull 100 rows, history {} / {}",
                big.history, small.history
            ),
            stats::median(&big.pull_ms),
            "ms",
        )
        .vs(stats::median(&small.pull_ms), &label)
        .goal(Goal::RatioBelow(1.3))
        .detail(&detail("pull", &big.pull_ms, &small.pull_ms)),
        Row::new(
            "f",
            &format!("push 100 rows, history {} / {}", big.history, small.history),
            stats::median(&big.push_ms),
            "ms",
        )
        .vs(stats::median(&small.push_ms), &label)
        .goal(Goal::RatioBelow(1.3))
        .detail(&detail("push", &big.push_ms, &small.push_ms)),
        Row::new(
            "f",
            &format!(
                "load {} history entries + {} tombstones",
                big.history,
                big.history / 2
            ),
            big.load_secs,
            "s",
        )
        .detail(&format!(
            "table sizes after load: {}",
            sizes
                .iter()
                .map(|(t, b)| format!("{t} {:.0} MiB", db::mib(*b)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    ];
    let details = json!({
        "kpi_rows_per_tenant": kpi_rows, "rounds": rounds, "vacuum_checkpoint_secs": vacuum_secs,
        "table_sizes_bytes": sizes.iter().map(|(t, b)| json!({"table": t, "bytes": b})).collect::<Vec<_>>(),
        "first_pull_rows": first_rows,
        "sides": sides.iter().map(|s| json!({
            "tenant": s.tenant, "history_entries": s.history, "tombstones": s.history / 2,
            "load_secs": s.load_secs,
            "push_ms": stats::Summary::of(s.push_ms.clone()).to_json(),
            "pull_ms": stats::Summary::of(s.pull_ms.clone()).to_json(),
            "push_ms_all": s.push_ms, "pull_ms_all": s.pull_ms,
        })).collect::<Vec<_>>(),
    });
    Ok(Outcome { rows, details })
}

/// Loads `entries` history entries (and half as many tombstones) for `tenant` in
/// chunks, one transaction each; returns (seconds, highest loading xid).
async fn load_history(ctx: &Ctx, tenant: &str, entries: i64) -> anyhow::Result<(f64, i64)> {
    let started = Instant::now();
    let rows = entries / 2;
    let mut done = 0;
    let mut xid = 0;
    while done < rows {
        let n = CHUNK_ROWS.min(rows - done);
        let mut tx = ctx.pool.begin().await?;
        xid = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
        for sql in [HISTORY_SQL, TOMBSTONES_SQL] {
            sqlx::query(sql)
                .bind(tenant)
                .bind(done + 1)
                .bind(done + n)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("loading history of {tenant}"))?;
        }
        tx.commit().await?;
        done += n;
        let secs = started.elapsed().as_secs_f64();
        if entries > 100_000 {
            ctx.progress(format!(
                "        {tenant}: {} of {entries} history entries ({:.0} entries/s)",
                done * 2,
                (done * 2) as f64 / secs
            ));
        }
    }
    Ok((started.elapsed().as_secs_f64(), xid))
}

/// Waits until the server's horizon clock (a tick every 2 s) has recorded a horizon
/// past `xid`, so a `last_sync_timestamp` of now starts after the load.
async fn wait_for_horizon_mark(pool: &sqlx::PgPool, xid: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let past: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sync_horizons WHERE horizon > $1::text::xid8)",
        )
        .bind(xid.to_string())
        .fetch_one(pool)
        .await?;
        if past {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the server recorded no horizon past the load (xid {xid}) within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
