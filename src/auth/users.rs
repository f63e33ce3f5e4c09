//! Users: created by the operator (`nas-sync user add`), looked up at login.

use sqlx::PgPool;
use uuid::Uuid;

use super::{Role, password};

/// A stored user.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: String,
    pub username: String,
    pub role: String,
    pub store_id: Option<String>,
    pub password_hash: String,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    #[error("user '{0}' already exists")]
    Exists(String),
    #[error("a store user needs --store STORE_ID")]
    StoreRequired,
    #[error("{0}")]
    Invalid(String),
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
        "INSERT INTO users (tenant_id, username, role, store_id, password_hash)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (username) DO NOTHING
         RETURNING id, tenant_id, username, role, store_id, password_hash",
    )
    .bind(tenant)
    .bind(username)
    .bind(role.as_str())
    .bind(store_id)
    .bind(hash)
    .fetch_optional(pool)
    .await
    .map_err(anyhow::Error::from)?;
    result.ok_or_else(|| AddUserError::Exists(username.to_string()))
}

pub async fn find_by_username(pool: &PgPool, username: &str) -> sqlx::Result<Option<User>> {
    sqlx::query_as::<_, User>(
        "SELECT id, tenant_id, username, role, store_id, password_hash FROM users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
}

pub async fn find_by_id(conn: impl sqlx::PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as::<_, User>(
        "SELECT id, tenant_id, username, role, store_id, password_hash FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}
