//! (k) The Odoo mirror's first pass: records per second and Odoo calls of a first
//! mirror of `res.partner`, against the fake Odoo (crates/fake-odoo; no real Odoo runs
//! here) answering every call after a fixed delay, for several batch sizes.
//!
//! Baseline: the floor, the time the fewest possible calls would take (one
//! `search_read` per batch of records, each paying the call delay); the ratio says how
//! far the mirror is from it. The server runs in this process, over a fresh database
//! per batch size, with a 200 ms scheduler tick (the setting takes whole seconds).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use fake_odoo::{FakeOdoo, FakeOptions};
use serde_json::{Value, json};

use super::Outcome;
use crate::client::Api;
use crate::report::Row;
use crate::{Ctx, PASSWORD, db};

/// The server in this process, over `db_url`, until the sender is dropped.
async fn serve_here(
    db_url: &str,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>, sqlx::PgPool)> {
    let url = db_url.to_string();
    let mut config = nas_sync::Config::from_lookup(move |name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "NAS_SYNC_JWT_SECRET" => Some("bench-secret-0123456789-abcdefghij".into()),
        "NAS_SYNC_SECRET_KEY" => Some("bench-sealing-key-0123456789-abcdefghijklmnop".into()),
        "NAS_SYNC_RATE_LIMIT" => Some("off".into()),
        "NAS_SYNC_LOG" => Some("warn".into()),
        _ => None,
    })?;
    config.odoo.tick = Duration::from_millis(200);
    config.odoo.call_delay = Duration::ZERO;
    let state = nas_sync::AppState::prepare(config).await?;
    let pool = state.pool.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(nas_sync::launch(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok((base, stop, pool))
}

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let records = ctx.sizes.k_records;
    let delay_ms: u64 = 20;
    let mut rows = Vec::new();
    let mut results = Vec::new();
    for &batch in ctx.sizes.k_batches {
        let t = Instant::now();
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
        let scratch = db::ScratchDb::create(&ctx.db_url).await?;
        let (base, stop, pool) = serve_here(&scratch.url).await?;
        nas_sync::auth::users::add(
            &pool,
            "default",
            "k-boss",
            nas_sync::auth::Role::Manager,
            None,
            PASSWORD,
        )
        .await?;
        let api = Api::new(&base)?;
        let boss = api.login("k-boss", PASSWORD, "k-phone").await?;
        fake.set_call_delay(Duration::from_millis(delay_ms));
        fake.reset_calls();
        ctx.phase_done(
            &format!("(k) load {records} Odoo records, batch {batch}"),
            t,
        );
        let started = Instant::now();
        let created: Value = api
            .http
            .post(api.url("/api/v1/odoo/connections"))
            .bearer_auth(&boss.token)
            .json(
                &json!({"url": fake.url, "database": "odoo", "username": "bot",
                "api_key": "bot-api-key", "models": ["res.partner"], "batch_size": batch,
                "initial_range_days": 0, "poll_interval_seconds": 3600}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["id"]
            .as_str()
            .context("no connection id")?
            .to_string();
        loop {
            let s: Value = api
                .http
                .get(api.url(&format!("/api/v1/odoo/connections/{id}/status")))
                .bearer_auth(&boss.token)
                .send()
                .await?
                .json()
                .await?;
            if s["sync_status"] == "done" {
                anyhow::ensure!(
                    s["models"]["res.partner"]["records"] == json!(records),
                    "the mirror finished short: {s}"
                );
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "mirror too slow: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        drop(stop);
        pool.close().await;
        scratch.drop_db().await?;
        let mut by_method: BTreeMap<String, usize> = BTreeMap::new();
        for (_, method) in fake.calls() {
            *by_method.entry(method).or_default() += 1;
        }
        let calls: usize = by_method.values().sum();
        let floor = (records as f64 / batch as f64).ceil() * delay_ms as f64 / 1000.0;
        ctx.progress(format!(
            "  (k) batch {batch}: {secs:.2} s, {:.0} records/s, {calls} calls, floor {floor:.2} s",
            records as f64 / secs
        ));
        rows.push(
            Row::new(
                "k",
                &format!("first mirror of {records} records, batch {batch}"),
                secs,
                "s",
            )
            .vs(floor, "the floor: one search_read per batch, 20 ms each")
            .detail(&format!(
                "{:.0} records/s, {calls} Odoo calls ({:.1} per 1,000 records)",
                records as f64 / secs,
                calls as f64 * 1000.0 / records as f64
            )),
        );
        results.push(json!({
            "batch_size": batch, "records": records, "call_delay_ms": delay_ms, "seconds": secs,
            "records_per_second": records as f64 / secs, "calls": by_method, "floor_seconds": floor,
        }));
    }
    Ok(Outcome {
        rows,
        details: json!({ "results": results }),
    })
}
