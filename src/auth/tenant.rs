//! BridgeCore's tenant login, for apps built on BridgeCore that change only their base
//! URL: a user signs in with its email (`identity`), not with a device. The session is
//! the user's (`user_sessions`): its access tokens name no device (`Claims::sid`), and
//! each BridgeCore sync call names the device it syncs, registered to the user at its
//! first use under the rules a device login follows (another user's device is
//! `DEVICE_IN_USE`, a revoked one `DEVICE_REVOKED`; a released one is free again).
//!
//! Its refresh token is not rotated: BridgeCore's package keeps the refresh token it
//! got at login and presents it at every refresh, so rotation with reuse detection
//! (nas-sync's own `/api/v1/auth/refresh`) would end the session at the second
//! refresh. It ends at logout, when the user is disabled or gets a new password
//! (`session::end_user_tokens`), and when it expires.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::token::{self, Claims, Keys};
use super::users::{self, User};
use super::{Principal, service};
use crate::error::{AppError, AppResult};

/// Deletes the sessions that ended or expired before `$1` (handed to the history's
/// retention by `app`).
pub const DELETE_OLD_SESSIONS: &str =
    "DELETE FROM user_sessions WHERE coalesce(ended_at, expires_at) < $1";

/// `POST /api/v1/auth/tenant/login` body (BridgeCore's `LoginRequest`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TenantLogin {
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    pub password: String,
    /// Odoo fields to read at login; accepted, not read (nothing is added).
    #[schema(value_type = Option<Object>)]
    pub odoo_fields_check: Option<Value>,
}

/// The user in BridgeCore's shapes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantUser {
    pub id: Uuid,
    pub email: String,
    /// nas-sync keeps no full name: the username.
    pub full_name: String,
    pub role: String,
    pub odoo_user_id: Option<i64>,
}

/// The tenant in BridgeCore's shapes (the Odoo fields come from the tenant's Odoo
/// connection, when it has one).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct TenantInfo {
    pub id: String,
    pub name: String,
    pub slug: String,
    /// Always `active`.
    pub status: String,
    pub odoo_database: Option<String>,
    pub odoo_version: Option<String>,
}

impl TenantInfo {
    pub fn of(tenant: &str) -> TenantInfo {
        TenantInfo {
            id: tenant.to_string(),
            name: tenant.to_string(),
            slug: tenant.to_string(),
            status: "active".into(),
            ..TenantInfo::default()
        }
    }
}

/// The login answer (BridgeCore's `TenantSession`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantSession {
    pub access_token: String,
    pub refresh_token: String,
    /// `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub user: TenantUser,
    pub tenant: TenantInfo,
}

/// The refresh answer: a new access token; the refresh token stays the same.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantRefreshed {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

fn user_of(user: &User) -> TenantUser {
    TenantUser {
        id: user.id,
        email: user.email.clone().unwrap_or_default(),
        full_name: user.username.clone(),
        role: user.role.clone(),
        odoo_user_id: user.odoo_user_id,
    }
}

fn access_claims(user: &User, session: Uuid) -> Claims {
    Claims {
        sub: user.id,
        username: user.username.clone(),
        tenant: user.tenant_id.clone(),
        role: user.role.clone(),
        store_id: user.store_id.clone(),
        device_id: String::new(),
        generation: 0,
        odoo_user_id: user.odoo_user_id,
        sid: Some(session),
        user_type: Some("tenant".into()),
        tenant_id: Some(user.tenant_id.clone()),
        iat: 0,
        exp: 0,
    }
}

/// Checks the email and password (as `service::check_password` does for usernames)
/// and starts a session of the user.
pub async fn login(
    pool: &PgPool,
    keys: &Keys,
    refresh_ttl: Duration,
    req: TenantLogin,
) -> AppResult<TenantSession> {
    let email = req.email.trim();
    let user = if email.is_empty() || email.len() > 254 || email.contains('\0') {
        None
    } else {
        users::find_by_email(pool, email).await?
    };
    let user = service::verify_password(user, req.password, email).await?;
    let refresh_token = token::new_refresh_token();
    let session: Uuid = sqlx::query_scalar(
        "INSERT INTO user_sessions (tenant_id, user_id, refresh_hash, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
         RETURNING id",
    )
    .bind(&user.tenant_id)
    .bind(user.id)
    .bind(token::hash_refresh_token(&refresh_token))
    .bind(refresh_ttl.as_secs_f64())
    .fetch_one(pool)
    .await?;
    let access_token = keys.issue(access_claims(&user, session))?;
    tracing::info!(username = %user.username, tenant = %user.tenant_id, session = %session, "tenant login");
    Ok(TenantSession {
        access_token,
        refresh_token,
        token_type: "bearer",
        expires_in: keys.access_ttl.as_secs() as i64,
        user: user_of(&user),
        tenant: TenantInfo::of(&user.tenant_id),
    })
}

/// A new access token for the session of `refresh_token`, which stays valid.
pub async fn refresh(
    pool: &PgPool,
    keys: &Keys,
    refresh_token: &str,
) -> AppResult<TenantRefreshed> {
    let found: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, user_id FROM user_sessions
         WHERE refresh_hash = $1 AND ended_at IS NULL AND expires_at > now()",
    )
    .bind(token::hash_refresh_token(refresh_token))
    .fetch_optional(pool)
    .await?;
    let not_valid =
        || AppError::Unauthorized("The refresh token is not valid; log in again.".into());
    let (session, user_id) = found.ok_or_else(not_valid)?;
    let user = users::find_by_id(pool, user_id)
        .await?
        .ok_or_else(not_valid)?;
    if user.disabled_at.is_some() {
        return Err(AppError::UserDisabled);
    }
    Ok(TenantRefreshed {
        access_token: keys.issue(access_claims(&user, session))?,
        token_type: "bearer",
        expires_in: keys.access_ttl.as_secs() as i64,
    })
}

/// Checks that the session is current and its user not disabled.
pub async fn check(pool: &PgPool, session: Uuid) -> AppResult<()> {
    let row: Option<(bool, bool)> = sqlx::query_as(
        "SELECT s.ended_at IS NULL AND s.expires_at > now(), u.disabled_at IS NOT NULL
         FROM user_sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
    )
    .bind(session)
    .fetch_optional(pool)
    .await?;
    match row {
        Some((true, false)) => Ok(()),
        Some((_, true)) => Err(AppError::UserDisabled),
        _ => Err(ended()),
    }
}

fn ended() -> AppError {
    AppError::Unauthorized("This session has ended (signed out or expired); log in again.".into())
}

/// Ends the session (logout): its access and refresh tokens stop working.
pub async fn logout(pool: &PgPool, who: &Principal, session: Uuid) -> AppResult<()> {
    sqlx::query("UPDATE user_sessions SET ended_at = now() WHERE id = $1 AND ended_at IS NULL")
        .bind(session)
        .execute(pool)
        .await?;
    tracing::info!(username = %who.username, tenant = %who.tenant, session = %session, "tenant logout");
    Ok(())
}

/// The caller of a session, bound to the device a sync call names: the session is
/// checked, and the device registered to the user at its first use (another user's
/// device is `DEVICE_IN_USE`, a revoked one `DEVICE_REVOKED`).
pub async fn bind_device(
    pool: &PgPool,
    who: &Principal,
    session: Uuid,
    device_id: &str,
) -> AppResult<Principal> {
    if !super::valid_device_id(device_id) {
        return Err(AppError::validation(
            "device_id",
            "must be 3 to 128 characters of A-Z a-z 0-9 . _ : -",
        ));
    }
    check(pool, session).await?;
    let mut conn = pool.acquire().await?;
    let generation =
        service::bind_device(&mut conn, &who.tenant, who.user_id, device_id, None).await?;
    Ok(Principal {
        device_id: device_id.to_string(),
        generation,
        ..who.clone()
    })
}

/// When the user was created and last signed in with the tenant login.
pub async fn user_times(
    pool: &PgPool,
    user_id: Uuid,
) -> sqlx::Result<(
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
)> {
    sqlx::query_as(
        "SELECT u.created_at, (SELECT max(s.created_at) FROM user_sessions s WHERE s.user_id = u.id)
         FROM users u WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await
}

/// The user's email (BridgeCore's `me` names the user by it).
pub async fn email_of(pool: &PgPool, user_id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(pool)
        .await
}
