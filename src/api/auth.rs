//! `/api/v1/auth`: login, refresh and logout.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::{Json, RequestExt};

use super::extract;
use super::middleware::client_ip;
use crate::auth::service::{self, LoginRequest, RefreshRequest, TokenResponse};
use crate::auth::{Principal, session};
use crate::error::AppResult;
use crate::state::AppState;

/// Logs in a user on a device.
#[utoipa::path(post, path = "/api/v1/auth/login", operation_id = "login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "INVALID_CREDENTIALS, USER_DISABLED or DEVICE_REVOKED"),
              (status = 409, description = "DEVICE_IN_USE: the device id belongs to another user"),
              (status = 400, description = "VALIDATION_FAILED"), (status = 429, description = "RATE_LIMITED")))]
pub async fn login(State(state): State<AppState>, req: Request) -> AppResult<Json<TokenResponse>> {
    let ip = client_ip(req.extensions());
    // The address's budget before the body: a flood of logins costs no parsing.
    if let Some(limits) = &state.limits {
        limits.check_login_address(ip)?;
    }
    let extract::Json(body): extract::Json<LoginRequest> = req.extract().await?;
    let username = body.username.clone();
    let attempt = service::login(
        &state.pool,
        &state.keys,
        state.config.refresh_token_ttl,
        body,
    );
    let done = under_login_limits(&state, ip, &username, attempt).await;
    done.map(Json)
}

/// Runs a sign-in attempt under the login limits (the address's budget is spent by
/// the caller, before it reads the body): the name's budget and its growing delay
/// before, and the outcome counted after (a wrong password slows that name down).
pub(super) async fn under_login_limits<T>(
    state: &AppState,
    ip: std::net::IpAddr,
    name: &str,
    attempt: impl Future<Output = AppResult<T>>,
) -> AppResult<T> {
    if let Some(limits) = &state.limits {
        limits.check_login_user(ip, name)?;
        limits.login_wait(name).await;
    }
    let done = attempt.await;
    if let Some(limits) = &state.limits {
        match &done {
            Ok(_) => limits.login_outcome(name, true),
            Err(crate::error::AppError::InvalidCredentials) => limits.login_outcome(name, false),
            Err(_) => {}
        }
    }
    done
}

/// Exchanges a refresh token for a new pair (the old one stops working; presenting it
/// again ends every token of its device).
#[utoipa::path(post, path = "/api/v1/auth/refresh", operation_id = "refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "UNAUTHORIZED, USER_DISABLED or DEVICE_REVOKED")))]
pub async fn refresh(
    State(state): State<AppState>,
    extract::Json(body): extract::Json<RefreshRequest>,
) -> AppResult<Json<TokenResponse>> {
    service::refresh(
        &state.pool,
        &state.keys,
        state.config.refresh_token_ttl,
        body,
    )
    .await
    .map(Json)
}

/// Signs the calling device out: its access and refresh tokens end at once and the
/// device id is released, with its sync state, for whoever logs in with it next.
#[utoipa::path(post, path = "/api/v1/auth/logout", operation_id = "logout", tag = "auth",
    responses((status = 204, description = "Signed out"), (status = 401, description = "UNAUTHORIZED, TOKEN_EXPIRED, USER_DISABLED or DEVICE_REVOKED")),
    security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, who: Principal) -> AppResult<StatusCode> {
    session::logout(&state.pool, &who).await?;
    state
        .sync
        .sessions
        .forget(&who.tenant, Some(&who.device_id));
    Ok(StatusCode::NO_CONTENT)
}
