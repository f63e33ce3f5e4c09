//! `/api/v1/odoo/connections`: the manager-only routes of the Odoo mirror.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::extract;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::odoo::OdooCtx;
use crate::odoo::connections::{self, ConnectionView, CreateConnection, UpdateConnection};

fn parse_id(raw: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound("No such Odoo connection.".into()))
}

/// Connects an Odoo database after checking the credentials with Odoo.
#[utoipa::path(post, path = "/api/v1/odoo/connections", operation_id = "createOdooConnection", tag = "odoo", request_body = CreateConnection,
    responses((status = 201, body = ConnectionView), (status = 400, description = "ODOO_AUTH_FAILED, VALIDATION_FAILED"),
              (status = 403, description = "FORBIDDEN (not a manager)"), (status = 502, description = "ODOO_UNREACHABLE"),
              (status = 503, description = "SECRET_KEY_MISSING (the server has no NAS_SYNC_SECRET_KEY)")),
    security(("bearer" = [])))]
pub async fn create(
    State(ctx): State<OdooCtx>,
    who: Principal,
    extract::Json(body): extract::Json<CreateConnection>,
) -> AppResult<(StatusCode, Json<ConnectionView>)> {
    let view = connections::create(&ctx, &who, body).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The tenant's connections (never their keys).
#[utoipa::path(get, path = "/api/v1/odoo/connections", operation_id = "listOdooConnections", tag = "odoo",
    responses((status = 200, description = "{\"connections\": [...]}")), security(("bearer" = [])))]
pub async fn list(State(ctx): State<OdooCtx>, who: Principal) -> AppResult<Json<Value>> {
    let list = connections::list(&ctx, &who).await?;
    Ok(Json(json!({ "connections": list })))
}

/// One connection.
#[utoipa::path(get, path = "/api/v1/odoo/connections/{id}", operation_id = "getOdooConnection", tag = "odoo",
    responses((status = 200, body = ConnectionView), (status = 404, description = "NOT_FOUND")), security(("bearer" = [])))]
pub async fn show(
    State(ctx): State<OdooCtx>,
    who: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<ConnectionView>> {
    let conn = connections::get(&ctx, &who, parse_id(&id)?).await?;
    Ok(Json(conn.view()))
}

/// Renews the API key (checked with Odoo first) or changes pacing settings.
#[utoipa::path(patch, path = "/api/v1/odoo/connections/{id}", operation_id = "updateOdooConnection", tag = "odoo", request_body = UpdateConnection,
    responses((status = 200, body = ConnectionView), (status = 400, description = "ODOO_AUTH_FAILED, VALIDATION_FAILED"),
              (status = 404, description = "NOT_FOUND"), (status = 502, description = "ODOO_UNREACHABLE"),
              (status = 503, description = "SECRET_KEY_MISSING (a new api_key, and the server has no NAS_SYNC_SECRET_KEY)")),
    security(("bearer" = [])))]
pub async fn update(
    State(ctx): State<OdooCtx>,
    who: Principal,
    Path(id): Path<String>,
    extract::Json(body): extract::Json<UpdateConnection>,
) -> AppResult<Json<ConnectionView>> {
    connections::update(&ctx, &who, parse_id(&id)?, body)
        .await
        .map(Json)
}

/// Progress of the mirror, per-model counts, failures and the write-back queue.
#[utoipa::path(get, path = "/api/v1/odoo/connections/{id}/status", operation_id = "odooConnectionStatus", tag = "odoo",
    responses((status = 200, description = "sync_status, progress, models, failed_batches, write_back"),
              (status = 404, description = "NOT_FOUND")), security(("bearer" = [])))]
pub async fn status(
    State(ctx): State<OdooCtx>,
    who: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    connections::status(&ctx, &who, parse_id(&id)?)
        .await
        .map(Json)
}

/// Queues permanently failed batches again.
#[utoipa::path(post, path = "/api/v1/odoo/connections/{id}/retry", operation_id = "retryOdooConnection", tag = "odoo",
    responses((status = 200, description = "{\"batches_requeued\": n}"), (status = 404, description = "NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn retry(
    State(ctx): State<OdooCtx>,
    who: Principal,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    connections::retry(&ctx, &who, parse_id(&id)?)
        .await
        .map(Json)
}

/// Deletes a connection; its mirrored rows become tombstones.
#[utoipa::path(delete, path = "/api/v1/odoo/connections/{id}", operation_id = "deleteOdooConnection", tag = "odoo",
    responses((status = 204), (status = 404, description = "NOT_FOUND")), security(("bearer" = [])))]
pub async fn delete(
    State(ctx): State<OdooCtx>,
    who: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    connections::delete(&ctx, &who, parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
