//! BridgeCore's tenant auth routes (`/api/v1/auth/tenant/*`, `auth::tenant`), so that
//! an app written for BridgeCore changes only its base URL: login by email, refresh
//! with the refresh token as the bearer (not rotated), logout, and `me`.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::{Json, RequestExt};
use serde_json::{Value, json};

use super::extract;
use super::middleware::client_ip;
use super::principal::BridgeCaller;
use crate::auth::tenant::{self, TenantInfo, TenantLogin, TenantRefreshed, TenantSession};
use crate::auth::{Role, session};
use crate::error::{AppError, AppResult};
use crate::odoo::connections;
use crate::state::AppState;

/// The tenant as BridgeCore describes it, with its Odoo when it has a connection.
async fn tenant_info(state: &AppState, tenant: &str) -> AppResult<TenantInfo> {
    let mut info = TenantInfo::of(tenant);
    if let Some((_, database, version)) = connections::describe(&state.pool, tenant).await? {
        info.odoo_database = Some(database);
        info.odoo_version = Some(version);
    }
    Ok(info)
}

/// Signs a user in by email and password (BridgeCore's `AuthService.login`): a session
/// of the user, whose sync calls name their device.
#[utoipa::path(post, path = "/api/v1/auth/tenant/login", operation_id = "tenantLogin", tag = "bridgecore",
    request_body = TenantLogin,
    responses((status = 200, body = TenantSession),
              (status = 401, description = "INVALID_CREDENTIALS or USER_DISABLED"),
              (status = 429, description = "RATE_LIMITED")))]
pub async fn login(State(state): State<AppState>, req: Request) -> AppResult<Json<TenantSession>> {
    let ip = client_ip(req.extensions());
    // The address's budget before the body, as the device login does.
    if let Some(limits) = &state.limits {
        limits.check_login_address(ip)?;
    }
    let extract::Json(body): extract::Json<TenantLogin> = req.extract().await?;
    let name = body.email.trim().to_lowercase();
    let attempt = tenant::login(
        &state.pool,
        &state.keys,
        state.config.refresh_token_ttl,
        body,
    );
    let done = super::auth::under_login_limits(&state, ip, &name, attempt).await;
    let mut session = done?;
    session.tenant = tenant_info(&state, &session.tenant.id).await?;
    Ok(Json(session))
}

/// A new access token for the session (BridgeCore's token refresh): the refresh token
/// is the bearer, the body `{}`; the refresh token stays valid.
#[utoipa::path(post, path = "/api/v1/auth/tenant/refresh", operation_id = "tenantRefresh", tag = "bridgecore",
    responses((status = 200, body = TenantRefreshed),
              (status = 401, description = "UNAUTHORIZED (the session ended or expired) or USER_DISABLED")),
    security(("bearer" = [])))]
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> AppResult<Json<TenantRefreshed>> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string())
        .ok_or_else(|| {
            AppError::Unauthorized("Send 'Authorization: Bearer <refresh_token>'.".into())
        })?;
    tenant::refresh(&state.pool, &state.keys, &token)
        .await
        .map(Json)
}

/// Signs out: a tenant login's session ends (its access and refresh tokens stop
/// working); a device's token signs its device out as `POST /api/v1/auth/logout` does.
#[utoipa::path(post, path = "/api/v1/auth/tenant/logout", operation_id = "tenantLogout", tag = "bridgecore",
    responses((status = 200, description = "{\"success\": true, \"message\"}"),
              (status = 401, description = "UNAUTHORIZED")),
    security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, caller: BridgeCaller) -> AppResult<Json<Value>> {
    match &caller {
        BridgeCaller::User { who, session } => tenant::logout(&state.pool, who, *session).await?,
        BridgeCaller::Device(who) => {
            session::logout(&state.pool, who).await?;
            state
                .sync
                .sessions
                .forget(&who.tenant, Some(&who.device_id));
        }
    }
    Ok(Json(json!({"success": true, "message": "Signed out."})))
}

/// The caller, in BridgeCore's `TenantMeResponse` shape. nas-sync reads nothing from
/// Odoo here: groups and companies are empty, the partner and employee unknown.
#[utoipa::path(get, path = "/api/v1/auth/tenant/me", operation_id = "tenantMe", tag = "bridgecore",
    responses((status = 200, description = "{user, tenant, groups, is_admin, ...}"),
              (status = 401, description = "UNAUTHORIZED")),
    security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, caller: BridgeCaller) -> AppResult<Json<Value>> {
    let who = caller.checked(&state.pool).await?;
    let (created_at, last_login) = tenant::user_times(&state.pool, who.user_id).await?;
    let email = tenant::email_of(&state.pool, who.user_id)
        .await?
        .unwrap_or_default();
    let odoo = connections::describe(&state.pool, &who.tenant).await?;
    let info = TenantInfo::of(&who.tenant);
    let (odoo_url, odoo_database, odoo_version) = match odoo {
        Some((url, database, version)) => (url, database, Some(version)),
        None => (String::new(), String::new(), None),
    };
    Ok(Json(json!({
        "user": {
            "id": who.user_id, "email": email, "full_name": who.username,
            "role": who.role.as_str(), "odoo_user_id": who.odoo_user_id,
            "created_at": created_at, "last_login": last_login,
        },
        "tenant": {
            "id": info.id, "name": info.name, "slug": info.slug, "status": info.status,
            "odoo_url": odoo_url, "odoo_database": odoo_database, "odoo_version": odoo_version,
        },
        "partner_id": null, "employee_id": null, "groups": [],
        "is_admin": who.role == Role::Manager, "is_internal_user": true,
        "company_ids": [], "current_company_id": null,
    })))
}

/// `POST /api/v1/auth/tenant/me`: the same, with an optional `odoo_fields_check`
/// (accepted, not read).
#[utoipa::path(post, path = "/api/v1/auth/tenant/me", operation_id = "tenantMePost", tag = "bridgecore",
    responses((status = 200, description = "As GET"), (status = 401, description = "UNAUTHORIZED")),
    security(("bearer" = [])))]
pub async fn me_post(state: State<AppState>, caller: BridgeCaller) -> AppResult<Json<Value>> {
    me(state, caller).await
}
