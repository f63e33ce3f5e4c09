//! `/api/v1/sync`: pull, push, status, device state and reset.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::decimals::{self, Decimals};
use super::extract;
use super::principal::PullCaller;
use crate::auth::Principal;
use crate::error::AppResult;
use crate::sync::SyncCtx;
use crate::sync::pull::{self, PullRequest, PullResponse};
use crate::sync::push::{self, PushRequest, PushResponse};
use crate::sync::status::{self, DeviceState, SyncStatus};

/// Changes since the cursor (or everything, without one).
#[utoipa::path(post, path = "/api/v1/sync/pull", operation_id = "pull", tag = "sync", request_body = PullRequest,
    responses((status = 200, body = PullResponse), (status = 400, description = "UNKNOWN_TABLE, INVALID_SYNC_TOKEN, VALIDATION_FAILED"),
              (status = 403, description = "FORBIDDEN"), (status = 409, description = "RESYNC_REQUIRED")),
    security(("bearer" = [])))]
pub async fn pull(
    State(ctx): State<SyncCtx>,
    caller: PullCaller,
    form: Decimals,
    extract::Json(body): extract::Json<PullRequest>,
) -> AppResult<Json<PullResponse>> {
    let mut page = pull::pull(&ctx, &caller.who, caller.session, body).await?;
    if form == Decimals::String {
        let registry = ctx.registry.current();
        for (table, rows) in &mut page.changes {
            decimals::in_raw_rows(registry.get(table), rows);
        }
        for c in page.conflicts.iter_mut().flatten() {
            for row in [&mut c.server_data, &mut c.client_data] {
                decimals::in_named_row(&registry, &c.table, row);
            }
            for row in [c.base_data.as_mut(), c.resolved_data.as_mut()]
                .into_iter()
                .flatten()
            {
                decimals::in_named_row(&registry, &c.table, row);
            }
        }
    }
    Ok(Json(page))
}

/// Applies a device's changes, row by row, in one transaction.
#[utoipa::path(post, path = "/api/v1/sync/push", operation_id = "push", tag = "sync", request_body = PushRequest,
    responses((status = 200, body = PushResponse), (status = 400, description = "UNKNOWN_TABLE, VALIDATION_FAILED"),
              (status = 409, description = "PUSH_ID_REUSED"), (status = 413, description = "PAYLOAD_TOO_LARGE")),
    security(("bearer" = [])))]
pub async fn push(
    State(ctx): State<SyncCtx>,
    who: Principal,
    form: Decimals,
    extract::Json(body): extract::Json<PushRequest>,
) -> AppResult<Json<PushResponse>> {
    let mut answer = push::push(&ctx, &who, body).await?;
    if form == Decimals::String {
        let registry = ctx.registry.current();
        for (table, rows) in &mut answer.applied {
            for row in rows {
                decimals::in_named_row(&registry, table, row);
            }
        }
        for c in &mut answer.conflicts {
            for row in [&mut c.server_data, &mut c.client_data] {
                decimals::in_named_row(&registry, &c.table, row);
            }
        }
    }
    Ok(Json(answer))
}

/// The tenant's sync status.
#[utoipa::path(get, path = "/api/v1/sync/status", operation_id = "syncStatus", tag = "sync",
    responses((status = 200, body = SyncStatus)), security(("bearer" = [])))]
pub async fn status(State(ctx): State<SyncCtx>, who: Principal) -> AppResult<Json<SyncStatus>> {
    status::status(&ctx, &who).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeviceQuery {
    pub device_id: Option<String>,
}

/// The calling device's sync state.
#[utoipa::path(get, path = "/api/v1/sync/state", operation_id = "syncState", tag = "sync", params(DeviceQuery),
    responses((status = 200, body = DeviceState), (status = 403, description = "FORBIDDEN")), security(("bearer" = [])))]
pub async fn state(
    State(ctx): State<SyncCtx>,
    who: Principal,
    extract::Query(q): extract::Query<DeviceQuery>,
) -> AppResult<Json<DeviceState>> {
    status::device_state(&ctx, &who, q.device_id.as_deref())
        .await
        .map(Json)
}

/// Forgets the calling device's sync state.
#[utoipa::path(post, path = "/api/v1/sync/reset", operation_id = "syncReset", tag = "sync", params(DeviceQuery),
    responses((status = 200, body = DeviceState), (status = 403, description = "FORBIDDEN")), security(("bearer" = [])))]
pub async fn reset(
    State(ctx): State<SyncCtx>,
    who: Principal,
    extract::Query(q): extract::Query<DeviceQuery>,
) -> AppResult<Json<DeviceState>> {
    status::reset(&ctx, &who, q.device_id.as_deref())
        .await
        .map(Json)
}
