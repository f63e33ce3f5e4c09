//! Write-back: device writes to mirror tables are queued (by a trigger, in the push's
//! transaction) and sent to Odoo here, parents before children (an order before its
//! lines, with the order's new Odoo id put in the line's `order_id`).
//!
//! A create is never made twice: before it is sent, the time (Odoo's clock) is stored;
//! if the answer is lost, the retry first searches Odoo for the record, by the row's
//! uuid in `x_nas_sync_uuid` when the model has that field, else by the values sent
//! and a `write_date` no older than the attempt. Retryable faults are retried with
//! backoff, without limit (the status shows them); Odoo's refusal (validation,
//! access, missing record) marks the row `failed` with the reason, which devices see
//! on their next pull, and a refused update gets Odoo's values back.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::OdooCtx;
use super::client::{OdooClient, format_odoo_time};
use super::connections::Connection;
use super::fault::OdooError;
use super::mirror::{self, ModelState};
use super::schema::{self, FieldSpec, FieldType};
use crate::db::sql::Ident;

/// Whether a create of `model` was sent without a known outcome.
pub async fn has_unresolved_create(
    pool: &PgPool,
    connection_id: Uuid,
    model: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM odoo_outbox WHERE connection_id = $1 AND model = $2
                        AND status = 'pending' AND create_sent_at IS NOT NULL)",
    )
    .bind(connection_id)
    .bind(model)
    .fetch_one(pool)
    .await
}

#[derive(sqlx::FromRow)]
struct Entry {
    table_name: String,
    row_id: Uuid,
    model: String,
    attempts: i32,
    create_sent_at: Option<NaiveDateTime>,
    queued_at: DateTime<Utc>,
}

/// Why a row could not be sent now.
enum Outcome {
    Sent,
    /// Waiting for a parent to get its Odoo id.
    Defer(String),
    Refused(String),
    Retry(String),
}

/// Sends the next due write-back of a connection; false when none is due.
pub async fn send_next(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    models: &[ModelState],
) -> anyhow::Result<bool> {
    let order: Vec<String> = ctx
        .registry
        .current()
        .in_write_order()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let entry: Option<Entry> = sqlx::query_as(
        "SELECT table_name, row_id, model, attempts, create_sent_at, queued_at FROM odoo_outbox
         WHERE connection_id = $1 AND status = 'pending' AND next_attempt_at <= now()
         ORDER BY array_position($2, table_name), queued_at LIMIT 1",
    )
    .bind(conn.id)
    .bind(&order)
    .fetch_optional(&ctx.pool)
    .await?;
    let Some(entry) = entry else {
        return Ok(false);
    };
    let Some(model) = models.iter().find(|m| m.model == entry.model) else {
        finish(
            &ctx.pool,
            &entry,
            "failed",
            Some("this model is no longer mirrored"),
        )
        .await?;
        return Ok(true);
    };
    let row: Option<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(t) FROM {} t WHERE id = $1 AND tenant_id = $2",
        Ident(&entry.table_name)
    )))
    .bind(entry.row_id)
    .bind(&conn.tenant_id)
    .fetch_optional(&ctx.pool)
    .await?;
    let Some(row) = row else {
        finish(&ctx.pool, &entry, "done", None).await?;
        return Ok(true);
    };
    let outcome = send(ctx, conn, client, model, &entry, &row).await?;
    let settings = &ctx.settings;
    match outcome {
        Outcome::Sent => {
            tracing::info!(connection = %conn.id, table = %entry.table_name, row = %entry.row_id, "written back to Odoo");
        }
        Outcome::Defer(why) => {
            // The parent is on its way (maybe waiting out a backoff itself); a
            // refused parent refuses its children in `build_vals`.
            let wait = f64::from(1u32 << entry.attempts.clamp(0, 6) as u32).min(60.0);
            reschedule(&ctx.pool, &entry, &why, wait).await?;
        }
        Outcome::Retry(why) => {
            let wait = (settings.retry_delay.as_secs_f64()
                * f64::from(1u32 << entry.attempts.clamp(0, 8) as u32))
            .clamp(1.0, 300.0);
            tracing::warn!(connection = %conn.id, table = %entry.table_name, row = %entry.row_id, error = %why,
                "write-back to Odoo failed; retrying");
            reschedule(&ctx.pool, &entry, &why, wait).await?;
        }
        Outcome::Refused(why) => {
            tracing::warn!(connection = %conn.id, table = %entry.table_name, row = %entry.row_id, error = %why,
                "Odoo refused a device's write");
            refuse(ctx, conn, client, model, &entry, &row, &why).await?;
        }
    }
    Ok(true)
}

async fn send(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    model: &ModelState,
    entry: &Entry,
    row: &Value,
) -> anyhow::Result<Outcome> {
    let odoo_id = row.get("odoo_id").and_then(Value::as_i64);
    let vals = match build_vals(ctx, conn, model, row, odoo_id.is_none()).await? {
        Ok(v) => v,
        Err(outcome) => return Ok(outcome),
    };
    let version = row
        .get("version")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    match odoo_id {
        Some(id) => {
            if !vals.is_empty()
                && let Err(e) = client.write(&model.model, &[id], vals).await
            {
                return Ok(classify(e));
            }
            mark_synced(&ctx.pool, conn, entry, version, None).await?;
            Ok(Outcome::Sent)
        }
        None => {
            if let Some(sent_at) = entry.create_sent_at {
                match find_created(ctx, conn, client, model, row, &vals, sent_at).await {
                    Ok(Some(found)) => {
                        tracing::info!(connection = %conn.id, row = %entry.row_id, odoo_id = found,
                            "a create whose answer was lost is in Odoo; linked, not created again");
                        mark_synced(&ctx.pool, conn, entry, version, Some(found)).await?;
                        return Ok(Outcome::Sent);
                    }
                    Ok(None) => {}
                    Err(e) => return Ok(classify(e)),
                }
            }
            let sent_at = mirror::odoo_second(client) - chrono::Duration::seconds(1);
            sqlx::query(
                "UPDATE odoo_outbox SET create_sent_at = $3 WHERE table_name = $1 AND row_id = $2",
            )
            .bind(&entry.table_name)
            .bind(entry.row_id)
            .bind(sent_at)
            .execute(&ctx.pool)
            .await?;
            match client.create(&model.model, vals).await {
                Ok(id) => {
                    mark_synced(&ctx.pool, conn, entry, version, Some(id)).await?;
                    Ok(Outcome::Sent)
                }
                Err(e) => Ok(classify(e)),
            }
        }
    }
}

/// Odoo refusing the data is final for the row; everything else (including a key
/// that expired: the operator renews it and the queue drains) is tried again.
fn classify(e: OdooError) -> Outcome {
    if e.is_refusal() {
        Outcome::Refused(e.summary())
    } else {
        Outcome::Retry(e.summary())
    }
}

/// A row's value as Odoo takes it in `create`/`write`.
fn to_odoo(f: &FieldSpec, v: &Value) -> Value {
    match (f.ty, v) {
        (FieldType::Boolean, Value::Null) => Value::Bool(false),
        (_, Value::Null) => Value::Bool(false),
        (FieldType::Datetime, Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| json!(format_odoo_time(t.naive_utc())))
            .unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

/// The values to send: writable fields (for an update, only those that differ from
/// Odoo's last copy), with companion uuids resolved to parents' Odoo ids.
async fn build_vals(
    ctx: &OdooCtx,
    conn: &Connection,
    model: &ModelState,
    row: &Value,
    creating: bool,
) -> anyhow::Result<Result<Map<String, Value>, Outcome>> {
    let raw = row.get("odoo_raw").and_then(Value::as_object);
    let mut vals = Map::new();
    for f in model.fields.iter().filter(|f| f.writable) {
        let mut v = row.get(&f.name).cloned().unwrap_or(Value::Null);
        if f.ty == FieldType::Many2one
            && v.is_null()
            && let Some(target) = &f.relation
            && let Some(parent) = row
                .get(schema::companion_column(&f.name))
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
        {
            let found: Option<(Option<i64>, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT odoo_id, odoo_sync_status FROM {} WHERE id = $1 AND tenant_id = $2",
                    Ident(&schema::table_name(target))
                )))
                .bind(parent)
                .bind(&conn.tenant_id)
                .fetch_optional(&ctx.pool)
                .await?;
            match found {
                Some((Some(id), _)) => v = json!(id),
                Some((None, status)) if status == "failed" => {
                    return Ok(Err(Outcome::Refused(format!(
                        "{} points at a row Odoo refused",
                        schema::companion_column(&f.name)
                    ))));
                }
                Some((None, _)) => {
                    return Ok(Err(Outcome::Defer(format!(
                        "waiting for {} to reach Odoo",
                        schema::companion_column(&f.name)
                    ))));
                }
                None => {
                    return Ok(Err(Outcome::Refused(format!(
                        "{} names no row",
                        schema::companion_column(&f.name)
                    ))));
                }
            }
        }
        if creating {
            if !v.is_null() {
                vals.insert(f.name.clone(), to_odoo(f, &v));
            }
            continue;
        }
        let before = raw
            .and_then(|r| r.get(&f.name))
            .cloned()
            .map(|r| schema::convert(f, r).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        if to_odoo(f, &v) != to_odoo(f, &before) {
            vals.insert(f.name.clone(), to_odoo(f, &v));
        }
    }
    if creating && let Some(tag) = &model.tag_field {
        vals.insert(tag.clone(), row.get("id").cloned().unwrap_or(Value::Null));
    }
    Ok(Ok(vals))
}

/// Looks in Odoo for a record an earlier, unanswered create made.
async fn find_created(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    model: &ModelState,
    row: &Value,
    vals: &Map<String, Value>,
    sent_at: NaiveDateTime,
) -> Result<Option<i64>, OdooError> {
    // Created (not merely written) since the attempt.
    let mut domain = vec![json!([
        "create_date",
        ">=",
        format_odoo_time(sent_at - chrono::Duration::seconds(1))
    ])];
    match &model.tag_field {
        Some(tag) => domain.push(json!([
            tag,
            "=",
            row.get("id").cloned().unwrap_or(Value::Null)
        ])),
        None => {
            for f in model.fields.iter().filter(|f| vals.contains_key(&f.name)) {
                let exact = matches!(
                    f.ty,
                    FieldType::Char
                        | FieldType::Selection
                        | FieldType::Integer
                        | FieldType::Boolean
                        | FieldType::Many2one
                );
                if exact {
                    domain.push(json!([f.name, "=", vals[&f.name]]));
                }
            }
        }
    }
    let found = client
        .search_read(
            &model.model,
            Value::Array(domain),
            &["id".to_string()],
            "id asc",
            Some(20),
        )
        .await?;
    let table = Ident(&model.table);
    for id in found
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_i64))
    {
        // A candidate the mirror already linked to a device's row belongs to that row.
        let taken: Option<(Uuid, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t.id, EXISTS (SELECT 1 FROM odoo_outbox o WHERE o.table_name = $3 AND o.row_id = t.id)
             FROM {table} t WHERE t.odoo_connection_id = $1 AND t.odoo_id = $2"
        )))
        .bind(conn.id)
        .bind(id)
        .bind(&model.table)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| OdooError::Protocol(format!("database: {e}")))?;
        match taken {
            None => return Ok(Some(id)),
            Some((_, true)) => continue,
            // The mirror read the record before the create was resolved: that copy
            // gives way to the device's row.
            Some((other, false)) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET deleted = true, odoo_id = NULL WHERE id = $1"
                )))
                .bind(other)
                .execute(&ctx.pool)
                .await
                .map_err(|e| OdooError::Protocol(format!("database: {e}")))?;
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

/// Records success: the row gets its Odoo id and `synced`, unless a device wrote it
/// again meanwhile (then its new entry is already queued).
async fn mark_synced(
    pool: &PgPool,
    conn: &Connection,
    entry: &Entry,
    version: i64,
    odoo_id: Option<i64>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    if !mirror::lock_connection(&mut tx, conn.id).await? {
        return Ok(());
    }
    crate::db::set_origin(&mut tx, "odoo_write_back").await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {} SET odoo_id = coalesce($3, odoo_id),
                odoo_sync_status = CASE WHEN version = $4 THEN 'synced' ELSE odoo_sync_status END,
                odoo_sync_error = CASE WHEN version = $4 THEN NULL ELSE odoo_sync_error END
         WHERE id = $1 AND tenant_id = $2 AND (version = $4 OR $3::bigint IS NOT NULL)",
        Ident(&entry.table_name)
    )))
    .bind(entry.row_id)
    .bind(&conn.tenant_id)
    .bind(odoo_id)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE odoo_outbox SET status = 'done', done_at = now(), last_error = NULL, create_sent_at = NULL,
                attempts = attempts + 1
         WHERE table_name = $1 AND row_id = $2 AND queued_at = $3",
    )
    .bind(&entry.table_name)
    .bind(entry.row_id)
    .bind(entry.queued_at)
    .execute(&mut *tx)
    .await?;
    // A newer device write was queued meanwhile: it is an update now.
    sqlx::query("UPDATE odoo_outbox SET create_sent_at = NULL WHERE table_name = $1 AND row_id = $2 AND $3::bigint IS NOT NULL")
        .bind(&entry.table_name)
        .bind(entry.row_id)
        .bind(odoo_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

async fn reschedule(pool: &PgPool, entry: &Entry, why: &str, wait_secs: f64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE odoo_outbox SET attempts = attempts + 1, last_error = $3,
                next_attempt_at = now() + make_interval(secs => $4)
         WHERE table_name = $1 AND row_id = $2 AND queued_at = $5",
    )
    .bind(&entry.table_name)
    .bind(entry.row_id)
    .bind(why)
    .bind(wait_secs)
    .bind(entry.queued_at)
    .execute(pool)
    .await?;
    Ok(())
}

async fn finish(
    pool: &PgPool,
    entry: &Entry,
    status: &str,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE odoo_outbox SET status = $3, last_error = $4, done_at = now()
         WHERE table_name = $1 AND row_id = $2 AND queued_at = $5",
    )
    .bind(&entry.table_name)
    .bind(entry.row_id)
    .bind(status)
    .bind(error)
    .bind(entry.queued_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Odoo said no: the row shows the reason (and, for an update, Odoo's values again).
async fn refuse(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    model: &ModelState,
    entry: &Entry,
    row: &Value,
    why: &str,
) -> anyhow::Result<()> {
    let truth = match row.get("odoo_id").and_then(Value::as_i64) {
        Some(id) => {
            let fields: Vec<String> = model.fields.iter().map(|f| f.name.clone()).collect();
            client
                .search_read(
                    &model.model,
                    json!([["id", "=", id]]),
                    &fields,
                    "id asc",
                    Some(1),
                )
                .await
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let table = Ident(&entry.table_name);
    let mark = format!(
        "UPDATE {table} SET odoo_sync_status = 'failed', odoo_sync_error = $3 WHERE id = $1 AND tenant_id = $2"
    );
    let mut tx = ctx.pool.begin().await?;
    if !mirror::lock_connection(&mut tx, conn.id).await? {
        return Ok(());
    }
    crate::db::set_origin(&mut tx, "odoo_write_back").await?;
    // A device wrote the row again meanwhile: that newer write is queued and decides.
    let version: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {table} WHERE id = $1 AND tenant_id = $2 FOR UPDATE"
    )))
    .bind(entry.row_id)
    .bind(&conn.tenant_id)
    .fetch_optional(&mut *tx)
    .await?;
    if version != row.get("version").and_then(Value::as_i64) {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(mark.clone()))
        .bind(entry.row_id)
        .bind(&conn.tenant_id)
        .bind(why)
        .execute(&mut *tx)
        .await?;
    if !truth.is_empty() {
        mirror::upsert(&mut tx, conn, model, &truth, mirror::Overwrite::Always).await?;
        sqlx::query(sqlx::AssertSqlSafe(mark))
            .bind(entry.row_id)
            .bind(&conn.tenant_id)
            .bind(why)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "UPDATE odoo_outbox SET status = 'failed', last_error = $3, attempts = attempts + 1, done_at = now(),
                create_sent_at = NULL
         WHERE table_name = $1 AND row_id = $2 AND queued_at = $4",
    )
    .bind(&entry.table_name)
    .bind(entry.row_id)
    .bind(why)
    .bind(entry.queued_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
