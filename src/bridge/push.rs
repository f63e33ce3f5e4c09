//! `/api/v1/offline-sync/push`: a BridgeCore device's queued changes (`create`,
//! `update`, `delete` with `local_id`s), applied in one transaction through the
//! engine's own row path, so validation, scopes, references and conflict rules are the
//! Insight push's. What BridgeCore adds:
//!
//! - `local_id` → row, kept per device (`offline_local_ids`): a create pushed again
//!   maps to the same row and creates nothing;
//! - `{"local_id": "..."}` in `data` (or as `record_id`) names the row a local id
//!   created, in this push or before; changes are applied in dependency order (an order
//!   before its lines), whatever order they came in;
//! - a `conflict_strategy` per push, bounded by each table's rule.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::BridgeCtx;
use super::app_types::model_table;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::sync::push::{self, Applied, MAX_ROWS};
use crate::sync::registry::{Registry, Table};
use crate::sync::rules::Strategy;
use crate::sync::validate::{RowError, parse_time};

/// `POST /api/v1/offline-sync/push` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct OfflinePush {
    pub device_id: Option<String>,
    /// The queued changes; each is checked on its own.
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<Value>,
    /// `server_wins` (default), `client_wins`, `newest_wins`, `merge` or `manual`.
    pub conflict_strategy: Option<String>,
    /// Apply nothing when any change fails.
    pub stop_on_error: Option<bool>,
    /// Accepted; the server applies the whole push in one transaction.
    pub batch_size: Option<i64>,
}

/// One queued change as the seed sends it.
#[derive(Debug, Deserialize)]
struct Change {
    local_id: Option<String>,
    action: String,
    model: String,
    record_id: Option<Value>,
    data: Option<Map<String, Value>>,
    local_timestamp: Option<String>,
    version: Option<i64>,
}

/// A change that passed its own checks.
struct Checked<'r> {
    index: usize,
    change: Change,
    table: &'r Table,
    /// Local ids it refers to (in `data` or as `record_id`).
    needs: BTreeSet<String>,
}

/// Applies an offline push; the answer has one result per change, in the order sent.
pub async fn push(ctx: &BridgeCtx, who: &Principal, req: OfflinePush) -> AppResult<Value> {
    who.check_device(req.device_id.as_deref())?;
    let strategy = match req.conflict_strategy.as_deref() {
        None => Strategy::ServerWins,
        Some(s) => Strategy::parse(s).ok_or_else(|| {
            AppError::validation(
                "conflict_strategy",
                "must be server_wins, client_wins, newest_wins, merge or manual",
            )
        })?,
    };
    if req.changes.len() > MAX_ROWS {
        return Err(AppError::PayloadTooLarge(format!(
            "A push may carry at most {MAX_ROWS} changes; this one has {}. Split it.",
            req.changes.len()
        )));
    }
    let started = Instant::now();
    let registry = ctx.sync.registry.current();
    let mut results: Vec<Value> = vec![Value::Null; req.changes.len()];
    let mut checked = Vec::new();
    for (index, raw) in req.changes.into_iter().enumerate() {
        match check(&registry, who, index, raw) {
            Ok(c) => checked.push(c),
            Err((model, action, local_id, e)) => {
                results[index] = error_result(local_id.as_deref(), &action, &model, &e, 0.0);
            }
        }
    }
    let order = dependency_order(&checked);
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let run = Run {
            ctx,
            who,
            registry: &registry,
            strategy,
            stop_on_error: req.stop_on_error.unwrap_or(false),
        };
        match run.apply(&checked, &order, results.clone()).await {
            Err(e) if attempt < 4 && e.is_retryable() => {
                tracing::warn!(attempt, error = %e, "offline push met contention; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => break other?,
        }
    };
    answer(ctx, who, outcome, started).await
}

/// Parses and checks one change on its own.
fn check<'r>(
    registry: &'r Registry,
    who: &Principal,
    index: usize,
    raw: Value,
) -> Result<Checked<'r>, (String, String, Option<String>, RowError)> {
    let field = |k: &str| {
        raw.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (model, action) = (field("model"), field("action"));
    let local_id = raw
        .get("local_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let fail = |e: RowError| (model.clone(), action.clone(), local_id.clone(), e);
    let change: Change = serde_json::from_value(raw.clone()).map_err(|e| {
        fail(RowError::validation(format!(
            "the change is malformed: {e}"
        )))
    })?;
    if !matches!(change.action.as_str(), "create" | "update" | "delete") {
        return Err(fail(RowError::validation(
            "action must be create, update or delete",
        )));
    }
    if let Some(l) = &change.local_id
        && (l.is_empty() || l.len() > 200 || l.contains('\0'))
    {
        return Err(fail(RowError::validation(
            "local_id must be 1 to 200 characters",
        )));
    }
    if change.action == "create" && change.local_id.is_none() {
        return Err(fail(RowError::validation("a create needs its local_id")));
    }
    let table = registry.get(&model_table(&change.model)).ok_or_else(|| {
        fail(RowError::new(
            "UNKNOWN_TABLE",
            "this model is not synced here",
        ))
    })?;
    if !table.can_write(who.role) {
        return Err(fail(RowError::forbidden(format!(
            "the role '{}' may not write {}",
            who.role.as_str(),
            change.model
        ))));
    }
    let mut needs = BTreeSet::new();
    let refs = change
        .data
        .iter()
        .flat_map(|d| d.values())
        .chain(change.record_id.as_ref());
    for v in refs {
        if let Some(l) = local_ref(v) {
            needs.insert(l.to_string());
        }
    }
    Ok(Checked {
        index,
        change,
        table,
        needs,
    })
}

/// `{"local_id": "..."}`: a reference to the row a local id created.
fn local_ref(v: &Value) -> Option<&str> {
    match v.as_object() {
        Some(o) if o.len() == 1 => o.get("local_id").and_then(Value::as_str),
        _ => None,
    }
}

/// Changes in an order where every create comes before the changes that refer to its
/// local id; otherwise parents' tables first, then the order sent. Changes caught in a
/// cycle come last (they fail on their missing reference).
fn dependency_order(checked: &[Checked<'_>]) -> Vec<usize> {
    let creates: HashMap<&str, usize> = checked
        .iter()
        .enumerate()
        .filter(|(_, c)| c.change.action == "create")
        .filter_map(|(i, c)| c.change.local_id.as_deref().map(|l| (l, i)))
        .collect();
    let deps: Vec<Vec<usize>> = checked
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.needs
                .iter()
                .filter_map(|l| creates.get(l.as_str()).copied())
                .filter(|&d| d != i)
                .collect()
        })
        .collect();
    let mut done = vec![false; checked.len()];
    let mut order = Vec::with_capacity(checked.len());
    let key = |i: usize| (checked[i].table.rank, checked[i].index);
    loop {
        let ready = (0..checked.len())
            .filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))
            .min_by_key(|&i| key(i));
        match ready {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => break,
        }
    }
    order.extend((0..checked.len()).filter(|&i| !done[i]));
    order
}

/// One attempt at the push's transaction.
struct Run<'a> {
    ctx: &'a BridgeCtx,
    who: &'a Principal,
    registry: &'a Registry,
    strategy: Strategy,
    stop_on_error: bool,
}

/// The results, in the order sent, and the local ids mapped.
struct Outcome {
    results: Vec<Value>,
    id_mapping: BTreeMap<String, Value>,
    receipt: DateTime<Utc>,
}

impl Run<'_> {
    async fn apply(
        &self,
        checked: &[Checked<'_>],
        order: &[usize],
        mut results: Vec<Value>,
    ) -> AppResult<Outcome> {
        let mut tx = self.ctx.sync.pool.begin().await?;
        push::set_writer(&mut tx, self.who).await?;
        if self.stop_on_error {
            sqlx::query("SAVEPOINT offline_all")
                .execute(&mut *tx)
                .await?;
        }
        let receipt = Utc::now().round_subsecs(6);
        let mut created: HashMap<String, Uuid> = HashMap::new();
        let mut id_mapping = BTreeMap::new();
        for &i in order {
            let c = &checked[i];
            let t0 = Instant::now();
            let done = self.apply_change(&mut tx, c, receipt, &mut created).await?;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let ch = &c.change;
            results[c.index] = match done {
                Ok(applied) => {
                    let server_id = applied.row.as_ref().map(server_id);
                    if ch.action == "create"
                        && let (Some(l), Some(id)) = (&ch.local_id, &server_id)
                    {
                        id_mapping.insert(l.clone(), id.clone());
                    }
                    success_result(ch, &applied, server_id, receipt, ms)
                }
                Err(e) => error_result(ch.local_id.as_deref(), &ch.action, &ch.model, &e, ms),
            };
        }
        let failed = results.iter().any(|r| r["status"] == "error");
        if self.stop_on_error && failed {
            sqlx::query("ROLLBACK TO SAVEPOINT offline_all")
                .execute(&mut *tx)
                .await?;
            for r in results.iter_mut().filter(|r| r["status"] != "error") {
                r["status"] = json!("error");
                r["code"] = json!("NOT_APPLIED");
                r["message"] = json!("another change failed and stop_on_error is set");
            }
            id_mapping.clear();
        }
        tx.commit().await?;
        Ok(Outcome {
            results,
            id_mapping,
            receipt,
        })
    }

    /// Resolves a change's references and applies it as one engine row.
    async fn apply_change(
        &self,
        conn: &mut PgConnection,
        c: &Checked<'_>,
        receipt: DateTime<Utc>,
        created: &mut HashMap<String, Uuid>,
    ) -> AppResult<Result<Applied, RowError>> {
        let who = self.who;
        let ch = &c.change;
        let mut data = ch.data.clone().unwrap_or_default();
        for (field, value) in &mut data {
            if let Some(l) = local_ref(value) {
                match self.local_row(conn, l, created).await? {
                    Some(id) => *value = json!(id),
                    None => return Ok(Err(unknown_local(field, l))),
                }
            }
        }
        let id = match ch.action.as_str() {
            "create" => {
                let local = ch.local_id.as_deref().unwrap_or_default();
                if let Some(id) = self.local_row(conn, local, created).await? {
                    // Pushed before: the same row, nothing created.
                    let row = current_row(conn, c.table, id).await?;
                    return Ok(Ok(Applied {
                        row,
                        written: false,
                        conflict: None,
                    }));
                }
                match data.get("id").and_then(Value::as_str) {
                    Some(s) => match Uuid::parse_str(s) {
                        Ok(id) => id,
                        Err(_) => return Ok(Err(RowError::validation("'id' must be a UUID"))),
                    },
                    None => Uuid::new_v4(),
                }
            }
            _ => match self.target(conn, c, created).await? {
                Some(id) => id,
                None => {
                    return Ok(Err(RowError::new(
                        "NOT_FOUND",
                        "record_id names no row of this model",
                    )));
                }
            },
        };
        data.insert("id".into(), json!(id));
        data.insert(
            "version".into(),
            json!(if ch.action == "create" {
                0
            } else {
                ch.version.unwrap_or(0)
            }),
        );
        if ch.action == "delete" {
            data.insert("deleted".into(), json!(true));
        }
        if let Some(ts) = &ch.local_timestamp {
            if parse_time(ts).is_none() {
                return Ok(Err(RowError::validation(
                    "local_timestamp must be an RFC 3339 timestamp",
                )));
            }
            data.insert("updated_at".into(), json!(ts));
        }
        let raw = Value::Object(data);
        let strategy = Some(self.strategy);
        let local_id = ch.local_id.as_deref();
        let applied = push::apply_one(
            conn,
            self.registry,
            who,
            strategy,
            receipt,
            c.table,
            &raw,
            local_id,
        )
        .await?;
        if let (Ok(a), "create", Some(local)) = (&applied, ch.action.as_str(), local_id)
            && a.row.is_some()
        {
            remember(conn, who, local, &c.table.name, id).await?;
            created.insert(local.to_string(), id);
        }
        Ok(applied)
    }

    /// The row a local id created: in this push, or before (this device's map).
    async fn local_row(
        &self,
        conn: &mut PgConnection,
        local: &str,
        created: &HashMap<String, Uuid>,
    ) -> sqlx::Result<Option<Uuid>> {
        if let Some(id) = created.get(local) {
            return Ok(Some(*id));
        }
        sqlx::query_scalar(
            "SELECT row_id FROM offline_local_ids
             WHERE tenant_id = $1 AND device_id = $2 AND local_id = $3",
        )
        .bind(&self.who.tenant)
        .bind(&self.who.device_id)
        .bind(local)
        .fetch_optional(conn)
        .await
    }

    /// The row an update or delete names: a UUID, an Odoo id (mirror tables), or
    /// `{"local_id": ...}`; without `record_id`, the row its own local id created.
    async fn target(
        &self,
        conn: &mut PgConnection,
        c: &Checked<'_>,
        created: &HashMap<String, Uuid>,
    ) -> sqlx::Result<Option<Uuid>> {
        match &c.change.record_id {
            Some(Value::String(s)) => {
                let Ok(id) = Uuid::parse_str(s) else {
                    return Ok(None);
                };
                // An update never creates: the row must exist (whose it is, the
                // engine checks).
                let sql = format!("SELECT id FROM {} WHERE id = $1", c.table.ident());
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(conn)
                    .await
            }
            Some(Value::Number(n)) if c.table.column("odoo_id").is_some() => {
                let sql = format!(
                    "SELECT id FROM {} WHERE odoo_id = $1 AND tenant_id = $2 LIMIT 1",
                    c.table.ident()
                );
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(n.as_i64())
                    .bind(&self.who.tenant)
                    .fetch_optional(conn)
                    .await
            }
            Some(v) => match local_ref(v) {
                Some(l) => self.local_row(conn, l, created).await,
                None => Ok(None),
            },
            None => match &c.change.local_id {
                Some(l) => self.local_row(conn, l, created).await,
                None => Ok(None),
            },
        }
    }
}

fn unknown_local(field: &str, local: &str) -> RowError {
    RowError::new(
        "REFERENCE_MISSING",
        format!("'{field}' refers to local_id '{local}', which created no row"),
    )
}

/// Keeps `local` → row for this device, so a retried create maps to the same row.
async fn remember(
    conn: &mut PgConnection,
    who: &Principal,
    local: &str,
    table: &str,
    id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO offline_local_ids (tenant_id, device_id, local_id, table_name, row_id)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&who.tenant)
    .bind(&who.device_id)
    .bind(local)
    .bind(table)
    .bind(id)
    .execute(conn)
    .await
    .map(|_| ())
}

async fn current_row(
    conn: &mut PgConnection,
    table: &Table,
    id: Uuid,
) -> sqlx::Result<Option<Value>> {
    let sql = format!(
        "SELECT to_jsonb(t) - 'tenant_id' FROM {} t WHERE id = $1",
        table.ident()
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The id BridgeCore clients see: the Odoo id of a mirrored row that has one, else
/// the row's UUID.
fn server_id(row: &Value) -> Value {
    row.get("odoo_id")
        .filter(|v| v.is_number())
        .or_else(|| row.get("id"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn success_result(
    ch: &Change,
    applied: &Applied,
    server_id: Option<Value>,
    receipt: DateTime<Utc>,
    ms: f64,
) -> Value {
    let mut r = json!({
        "local_id": ch.local_id,
        "status": "success",
        "action": ch.action,
        "model": ch.model,
        "server_id": server_id,
        "uuid": applied.row.as_ref().and_then(|r| r.get("id")).cloned(),
        "version": applied.row.as_ref().and_then(|r| r.get("version")).cloned(),
        "server_timestamp": receipt,
        "processing_time_ms": ms,
    });
    if let Some(c) = &applied.conflict {
        if c.winner != "client" {
            r["status"] = json!("conflict");
        }
        r["conflict"] = json!({
            "conflict_id": c.conflict_id,
            "server_data": c.server_data,
            "local_data": ch.data,
            "strategy": c.resolution,
            "resolution": c.winner,
        });
    }
    r
}

fn error_result(local_id: Option<&str>, action: &str, model: &str, e: &RowError, ms: f64) -> Value {
    json!({
        "local_id": local_id,
        "status": "error",
        "action": action,
        "model": model,
        "code": e.code,
        "message": e.message,
        "processing_time_ms": ms,
    })
}

/// The seed's answer around the results.
async fn answer(
    ctx: &BridgeCtx,
    who: &Principal,
    outcome: Outcome,
    started: Instant,
) -> AppResult<Value> {
    let Outcome {
        results,
        id_mapping,
        receipt,
    } = outcome;
    let count = |s: &str| results.iter().filter(|r| r["status"] == s).count();
    let (succeeded, failed, conflicts) = (count("success"), count("error"), count("conflict"));
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let position = super::state::get(ctx, who, None).await?;
    let last = position.map_or(0, |p| p.last_event_id);
    tracing::info!(device_id = %who.device_id, tenant = %who.tenant, total = results.len(),
        succeeded, failed, conflicts, "offline push");
    Ok(json!({
        "success": failed == 0,
        "total": results.len(),
        "succeeded": succeeded,
        "failed": failed,
        "conflicts": conflicts,
        "results": results,
        "id_mapping": id_mapping,
        "next_sync_token": format!("{last}_{}_{}", who.device_id, receipt.timestamp()),
        "server_timestamp": receipt,
        "total_processing_time_ms": total_ms,
        "average_processing_time_ms": if results.is_empty() { 0.0 } else { total_ms / results.len() as f64 },
    }))
}
