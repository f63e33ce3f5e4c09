//! What a connection is doing: the first mirror's progress, incremental batches,
//! per-model counts, failures and the write-back queue (`GET .../status`), and the
//! readiness check pulls make (`SYNC_NOT_READY` until the first mirror is done).

use chrono::NaiveDateTime;
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::get;
use crate::auth::Principal;
use crate::db::sql::Ident;
use crate::error::{AppError, AppResult};
use crate::odoo::OdooCtx;

/// Progress of a connection's first full mirror (its `initial` batches), as
/// `progress`; later incremental batches are counted apart, in `incremental`.
pub async fn progress(pool: &PgPool, id: Uuid) -> sqlx::Result<Value> {
    let (total, completed, failed, permanently, pending): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT count(*),
                count(*) FILTER (WHERE status = 'done'),
                count(*) FILTER (WHERE status IN ('failed', 'permanently_failed')),
                count(*) FILTER (WHERE status = 'permanently_failed'),
                count(*) FILTER (WHERE status IN ('pending', 'running'))
         FROM odoo_batches WHERE connection_id = $1 AND initial",
        )
        .bind(id)
        .fetch_one(pool)
        .await?;
    let percentage = if total == 0 {
        0
    } else {
        (completed + permanently) * 100 / total
    };
    Ok(json!({
        "total_batches": total,
        "completed_batches": completed,
        "failed_batches": failed,
        "permanently_failed_batches": permanently,
        "pending_batches": pending,
        "progress_percentage": percentage,
    }))
}

/// Counts of the incremental batches (after the first mirror).
async fn incremental(pool: &PgPool, id: Uuid) -> sqlx::Result<Value> {
    let (done, failed, permanently, pending): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'done'),
                count(*) FILTER (WHERE status = 'failed'),
                count(*) FILTER (WHERE status = 'permanently_failed'),
                count(*) FILTER (WHERE status IN ('pending', 'running'))
         FROM odoo_batches WHERE connection_id = $1 AND NOT initial",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(json!({
        "completed_batches": done,
        "failed_batches": failed,
        "permanently_failed_batches": permanently,
        "pending_batches": pending,
    }))
}

/// id, model, window start and end, status, attempts, last error.
type FailedBatch = (
    i64,
    String,
    NaiveDateTime,
    NaiveDateTime,
    String,
    i32,
    Option<String>,
);

fn odoo_time(t: Option<NaiveDateTime>) -> Value {
    t.map_or(Value::Null, |t| json!(t.and_utc()))
}

/// `GET .../status`: progress, per-model counts, failures and the write-back queue.
pub async fn status(ctx: &OdooCtx, who: &Principal, id: Uuid) -> AppResult<Value> {
    let conn = get(ctx, who, id).await?;
    let mut progress = progress(&ctx.pool, id).await?;
    if conn.first_mirror_done_at.is_some() {
        progress["progress_percentage"] = json!(100);
    }
    let incremental = incremental(&ctx.pool, id).await?;
    let model_rows: Vec<(String, String, Option<NaiveDateTime>, Option<NaiveDateTime>)> =
        sqlx::query_as(
            "SELECT model, table_name, last_write_date, planned_until FROM odoo_model_state
         WHERE connection_id = $1 ORDER BY model",
        )
        .bind(id)
        .fetch_all(&ctx.pool)
        .await?;
    let mut models = Map::new();
    for (model, table, last_write_date, planned_until) in model_rows {
        let (records, archived): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE NOT deleted),
                    count(*) FILTER (WHERE NOT deleted AND odoo_raw->'active' = 'false'::jsonb)
             FROM {} WHERE odoo_connection_id = $1 AND tenant_id = $2",
            Ident(&table)
        )))
        .bind(id)
        .bind(&conn.tenant_id)
        .fetch_one(&ctx.pool)
        .await?;
        models.insert(
            model,
            json!({
                "table": table,
                "records": records,
                "archived": archived,
                "last_write_date": odoo_time(last_write_date),
                "mirrored_until": odoo_time(planned_until),
            }),
        );
    }
    let failed_batches: Vec<FailedBatch> = sqlx::query_as(
        "SELECT id, model, window_start, window_end, status, attempts, last_error
         FROM odoo_batches WHERE connection_id = $1 AND status IN ('failed', 'permanently_failed')
         ORDER BY id DESC LIMIT 20",
    )
    .bind(id)
    .fetch_all(&ctx.pool)
    .await?;
    let (out_pending, out_failed, out_done): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed'),
                count(*) FILTER (WHERE status = 'done')
         FROM odoo_outbox WHERE connection_id = $1",
    )
    .bind(id)
    .fetch_one(&ctx.pool)
    .await?;
    let write_errors: Vec<(String, Uuid, String, Option<String>, i32)> = sqlx::query_as(
        "SELECT table_name, row_id, status, last_error, attempts FROM odoo_outbox
         WHERE connection_id = $1 AND last_error IS NOT NULL ORDER BY queued_at DESC LIMIT 20",
    )
    .bind(id)
    .fetch_all(&ctx.pool)
    .await?;
    Ok(json!({
        "id": conn.id,
        "sync_status": conn.sync_status,
        "ready": conn.first_mirror_done_at.is_some(),
        "first_mirror_done_at": conn.first_mirror_done_at,
        "last_poll_at": conn.last_poll_at,
        "last_error": conn.last_error,
        "progress": progress,
        "incremental": incremental,
        "models": models,
        "failed_batches": failed_batches.into_iter().map(|(id, model, lo, hi, status, attempts, error)| json!({
            "id": id, "model": model, "window_start": lo.and_utc(), "window_end": hi.and_utc(),
            "status": status, "attempts": attempts, "last_error": error,
        })).collect::<Vec<_>>(),
        "write_back": {
            "pending": out_pending,
            "failed": out_failed,
            "done": out_done,
            "errors": write_errors.into_iter().map(|(table, row, status, error, attempts)| json!({
                "table": table, "record_id": row, "status": status, "error": error, "attempts": attempts,
            })).collect::<Vec<_>>(),
        },
    }))
}

/// The sync engine's [`Readiness`](crate::sync::readiness::Readiness) of the mirror
/// tables: [`check_ready`].
pub struct MirrorReadiness;

impl crate::sync::readiness::Readiness for MirrorReadiness {
    /// Only mirror tables wait for their first mirror.
    fn needs_check(&self, tables: &[&str]) -> bool {
        tables.iter().any(|t| t.starts_with("odoo_"))
    }

    fn check<'a>(
        &'a self,
        pool: &'a PgPool,
        tenant: &'a str,
        tables: &'a [&'a str],
    ) -> futures_util::future::BoxFuture<'a, AppResult<()>> {
        Box::pin(check_ready(pool, tenant, tables))
    }
}

/// `SYNC_NOT_READY` when one of `tables` is mirrored by a connection of the tenant
/// whose first full mirror has not finished.
pub async fn check_ready(pool: &PgPool, tenant: &str, tables: &[&str]) -> AppResult<()> {
    if !tables.iter().any(|t| t.starts_with("odoo_")) {
        return Ok(());
    }
    let waiting: Option<(Uuid, String, String)> = sqlx::query_as(
        "SELECT c.id, c.sync_status, s.table_name FROM odoo_connections c
         JOIN odoo_model_state s ON s.connection_id = c.id
         WHERE c.tenant_id = $1 AND s.table_name = ANY($2) AND c.first_mirror_done_at IS NULL
         ORDER BY c.created_at LIMIT 1",
    )
    .bind(tenant)
    .bind(tables)
    .fetch_optional(pool)
    .await?;
    if let Some((id, sync_status, table)) = waiting {
        let progress = progress(pool, id).await?;
        return Err(AppError::SyncNotReady(json!({
            "table": table,
            "connection_id": id,
            "sync_status": sync_status,
            "progress": progress,
        })));
    }
    Ok(())
}
