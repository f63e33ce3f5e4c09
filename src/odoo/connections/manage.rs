//! Changing a connection: renewing its key (sealed, so only with the server's secret
//! key) or pacing, deleting it (its mirrored rows become tombstones), and putting
//! failed batches and write-backs back in the queue.

use serde_json::{Value, json};
use uuid::Uuid;

use super::wire::{ConnectionView, UpdateConnection, bounded, text};
use super::{connect_error, get, policy};
use crate::auth::Principal;
use crate::db::sql::Ident;
use crate::error::AppResult;
use crate::odoo::OdooCtx;
use crate::odoo::client::OdooClient;

/// Renews the key (after Odoo accepted it) or changes pacing settings.
pub async fn update(
    ctx: &OdooCtx,
    who: &Principal,
    id: Uuid,
    req: UpdateConnection,
) -> AppResult<ConnectionView> {
    let conn = get(ctx, who, id).await?;
    let batch_size = bounded("batch_size", req.batch_size, conn.batch_size, 1, 5000)?;
    let lag = bounded(
        "safety_lag_seconds",
        req.safety_lag_seconds,
        conn.safety_lag_seconds,
        0,
        86_400,
    )?;
    let poll = bounded(
        "poll_interval_seconds",
        req.poll_interval_seconds,
        conn.poll_interval_seconds,
        1,
        86_400,
    )?;
    // A new key: checked with Odoo, then stored sealed.
    let renewed = match &req.api_key {
        Some(new_key) => {
            let secrets = super::keys::require(ctx)?;
            let key = text("api_key", new_key, 500)?;
            let check_model = conn
                .models
                .first()
                .map(String::as_str)
                .unwrap_or("res.partner");
            let client = OdooClient::connect(
                conn.credentials(key.clone()),
                policy(&ctx.settings),
                check_model,
            )
            .await
            .map_err(connect_error)?;
            Some((super::keys::seal(secrets, id, &key)?, client))
        }
        None => None,
    };
    let mut tx = ctx.pool.begin().await?;
    if let Some((sealed, client)) = &renewed {
        sqlx::query(
            "UPDATE odoo_connections SET api_key = NULL, api_key_sealed = $2, protocol = $3,
                    server_version = $4, uid = $5
             WHERE id = $1",
        )
        .bind(id)
        .bind(sealed)
        .bind(client.protocol.as_str())
        .bind(&client.version)
        .bind(client.uid)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE odoo_connections SET batch_size = $2, safety_lag_seconds = $3,
                poll_interval_seconds = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(batch_size)
    .bind(lag)
    .bind(poll)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(connection = %id, key_renewed = req.api_key.is_some(), "Odoo connection updated");
    ctx.wakeup.notify_waiters();
    Ok(get(ctx, who, id).await?.view())
}

/// Removes a connection: its batches and outbox go with it, and its mirrored rows
/// become tombstones so devices drop them.
pub async fn delete(ctx: &OdooCtx, who: &Principal, id: Uuid) -> AppResult<()> {
    let conn = get(ctx, who, id).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name FROM odoo_model_state WHERE connection_id = $1")
            .bind(id)
            .fetch_all(&ctx.pool)
            .await?;
    let mut tx = ctx.pool.begin().await?;
    // Waits for a worker's transaction writing rows for it; later ones see it gone.
    sqlx::query("SELECT 1 FROM odoo_connections WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {} SET deleted = true, odoo_connection_id = NULL
             WHERE odoo_connection_id = $1 AND tenant_id = $2",
            Ident(&table)
        )))
        .bind(id)
        .bind(&conn.tenant_id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM odoo_connections WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(connection = %id, tenant = %conn.tenant_id, "Odoo connection deleted");
    Ok(())
}

/// Puts permanently failed batches and refused write-backs back in the queue.
pub async fn retry(ctx: &OdooCtx, who: &Principal, id: Uuid) -> AppResult<Value> {
    get(ctx, who, id).await?;
    let mut tx = ctx.pool.begin().await?;
    let batches = sqlx::query(
        "UPDATE odoo_batches SET status = 'pending', attempts = 0, next_attempt_at = now()
         WHERE connection_id = $1 AND status IN ('failed', 'permanently_failed')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let writes = sqlx::query(
        "UPDATE odoo_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), done_at = NULL
         WHERE connection_id = $1 AND status = 'failed'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE odoo_connections SET sync_status = 'in_progress', last_error = NULL
         WHERE id = $1 AND sync_status = 'failed'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    ctx.wakeup.notify_waiters();
    Ok(json!({ "batches_requeued": batches, "write_backs_requeued": writes }))
}
