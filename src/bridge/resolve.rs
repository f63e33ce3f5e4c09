//! `/api/v1/offline-sync/resolve-conflicts`: resolutions of open conflicts, named by
//! `conflict_id` or by the `local_id` of the change that met them, each resolved once
//! through the conflict inbox (`sync::conflicts`).
//!
//! Two answers: BridgeCore's schema (its request carries `conflicts`) counts
//! `resolved` and `failed`; the bridgecore_flutter package's `resolveConflicts` sends
//! no `conflicts` and reads both as lists (`resolved` the names of the conflicts
//! resolved, `failed` the failed results), so a request without `conflicts` gets lists
//! and the counts as `resolved_count` and `failed_count`.

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::BridgeCtx;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::sync::resolve::{self, Resolve};

/// The route's body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResolveConflicts {
    pub device_id: Option<String>,
    /// The conflicts as the device saw them (informative; the server's copy is used).
    #[schema(value_type = Option<Vec<Object>>)]
    pub conflicts: Option<Vec<Value>>,
    pub resolutions: Vec<Resolution>,
}

/// One resolution.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Resolution {
    pub local_id: Option<String>,
    #[schema(format = Uuid)]
    pub conflict_id: Option<String>,
    /// `server_wins`, `client_wins`, `merge` or `custom` (or their camelCase names).
    pub strategy: String,
    /// The fields to store, for `custom`.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// BridgeCore's name for the fields of a `merge` it merged itself: stored as a
    /// `custom` resolution's `data`.
    #[schema(value_type = Option<Object>)]
    pub merged_data: Option<Value>,
}

impl Resolution {
    /// The inbox's resolution: snake-case strategy, and BridgeCore's `merge` with
    /// `merged_data` as `custom` with those fields.
    fn as_resolve(&self) -> Resolve {
        let strategy = super::push::snake_case(&self.strategy);
        match (&self.merged_data, self.data.is_none()) {
            (Some(m), true) if strategy == "merge" || strategy == "custom" => Resolve {
                strategy: "custom".into(),
                data: Some(m.clone()),
            },
            _ => Resolve {
                strategy,
                data: self.data.clone(),
            },
        }
    }
}

/// Resolves each conflict named; one failing does not stop the others.
pub async fn resolve(ctx: &BridgeCtx, who: &Principal, req: ResolveConflicts) -> AppResult<Value> {
    who.check_device(req.device_id.as_deref())?;
    if req.resolutions.len() > 1000 {
        return Err(AppError::PayloadTooLarge(
            "At most 1000 resolutions at once.".into(),
        ));
    }
    let as_lists = req.conflicts.is_none();
    let mut results = Vec::with_capacity(req.resolutions.len());
    for r in req.resolutions {
        let outcome = match find(ctx, who, &r).await {
            Ok(id) => resolve::run(&ctx.sync, who, id, r.as_resolve()).await,
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(done) => json!({
                "local_id": r.local_id.or(done.local_id),
                "conflict_id": done.id,
                "status": "success",
                "action": "update",
                "model": super::events::model_of(ctx, &done.table).await?,
                "server_id": done.resolved_data.as_ref().and_then(|d| d.get("odoo_id").filter(|v| v.is_number())).cloned()
                    .unwrap_or_else(|| json!(done.record_id)),
                "strategy": r.strategy,
            }),
            Err(AppError::Internal(e)) => return Err(AppError::Internal(e)),
            Err(e) => json!({
                "local_id": r.local_id,
                "conflict_id": r.conflict_id,
                "status": "failed",
                "code": e.code(),
                "message": e.message(),
                "error": e.message(),
            }),
        });
    }
    let resolved = results.iter().filter(|r| r["status"] == "success").count();
    let failed = results.len() - resolved;
    if !as_lists {
        return Ok(json!({
            "success": failed == 0,
            "resolved": resolved,
            "failed": failed,
            "results": results,
        }));
    }
    // The package reads `resolved` as `List<String>`: each the name the resolution
    // used (its local id, else the conflict id).
    let names: Vec<Value> = results
        .iter()
        .filter(|r| r["status"] == "success")
        .map(|r| match &r["local_id"] {
            Value::String(l) => json!(l),
            _ => r["conflict_id"].clone(),
        })
        .collect();
    let failures: Vec<Value> = results
        .iter()
        .filter(|r| r["status"] != "success")
        .cloned()
        .collect();
    Ok(json!({
        "success": failed == 0,
        "resolved": names,
        "failed": failures,
        "resolved_count": resolved,
        "failed_count": failed,
        "results": results,
    }))
}

/// The conflict a resolution names: by id, or the device's open conflict of a local id.
async fn find(ctx: &BridgeCtx, who: &Principal, r: &Resolution) -> AppResult<Uuid> {
    if let Some(id) = &r.conflict_id {
        return Uuid::parse_str(id).map_err(|_| AppError::NotFound("No such conflict.".into()));
    }
    let Some(local) = &r.local_id else {
        return Err(AppError::validation(
            "resolutions",
            "each resolution names a conflict_id or a local_id",
        ));
    };
    // No stored local id holds NUL (pushes refuse it), and PostgreSQL text cannot.
    if local.contains('\0') {
        return Err(AppError::NotFound(
            "No open conflict for that local_id.".into(),
        ));
    }
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM sync_conflicts
         WHERE tenant_id = $1 AND device_id = $2 AND user_id = $4 AND local_id = $3
           AND status = 'open'
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(&who.tenant)
    .bind(&who.device_id)
    .bind(local)
    .bind(who.user_id)
    .fetch_optional(&ctx.sync.pool)
    .await?;
    id.ok_or_else(|| AppError::NotFound(format!("No open conflict for local_id '{local}'.")))
}
