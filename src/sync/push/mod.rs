//! Push: a device's queued changes, applied in one transaction, parents before
//! children, each row reported back (stored, won by the server, or failed with a
//! reason). A table's rows go in chunks through the set-based path (`batch`); a chunk
//! PostgreSQL refuses in bulk goes row by row (`write::apply_row`), each row under its
//! own savepoint, so one bad row never takes the others down. With `stop_on_error` any
//! failure rolls everything back. A `push_id` makes the push exactly-once (`replay`).
//!
//! - `wire`: the request and the answer.
//! - `decide`: the pure decisions (scope, plan, conflict settling, documents).
//! - `write`: savepoints, the row-by-row path and its SQL.
//! - `batch`: the set-based path.
//! - `report`: the answer assembled row by row.
//! - `replay`: the `push_log` that makes a retried push answer the same.

mod batch;
mod decide;
mod replay;
mod report;
mod wire;
mod write;

pub use wire::{ConflictReport, PushRequest, PushResponse, RowErrorReport};
pub use write::Savepoint;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::decide::Caller;
use self::report::Report;
use super::registry::{Registry, Table};
use super::rules::Strategy;
use super::validate::RowError;
use super::{SyncCtx, SyncLimits};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};

/// Most rows one push may carry.
pub const MAX_ROWS: usize = 10_000;

/// Attempts of a push that meets deadlocks or serialization failures.
const ATTEMPTS: u64 = 4;

/// Applies a push.
pub async fn push(ctx: &SyncCtx, who: &Principal, req: PushRequest) -> AppResult<PushResponse> {
    who.check_device(req.device_id.as_deref())?;
    if let Some(id) = &req.push_id
        && (id.is_empty() || id.len() > 128 || id.contains('\0'))
    {
        return Err(AppError::validation(
            "push_id",
            "must be 1 to 128 characters, without NUL",
        ));
    }
    // Shape first: unknown tables and malformed lists fail the whole request.
    let mut registry = ctx.registry.current();
    // A table another server process added (an Odoo mirror table) since this one
    // loaded the registry: read it again once.
    if req.changes.keys().any(|name| registry.get(name).is_none())
        && ctx.registry.is_stale(&ctx.pool).await?
    {
        ctx.registry.reload(&ctx.pool).await?;
        registry = ctx.registry.current();
    }
    let mut batches: Vec<(&Table, &Vec<Value>)> = Vec::new();
    let mut total = 0;
    for (name, rows) in &req.changes {
        let table = registry
            .get(name)
            .ok_or_else(|| AppError::UnknownTable(name.clone()))?;
        let rows = rows.as_array().ok_or_else(|| {
            AppError::validation(format!("changes.{name}"), "must be a list of rows")
        })?;
        total += rows.len();
        batches.push((table, rows));
    }
    if total > MAX_ROWS {
        return Err(AppError::PayloadTooLarge(format!(
            "A push may carry at most {MAX_ROWS} rows; this one has {total}. Split it."
        )));
    }
    batches.sort_by_key(|(t, _)| t.rank);
    let stop_on_error = req.stop_on_error.unwrap_or(false);
    let request_hash = Sha256::digest(
        serde_json::to_vec(&json!({ "changes": &req.changes, "stop_on_error": stop_on_error }))
            .map_err(anyhow::Error::from)?,
    )
    .to_vec();

    let caller = Caller {
        who,
        receipt: Utc::now().round_subsecs(6),
        strategy: None,
        max_value_bytes: ctx.limits.max_value_bytes,
    };
    let push = Push {
        ctx,
        caller: &caller,
        registry: &registry,
        batches: &batches,
        push_id: req.push_id.as_deref(),
        request_hash: &request_hash,
        stop_on_error,
    };
    // Deadlocks between concurrent pushes touching the same rows are retried whole.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match push.run().await {
            Err(e) if attempt < ATTEMPTS && e.is_retryable() => {
                tracing::warn!(attempt, error = %e, "push hit a deadlock or serialization failure; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// One push, checked and ready to run (again, after contention).
struct Push<'a> {
    ctx: &'a SyncCtx,
    caller: &'a Caller<'a>,
    registry: &'a Registry,
    batches: &'a [(&'a Table, &'a Vec<Value>)],
    push_id: Option<&'a str>,
    request_hash: &'a [u8],
    stop_on_error: bool,
}

impl Push<'_> {
    /// The push's transaction, start to commit.
    async fn run(&self) -> AppResult<PushResponse> {
        let who = self.caller.who;
        let mut tx = self.ctx.pool.begin().await?;
        // The change-log trigger records who wrote each row.
        set_writer(&mut tx, who).await?;
        if let Some(push_id) = self.push_id
            && let Some(done) = replay::claim(&mut tx, who, push_id, self.request_hash).await?
        {
            return Ok(done);
        }

        let all = match self.stop_on_error {
            true => Some(Savepoint::open(&mut tx, "push_all").await?),
            false => None,
        };
        let mut report = Report::default();
        for (table, rows) in self.batches {
            for chunk in batch::chunks(table, rows) {
                self.apply_chunk(&mut tx, table, chunk, &mut report).await?;
            }
        }
        let Report {
            mut applied,
            mut conflicts,
            errors,
            ..
        } = report;
        if let Some(all) = all
            && !errors.is_empty()
        {
            all.roll_back(&mut tx).await?;
            applied.clear();
            conflicts.clear();
        }

        // Only while the session the push was checked under lasts: a device signed out
        // or released meanwhile (auth::session) keeps none of it.
        let cursor: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE devices SET last_push_at = now()
             WHERE tenant_id = $1 AND device_id = $2 AND token_generation = $3 RETURNING cursor",
        )
        .bind(&who.tenant)
        .bind(&who.device_id)
        .bind(who.generation)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(cursor) = cursor else {
            return Err(AppError::Unauthorized(
                "The session of this device ended during the push; nothing was applied. Log in again."
                    .into(),
            ));
        };
        let cursor = self.ctx.pull_ledger.pending_cursor(who).or(cursor);

        let response = PushResponse {
            success: errors.is_empty(),
            timestamp: self.caller.receipt,
            cursor,
            applied,
            conflicts,
            errors,
        };
        if let Some(push_id) = self.push_id {
            replay::record(&mut tx, who, push_id, &response).await?;
        }
        tx.commit().await?;
        // Committed here: this process's memory of empty pulls must not wait for the
        // notification (a device pulling right after this answer sees the rows).
        self.ctx.quiet.wrote(&who.tenant);
        observe(who, self.push_id, &response);
        Ok(response)
    }

    /// Applies one chunk of a table's rows: in bulk when it can, else row by row.
    async fn apply_chunk(
        &self,
        conn: &mut sqlx::PgConnection,
        table: &Table,
        chunk: &[Value],
        report: &mut Report,
    ) -> AppResult<()> {
        // Many rows go through a few set-based statements; anything unusual in the
        // chunk (a row PostgreSQL refuses, a reference it cannot check in bulk) sends
        // the whole chunk down the row-by-row path instead.
        if chunk.len() > 1 {
            let savepoint = Savepoint::open(conn, "push_chunk").await?;
            let bulk = batch::apply_chunk(
                conn,
                self.caller,
                self.registry,
                table,
                chunk,
                &report.written,
            )
            .await?;
            match bulk {
                Some(results) => {
                    savepoint.release(conn).await?;
                    for (raw, result) in chunk.iter().zip(results) {
                        report.record(table, raw, result);
                    }
                    return Ok(());
                }
                None => savepoint.roll_back(conn).await?,
            }
        }
        for raw in chunk {
            let savepoint = Savepoint::open(conn, "push_row").await?;
            let applied = write::apply_row(
                conn,
                self.caller,
                self.registry,
                table,
                raw,
                &report.written,
                None,
            )
            .await;
            let result = match applied {
                Ok(done) => {
                    savepoint.release(conn).await?;
                    Ok(done)
                }
                Err(write::Failure::Row(e)) => {
                    savepoint.roll_back(conn).await?;
                    Err(e)
                }
                Err(write::Failure::Fatal(e)) => return Err(e),
            };
            report.record(table, raw, result);
        }
        Ok(())
    }
}

/// What happened to one row applied by [`apply_one`].
#[derive(Debug)]
pub struct Applied {
    /// The row as now stored (written, or kept); `None` when there was nothing to do.
    pub row: Option<Value>,
    /// Whether this write changed the row.
    pub written: bool,
    pub conflict: Option<ConflictReport>,
}

/// Who writes rows through [`apply_one`], and how.
pub struct Writer<'a> {
    /// The registry snapshot the rows are checked against.
    pub registry: &'a Registry,
    pub who: &'a Principal,
    /// A BridgeCore client's conflict strategy (bounded by each table's rule).
    pub strategy: Option<Strategy>,
    /// When the server received the change (device times later than this are capped).
    pub receipt: DateTime<Utc>,
    pub limits: SyncLimits,
}

/// Applies one row inside the caller's open transaction (on which [`set_writer`] was
/// called), under its own savepoint: validated, scoped, checked and settled exactly as
/// a pushed row. The row's error when it is refused; the transaction stays usable.
pub async fn apply_one(
    conn: &mut sqlx::PgConnection,
    w: &Writer<'_>,
    table: &Table,
    raw: &Value,
    local_id: Option<&str>,
) -> AppResult<Result<Applied, RowError>> {
    let (registry, caller) = (
        w.registry,
        Caller {
            who: w.who,
            receipt: w.receipt,
            strategy: w.strategy,
            max_value_bytes: w.limits.max_value_bytes,
        },
    );
    let savepoint = Savepoint::open(conn, "apply_one").await?;
    let written = decide::Written::new();
    let done = write::apply_row(conn, &caller, registry, table, raw, &written, local_id).await;
    let (outcome, conflict) = match done {
        Ok(done) => done,
        Err(write::Failure::Row(e)) => {
            savepoint.roll_back(conn).await?;
            return Ok(Err(e));
        }
        Err(write::Failure::Fatal(e)) => return Err(e),
    };
    savepoint.release(conn).await?;
    let (row, written) = match outcome {
        decide::Outcome::Written(row) => (Some(row), true),
        decide::Outcome::Kept(row) => (Some(row), false),
        decide::Outcome::Nothing => (None, false),
    };
    Ok(Ok(Applied {
        row,
        written,
        conflict,
    }))
}

/// Writes `fields` over row `id` of `table` as `who`, inside the caller's transaction,
/// checked like a pushed row (role, store, types, references) and based on the current
/// version (the row is locked first, so no conflict can arise). What the conflict
/// inbox stores a resolution with. The row's error when the checks refuse it.
pub(crate) async fn write_fields(
    conn: &mut sqlx::PgConnection,
    ctx: &SyncCtx,
    registry: &Registry,
    who: &Principal,
    table: &Table,
    id: uuid::Uuid,
    fields: serde_json::Map<String, Value>,
) -> AppResult<Result<Value, RowError>> {
    let sql = format!(
        "SELECT version FROM {} WHERE id = $1 FOR UPDATE",
        table.ident()
    );
    let version: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let mut raw = fields;
    raw.insert("id".into(), json!(id));
    raw.insert("version".into(), json!(version.unwrap_or(0)));
    set_writer(conn, who).await?;
    let writer = Writer {
        registry,
        who,
        strategy: None,
        receipt: Utc::now().round_subsecs(6),
        limits: ctx.limits,
    };
    let applied = apply_one(conn, &writer, table, &Value::Object(raw), None).await?;
    Ok(applied.map(|a| a.row.unwrap_or(Value::Null)))
}

/// Tells the change-log trigger who writes, for the rest of the transaction: device,
/// role and user (the audit trail's origin is `push` unless the caller named another
/// with [`crate::db::set_origin`]).
pub async fn set_writer(conn: &mut sqlx::PgConnection, who: &Principal) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT set_config('nas_sync.device', $1, true), set_config('nas_sync.role', $2, true),
                set_config('nas_sync.user', $3, true)",
    )
    .bind(&who.device_id)
    .bind(who.role.as_str())
    .bind(&who.username)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Metrics and the one log line of a committed push.
fn observe(who: &Principal, push_id: Option<&str>, response: &PushResponse) {
    let stored: usize = response.applied.values().map(Vec::len).sum();
    metrics::counter!("sync_rows_pushed_total").increment(stored as u64);
    for c in &response.conflicts {
        metrics::counter!("sync_conflicts_total", "table" => c.table.clone(),
            "rule" => c.resolution.clone(), "winner" => c.winner.clone())
        .increment(1);
    }
    for e in &response.errors {
        metrics::counter!("sync_errors_total", "code" => e.code.clone()).increment(1);
    }
    tracing::info!(device_id = %who.device_id, tenant = %who.tenant, push_id, stored,
        conflicts = response.conflicts.len(), errors = response.errors.len(), "push");
}
