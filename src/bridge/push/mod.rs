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

//!
//! - `run`: one attempt at the push's transaction, change by change.
//! - `answer`: the results and the answer around them.
//! - `by_model`: the bridgecore_flutter package's form (a map of model → records)
//!   turned into changes, and the answer reshaped as the package reads it.
//! - `write_back`: a short wait for the Odoo ids of the rows created on mirrored
//!   models.

mod answer;
mod by_model;
mod run;
mod write_back;

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::BridgeCtx;
use super::app_types::model_table;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::sync::push::MAX_ROWS;
use crate::sync::registry::{Registry, Table};
use crate::sync::rules::Strategy;
use crate::sync::validate::RowError;
use answer::{answer, error_result};
use run::Run;

/// Local ids age out with the history (`sync::retention`): a create retried after
/// the period is a new one.
pub const LOCAL_IDS: crate::sync::retention::Aged = crate::sync::retention::Aged {
    what: "local_ids",
    delete_older_than: "DELETE FROM offline_local_ids WHERE created_at < $1",
};

/// `POST /api/v1/offline-sync/push` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct OfflinePush {
    pub device_id: Option<String>,
    /// The queued changes, each checked on its own: a list of changes, or the
    /// bridgecore_flutter package's map of model → records.
    #[schema(schema_with = changes_schema)]
    pub changes: Changes,
    /// `server_wins` (default), `client_wins`, `newest_wins`, `merge` or `manual`.
    pub conflict_strategy: Option<String>,
    /// Apply nothing when any change fails.
    pub stop_on_error: Option<bool>,
    /// Accepted; the server applies the whole push in one transaction.
    pub batch_size: Option<i64>,
}

/// The changes: BridgeCore's list, or the bridgecore_flutter package's map of model →
/// records (`by_model`), answered with the lists the package reads.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Changes {
    /// `[{"local_id", "action", "model", "record_id", "data", "version", ...}]`
    List(Vec<Value>),
    /// `{"sale.order": [{"id": 1, "state": "sale", "_action": "update"}]}`
    ByModel(Map<String, Value>),
}

/// `changes` in the OpenAPI document: a list of change objects, or an object whose
/// values are lists of records.
fn changes_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    let object = || ObjectBuilder::new().schema_type(Type::Object);
    let list = || Schema::Array(ArrayBuilder::new().items(object()).build());
    Schema::OneOf(
        OneOfBuilder::new()
            .item(list())
            .item(object().additional_properties(Some(list())))
            .build(),
    )
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

/// `serverWins` → `server_wins`: BridgeCore's example client sends its Dart enum's
/// names (`ConflictStrategy.serverWins.name`), the server's schema has snake case.
pub(super) fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Applies an offline push; the answer has one result per change, in the order sent.
pub async fn push(ctx: &BridgeCtx, who: &Principal, req: OfflinePush) -> AppResult<Value> {
    who.check_device(req.device_id.as_deref())?;
    let strategy = match req.conflict_strategy.as_deref() {
        None => Strategy::ServerWins,
        Some(s) => Strategy::parse(s).or_else(|| Strategy::parse(&snake_case(s))).ok_or_else(|| {
            AppError::validation(
                "conflict_strategy",
                "must be server_wins, client_wins, newest_wins, merge or manual (or their camelCase names)",
            )
        })?,
    };
    let (changes, by_model) = match req.changes {
        Changes::List(list) => (list, false),
        Changes::ByModel(map) => (by_model::flatten(map), true),
    };
    if changes.len() > MAX_ROWS {
        return Err(AppError::PayloadTooLarge(format!(
            "A push may carry at most {MAX_ROWS} changes; this one has {}. Split it.",
            changes.len()
        )));
    }
    let started = Instant::now();
    let registry = ctx.sync.registry.current();
    let mut results: Vec<Value> = vec![Value::Null; changes.len()];
    let mut checked = Vec::new();
    for (index, raw) in changes.into_iter().enumerate() {
        match check(&registry, who, index, raw) {
            Ok(c) => checked.push(c),
            Err((model, action, local_id, e)) => {
                results[index] = error_result(local_id.as_deref(), &action, &model, &e, 0.0);
            }
        }
    }
    let order = dependency_order(&checked);
    let mut attempt = 0;
    let mut outcome = loop {
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
    write_back::wait(ctx, &who.tenant, &mut outcome).await?;
    let answer = answer(ctx, who, outcome, started).await?;
    Ok(if by_model {
        by_model::reshape(answer)
    } else {
        answer
    })
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
