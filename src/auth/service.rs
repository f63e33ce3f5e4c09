//! Login and refresh: checks credentials, binds the device to its user (another user's
//! device is refused: `DEVICE_IN_USE`), issues a token pair carrying the device's token
//! generation, and rotates refresh tokens (a used refresh token never works again, and
//! presenting one ends every token of its device). Logout is `session::logout`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::token::{self, Claims, Keys};
use super::users::{self, User};
use super::{password, session, valid_device_id};
use crate::error::{AppError, AppResult};

/// `POST /api/v1/auth/login` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub username: String,
    pub password: String,
    #[schema(pattern = "^[A-Za-z0-9._:-]{3,128}$")]
    pub device_id: String,
    #[schema(max_length = 256)]
    pub device_name: Option<String>,
}

/// `POST /api/v1/auth/refresh` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// The user as the client sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub id: Uuid,
    pub username: String,
    pub role: String,
    pub store_id: Option<String>,
    pub tenant: String,
}

/// A token pair.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: UserInfo,
    pub device_id: String,
}

/// Checks credentials and issues tokens bound to `device_id`.
pub async fn login(
    pool: &PgPool,
    keys: &Keys,
    refresh_ttl: Duration,
    req: LoginRequest,
) -> AppResult<TokenResponse> {
    if !valid_device_id(&req.device_id) {
        return Err(AppError::validation(
            "device_id",
            "must be 3 to 128 characters of A-Z a-z 0-9 . _ : -",
        ));
    }
    if req
        .device_name
        .as_ref()
        .is_some_and(|n| n.len() > 256 || n.contains('\0'))
    {
        return Err(AppError::validation(
            "device_name",
            "must be at most 256 characters, without NUL",
        ));
    }
    let user = check_password(pool, &req.username, req.password).await?;

    let mut tx = pool.begin().await?;
    let generation = bind_device(
        &mut tx,
        &user.tenant_id,
        user.id,
        &req.device_id,
        req.device_name.as_deref(),
    )
    .await
    .inspect_err(|e| {
        if matches!(e, AppError::DeviceInUse) {
            tracing::warn!(username = %user.username, tenant = %user.tenant_id,
                device_id = %req.device_id, "login refused: the device belongs to another user");
        }
    })?;
    let response = issue_pair(
        &mut tx,
        keys,
        refresh_ttl,
        &user,
        &req.device_id,
        generation,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(username = %user.username, tenant = %user.tenant_id, device_id = %req.device_id, "login");
    Ok(response)
}

/// Binds `device_id` to the user, in `conn`'s transaction: a new device is registered
/// to it, its own is seen again (`device_name` kept unless a new one is given);
/// another user's device is not taken over (`DEVICE_IN_USE`), a revoked one stays so
/// (`DEVICE_REVOKED`). Returns the device's token generation.
pub async fn bind_device(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    user_id: Uuid,
    device_id: &str,
    device_name: Option<&str>,
) -> AppResult<i64> {
    let bound: Option<(bool, i64)> = sqlx::query_as(
        "INSERT INTO devices (tenant_id, device_id, user_id, device_name, last_seen_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (tenant_id, device_id) DO UPDATE
            SET device_name = coalesce(EXCLUDED.device_name, devices.device_name),
                last_seen_at = now()
            WHERE devices.user_id = EXCLUDED.user_id
         RETURNING revoked_at IS NOT NULL, token_generation",
    )
    .bind(tenant)
    .bind(device_id)
    .bind(user_id)
    .bind(device_name)
    .fetch_optional(&mut *conn)
    .await?;
    match bound {
        Some((false, generation)) => Ok(generation),
        Some((true, _)) => Err(AppError::DeviceRevoked),
        None => {
            // Another user's device (its row is locked by the attempt above).
            let revoked: Option<bool> = sqlx::query_scalar(
                "SELECT revoked_at IS NOT NULL FROM devices WHERE tenant_id = $1 AND device_id = $2",
            )
            .bind(tenant)
            .bind(device_id)
            .fetch_optional(&mut *conn)
            .await?;
            if revoked == Some(true) {
                Err(AppError::DeviceRevoked)
            } else {
                Err(AppError::DeviceInUse)
            }
        }
    }
}

/// Checks a username and password, as every sign-in does (the API's login and the
/// admin console's): an unknown user and a wrong password get the same answer
/// (`INVALID_CREDENTIALS`) after similar work; only the right password learns that
/// the user is disabled (`USER_DISABLED`).
pub async fn check_password(pool: &PgPool, username: &str, password: String) -> AppResult<User> {
    // Names no user can have get the wrong-credentials answer before any work.
    if username.is_empty() || username.len() > 128 || username.contains('\0') {
        return Err(AppError::InvalidCredentials);
    }
    let user = users::find_by_username(pool, username).await?;
    verify_password(user, password, username).await
}

/// The user, if `password` is its own: an unknown user (`None`) and a wrong password
/// get the same answer after similar work (a decoy hash is verified); only the right
/// password learns that the user is disabled. `name` is what the caller signed in with.
pub async fn verify_password(user: Option<User>, password: String, name: &str) -> AppResult<User> {
    let username = name;
    // Verify against a decoy when the user is unknown: same answer, similar time.
    let hash = user.as_ref().map_or(password::DECOY_HASH.to_string(), |u| {
        u.password_hash.clone()
    });
    let ok = password::verify(password, hash).await;
    let user = match user {
        Some(u) if ok => u,
        _ => {
            tracing::info!(username, "login refused");
            return Err(AppError::InvalidCredentials);
        }
    };
    if user.disabled_at.is_some() {
        tracing::info!(username, "login refused: user disabled");
        return Err(AppError::UserDisabled);
    }
    Ok(user)
}

/// Exchanges a refresh token for a new pair; the old one stops working. A refresh
/// token presented again after it was spent means two holders (theft): every token of
/// its device ends, and the device's user logs in again.
pub async fn refresh(
    pool: &PgPool,
    keys: &Keys,
    refresh_ttl: Duration,
    req: RefreshRequest,
) -> AppResult<TokenResponse> {
    let not_valid = || AppError::Unauthorized("The refresh token is not valid.".into());
    let hash = token::hash_refresh_token(&req.refresh_token);
    let mut tx = pool.begin().await?;
    // A concurrent refresh with the same token waits here for the first, then finds
    // it spent.
    let row: Option<(String, String, Uuid)> = sqlx::query_as(
        "UPDATE refresh_tokens SET used_at = now()
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING tenant_id, device_id, user_id",
    )
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((tenant, device_id, user_id)) = row else {
        let spent: Option<(String, String)> = sqlx::query_as(
            "SELECT tenant_id, device_id FROM refresh_tokens
             WHERE token_hash = $1 AND used_at IS NOT NULL",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((tenant, device_id)) = spent else {
            return Err(not_valid());
        };
        session::end_device_tokens(&mut tx, &tenant, &device_id).await?;
        tx.commit().await?;
        tracing::warn!(
            tenant,
            device_id,
            "a spent refresh token was presented again; every token of the device was ended"
        );
        return Err(AppError::Unauthorized(
            "This refresh token was already used, so it may have been stolen: every token of this device has been ended. Log in again."
                .into(),
        ));
    };
    // Shared lock: ending the device's tokens (a new generation) waits for this
    // refresh, then deletes the token issued here too.
    let bound: Option<(bool, Uuid, i64, bool)> = sqlx::query_as(
        "SELECT d.revoked_at IS NOT NULL, d.user_id, d.token_generation, u.disabled_at IS NOT NULL
         FROM devices d JOIN users u ON u.id = d.user_id
         WHERE d.tenant_id = $1 AND d.device_id = $2
         FOR SHARE OF d",
    )
    .bind(&tenant)
    .bind(&device_id)
    .fetch_optional(&mut *tx)
    .await?;
    let generation = match bound {
        Some((true, ..)) => return Err(AppError::DeviceRevoked),
        Some((false, owner, _, true)) if owner == user_id => return Err(AppError::UserDisabled),
        Some((false, owner, generation, false)) if owner == user_id => generation,
        _ => return Err(not_valid()),
    };
    let user = users::find_by_id(&mut *tx, user_id)
        .await?
        .ok_or_else(not_valid)?;
    // Spent tokens are kept until they expire, so that a replay is recognised.
    sqlx::query(
        "DELETE FROM refresh_tokens WHERE tenant_id = $1 AND device_id = $2 AND expires_at < now()",
    )
    .bind(&tenant)
    .bind(&device_id)
    .execute(&mut *tx)
    .await?;
    let response = issue_pair(&mut tx, keys, refresh_ttl, &user, &device_id, generation).await?;
    tx.commit().await?;
    Ok(response)
}

async fn issue_pair(
    tx: &mut sqlx::PgConnection,
    keys: &Keys,
    refresh_ttl: Duration,
    user: &User,
    device_id: &str,
    generation: i64,
) -> AppResult<TokenResponse> {
    let access_token = keys.issue(Claims {
        sub: user.id,
        username: user.username.clone(),
        tenant: user.tenant_id.clone(),
        role: user.role.clone(),
        store_id: user.store_id.clone(),
        device_id: device_id.to_string(),
        generation,
        odoo_user_id: user.odoo_user_id,
        sid: None,
        user_type: None,
        tenant_id: None,
        iat: 0,
        exp: 0,
    })?;
    let refresh_token = token::new_refresh_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, tenant_id, device_id, user_id, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(token::hash_refresh_token(&refresh_token))
    .bind(&user.tenant_id)
    .bind(device_id)
    .bind(user.id)
    .bind(refresh_ttl.as_secs() as f64)
    .execute(&mut *tx)
    .await?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: keys.access_ttl.as_secs(),
        user: UserInfo {
            id: user.id,
            username: user.username.clone(),
            role: user.role.clone(),
            store_id: user.store_id.clone(),
            tenant: user.tenant_id.clone(),
        },
        device_id: device_id.to_string(),
    })
}
