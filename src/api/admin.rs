//! `/api/v1/admin`: the tenant's managers administer users and devices (the same
//! actions as the admin console and the command line, through `auth::manage`). Store
//! users get 403 `FORBIDDEN`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::extract;
use crate::auth::Principal;
use crate::auth::devices::Device;
use crate::auth::identity::{Identity, IdentityChange};
use crate::auth::manage::{self, NewPassword, NewUser};
use crate::auth::users::Listed;
use crate::error::AppResult;
use crate::state::AppState;

/// The tenant's users.
#[utoipa::path(get, path = "/api/v1/admin/users", operation_id = "adminListUsers", tag = "admin",
    responses((status = 200, body = Vec<Listed>), (status = 403, description = "FORBIDDEN (not a manager)")),
    security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    who: Principal,
) -> AppResult<Json<Vec<Listed>>> {
    manage::list_users(&state.pool, &who).await.map(Json)
}

/// Adds a user to the caller's tenant (password: 8 to 1024 characters).
#[utoipa::path(post, path = "/api/v1/admin/users", operation_id = "adminAddUser", tag = "admin", request_body = NewUser,
    responses((status = 201, body = Listed), (status = 400, description = "VALIDATION_FAILED"),
              (status = 403, description = "FORBIDDEN (not a manager)"), (status = 409, description = "USER_EXISTS")),
    security(("bearer" = [])))]
pub async fn add_user(
    State(state): State<AppState>,
    who: Principal,
    extract::Json(body): extract::Json<NewUser>,
) -> AppResult<(StatusCode, Json<Listed>)> {
    let user = manage::add_user(&state.pool, &who, body).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Disables a user: it cannot log in and every token of its devices ends at once.
#[utoipa::path(post, path = "/api/v1/admin/users/{username}/disable", operation_id = "adminDisableUser", tag = "admin",
    params(("username" = String, Path, description = "The user")),
    responses((status = 204, description = "Disabled"), (status = 400, description = "VALIDATION_FAILED (yourself)"),
              (status = 403, description = "FORBIDDEN (not a manager)"), (status = 404, description = "NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn disable_user(
    State(state): State<AppState>,
    who: Principal,
    Path(username): Path<String>,
) -> AppResult<StatusCode> {
    manage::set_disabled(&state.pool, &who, &username, true).await?;
    state.sync.sessions.forget(&who.tenant, None);
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a disabled user again; it logs in anew.
#[utoipa::path(post, path = "/api/v1/admin/users/{username}/enable", operation_id = "adminEnableUser", tag = "admin",
    params(("username" = String, Path, description = "The user")),
    responses((status = 204, description = "Enabled"), (status = 403, description = "FORBIDDEN (not a manager)"),
              (status = 404, description = "NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn enable_user(
    State(state): State<AppState>,
    who: Principal,
    Path(username): Path<String>,
) -> AppResult<StatusCode> {
    manage::set_disabled(&state.pool, &who, &username, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gives a user a new password; every token of its devices ends.
#[utoipa::path(post, path = "/api/v1/admin/users/{username}/password", operation_id = "adminSetPassword", tag = "admin",
    params(("username" = String, Path, description = "The user")), request_body = NewPassword,
    responses((status = 204, description = "Changed"), (status = 400, description = "VALIDATION_FAILED"),
              (status = 403, description = "FORBIDDEN (not a manager)"), (status = 404, description = "NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn set_password(
    State(state): State<AppState>,
    who: Principal,
    Path(username): Path<String>,
    extract::Json(body): extract::Json<NewPassword>,
) -> AppResult<StatusCode> {
    manage::set_password(&state.pool, &who, &username, &body.password).await?;
    state.sync.sessions.forget(&who.tenant, None);
    Ok(StatusCode::NO_CONTENT)
}

/// Sets or clears a user's email and Odoo user id (for apps built on BridgeCore): a
/// field left out stays, `null` clears it.
#[utoipa::path(patch, path = "/api/v1/admin/users/{username}", operation_id = "adminSetIdentity", tag = "admin",
    params(("username" = String, Path, description = "The user")), request_body = IdentityChange,
    responses((status = 200, body = Identity, description = "The user's identity now"),
              (status = 400, description = "VALIDATION_FAILED (not an email, not a positive id, or already another user's)"),
              (status = 403, description = "FORBIDDEN (not a manager)"), (status = 404, description = "NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn set_identity(
    State(state): State<AppState>,
    who: Principal,
    Path(username): Path<String>,
    extract::Json(body): extract::Json<IdentityChange>,
) -> AppResult<Json<Identity>> {
    manage::set_identity(&state.pool, &who, &username, body)
        .await
        .map(Json)
}

/// The tenant's devices: user, last pull and push, revoked or not.
#[utoipa::path(get, path = "/api/v1/admin/devices", operation_id = "adminListDevices", tag = "admin",
    responses((status = 200, body = Vec<Device>), (status = 403, description = "FORBIDDEN (not a manager)")),
    security(("bearer" = [])))]
pub async fn list_devices(
    State(state): State<AppState>,
    who: Principal,
) -> AppResult<Json<Vec<Device>>> {
    state.sync.pull_ledger.flush_now(&state.pool).await;
    manage::list_devices(&state.pool, &who).await.map(Json)
}

/// Revokes a device: its tokens fail with `DEVICE_REVOKED` at once, for good.
#[utoipa::path(post, path = "/api/v1/admin/devices/{device_id}/revoke", operation_id = "adminRevokeDevice", tag = "admin",
    params(("device_id" = String, Path, description = "The device")),
    responses((status = 204, description = "Revoked"), (status = 403, description = "FORBIDDEN (not a manager)"),
              (status = 404, description = "NOT_FOUND")),
    security(("bearer" = [])))]
pub async fn revoke_device(
    State(state): State<AppState>,
    who: Principal,
    Path(device_id): Path<String>,
) -> AppResult<StatusCode> {
    manage::revoke_device(&state.pool, &who, &device_id).await?;
    state.sync.sessions.forget(&who.tenant, Some(&device_id));
    Ok(StatusCode::NO_CONTENT)
}

/// Releases a device: its tokens end and its sync state is forgotten, so another user
/// may log in with its id.
#[utoipa::path(post, path = "/api/v1/admin/devices/{device_id}/release", operation_id = "adminReleaseDevice", tag = "admin",
    params(("device_id" = String, Path, description = "The device")),
    responses((status = 204, description = "Released"), (status = 403, description = "FORBIDDEN (not a manager)"),
              (status = 404, description = "NOT_FOUND"), (status = 409, description = "DEVICE_REVOKED (a revoked device stays revoked)")),
    security(("bearer" = [])))]
pub async fn release_device(
    State(state): State<AppState>,
    who: Principal,
    Path(device_id): Path<String>,
) -> AppResult<StatusCode> {
    manage::release_device(&state.pool, &who, &device_id).await?;
    state.sync.sessions.forget(&who.tenant, Some(&device_id));
    Ok(StatusCode::NO_CONTENT)
}
