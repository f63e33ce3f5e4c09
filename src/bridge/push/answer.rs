//! The offline push's results, one per change in the order sent, and the seed's
//! answer around them (counts, `id_mapping`, timings, the next sync token).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Change;
use crate::auth::Principal;
use crate::bridge::BridgeCtx;
use crate::error::AppResult;
use crate::sync::push::Applied;
use crate::sync::validate::RowError;

/// The results, in the order sent, and the local ids mapped.
pub(super) struct Outcome {
    pub results: Vec<Value>,
    pub id_mapping: BTreeMap<String, Value>,
    pub receipt: DateTime<Utc>,
}

/// The id BridgeCore clients see: the Odoo id of a mirrored row that has one, else
/// the row's UUID.
pub(super) fn server_id(row: &Value) -> Value {
    row.get("odoo_id")
        .filter(|v| v.is_number())
        .or_else(|| row.get("id"))
        .cloned()
        .unwrap_or(Value::Null)
}

pub(super) fn success_result(
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

pub(super) fn error_result(
    local_id: Option<&str>,
    action: &str,
    model: &str,
    e: &RowError,
    ms: f64,
) -> Value {
    json!({
        "local_id": local_id,
        "status": "failed",
        "action": action,
        "model": model,
        "code": e.code,
        "message": e.message,
        // BridgeCore's name for the sentence (its clients read `error`).
        "error": e.message,
        "processing_time_ms": ms,
    })
}

/// The seed's answer around the results.
pub(super) async fn answer(
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
    let (succeeded, failed, conflicts) = (count("success"), count("failed"), count("conflict"));
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let position = crate::bridge::state::get(ctx, who, None).await?;
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
