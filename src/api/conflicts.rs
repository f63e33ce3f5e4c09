//! `/api/v1/sync/conflicts`: the conflict inbox (docs/contract.md §8), listed and
//! resolved once.

use axum::Json;
use axum::extract::{Path, State};
use uuid::Uuid;

use super::extract;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::sync::SyncCtx;
use crate::sync::conflicts::{self, Conflict, ListQuery};
use crate::sync::resolve::{self, Resolve};

/// Conflicts the caller may see: a manager's tenant's, a store device's own.
#[utoipa::path(get, path = "/api/v1/sync/conflicts", operation_id = "listConflicts", tag = "sync", params(ListQuery),
    responses((status = 200, body = Vec<Conflict>), (status = 400, description = "VALIDATION_FAILED")),
    security(("bearer" = [])))]
pub async fn list(
    State(ctx): State<SyncCtx>,
    who: Principal,
    extract::Query(q): extract::Query<ListQuery>,
) -> AppResult<Json<Vec<Conflict>>> {
    conflicts::list(&ctx, &who, &q).await.map(Json)
}

/// Resolves an open conflict: `server_wins`, `client_wins`, `merge` or `custom` (with
/// `data`). A second resolution answers 409 `CONFLICT_ALREADY_RESOLVED`.
#[utoipa::path(post, path = "/api/v1/sync/conflicts/{id}/resolve", operation_id = "resolveConflict", tag = "sync",
    params(("id" = Uuid, Path, description = "The conflict")), request_body = Resolve,
    responses((status = 200, body = Conflict), (status = 400, description = "VALIDATION_FAILED"),
              (status = 404, description = "NOT_FOUND"), (status = 409, description = "CONFLICT_ALREADY_RESOLVED")),
    security(("bearer" = [])))]
pub async fn resolve(
    State(ctx): State<SyncCtx>,
    who: Principal,
    Path(id): Path<String>,
    extract::Json(body): extract::Json<Resolve>,
) -> AppResult<Json<Conflict>> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound("No such conflict.".into()))?;
    resolve::run(&ctx, &who, id, body).await.map(Json)
}
