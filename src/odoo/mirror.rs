//! Extraction: planning half-open whole-second `write_date` windows, and running a
//! batch (one window) so that its records and its status commit together.
//!
//! A window `[lo, hi)` ends at Odoo's own clock (from its `Date` header). The next
//! window starts `safety_lag_seconds` before the previous end, so a transaction that
//! commits late with an older `write_date` is still read, and upserts are idempotent
//! (a record whose stored copy is identical is not written again, so re-reading the
//! overlap costs no version and no pull). Windows holding more than `batch_size`
//! records are halved (a split costs one `search_count`; the other half's count is
//! the difference) down to the minimum width, then paged by `id` inside.

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use serde_json::{Map, Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::client::{OdooClient, format_odoo_time};
use super::connections::Connection;
use super::fault::OdooError;
use super::schema::{self, FieldSpec};
use crate::db::sql::Ident;

/// Finished incremental batches age out with the history (`sync::retention`); the
/// initial ones stay, as the record of where each model's mirror began.
pub const FINISHED_BATCHES: crate::sync::retention::Aged = crate::sync::retention::Aged {
    what: "odoo_batches",
    delete_older_than: "DELETE FROM odoo_batches
                        WHERE NOT initial AND status = 'done' AND finished_at < $1",
};

/// A model of a connection, as stored in `odoo_model_state`.
#[derive(Clone, Debug)]
pub struct ModelState {
    pub model: String,
    pub table: String,
    pub fields: Vec<FieldSpec>,
    pub range_start: Option<NaiveDateTime>,
    pub planned_until: Option<NaiveDateTime>,
    pub tag_field: Option<String>,
    pub last_reconciled_at: Option<DateTime<Utc>>,
}

type ModelRow = (
    String,
    String,
    Value,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// The models of a connection, in the connection's order.
pub async fn model_states(pool: &PgPool, conn: &Connection) -> anyhow::Result<Vec<ModelState>> {
    let rows: Vec<ModelRow> = sqlx::query_as(
        "SELECT model, table_name, fields, range_start, planned_until, tag_field, last_reconciled_at
         FROM odoo_model_state WHERE connection_id = $1",
    )
    .bind(conn.id)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for (model, table, fields, range_start, planned_until, tag_field, last_reconciled_at) in rows {
        out.push(ModelState {
            fields: serde_json::from_value(fields)?,
            model,
            table,
            range_start,
            planned_until,
            tag_field,
            last_reconciled_at,
        });
    }
    out.sort_by_key(|m| conn.models.iter().position(|x| *x == m.model));
    Ok(out)
}

/// The domain of a window, with records after `after_id`.
pub fn window_domain(lo: NaiveDateTime, hi: NaiveDateTime, after_id: i64) -> Value {
    let mut d = vec![
        json!(["write_date", ">=", format_odoo_time(lo)]),
        json!(["write_date", "<", format_odoo_time(hi)]),
    ];
    if after_id > 0 {
        d.push(json!(["id", ">", after_id]));
    }
    Value::Array(d)
}

/// Odoo's clock, floored to the second.
pub fn odoo_second(client: &OdooClient) -> NaiveDateTime {
    let now = client.odoo_now().naive_utc();
    now.with_nanosecond(0).unwrap_or(now)
}

/// Margin past Odoo's clock at the end of a window: the `Date` header has whole
/// seconds, so "now" may already be up to a second later; records of the current
/// second are read at once, and the next window re-reads them anyway.
pub const WINDOW_MARGIN_SECS: i64 = 2;

/// The end of a window planned now.
pub fn window_end(client: &OdooClient) -> NaiveDateTime {
    odoo_second(client) + chrono::Duration::seconds(WINDOW_MARGIN_SECS)
}

/// A planned window and the records it held when counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub lo: NaiveDateTime,
    pub hi: NaiveDateTime,
    pub count: i64,
}

/// Splits `[lo, hi)` into windows of at most `batch_size` records (or of the minimum
/// width), skipping empty ones.
pub async fn plan_windows(
    client: &OdooClient,
    model: &str,
    lo: NaiveDateTime,
    hi: NaiveDateTime,
    batch_size: i64,
    min_window: chrono::Duration,
) -> Result<Vec<Window>, OdooError> {
    if hi <= lo {
        return Ok(Vec::new());
    }
    let total = client.search_count(model, window_domain(lo, hi, 0)).await?;
    let mut out = Vec::new();
    let mut stack = vec![Window {
        lo,
        hi,
        count: total,
    }];
    while let Some(w) = stack.pop() {
        if w.count <= 0 {
            continue;
        }
        let width = w.hi - w.lo;
        if w.count <= batch_size || width <= min_window || width <= chrono::Duration::seconds(1) {
            out.push(w);
            continue;
        }
        let mid = w.lo + chrono::Duration::seconds(width.num_seconds() / 2);
        let first = client
            .search_count(model, window_domain(w.lo, mid, 0))
            .await?;
        let second = (w.count - first).max(0);
        // Later halves first on the stack so windows come out oldest first.
        stack.push(Window {
            lo: mid,
            hi: w.hi,
            count: second,
        });
        stack.push(Window {
            lo: w.lo,
            hi: mid,
            count: first,
        });
    }
    Ok(out)
}

/// The oldest `write_date` of a model (so a mirror of everything does not bisect
/// decades of emptiness), or `None` when it has no record.
pub async fn oldest_write_date(
    client: &OdooClient,
    model: &str,
) -> Result<Option<NaiveDateTime>, OdooError> {
    let recs = client
        .search_read(
            model,
            json!([]),
            &["write_date".to_string()],
            "write_date asc, id asc",
            Some(1),
        )
        .await?;
    Ok(recs
        .first()
        .and_then(|r| r.get("write_date"))
        .and_then(Value::as_str)
        .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok())
        .map(|t| t.with_nanosecond(0).unwrap_or(t)))
}

/// Stores planned windows as batches and moves `planned_until`, in one transaction.
pub async fn save_plan(
    pool: &PgPool,
    conn: &Connection,
    model: &ModelState,
    windows: &[Window],
    range_start: Option<NaiveDateTime>,
    planned_until: NaiveDateTime,
    initial: bool,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    for w in windows {
        sqlx::query(
            "INSERT INTO odoo_batches (connection_id, model, window_start, window_end, expected, initial)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(conn.id)
        .bind(&model.model)
        .bind(w.lo)
        .bind(w.hi)
        .bind(w.count)
        .bind(initial)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE odoo_model_state SET planned_until = $3, range_start = coalesce(range_start, $4)
         WHERE connection_id = $1 AND model = $2",
    )
    .bind(conn.id)
    .bind(&model.model)
    .bind(planned_until)
    .bind(range_start)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A claimed batch.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Batch {
    pub id: i64,
    pub model: String,
    pub window_start: NaiveDateTime,
    pub window_end: NaiveDateTime,
    pub initial: bool,
    pub attempts: i32,
}

/// Reads every record of a batch's window, paging by id.
pub async fn fetch_window(
    client: &OdooClient,
    model: &ModelState,
    batch: &Batch,
    page: i64,
) -> Result<Vec<Map<String, Value>>, OdooError> {
    let fields: Vec<String> = model.fields.iter().map(|f| f.name.clone()).collect();
    let mut out: Vec<Map<String, Value>> = Vec::new();
    let mut after = 0;
    loop {
        let domain = window_domain(batch.window_start, batch.window_end, after);
        let recs = client
            .search_read(&model.model, domain, &fields, "id asc", Some(page))
            .await?;
        let n = recs.len() as i64;
        let last = recs
            .last()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64);
        out.extend(recs);
        match last {
            Some(id) if n >= page && id > after => after = id,
            _ => break,
        }
    }
    Ok(out)
}

/// When an upsert replaces a stored row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Only if Odoo's record differs and no device write is waiting for Odoo.
    WhenChanged,
    /// Always (restoring Odoo's values after it refused a device's write).
    Always,
}

/// Upserts records into a model's table for a connection: new records are inserted,
/// changed ones updated, identical ones left alone (no version, no pull). Rows with a
/// device write still waiting for Odoo are not overwritten. A connection's reads are
/// sequential, so the last read is the newest. Returns rows written.
pub async fn upsert(
    conn: &mut PgConnection,
    connection: &Connection,
    model: &ModelState,
    records: &[Map<String, Value>],
    overwrite: Overwrite,
) -> anyhow::Result<u64> {
    if records.is_empty() {
        return Ok(0);
    }
    let mut rows = Vec::with_capacity(records.len());
    for r in records {
        rows.push(Value::Object(
            schema::to_row(&model.fields, r).map_err(anyhow::Error::msg)?,
        ));
    }
    let t = Ident(&model.table);
    let cols: Vec<String> = model
        .fields
        .iter()
        .map(|f| Ident(&f.name).to_string())
        .collect();
    let col_list = cols.join(", ");
    let r_list = cols
        .iter()
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sets = cols
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let condition = match overwrite {
        Overwrite::WhenChanged => {
            "WHERE (t.odoo_raw IS DISTINCT FROM EXCLUDED.odoo_raw OR t.deleted)
               AND t.odoo_sync_status <> 'pending'"
        }
        Overwrite::Always => "",
    };
    let sql = format!(
        "INSERT INTO {t} AS t (tenant_id, odoo_connection_id, odoo_id, odoo_raw, {col_list})
         SELECT $2, $3, r.odoo_id, r.odoo_raw, {r_list}
         FROM jsonb_populate_recordset(NULL::{t}, $1) r
         ON CONFLICT (odoo_connection_id, odoo_id) DO UPDATE SET {sets},
             odoo_raw = EXCLUDED.odoo_raw, deleted = false,
             odoo_sync_status = 'synced', odoo_sync_error = NULL
         {condition}"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Value::Array(rows))
        .bind(&connection.tenant_id)
        .bind(connection.id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The latest `write_date` among records.
pub fn latest_write_date(records: &[Map<String, Value>]) -> Option<NaiveDateTime> {
    records
        .iter()
        .filter_map(|r| r.get("write_date").and_then(Value::as_str))
        .filter_map(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok())
        .max()
}

/// Locks the connection's row for the rest of the transaction; false when it was
/// deleted (its worker must not write rows for it any more).
pub async fn lock_connection(conn: &mut PgConnection, connection_id: Uuid) -> sqlx::Result<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM odoo_connections WHERE id = $1 FOR SHARE")
            .bind(connection_id)
            .fetch_optional(conn)
            .await?;
    Ok(found.is_some())
}

/// Marks rows whose records Odoo no longer has as tombstones.
pub async fn tombstone(
    conn: &mut PgConnection,
    connection: &Connection,
    model: &ModelState,
    odoo_ids: &[i64],
) -> sqlx::Result<u64> {
    if odoo_ids.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE {} SET deleted = true
         WHERE odoo_connection_id = $1 AND tenant_id = $2 AND odoo_id = ANY($3) AND NOT deleted",
        Ident(&model.table)
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(connection.id)
        .bind(&connection.tenant_id)
        .bind(odoo_ids)
        .execute(conn)
        .await?
        .rows_affected())
}

/// Records the outcome of a batch; when the last first-mirror batch finishes, the
/// connection becomes `done` (or `failed` if a batch failed for good).
pub async fn finish_initial_if_complete(
    conn: &mut PgConnection,
    connection_id: Uuid,
) -> sqlx::Result<()> {
    // Every model planned (a model whose planning waits keeps the mirror unfinished),
    // and no first-mirror batch left to run.
    let (open, failed, unplanned): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM odoo_batches
                 WHERE connection_id = $1 AND initial AND status IN ('pending', 'running', 'failed')),
                (SELECT count(*) FROM odoo_batches
                 WHERE connection_id = $1 AND initial AND status = 'permanently_failed'),
                (SELECT count(*) FROM odoo_model_state
                 WHERE connection_id = $1 AND planned_until IS NULL)",
    )
    .bind(connection_id)
    .fetch_one(&mut *conn)
    .await?;
    if open == 0 && unplanned == 0 {
        sqlx::query(
            "UPDATE odoo_connections
             SET sync_status = CASE WHEN $2 THEN 'failed' ELSE 'done' END,
                 first_mirror_done_at = coalesce(first_mirror_done_at, now())
             WHERE id = $1 AND sync_status IN ('in_progress', 'failed', 'done')",
        )
        .bind(connection_id)
        .bind(failed > 0)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
