//! Push: a device's queued changes, applied in one transaction, parents before
//! children, each row reported back (stored, won by the server, or failed with a
//! reason). Every row runs under its own savepoint, so one bad row never takes the
//! others down; with `stop_on_error` any failure rolls everything back. A `push_id`
//! makes the push exactly-once: its answer is recorded in the same transaction and
//! replayed verbatim when the device retries.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::registry::{Table, quote_ident};
use super::rules::{self, Sides, Winner};
use super::validate::{self, PushedRow, RowError};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::{AppError, AppResult};

pub const MAX_ROWS: usize = 10_000;

/// `POST /api/v1/sync/push` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PushRequest {
    pub device_id: Option<String>,
    /// Makes the push idempotent: the same id from the same device gets the same answer.
    pub push_id: Option<String>,
    /// The device clock when it sent the push (informative).
    #[schema(value_type = Option<String>)]
    pub timestamp: Option<Value>,
    /// Rows per table.
    #[schema(value_type = Object)]
    pub changes: BTreeMap<String, Value>,
    /// Apply nothing when any row fails.
    pub stop_on_error: Option<bool>,
}

/// A conflict, as reported to the device.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConflictReport {
    pub table: String,
    pub record_id: Uuid,
    #[schema(value_type = Object)]
    pub client_data: Value,
    /// The server row before the push.
    #[schema(value_type = Object)]
    pub server_data: Value,
    /// The rule applied.
    pub resolution: String,
    /// `server` or `client`.
    pub winner: String,
}

/// A row that was not applied.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowErrorReport {
    pub table: String,
    pub record_id: Option<String>,
    pub code: String,
    pub message: String,
}

/// The answer to a push.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushResponse {
    pub success: bool,
    pub timestamp: DateTime<Utc>,
    /// The device's current pull cursor (pushes do not move it).
    pub cursor: Option<String>,
    #[schema(value_type = Object)]
    pub applied: BTreeMap<String, Vec<Value>>,
    pub conflicts: Vec<ConflictReport>,
    pub errors: Vec<RowErrorReport>,
}

/// What happened to one row.
pub(super) enum Outcome {
    /// Written by this push: the row as now stored.
    Written(Value),
    /// Left as it was (equal values, or the server won): the server row.
    Kept(Value),
    /// Nothing to do (deleting a row the server never had).
    Nothing,
}

/// Why one row failed: a row-level error, or something that aborts the push.
pub(super) enum Failure {
    Row(RowError),
    Fatal(AppError),
}

impl From<RowError> for Failure {
    fn from(e: RowError) -> Self {
        Failure::Row(e)
    }
}

impl From<sqlx::Error> for Failure {
    /// Data errors PostgreSQL raises for one row become that row's error.
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            let code = d.code().unwrap_or_default();
            let constraint = d.constraint().unwrap_or("").to_string();
            let row = match code.as_ref() {
                "23503" => Some(RowError::new(
                    "REFERENCE_MISSING",
                    "a referenced row does not exist",
                )),
                "23502" => Some(RowError::validation("a required column is missing")),
                "23514" => Some(RowError::validation(format!(
                    "a value is not allowed ({constraint})"
                ))),
                "23505" => Some(RowError::validation(format!(
                    "a value must be unique ({constraint})"
                ))),
                "P0001" => Some(RowError::validation(d.message().to_string())),
                c if c.starts_with("22") => Some(RowError::validation(format!(
                    "a value is not valid: {}",
                    d.message()
                ))),
                _ => None,
            };
            if let Some(r) = row {
                return Failure::Row(r);
            }
        }
        Failure::Fatal(e.into())
    }
}

/// Who pushes, and when the server received it.
pub(super) struct Ctx<'a> {
    pub who: &'a Principal,
    pub receipt: DateTime<Utc>,
}

/// Versions this push wrote, by (table, id): a device's queue may hold several edits
/// of one row, all based on the version it last pulled; its own earlier edit in the
/// same push is not a conflict.
pub(super) type Written = HashMap<(String, Uuid), i64>;

/// One row's result: what happened, and the conflict it met, if any.
pub(super) type Done = (Outcome, Option<ConflictReport>);

/// The push answer being assembled, row by row, in the order rows were sent.
#[derive(Default)]
struct Report {
    applied: BTreeMap<String, Vec<Value>>,
    conflicts: Vec<ConflictReport>,
    errors: Vec<RowErrorReport>,
    written: Written,
}

impl Report {
    fn record(&mut self, table: &Table, raw: &Value, result: Result<Done, RowError>) {
        let (outcome, conflict) = match result {
            Ok(done) => done,
            Err(e) => {
                self.errors.push(RowErrorReport {
                    table: table.name.clone(),
                    record_id: validate::raw_id(raw),
                    code: e.code.to_string(),
                    message: e.message,
                });
                return;
            }
        };
        self.conflicts.extend(conflict);
        let row = match outcome {
            Outcome::Written(row) => {
                if let (Some(id), Some(v)) = (
                    row.get("id")
                        .and_then(Value::as_str)
                        .and_then(|s| Uuid::parse_str(s).ok()),
                    row.get("version").and_then(Value::as_i64),
                ) {
                    self.written.insert((table.name.clone(), id), v);
                }
                row
            }
            Outcome::Kept(row) => row,
            Outcome::Nothing => return,
        };
        self.applied
            .entry(table.name.clone())
            .or_default()
            .push(row);
    }
}

/// Applies a push.
pub async fn push(state: &AppState, who: &Principal, req: PushRequest) -> AppResult<PushResponse> {
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
    let mut registry = state.registry.current();
    // A table another server process added (an Odoo mirror table) since this one
    // loaded the registry: read it again once.
    if req.changes.keys().any(|name| registry.get(name).is_none())
        && state.registry_is_stale().await?
    {
        state.reload_registry().await?;
        registry = state.registry.current();
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

    let ctx = Ctx {
        who,
        receipt: Utc::now().round_subsecs(6),
    };
    // Deadlocks between concurrent pushes touching the same rows are retried whole.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match run(
            state,
            &ctx,
            &batches,
            req.push_id.as_deref(),
            &request_hash,
            stop_on_error,
        )
        .await
        {
            Err(e) if attempt < 4 && is_retryable(&e) => {
                tracing::warn!(attempt, error = %e, "push hit a deadlock or serialization failure; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

fn is_retryable(e: &AppError) -> bool {
    match e {
        AppError::Internal(err) => err
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|d| d.code())
            .is_some_and(|c| c == "40P01" || c == "40001"),
        _ => false,
    }
}

async fn run(
    state: &AppState,
    ctx: &Ctx<'_>,
    batches: &[(&Table, &Vec<Value>)],
    push_id: Option<&str>,
    request_hash: &[u8],
    stop_on_error: bool,
) -> AppResult<PushResponse> {
    let who = ctx.who;
    let mut tx = state.pool.begin().await?;
    // The change-log trigger records who wrote each row.
    sqlx::query(
        "SELECT set_config('nas_sync.device', $1, true), set_config('nas_sync.role', $2, true)",
    )
    .bind(&who.device_id)
    .bind(who.role.as_str())
    .execute(&mut *tx)
    .await?;

    if let Some(push_id) = push_id {
        let fresh = sqlx::query(
            "INSERT INTO push_log (tenant_id, device_id, push_id, request_hash) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(&who.tenant)
        .bind(&who.device_id)
        .bind(push_id)
        .bind(request_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            let (hash, response): (Vec<u8>, Option<Value>) = sqlx::query_as(
                "SELECT request_hash, response FROM push_log WHERE tenant_id = $1 AND device_id = $2 AND push_id = $3",
            )
            .bind(&who.tenant)
            .bind(&who.device_id)
            .bind(push_id)
            .fetch_one(&mut *tx)
            .await?;
            if hash != request_hash {
                return Err(AppError::Conflict {
                    code: "PUSH_ID_REUSED",
                    message:
                        "This push_id was already used for different changes; use a new push_id."
                            .into(),
                });
            }
            let response =
                response.ok_or_else(|| anyhow::anyhow!("push_log row without a response"))?;
            tracing::info!(device_id = %who.device_id, push_id, "push replayed");
            return Ok(serde_json::from_value(response).map_err(anyhow::Error::from)?);
        }
    }

    if stop_on_error {
        sqlx::query("SAVEPOINT push_all").execute(&mut *tx).await?;
    }
    let mut report = Report::default();
    for (table, rows) in batches {
        for chunk in super::push_batch::chunks(table, rows) {
            // Many rows go through a few set-based statements; anything unusual in
            // the chunk (a row PostgreSQL refuses, a reference it cannot check in
            // bulk) sends the whole chunk down the row-by-row path instead.
            if chunk.len() > 1 {
                sqlx::query("SAVEPOINT push_chunk")
                    .execute(&mut *tx)
                    .await?;
                let bulk = super::push_batch::apply_chunk(
                    &mut tx,
                    ctx,
                    state,
                    table,
                    chunk,
                    &report.written,
                )
                .await?;
                if let Some(results) = bulk {
                    sqlx::query("RELEASE SAVEPOINT push_chunk")
                        .execute(&mut *tx)
                        .await?;
                    for (raw, result) in chunk.iter().zip(results) {
                        report.record(table, raw, result);
                    }
                    continue;
                }
                sqlx::query("ROLLBACK TO SAVEPOINT push_chunk")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("RELEASE SAVEPOINT push_chunk")
                    .execute(&mut *tx)
                    .await?;
            }
            for raw in chunk.iter() {
                sqlx::query("SAVEPOINT push_row").execute(&mut *tx).await?;
                let result = match apply_row(&mut tx, ctx, state, table, raw, &report.written).await
                {
                    Ok(done) => {
                        sqlx::query("RELEASE SAVEPOINT push_row")
                            .execute(&mut *tx)
                            .await?;
                        Ok(done)
                    }
                    Err(Failure::Row(e)) => {
                        // Released too, so failing rows do not nest savepoints.
                        sqlx::query("ROLLBACK TO SAVEPOINT push_row")
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("RELEASE SAVEPOINT push_row")
                            .execute(&mut *tx)
                            .await?;
                        Err(e)
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                };
                report.record(table, raw, result);
            }
        }
    }
    let Report {
        mut applied,
        mut conflicts,
        errors,
        ..
    } = report;
    if stop_on_error && !errors.is_empty() {
        sqlx::query("ROLLBACK TO SAVEPOINT push_all")
            .execute(&mut *tx)
            .await?;
        applied.clear();
        conflicts.clear();
    }

    let cursor: Option<String> = sqlx::query_scalar(
        "UPDATE devices SET last_push_at = now() WHERE tenant_id = $1 AND device_id = $2 RETURNING cursor",
    )
    .bind(&who.tenant)
    .bind(&who.device_id)
    .fetch_optional(&mut *tx)
    .await?
    .flatten();
    let cursor = state
        .pull_ledger
        .pending_cursor(&who.tenant, &who.device_id)
        .or(cursor);

    let response = PushResponse {
        success: errors.is_empty(),
        timestamp: ctx.receipt,
        cursor,
        applied,
        conflicts,
        errors,
    };
    if let Some(push_id) = push_id {
        sqlx::query("UPDATE push_log SET response = $4 WHERE tenant_id = $1 AND device_id = $2 AND push_id = $3")
            .bind(&who.tenant)
            .bind(&who.device_id)
            .bind(push_id)
            .bind(serde_json::to_value(&response).map_err(anyhow::Error::from)?)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;

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
    Ok(response)
}

/// Applies one row on its own: lock, checks, plan, write.
async fn apply_row(
    conn: &mut PgConnection,
    ctx: &Ctx<'_>,
    state: &AppState,
    table: &Table,
    raw: &Value,
    written: &Written,
) -> Result<Done, Failure> {
    let who = ctx.who;
    let mut row = checked_row(table, who, raw)?;

    let sql = format!(
        "SELECT tenant_id, to_jsonb(t) - 'tenant_id' FROM {} t WHERE id = $1 FOR UPDATE",
        table.ident()
    );
    let existing: Option<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(row.id)
        .fetch_optional(&mut *conn)
        .await?;
    let server = owned_by_caller(who, existing)?;
    check_scope(table, who, server.as_ref(), &mut row)?;
    check_references(conn, state, table, who, server.as_ref(), &row).await?;

    match plan(table, &row, server, written)? {
        Plan::Nothing => Ok((Outcome::Nothing, None)),
        Plan::Keep(server) => Ok((Outcome::Kept(server), None)),
        Plan::Insert => Ok((
            Outcome::Written(insert(conn, table, who, ctx.receipt, &row).await?),
            None,
        )),
        Plan::Update(server) => Ok((
            Outcome::Written(update(conn, table, ctx.receipt, &row, &server).await?),
            None,
        )),
        Plan::Conflict(server) => {
            let server_role: Option<String> = sqlx::query_scalar(
                "SELECT origin_role FROM sync_changes WHERE table_name = $1 AND row_id = $2",
            )
            .bind(&table.name)
            .bind(row.id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
            let (report, winner) = settle(table, ctx, &row, raw, &server, server_role.as_deref());
            let outcome = match winner {
                Winner::Client => {
                    Outcome::Written(update(conn, table, ctx.receipt, &row, &server).await?)
                }
                Winner::Server => Outcome::Kept(server),
            };
            Ok((outcome, Some(report)))
        }
    }
}

/// The role may write the table and the row is well formed.
pub(super) fn checked_row(
    table: &Table,
    who: &Principal,
    raw: &Value,
) -> Result<PushedRow, RowError> {
    if !table.can_write(who.role) {
        return Err(RowError::forbidden(format!(
            "the role '{}' may not write {}",
            who.role.as_str(),
            table.name
        )));
    }
    validate::pushed_row(table, raw, &who.tenant)
}

/// The server row, if any, provided it belongs to the caller's tenant.
pub(super) fn owned_by_caller(
    who: &Principal,
    existing: Option<(String, Value)>,
) -> Result<Option<Value>, RowError> {
    match existing {
        // Ids are global; say nothing about the other owner's row.
        Some((tenant, _)) if tenant != who.tenant => Err(RowError::forbidden(
            "this id cannot be used; generate a new one",
        )),
        other => Ok(other.map(|(_, doc)| doc)),
    }
}

/// What a checked row calls for, given the server's copy.
pub(super) enum Plan {
    /// Deleting a row the server never had.
    Nothing,
    /// Same values as stored: the server row.
    Keep(Value),
    Insert,
    /// Based on the latest version (or this push's own earlier edit): the server row.
    Update(Value),
    /// Changed on the server since the device saw it, and the values differ.
    Conflict(Value),
}

pub(super) fn plan(
    table: &Table,
    row: &PushedRow,
    server: Option<Value>,
    written: &Written,
) -> Result<Plan, RowError> {
    let Some(server) = server else {
        if row.deleted == Some(true) {
            return Ok(Plan::Nothing);
        }
        if let Some(missing) = table
            .data_columns()
            .find(|c| !c.nullable && !c.has_default && !row.values.contains_key(&c.name))
        {
            return Err(RowError::validation(format!(
                "'{}' is required",
                missing.name
            )));
        }
        return Ok(Plan::Insert);
    };
    let differs = row.values.iter().any(|(k, v)| {
        table
            .column(k)
            .is_none_or(|c| !validate::same_value(&c.kind, Some(v), server.get(k)))
    }) || row
        .deleted
        .is_some_and(|d| Some(d) != server.get("deleted").and_then(Value::as_bool));
    if !differs {
        return Ok(Plan::Keep(server));
    }
    let server_version = server.get("version").and_then(Value::as_i64).unwrap_or(0);
    let own_earlier_edit = written.get(&(table.name.clone(), row.id)) == Some(&server_version);
    if row.base_version >= server_version || own_earlier_edit {
        return Ok(Plan::Update(server));
    }
    Ok(Plan::Conflict(server))
}

/// Settles a conflict by the table's rule; the report names the winner.
pub(super) fn settle(
    table: &Table,
    ctx: &Ctx<'_>,
    row: &PushedRow,
    raw: &Value,
    server: &Value,
    server_role: Option<&str>,
) -> (ConflictReport, Winner) {
    let sides = Sides {
        client_time: rules::cap_device_time(row.updated_at, ctx.receipt),
        client_role: ctx.who.role,
        server_time: server
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(validate::parse_time)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        server_role: server_role.and_then(Role::parse),
    };
    let winner = rules::decide(table.rule, &sides);
    let report = ConflictReport {
        table: table.name.clone(),
        record_id: row.id,
        client_data: raw.clone(),
        server_data: server.clone(),
        resolution: table.rule.as_str().to_string(),
        winner: match winner {
            Winner::Server => "server",
            Winner::Client => "client",
        }
        .to_string(),
    };
    (report, winner)
}

/// Store devices write only their store's rows; the store column never changes.
pub(super) fn check_scope(
    table: &Table,
    who: &Principal,
    server: Option<&Value>,
    row: &mut PushedRow,
) -> Result<(), RowError> {
    let Some(col) = &table.scope_column else {
        return Ok(());
    };
    let sent = row
        .values
        .get(col)
        .and_then(Value::as_str)
        .map(str::to_string);
    let stored = server.and_then(|s| s.get(col)).and_then(Value::as_str);
    if who.role == Role::Store {
        let mine = who.store_id.as_deref().unwrap_or_default();
        if stored.is_some_and(|s| s != mine) || sent.as_deref().is_some_and(|s| s != mine) {
            return Err(RowError::forbidden(format!(
                "this row belongs to another store than '{mine}'"
            )));
        }
        if server.is_none() && sent.is_none() {
            row.values
                .insert(col.clone(), Value::String(mine.to_string()));
        }
    }
    if let (Some(stored), Some(sent)) = (stored, sent.as_deref())
        && stored != sent
    {
        return Err(RowError::validation(format!(
            "'{col}' of an existing row cannot change"
        )));
    }
    Ok(())
}

/// Every reference a row sets must name a row of the caller's tenant (and store, for
/// store-scoped parents) that exists now: earlier in this push or before it.
async fn check_references(
    conn: &mut PgConnection,
    state: &AppState,
    table: &Table,
    who: &Principal,
    server: Option<&Value>,
    row: &PushedRow,
) -> Result<(), Failure> {
    for parent_ref in &table.parents {
        let Some(target) = reference_to_check(parent_ref, server, row) else {
            continue;
        };
        let registry = state.registry.current();
        let Some(parent) = registry.get(&parent_ref.parent) else {
            continue;
        };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} p WHERE p.id = $1::uuid AND p.tenant_id = $2{})",
            parent.ident(),
            parent_store_filter(parent, who)
        );
        let found: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(target)
            .bind(&who.tenant)
            .bind(who.store_id.as_deref())
            .fetch_one(&mut *conn)
            .await?;
        if !found {
            return Err(reference_missing(&parent_ref.column, &parent.name).into());
        }
    }
    Ok(())
}

/// The parent id a row sets in `parent_ref`'s column, unless it is the one stored.
pub(super) fn reference_to_check<'r>(
    parent_ref: &super::registry::ParentRef,
    server: Option<&Value>,
    row: &'r PushedRow,
) -> Option<&'r str> {
    let Some(Value::String(target)) = row.values.get(&parent_ref.column) else {
        return None;
    };
    let stored = server
        .and_then(|s| s.get(&parent_ref.column))
        .and_then(Value::as_str);
    (stored != Some(target.as_str())).then_some(target.as_str())
}

/// Store devices may only point at their own store's rows of a store-scoped parent.
/// Binds the store as `$3` (always bound, so the statement's parameters stay fixed).
pub(super) fn parent_store_filter(parent: &Table, who: &Principal) -> String {
    match (&parent.scope_column, who.role) {
        (Some(col), Role::Store) => format!(" AND p.{} = $3", quote_ident(col)),
        _ => " AND ($3::text IS NULL OR $3::text IS NOT NULL)".to_string(),
    }
}

/// The error for a reference to a row that is not there (or not the caller's).
pub(super) fn reference_missing(column: &str, parent: &str) -> RowError {
    RowError::new(
        "REFERENCE_MISSING",
        format!("'{column}' refers to a {parent} row that does not exist"),
    )
}

pub(super) fn column_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The document a new row is inserted from.
pub(super) fn insert_doc(
    row: &PushedRow,
    who: &Principal,
    receipt: DateTime<Utc>,
) -> Map<String, Value> {
    let mut doc: Map<String, Value> = row.values.clone();
    doc.insert("id".into(), json!(row.id));
    doc.insert("tenant_id".into(), json!(who.tenant));
    doc.insert(
        "updated_at".into(),
        json!(rules::cap_device_time(row.updated_at, receipt)),
    );
    doc.insert("deleted".into(), json!(row.deleted.unwrap_or(false)));
    doc
}

/// The columns an update sets, and their values.
pub(super) fn update_doc(
    row: &PushedRow,
    receipt: DateTime<Utc>,
    server: &Value,
) -> Map<String, Value> {
    let mut doc: Map<String, Value> = row.values.clone();
    doc.insert(
        "updated_at".into(),
        json!(rules::cap_device_time(row.updated_at, receipt)),
    );
    let deleted = row
        .deleted
        .or_else(|| server.get("deleted").and_then(Value::as_bool));
    doc.insert("deleted".into(), json!(deleted.unwrap_or(false)));
    doc
}

async fn insert(
    conn: &mut PgConnection,
    table: &Table,
    who: &Principal,
    receipt: DateTime<Utc>,
    row: &PushedRow,
) -> Result<Value, sqlx::Error> {
    let doc = insert_doc(row, who, receipt);
    let names: Vec<&str> = doc.keys().map(String::as_str).collect();
    let cols = column_list(&names);
    let t = table.ident();
    let sql = format!(
        "INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM jsonb_populate_record(NULL::{t}, $1)
         RETURNING to_jsonb(t) - 'tenant_id'"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(Value::Object(doc))
        .fetch_one(conn)
        .await
}

async fn update(
    conn: &mut PgConnection,
    table: &Table,
    receipt: DateTime<Utc>,
    row: &PushedRow,
    server: &Value,
) -> Result<Value, sqlx::Error> {
    let doc = update_doc(row, receipt, server);
    let names: Vec<&str> = doc.keys().map(String::as_str).collect();
    let cols = column_list(&names);
    let t = table.ident();
    let sql = format!(
        "UPDATE {t} AS t SET ({cols}) = (SELECT {cols} FROM jsonb_populate_record(NULL::{t}, $1))
         WHERE t.id = $2 RETURNING to_jsonb(t) - 'tenant_id'"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(Value::Object(doc))
        .bind(row.id)
        .fetch_one(conn)
        .await
}
