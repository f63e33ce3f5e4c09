//! Users: created and managed by the operator (`nas-sync user add`, `list`, `disable`,
//! `enable`, `passwd`), looked up at login. Disabling a user or giving it a new
//! password ends every token of its devices (`session::end_user_tokens`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::identity::{self, Identity, IdentityChange};
use super::{Role, password, session};

/// A stored user.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: String,
    pub username: String,
    pub role: String,
    pub store_id: Option<String>,
    pub password_hash: String,
    /// When the operator disabled the user; a disabled user cannot log in.
    pub disabled_at: Option<DateTime<Utc>>,
    /// For BridgeCore's tenant login (`identity`).
    pub email: Option<String>,
    /// For BridgeCore's smart-sync routes (`identity`).
    pub odoo_user_id: Option<i64>,
}

const COLUMNS: &str =
    "id, tenant_id, username, role, store_id, password_hash, disabled_at, email, odoo_user_id";

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    #[error("user '{0}' already exists")]
    Exists(String),
    #[error("a store user needs --store STORE_ID")]
    StoreRequired,
    #[error("{0}")]
    Invalid(String),
    /// An email or Odoo user id refused (the field, why).
    #[error("{1}")]
    Identity(&'static str, String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Creates a user; usernames are unique across tenants, because login names no tenant.
pub async fn add(
    pool: &PgPool,
    tenant: &str,
    username: &str,
    role: Role,
    store_id: Option<&str>,
    password: &str,
) -> Result<User, AddUserError> {
    add_with(
        pool,
        tenant,
        username,
        role,
        store_id,
        password,
        Identity::default(),
    )
    .await
}

/// As `add`, with an email and an Odoo user id (`identity`).
pub async fn add_with(
    pool: &PgPool,
    tenant: &str,
    username: &str,
    role: Role,
    store_id: Option<&str>,
    password: &str,
    identity: Identity,
) -> Result<User, AddUserError> {
    let identity = identity
        .checked()
        .map_err(|(field, m)| AddUserError::Identity(field, m))?;
    if username.trim().is_empty() || username.len() > 128 {
        return Err(AddUserError::Invalid(
            "the username must have 1 to 128 characters".into(),
        ));
    }
    if tenant.trim().is_empty() || tenant.len() > 128 {
        return Err(AddUserError::Invalid(
            "the tenant must have 1 to 128 characters".into(),
        ));
    }
    if password.is_empty() {
        return Err(AddUserError::Invalid("the password is empty".into()));
    }
    let store_id = match (role, store_id) {
        (Role::Store, None) => return Err(AddUserError::StoreRequired),
        (Role::Store, Some(s)) if s.trim().is_empty() => return Err(AddUserError::StoreRequired),
        (_, s) => s,
    };
    let hash = password::hash(password.to_string()).await?;
    let result = sqlx::query_as::<_, User>(
        "INSERT INTO users (tenant_id, username, role, store_id, password_hash, email, odoo_user_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (username) DO NOTHING
         RETURNING id, tenant_id, username, role, store_id, password_hash, disabled_at, email,
                   odoo_user_id",
    )
    .bind(tenant)
    .bind(username)
    .bind(role.as_str())
    .bind(store_id)
    .bind(hash)
    .bind(identity.email)
    .bind(identity.odoo_user_id)
    .fetch_optional(pool)
    .await
    .map_err(|e| match identity::taken(&e) {
        Some((field, m)) => AddUserError::Identity(field, m.into()),
        None => AddUserError::Other(e.into()),
    })?;
    result.ok_or_else(|| AddUserError::Exists(username.to_string()))
}

pub async fn find_by_username(pool: &PgPool, username: &str) -> sqlx::Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE username = $1");
    sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql))
        .bind(username)
        .fetch_optional(pool)
        .await
}

/// The user with this email, in any case (`identity`).
pub async fn find_by_email(pool: &PgPool, email: &str) -> sqlx::Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1)");
    sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql))
        .bind(email)
        .fetch_optional(pool)
        .await
}

pub async fn find_by_id(conn: impl sqlx::PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A user as `nas-sync user list` and the admin API show it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Listed {
    pub username: String,
    pub role: String,
    pub store_id: Option<String>,
    pub tenant_id: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub email: Option<String>,
    pub odoo_user_id: Option<i64>,
}

/// Every user, or those of one tenant, by tenant and name.
pub async fn list(pool: &PgPool, tenant: Option<&str>) -> sqlx::Result<Vec<Listed>> {
    sqlx::query_as(
        "SELECT username, role, store_id, tenant_id, disabled_at, created_at, email, odoo_user_id
         FROM users
         WHERE $1::text IS NULL OR tenant_id = $1
         ORDER BY tenant_id, username",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// Why a user could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeUserError {
    #[error("no user '{0}' (see `nas-sync user list`)")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ChangeUserError {
    fn from(e: sqlx::Error) -> Self {
        ChangeUserError::Other(e.into())
    }
}

/// Disables a user (its tokens end at once, it cannot log in) or enables it again (it
/// logs in anew: ended tokens stay ended). Returns whether it was disabled before.
pub async fn set_disabled(
    pool: &PgPool,
    username: &str,
    disabled: bool,
) -> Result<bool, ChangeUserError> {
    let mut tx = pool.begin().await?;
    let was: Option<(Uuid, bool)> = sqlx::query_as(
        "SELECT id, disabled_at IS NOT NULL FROM users WHERE username = $1 FOR UPDATE",
    )
    .bind(username)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, was_disabled)) = was else {
        return Err(ChangeUserError::Unknown(username.to_string()));
    };
    sqlx::query(
        "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
         WHERE id = $1",
    )
    .bind(id)
    .bind(disabled)
    .execute(&mut *tx)
    .await?;
    if disabled {
        session::end_user_tokens(&mut tx, id).await?;
    }
    tx.commit().await?;
    tracing::warn!(
        username,
        disabled,
        "user {}",
        if disabled { "disabled" } else { "enabled" }
    );
    Ok(was_disabled)
}

/// Gives a user a new password; every token of its devices ends (they log in again).
pub async fn set_password(
    pool: &PgPool,
    username: &str,
    password: &str,
) -> Result<(), ChangeUserError> {
    if password.is_empty() {
        return Err(ChangeUserError::Invalid("the password is empty".into()));
    }
    let hash = password::hash(password.to_string()).await?;
    let mut tx = pool.begin().await?;
    let id: Option<Uuid> =
        sqlx::query_scalar("UPDATE users SET password_hash = $2 WHERE username = $1 RETURNING id")
            .bind(username)
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(id) = id else {
        return Err(ChangeUserError::Unknown(username.to_string()));
    };
    session::end_user_tokens(&mut tx, id).await?;
    tx.commit().await?;
    tracing::warn!(username, "password changed; the user's tokens were ended");
    Ok(())
}

/// Changes the identity of `username` (of `tenant`, when given: a manager reaches only
/// its own tenant's users).
pub async fn set_identity(
    pool: &PgPool,
    tenant: Option<&str>,
    username: &str,
    change: IdentityChange,
) -> Result<Identity, ChangeUserError> {
    let email = match change.email {
        Some(Some(e)) => Some(Some(
            identity::check_email(&e).map_err(ChangeUserError::Invalid)?,
        )),
        other => other,
    };
    let odoo_user_id = match change.odoo_user_id {
        Some(Some(id)) => Some(Some(
            identity::check_odoo_user_id(id).map_err(ChangeUserError::Invalid)?,
        )),
        other => other,
    };
    let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
        "UPDATE users SET
             email = CASE WHEN $3 THEN $4 ELSE email END,
             odoo_user_id = CASE WHEN $5 THEN $6 ELSE odoo_user_id END
         WHERE username = $1 AND ($2::text IS NULL OR tenant_id = $2)
         RETURNING email, odoo_user_id",
    )
    .bind(username)
    .bind(tenant)
    .bind(email.is_some())
    .bind(email.flatten())
    .bind(odoo_user_id.is_some())
    .bind(odoo_user_id.flatten())
    .fetch_optional(pool)
    .await
    .map_err(|e| match identity::taken(&e) {
        Some((_, m)) => ChangeUserError::Invalid(m.into()),
        None => ChangeUserError::from(e),
    })?;
    let Some((email, odoo_user_id)) = row else {
        return Err(ChangeUserError::Unknown(username.to_string()));
    };
    tracing::info!(username, ?email, ?odoo_user_id, "user identity changed");
    Ok(Identity {
        email,
        odoo_user_id,
    })
}
