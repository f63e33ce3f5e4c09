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
enum Outcome {
    /// Written by this push: the row as now stored.
    Written(Value),
    /// Left as it was (equal values, or the server won): the server row.
    Kept(Value),
    /// Nothing to do (deleting a row the server never had).
    Nothing,
}

/// Why one row failed: a row-level error, or something that aborts the push.
enum Failure {
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
struct Ctx<'a> {
    who: &'a Principal,
    receipt: DateTime<Utc>,
}

/// Versions this push wrote, by (table, id): a device's queue may hold several edits
/// of one row, all based on the version it last pulled; its own earlier edit in the
/// same push is not a conflict.
type Written = HashMap<(String, Uuid), i64>;

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
    let mut applied: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let mut errors = Vec::new();
    let mut written = Written::new();
    for (table, rows) in batches {
        for raw in rows.iter() {
            sqlx::query("SAVEPOINT push_row").execute(&mut *tx).await?;
            match apply_row(&mut tx, ctx, state, table, raw, &mut conflicts, &written).await {
                Ok(outcome) => {
                    sqlx::query("RELEASE SAVEPOINT push_row")
                        .execute(&mut *tx)
                        .await?;
                    let row = match outcome {
                        Outcome::Written(row) => {
                            if let (Some(id), Some(v)) = (
                                row.get("id")
                                    .and_then(Value::as_str)
                                    .and_then(|s| Uuid::parse_str(s).ok()),
                                row.get("version").and_then(Value::as_i64),
                            ) {
                                written.insert((table.name.clone(), id), v);
                            }
                            Some(row)
                        }
                        Outcome::Kept(row) => Some(row),
                        Outcome::Nothing => None,
                    };
                    if let Some(row) = row {
                        applied.entry(table.name.clone()).or_default().push(row);
                    }
                }
                Err(Failure::Row(e)) => {
                    // Released too, so failing rows do not nest savepoints.
                    sqlx::query("ROLLBACK TO SAVEPOINT push_row")
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("RELEASE SAVEPOINT push_row")
                        .execute(&mut *tx)
                        .await?;
                    errors.push(RowErrorReport {
                        table: table.name.clone(),
                        record_id: validate::raw_id(raw),
                        code: e.code.to_string(),
                        message: e.message,
                    });
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }
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

/// Applies one row; conflicts found are appended to `conflicts`.
async fn apply_row(
    conn: &mut PgConnection,
    ctx: &Ctx<'_>,
    state: &AppState,
    table: &Table,
    raw: &Value,
    conflicts: &mut Vec<ConflictReport>,
    written: &Written,
) -> Result<Outcome, Failure> {
    let who = ctx.who;
    if !table.can_write(who.role) {
        return Err(RowError::forbidden(format!(
            "the role '{}' may not write {}",
            who.role.as_str(),
            table.name
        ))
        .into());
    }
    let mut row = validate::pushed_row(table, raw, &who.tenant)?;

    let sql = format!(
        "SELECT tenant_id, to_jsonb(t) - 'tenant_id' FROM {} t WHERE id = $1 FOR UPDATE",
        table.ident()
    );
    let existing: Option<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(row.id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some((tenant, _)) = &existing
        && tenant != &who.tenant
    {
        // Ids are global; say nothing about the other owner's row.
        return Err(RowError::forbidden("this id cannot be used; generate a new one").into());
    }
    let server = existing.map(|(_, doc)| doc);
    check_scope(table, who, server.as_ref(), &mut row)?;
    check_references(conn, state, table, who, server.as_ref(), &row).await?;

    let Some(server) = server else {
        if row.deleted == Some(true) {
            return Ok(Outcome::Nothing);
        }
        if let Some(missing) = table
            .data_columns()
            .find(|c| !c.nullable && !c.has_default && !row.values.contains_key(&c.name))
        {
            return Err(RowError::validation(format!("'{}' is required", missing.name)).into());
        }
        return Ok(Outcome::Written(
            insert(conn, table, who, ctx.receipt, &row).await?,
        ));
    };

    let differs = row.values.iter().any(|(k, v)| {
        let kind = &table.column(k).expect("validated column").kind;
        !validate::same_value(kind, Some(v), server.get(k))
    }) || row
        .deleted
        .is_some_and(|d| Some(d) != server.get("deleted").and_then(Value::as_bool));
    if !differs {
        return Ok(Outcome::Kept(server));
    }
    let server_version = server.get("version").and_then(Value::as_i64).unwrap_or(0);
    let own_earlier_edit = written.get(&(table.name.clone(), row.id)) == Some(&server_version);
    if row.base_version >= server_version || own_earlier_edit {
        return Ok(Outcome::Written(
            update(conn, table, ctx.receipt, &row, &server).await?,
        ));
    }

    // The row changed on the server since the device last saw it, and values differ.
    let server_role: Option<String> = sqlx::query_scalar(
        "SELECT origin_role FROM sync_changes WHERE table_name = $1 AND row_id = $2",
    )
    .bind(&table.name)
    .bind(row.id)
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    let sides = Sides {
        client_time: rules::cap_device_time(row.updated_at, ctx.receipt),
        client_role: who.role,
        server_time: server
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(validate::parse_time)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        server_role: server_role.as_deref().and_then(Role::parse),
    };
    let winner = rules::decide(table.rule, &sides);
    conflicts.push(ConflictReport {
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
    });
    match winner {
        Winner::Client => Ok(Outcome::Written(
            update(conn, table, ctx.receipt, &row, &server).await?,
        )),
        Winner::Server => Ok(Outcome::Kept(server)),
    }
}

/// Store devices write only their store's rows; the store column never changes.
fn check_scope(
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
        let Some(Value::String(target)) = row.values.get(&parent_ref.column) else {
            continue;
        };
        if server
            .and_then(|s| s.get(&parent_ref.column))
            .and_then(Value::as_str)
            == Some(target.as_str())
        {
            continue;
        }
        let registry = state.registry.current();
        let Some(parent) = registry.get(&parent_ref.parent) else {
            continue;
        };
        let store_filter = match (&parent.scope_column, who.role) {
            (Some(col), Role::Store) => format!(" AND p.{} = $3", quote_ident(col)),
            _ => " AND ($3::text IS NULL OR $3::text IS NOT NULL)".to_string(),
        };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} p WHERE p.id = $1::uuid AND p.tenant_id = $2{store_filter})",
            parent.ident()
        );
        let found: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(target)
            .bind(&who.tenant)
            .bind(who.store_id.as_deref())
            .fetch_one(&mut *conn)
            .await?;
        if !found {
            return Err(RowError::new(
                "REFERENCE_MISSING",
                format!(
                    "'{}' refers to a {} row that does not exist",
                    parent_ref.column, parent.name
                ),
            )
            .into());
        }
    }
    Ok(())
}

fn column_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn insert(
    conn: &mut PgConnection,
    table: &Table,
    who: &Principal,
    receipt: DateTime<Utc>,
    row: &PushedRow,
) -> Result<Value, sqlx::Error> {
    let mut doc: Map<String, Value> = row.values.clone();
    doc.insert("id".into(), json!(row.id));
    doc.insert("tenant_id".into(), json!(who.tenant));
    doc.insert(
        "updated_at".into(),
        json!(rules::cap_device_time(row.updated_at, receipt)),
    );
    doc.insert("deleted".into(), json!(row.deleted.unwrap_or(false)));
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
    let mut doc: Map<String, Value> = row.values.clone();
    doc.insert(
        "updated_at".into(),
        json!(rules::cap_device_time(row.updated_at, receipt)),
    );
    let deleted = row
        .deleted
        .or_else(|| server.get("deleted").and_then(Value::as_bool));
    doc.insert("deleted".into(), json!(deleted.unwrap_or(false)));
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
