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

/// The id BridgeCore clients see: a mirrored row's Odoo id (an integer, as they
/// parse it), a nas-sync table's row UUID. `None` for a mirrored row Odoo has not
/// given an id yet (its write-back is pending).
pub(super) fn server_id(row: &Value) -> Option<Value> {
    match row.get("odoo_id") {
        Some(id) if id.is_number() => Some(id.clone()),
        Some(_) => None,
        None => row.get("id").cloned(),
    }
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
    if applied.conflict.is_none() && applied.row.is_some() && r["server_id"].is_null() {
        // Stored, but Odoo has not given the row its id yet: the client keeps the
        // change pending and sends it again; the same local id then answers `success`
        // with the Odoo id once write-back has it.
        r["status"] = json!("pending");
        if let Some(m) = r.as_object_mut() {
            m.remove("server_id");
        }
    }
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
    let pending = count("pending");
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
        "pending": pending,
        "results": results,
        "id_mapping": id_mapping,
        "next_sync_token": format!("{last}_{}_{}", who.device_id, receipt.timestamp()),
        "server_timestamp": receipt,
        "total_processing_time_ms": total_ms,
        "average_processing_time_ms": if results.is_empty() { 0.0 } else { total_ms / results.len() as f64 },
    }))
}
