//! BridgeCore routes (docs/contract.md §8, docs/bridgecore.md):
//! `/api/v1/offline-sync/{push,pull,resolve-conflicts,state,reset}` and
//! `/api/v2/sync/{pull,state,reset,health}`, `/api/v1/webhooks/{check-updates,events}`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::extract;
use super::principal::BridgeCaller;
use crate::bridge::events::{self, EventPull};
use crate::bridge::push::{self, OfflinePush};
use crate::bridge::resolve::{self, ResolveConflicts};
use crate::bridge::webhooks::{self, CheckUpdatesQuery, WebhookEventsQuery};
use crate::bridge::wire::{self, Health, PullV1, PullV2, ResetBody, StateQuery};
use crate::bridge::{BridgeCtx, state};
use crate::error::AppResult;
use crate::sync::conflicts;

/// A device's queued changes, with local ids; one result per change.
#[utoipa::path(post, path = "/api/v1/offline-sync/push", operation_id = "offlinePush", tag = "bridgecore", request_body = OfflinePush,
    responses((status = 200, description = "One result per change, id_mapping"),
              (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN"),
              (status = 413, description = "PAYLOAD_TOO_LARGE")),
    security(("bearer" = [])))]
pub async fn push_v1(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Json(req): extract::Json<OfflinePush>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, req.device_id.as_deref())
        .await?;
    push::push(&ctx, &who, req).await.map(Json)
}

/// Resolves open conflicts by conflict id or local id.
#[utoipa::path(post, path = "/api/v1/offline-sync/resolve-conflicts", operation_id = "offlineResolveConflicts", tag = "bridgecore",
    request_body = ResolveConflicts,
    responses((status = 200, description = "One result per resolution"),
              (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn resolve_v1(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Json(req): extract::Json<ResolveConflicts>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, req.device_id.as_deref())
        .await?;
    resolve::resolve(&ctx, &who, req).await.map(Json)
}

/// Events after `last_event_id` (or the stored position) for an app type.
#[utoipa::path(post, path = "/api/v1/offline-sync/pull", operation_id = "offlinePull", tag = "bridgecore", request_body = PullV1,
    responses((status = 200, description = "Events, the new last_event_id and has_more"),
              (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN"),
              (status = 409, description = "RESYNC_REQUIRED")),
    security(("bearer" = [])))]
pub async fn pull_v1(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Json(req): extract::Json<PullV1>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, req.device_id.as_deref())
        .await?;
    wire::check_offset(req.offset)?;
    let pulled = events::pull(
        &ctx,
        &who,
        &EventPull {
            app_type: wire::app_type(req.app_type.as_deref()),
            last_event_id: req.last_event_id,
            models_filter: req.models_filter.as_deref(),
            limit: req.limit,
        },
    )
    .await?;
    let conflicts = conflicts::open_for_device(&ctx.sync, &who).await?;
    Ok(Json(wire::pulled_v1(&who, &req, pulled, conflicts)))
}

/// The device's position.
#[utoipa::path(get, path = "/api/v1/offline-sync/state", operation_id = "offlineState", tag = "bridgecore", params(StateQuery),
    responses((status = 200, description = "The device's sync state"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn state_v1(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Query(q): extract::Query<StateQuery>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, q.device_id.as_deref())
        .await?;
    let pos = state::get(&ctx, &who, q.app_type.as_deref()).await?;
    Ok(Json(wire::state_v1(&who, pos)))
}

/// Forgets the device's positions: the next pull starts from the beginning. The device
/// and app type are read from the query, or from an optional JSON body.
#[utoipa::path(post, path = "/api/v1/offline-sync/reset", operation_id = "offlineReset", tag = "bridgecore", params(StateQuery),
    request_body(content = Option<ResetBody>, description = "Optional: the same fields as the query"),
    responses((status = 200, description = "Reset"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn reset_v1(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Query(q): extract::Query<StateQuery>,
    extract::OptionalJson(body): extract::OptionalJson<ResetBody>,
) -> AppResult<Json<Value>> {
    // The package's `resetSyncState` names its device in a JSON body, BridgeCore's
    // schema in the query.
    let body = body.unwrap_or_default();
    let device_id = q.device_id.or(body.device_id);
    let app_type = q.app_type.or(body.app_type);
    let who = caller
        .for_device(&ctx.sync.pool, device_id.as_deref())
        .await?;
    state::reset(&ctx, &who, app_type.as_deref()).await?;
    Ok(Json(json!({
        "success": true,
        "message": "Sync state reset successfully",
        "device_id": who.device_id,
    })))
}

/// Events after the stored position of (user, device, app type).
#[utoipa::path(post, path = "/api/v2/sync/pull", operation_id = "smartPull", tag = "bridgecore", request_body = PullV2,
    responses((status = 200, description = "Events and next_sync_token"),
              (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn pull_v2(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Json(req): extract::Json<PullV2>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, req.device_id.as_deref())
        .await?;
    wire::check_user(&who, req.user_id.as_ref())?;
    let pulled = events::pull(
        &ctx,
        &who,
        &EventPull {
            app_type: wire::app_type(req.app_type.as_deref()),
            last_event_id: None,
            models_filter: req.models_filter.as_deref(),
            limit: req.limit,
        },
    )
    .await?;
    Ok(Json(wire::pulled_v2(pulled)))
}

/// The position of (user, device, app type).
#[utoipa::path(get, path = "/api/v2/sync/state", operation_id = "smartState", tag = "bridgecore", params(StateQuery),
    responses((status = 200, description = "The sync state"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn state_v2(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Query(q): extract::Query<StateQuery>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, q.device_id.as_deref())
        .await?;
    wire::check_user(&who, q.user_id.map(Value::String).as_ref())?;
    let pos = state::get(&ctx, &who, q.app_type.as_deref()).await?;
    Ok(Json(wire::state_v2(&who, pos)))
}

/// Forgets the position (force a full sync).
#[utoipa::path(post, path = "/api/v2/sync/reset", operation_id = "smartReset", tag = "bridgecore", params(StateQuery),
    responses((status = 200, description = "Reset"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn reset_v2(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Query(q): extract::Query<StateQuery>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, q.device_id.as_deref())
        .await?;
    wire::check_user(&who, q.user_id.clone().map(Value::String).as_ref())?;
    state::reset(&ctx, &who, q.app_type.as_deref()).await?;
    Ok(Json(json!({
        "status": "success",
        "message": "Sync state reset successfully",
        "user_id": who.user_id,
        "device_id": who.device_id,
    })))
}

/// Liveness of BridgeCore's offline sync, without a token (as BridgeCore serves it:
/// the package's `checkHealth` runs before login too).
#[utoipa::path(get, path = "/api/v1/offline-sync/health", operation_id = "offlineSyncHealth", tag = "bridgecore",
    responses((status = 200, body = Health)))]
pub async fn health_v1() -> Json<Health> {
    Json(Health::now("offline-sync"))
}

/// Liveness of the smart sync, without a token (as BridgeCore serves it).
#[utoipa::path(get, path = "/api/v2/sync/health", operation_id = "smartHealth", tag = "bridgecore",
    responses((status = 200, body = Health)))]
pub async fn health_v2() -> Json<Health> {
    Json(Health::now("smart-sync"))
}

/// Whether events wait for the device, by model, without moving its position.
#[utoipa::path(get, path = "/api/v1/webhooks/check-updates", operation_id = "checkUpdates", tag = "bridgecore", params(CheckUpdatesQuery),
    responses((status = 200, description = "has_update (and has_updates), pending_events, summary by model"),
              (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn check_updates(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Query(q): extract::Query<CheckUpdatesQuery>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, q.device_id.as_deref())
        .await?;
    webhooks::check_updates(&ctx, &who, &q).await.map(Json)
}

/// The events waiting for the device, as BridgeCore's webhook events.
#[utoipa::path(get, path = "/api/v1/webhooks/events", operation_id = "webhookEvents", tag = "bridgecore", params(WebhookEventsQuery),
    responses((status = 200, description = "count, data (and events)"),
              (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn webhook_events(
    State(ctx): State<BridgeCtx>,
    caller: BridgeCaller,
    extract::Query(q): extract::Query<WebhookEventsQuery>,
) -> AppResult<Json<Value>> {
    let who = caller
        .for_device(&ctx.sync.pool, q.device_id.as_deref())
        .await?;
    webhooks::list(&ctx, &who, &q).await.map(Json)
}
