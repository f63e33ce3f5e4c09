//! The scheduler and the per-connection workers.
//!
//! Every tick (10 s by default, or at once when a connection is created) the
//! scheduler starts a worker for each connection that has none in this process and
//! whose lease it can take: a lease in `odoo_connections` makes one worker per
//! connection across every server process, so batches of a connection run one at a
//! time while connections run in parallel. A worker loops: run the next due batch,
//! else send the next write-back, else plan the first mirror or the next incremental
//! poll (and a deletion reconciliation when due), else sleep. On shutdown the current
//! step is abandoned (its transaction rolls back), its batch goes back to `pending`
//! and the lease is released; a crashed process's lease simply expires, and the next
//! worker puts its `running` batches back to `pending`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::OdooCtx;
use super::client::OdooClient;
use super::connections::{self, Connection};
use super::fault::OdooError;
use super::mirror::{self, Batch, ModelState};
use super::{outbox, reconcile};

/// How long a lease lasts without renewal.
const LEASE_SECS: i64 = 300;

/// What one step of a worker did.
enum Step {
    Worked,
    Idle,
    /// Odoo could not be asked; wait a tick.
    Backoff,
}

/// Runs the scheduler until `stop`; waits for the workers it started.
pub async fn run_scheduler(ctx: OdooCtx, stop: CancellationToken) {
    let owner = format!("{}-{}", std::process::id(), Uuid::new_v4().simple());
    let running: Arc<Mutex<HashMap<Uuid, tokio::task::JoinHandle<()>>>> = Arc::default();
    tracing::info!(owner = %owner, tick = ?ctx.settings.tick, "Odoo scheduler started");
    loop {
        if let Err(e) = start_workers(&ctx, &owner, &running, &stop).await {
            tracing::warn!(error = %format!("{e:#}"), "Odoo scheduler could not list connections");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ctx.wakeup.notified() => {}
            _ = tokio::time::sleep(ctx.settings.tick) => {}
        }
    }
    let handles: Vec<_> = match running.lock() {
        Ok(mut m) => m.drain().map(|(_, h)| h).collect(),
        Err(_) => Vec::new(),
    };
    for h in handles {
        let _ = h.await;
    }
    tracing::info!("Odoo scheduler stopped");
}

async fn start_workers(
    ctx: &OdooCtx,
    owner: &str,
    running: &Arc<Mutex<HashMap<Uuid, tokio::task::JoinHandle<()>>>>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    // Tables another process added must be known before this one writes to them.
    if ctx.registry.is_stale(&ctx.pool).await? {
        ctx.registry.reload(&ctx.pool).await?;
    }
    for conn in connections::all(&ctx.pool).await? {
        {
            let Ok(mut map) = running.lock() else {
                continue;
            };
            map.retain(|_, h| !h.is_finished());
            if map.contains_key(&conn.id) {
                continue;
            }
        }
        if !take_lease(ctx, conn.id, owner).await? {
            continue;
        }
        let id = conn.id;
        let (ctx2, owner2, stop2) = (ctx.clone(), owner.to_string(), stop.child_token());
        let handle = tokio::spawn(async move {
            run_worker(ctx2.clone(), conn, owner2.clone(), stop2).await;
            release(&ctx2, id, &owner2).await;
        });
        if let Ok(mut map) = running.lock() {
            map.insert(id, handle);
        }
    }
    Ok(())
}

/// Takes (or renews) the connection's lease; false when another process holds it.
async fn take_lease(ctx: &OdooCtx, id: Uuid, owner: &str) -> sqlx::Result<bool> {
    let taken = sqlx::query(
        "UPDATE odoo_connections SET lease_owner = $2, lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now())",
    )
    .bind(id)
    .bind(owner)
    .bind(LEASE_SECS as f64)
    .execute(&ctx.pool)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

async fn release(ctx: &OdooCtx, id: Uuid, owner: &str) {
    let result = sqlx::query(
        "WITH b AS (UPDATE odoo_batches SET status = 'pending'
                    WHERE connection_id = $1 AND status = 'running'
                      AND EXISTS (SELECT 1 FROM odoo_connections WHERE id = $1 AND lease_owner = $2))
         UPDATE odoo_connections SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .execute(&ctx.pool)
    .await;
    if let Err(e) = result {
        tracing::warn!(connection = %id, error = %e, "could not release the Odoo lease");
    }
}

/// One connection's loop.
async fn run_worker(ctx: OdooCtx, conn: Connection, owner: String, stop: CancellationToken) {
    let id = conn.id;
    // Batches a crashed worker left running start over (nothing of them committed).
    if let Err(e) = sqlx::query("UPDATE odoo_batches SET status = 'pending' WHERE connection_id = $1 AND status = 'running'")
        .bind(id)
        .execute(&ctx.pool)
        .await
    {
        tracing::warn!(connection = %id, error = %e, "could not reset running batches");
        return;
    }
    // The connection as last read, and a client with its key (none while the key
    // cannot be opened: the connection's `last_error` says why).
    let mut client = build_client(&ctx, &conn).await;
    let mut keyed = conn;
    tracing::info!(connection = %id, tenant = %keyed.tenant_id, "Odoo worker started");
    loop {
        if stop.is_cancelled() {
            break;
        }
        match take_lease(&ctx, id, &owner).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(connection = %id, "lease taken by another process; worker stops");
                break;
            }
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "lease renewal failed");
                sleep_or_stop(&stop, ctx.settings.tick).await;
                continue;
            }
        }
        // The connection may have changed or gone.
        let conn = match connections::load(&ctx.pool, id).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "could not read the connection");
                sleep_or_stop(&stop, ctx.settings.tick).await;
                continue;
            }
        };
        if conn.key_differs(&keyed) {
            // A renewed key (or one sealed at start): talk to Odoo with it.
            let had_client = client.is_some();
            client = build_client(&ctx, &conn).await;
            if client.is_some() {
                tracing::info!(connection = %id, "Odoo key renewed; client rebuilt");
                if !had_client {
                    let _ =
                        sqlx::query("UPDATE odoo_connections SET last_error = NULL WHERE id = $1")
                            .bind(id)
                            .execute(&ctx.pool)
                            .await;
                }
            }
            keyed = conn.clone();
        }
        let Some(client) = &client else {
            sleep_or_stop(&stop, ctx.settings.tick).await;
            continue;
        };
        // The lease is renewed while a step runs (one step may take minutes against
        // a slow Odoo); if another process took it, this step is abandoned.
        let heartbeat = async {
            loop {
                tokio::time::sleep(Duration::from_secs(LEASE_SECS as u64 / 5)).await;
                if let Ok(false) = take_lease(&ctx, id, &owner).await {
                    return;
                }
            }
        };
        let step = tokio::select! {
            _ = stop.cancelled() => break,
            _ = heartbeat => {
                tracing::warn!(connection = %id, "lease lost during a step; worker stops");
                break;
            }
            step = step(&ctx, &conn, client) => step,
        };
        match step {
            Ok(Step::Worked) => {}
            Ok(Step::Idle) => {
                let wait = Duration::from_secs(1).min(ctx.settings.tick);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ctx.wakeup.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Ok(Step::Backoff) => sleep_or_stop(&stop, ctx.settings.tick).await,
            Err(e) => {
                tracing::warn!(connection = %id, error = %format!("{e:#}"), "Odoo worker step failed");
                let _ = sqlx::query("UPDATE odoo_connections SET last_error = $2 WHERE id = $1")
                    .bind(id)
                    .bind(format!("{e:#}").chars().take(500).collect::<String>())
                    .execute(&ctx.pool)
                    .await;
                sleep_or_stop(&stop, ctx.settings.tick).await;
            }
        }
    }
    tracing::info!(connection = %id, "Odoo worker stopped");
}

/// The connection's client, or `None` when its key cannot be opened (a missing or
/// changed `NAS_SYNC_SECRET_KEY`), with the reason in its `last_error`.
async fn build_client(ctx: &OdooCtx, conn: &Connection) -> Option<OdooClient> {
    match conn.client(&ctx.settings, ctx.secrets.as_deref()) {
        Ok(c) => Some(c),
        Err(e) => {
            let error = format!("{e:#}");
            tracing::warn!(connection = %conn.id, error, "could not build the Odoo client");
            let _ = sqlx::query("UPDATE odoo_connections SET last_error = $2 WHERE id = $1")
                .bind(conn.id)
                .bind(&error)
                .execute(&ctx.pool)
                .await;
            None
        }
    }
}

async fn sleep_or_stop(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// One unit of work: a batch, a write-back, a plan, or nothing.
async fn step(ctx: &OdooCtx, conn: &Connection, client: &OdooClient) -> anyhow::Result<Step> {
    let models = mirror::model_states(&ctx.pool, conn).await?;
    if let Some(batch) = claim_batch(ctx, conn.id).await? {
        run_batch(ctx, conn, client, &models, batch).await?;
        return Ok(Step::Worked);
    }
    if outbox::send_next(ctx, conn, client, &models).await? {
        return Ok(Step::Worked);
    }
    if conn.sync_status == "not_started" {
        return plan_initial(ctx, conn, client, &models).await;
    }
    let due = conn.last_poll_at.is_none_or(|t| {
        Utc::now() - t >= chrono::Duration::seconds(conn.poll_interval_seconds as i64)
    });
    if due && conn.first_mirror_done_at.is_some() {
        plan_incremental(ctx, conn, client, &models).await?;
        reconcile::run_due(ctx, conn, client, &models).await?;
        return Ok(Step::Worked);
    }
    Ok(Step::Idle)
}

/// The next due batch (first-mirror batches first), marked running.
async fn claim_batch(ctx: &OdooCtx, connection_id: Uuid) -> sqlx::Result<Option<Batch>> {
    sqlx::query_as(
        "UPDATE odoo_batches SET status = 'running'
         WHERE id = (SELECT id FROM odoo_batches
                     WHERE connection_id = $1 AND status IN ('pending', 'failed') AND next_attempt_at <= now()
                     ORDER BY initial DESC, window_start, id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id, model, window_start, window_end, initial, attempts",
    )
    .bind(connection_id)
    .fetch_optional(&ctx.pool)
    .await
}

/// Fetches a batch's window and commits its records with its status.
async fn run_batch(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    models: &[ModelState],
    batch: Batch,
) -> anyhow::Result<()> {
    let Some(model) = models.iter().find(|m| m.model == batch.model) else {
        sqlx::query("UPDATE odoo_batches SET status = 'permanently_failed', last_error = 'model no longer mirrored' WHERE id = $1")
            .bind(batch.id)
            .execute(&ctx.pool)
            .await?;
        return Ok(());
    };
    let started = std::time::Instant::now();
    let fetched = mirror::fetch_window(client, model, &batch, conn.batch_size as i64).await;
    let records = match fetched {
        Ok(r) => r,
        Err(e) => {
            let transient = e.is_retryable() || e.is_credentials();
            return fail_batch(ctx, conn, &batch, &e.summary(), transient).await;
        }
    };
    let mut tx = ctx.pool.begin().await?;
    if !mirror::lock_connection(&mut tx, conn.id).await? {
        return Ok(());
    }
    crate::db::set_origin(&mut tx, "odoo_mirror").await?;
    let written = match mirror::upsert(
        &mut tx,
        conn,
        model,
        &records,
        mirror::Overwrite::WhenChanged,
    )
    .await
    {
        Ok(n) => n,
        Err(e) => {
            drop(tx);
            return fail_batch(ctx, conn, &batch, &format!("storing records: {e:#}"), false).await;
        }
    };
    sqlx::query(
        "UPDATE odoo_batches SET status = 'done', attempts = attempts + 1, records = $2,
                last_error = NULL, finished_at = now()
         WHERE id = $1",
    )
    .bind(batch.id)
    .bind(records.len() as i64)
    .execute(&mut *tx)
    .await?;
    if let Some(latest) = mirror::latest_write_date(&records) {
        sqlx::query(
            "UPDATE odoo_model_state SET last_write_date = greatest(last_write_date, $3)
             WHERE connection_id = $1 AND model = $2",
        )
        .bind(conn.id)
        .bind(&model.model)
        .bind(latest)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE odoo_connections SET last_error = NULL WHERE id = $1")
        .bind(conn.id)
        .execute(&mut *tx)
        .await?;
    if batch.initial {
        mirror::finish_initial_if_complete(&mut tx, conn.id).await?;
    }
    tx.commit().await?;
    metrics::counter!("odoo_records_mirrored_total", "model" => model.model.clone())
        .increment(records.len() as u64);
    tracing::info!(connection = %conn.id, model = %model.model, batch = batch.id,
        window_start = %batch.window_start, window_end = %batch.window_end,
        records = records.len(), written, elapsed_ms = started.elapsed().as_millis() as u64,
        "Odoo batch done");
    Ok(())
}

/// Counts a failed attempt; the fourth (by default) makes the batch permanently failed.
async fn fail_batch(
    ctx: &OdooCtx,
    conn: &Connection,
    batch: &Batch,
    error: &str,
    retryable: bool,
) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let attempts = batch.attempts + 1;
    let permanent = attempts >= settings.max_attempts;
    let wait =
        settings.retry_delay.as_secs_f64() * f64::from(1u32 << attempts.clamp(0, 10) as u32) / 2.0;
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "UPDATE odoo_batches SET status = $2, attempts = $3, last_error = $4,
                next_attempt_at = now() + make_interval(secs => $5),
                finished_at = CASE WHEN $2 = 'permanently_failed' THEN now() END
         WHERE id = $1",
    )
    .bind(batch.id)
    .bind(if permanent {
        "permanently_failed"
    } else {
        "failed"
    })
    .bind(attempts)
    .bind(error)
    .bind(wait)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE odoo_connections SET last_error = $2 WHERE id = $1")
        .bind(conn.id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
    if permanent && batch.initial {
        mirror::finish_initial_if_complete(&mut tx, conn.id).await?;
    }
    if permanent && !batch.initial && retryable {
        // Odoo was away longer than the retries: the window is read again by the
        // next poll (which starts a safety lag before `planned_until`), so an outage
        // loses no update.
        let lag = conn.safety_lag_seconds as i64 + mirror::WINDOW_MARGIN_SECS;
        sqlx::query(
            "UPDATE odoo_model_state
             SET planned_until = least(planned_until, $3 + make_interval(secs => $4))
             WHERE connection_id = $1 AND model = $2",
        )
        .bind(conn.id)
        .bind(&batch.model)
        .bind(batch.window_start)
        .bind(lag as f64)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    metrics::counter!("odoo_batch_failures_total").increment(1);
    if permanent {
        tracing::error!(connection = %conn.id, model = %batch.model, batch = batch.id, attempts, error,
            "Odoo batch permanently failed; see the connection status and retry it");
    } else {
        tracing::warn!(connection = %conn.id, model = %batch.model, batch = batch.id, attempts, error,
            "Odoo batch failed; it will be retried");
    }
    Ok(())
}

/// The first mirror: every model's range, split into batches.
async fn plan_initial(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    models: &[ModelState],
) -> anyhow::Result<Step> {
    let min_window = chrono::Duration::from_std(ctx.settings.min_window)?;
    for model in models.iter().filter(|m| m.planned_until.is_none()) {
        let hi = mirror::window_end(client);
        let range_start = if conn.initial_range_days > 0 {
            Some(hi - chrono::Duration::days(conn.initial_range_days as i64))
        } else {
            None
        };
        let planned = async {
            let oldest = mirror::oldest_write_date(client, &model.model).await?;
            let lo = match (oldest, range_start) {
                (None, _) => return Ok::<_, OdooError>(Vec::new()),
                (Some(o), Some(r)) => o.max(r),
                (Some(o), None) => o,
            };
            mirror::plan_windows(
                client,
                &model.model,
                lo,
                hi,
                conn.batch_size as i64,
                min_window,
            )
            .await
        }
        .await;
        match planned {
            Ok(windows) => {
                let start = range_start.unwrap_or(chrono::DateTime::UNIX_EPOCH.naive_utc());
                mirror::save_plan(&ctx.pool, conn, model, &windows, Some(start), hi, true).await?;
                tracing::info!(connection = %conn.id, model = %model.model, batches = windows.len(),
                    records = windows.iter().map(|w| w.count).sum::<i64>(), "first mirror planned");
            }
            Err(e) if !e.is_retryable() => {
                // Odoo refuses to count or sort this model: fall back to one window
                // over the whole range, paged by id. If reading fails too, that batch
                // fails visibly (and for good after its attempts); nothing waits forever.
                let start = range_start.unwrap_or(chrono::DateTime::UNIX_EPOCH.naive_utc());
                let whole = mirror::Window {
                    lo: start,
                    hi,
                    count: 0,
                };
                mirror::save_plan(&ctx.pool, conn, model, &[whole], Some(start), hi, true).await?;
                tracing::warn!(connection = %conn.id, model = %model.model, error = %e,
                    "could not plan windows; reading the whole range as one batch");
            }
            Err(e) => {
                // Planning is retried at the next tick; the status shows why it waits.
                sqlx::query("UPDATE odoo_connections SET last_error = $2 WHERE id = $1")
                    .bind(conn.id)
                    .bind(format!("planning {}: {}", model.model, e.summary()))
                    .execute(&ctx.pool)
                    .await?;
                tracing::warn!(connection = %conn.id, model = %model.model, error = %e, "planning the first mirror failed");
                return Ok(Step::Backoff);
            }
        }
    }
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "UPDATE odoo_connections SET sync_status = 'in_progress', last_poll_at = now(), last_error = NULL
         WHERE id = $1 AND sync_status = 'not_started'",
    )
    .bind(conn.id)
    .execute(&mut *tx)
    .await?;
    mirror::finish_initial_if_complete(&mut tx, conn.id).await?;
    tx.commit().await?;
    Ok(Step::Worked)
}

/// The next windows of every model: from a safety lag before the last end to Odoo's
/// clock now.
async fn plan_incremental(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    models: &[ModelState],
) -> anyhow::Result<()> {
    let min_window = chrono::Duration::from_std(ctx.settings.min_window)?;
    let lag = chrono::Duration::seconds(conn.safety_lag_seconds as i64);
    for model in models {
        let hi = mirror::window_end(client);
        let lo = match model.planned_until {
            Some(p) => p - lag - chrono::Duration::seconds(mirror::WINDOW_MARGIN_SECS),
            None => continue,
        };
        if outbox::has_unresolved_create(&ctx.pool, conn.id, &model.model).await? {
            // A create whose answer was lost is found again first, so the mirror
            // does not insert it as a second row.
            continue;
        }
        match mirror::plan_windows(
            client,
            &model.model,
            lo,
            hi,
            conn.batch_size as i64,
            min_window,
        )
        .await
        {
            Ok(windows) => {
                mirror::save_plan(
                    &ctx.pool,
                    conn,
                    model,
                    &windows,
                    None,
                    hi.max(model.planned_until.unwrap_or(hi)),
                    false,
                )
                .await?;
                if !windows.is_empty() {
                    tracing::debug!(connection = %conn.id, model = %model.model, batches = windows.len(), "incremental windows planned");
                }
            }
            Err(e) => {
                sqlx::query("UPDATE odoo_connections SET last_error = $2, last_poll_at = now() WHERE id = $1")
                    .bind(conn.id)
                    .bind(format!("polling {}: {}", model.model, e.summary()))
                    .execute(&ctx.pool)
                    .await?;
                tracing::warn!(connection = %conn.id, model = %model.model, error = %e, "incremental poll failed");
                return Ok(());
            }
        }
    }
    sqlx::query("UPDATE odoo_connections SET last_poll_at = now() WHERE id = $1")
        .bind(conn.id)
        .execute(&ctx.pool)
        .await?;
    Ok(())
}
