//! A short wait for Odoo's ids: a create on a mirrored model is stored at once and
//! written to Odoo by the outbox; BridgeCore's clients want the Odoo id (an integer)
//! in the answer. The push wakes the Odoo workers and waits up to
//! `NAS_SYNC_BRIDGE_CREATE_WAIT_MS` (2 s) for the rows it created to get their ids; what is still without one answers `pending`, and
//! the client's retry with the same local id answers `success` later.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::answer::Outcome;
use crate::bridge::BridgeCtx;
use crate::bridge::app_types::model_table;
use crate::error::AppResult;

/// How often the rows are looked at while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Waits (at most `ctx.create_wait`) for the pending creates of `outcome` to get their Odoo ids,
/// and turns each that got one into `success` with it.
pub(super) async fn wait(ctx: &BridgeCtx, tenant: &str, outcome: &mut Outcome) -> AppResult<()> {
    // table → (row → index of its result)
    let mut pending: HashMap<String, HashMap<Uuid, usize>> = HashMap::new();
    for (i, r) in outcome.results.iter().enumerate() {
        let row = r["uuid"].as_str().and_then(|u| Uuid::parse_str(u).ok());
        if let (true, Some(model), Some(row)) = (r["status"] == "pending", r["model"].as_str(), row)
        {
            pending
                .entry(model_table(model))
                .or_default()
                .insert(row, i);
        }
    }
    if pending.is_empty() || ctx.create_wait.is_zero() {
        return Ok(());
    }
    ctx.write_back.notify_waiters();
    let deadline = tokio::time::Instant::now() + ctx.create_wait;
    let registry = ctx.sync.registry.current();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        for (table, rows) in &mut pending {
            let Some(t) = registry.get(table) else {
                rows.clear();
                continue;
            };
            let ids: Vec<Uuid> = rows.keys().copied().collect();
            // The table name is the registry's, quoted.
            let found: Vec<(Uuid, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, odoo_id::bigint FROM {} WHERE tenant_id = $1 AND id = ANY($2)
                   AND odoo_id IS NOT NULL",
                t.ident()
            )))
            .bind(tenant)
            .bind(&ids)
            .fetch_all(&ctx.sync.pool)
            .await?;
            for (row, odoo_id) in found {
                if let Some(i) = rows.remove(&row) {
                    settle(outcome, i, odoo_id);
                }
            }
        }
        pending.retain(|_, rows| !rows.is_empty());
    }
    Ok(())
}

/// A pending create that got its Odoo id: `success`, in `id_mapping` too.
fn settle(outcome: &mut Outcome, i: usize, odoo_id: i64) {
    let r = &mut outcome.results[i];
    r["status"] = json!("success");
    r["server_id"] = json!(odoo_id);
    if let Some(Value::String(local)) = r.get("local_id") {
        outcome.id_mapping.insert(local.clone(), json!(odoo_id));
    }
}
