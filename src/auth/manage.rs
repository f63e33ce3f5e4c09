//! What a tenant's managers may do to its users and devices, from the admin API
//! (`/api/v1/admin/...`) and the admin console alike: list, add, disable, enable and
//! give a new password to users; list, revoke and release devices. Each action checks
//! that the caller is a manager and that the user or device is of the caller's tenant,
//! then calls the same functions as the command line (`users`, `devices`, `session`).

use serde::Deserialize;
use sqlx::PgPool;

use super::devices::{self, Device};
use super::identity::{Identity, IdentityChange};
use super::session::{self, Released};
use super::users::{self, AddUserError, ChangeUserError, Listed, User};
use super::{Principal, Role};
use crate::error::{AppError, AppResult};

/// `POST /api/v1/admin/users` body (and the console's "Add user" form).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    /// `manager` or `store`.
    pub role: String,
    /// The user's store; required for role `store`.
    pub store: Option<String>,
    /// The email BridgeCore's tenant login takes (unique across tenants).
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// The Odoo user id BridgeCore's smart-sync routes name (unique in the tenant).
    #[schema(minimum = 1)]
    pub odoo_user_id: Option<i64>,
}

/// `POST /api/v1/admin/users/{username}/password` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

/// Only managers administer their tenant.
pub fn require_manager(who: &Principal) -> AppResult<()> {
    if who.role == Role::Manager {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only managers may administer users and devices.".into(),
        ))
    }
}

/// The tenant's users, by name.
pub async fn list_users(pool: &PgPool, who: &Principal) -> AppResult<Vec<Listed>> {
    require_manager(who)?;
    Ok(users::list(pool, Some(&who.tenant)).await?)
}

/// Adds a user to the caller's tenant.
pub async fn add_user(pool: &PgPool, who: &Principal, new: NewUser) -> AppResult<Listed> {
    require_manager(who)?;
    let role = Role::parse(&new.role)
        .ok_or_else(|| AppError::validation("role", "must be manager or store"))?;
    if new.username.contains('\0') || new.username.trim() != new.username {
        return Err(AppError::validation(
            "username",
            "must not start or end with spaces or hold NUL characters",
        ));
    }
    if new.password.len() < 8 || new.password.len() > 1024 || new.password.contains('\0') {
        return Err(AppError::validation(
            "password",
            "must have 8 to 1024 characters, without NUL",
        ));
    }
    let store = new
        .store
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if store.is_some_and(|s| s.len() > 128 || s.contains('\0')) {
        return Err(AppError::validation(
            "store",
            "must have at most 128 characters, without NUL",
        ));
    }
    // A manager's store is meaningless; only store users keep one.
    let store = if role == Role::Store { store } else { None };
    let identity = Identity {
        email: new.email,
        odoo_user_id: new.odoo_user_id,
    };
    let user = users::add_with(
        pool,
        &who.tenant,
        &new.username,
        role,
        store,
        &new.password,
        identity,
    )
    .await
    .map_err(|e| match e {
        AddUserError::Exists(_) => AppError::Conflict {
            code: "USER_EXISTS",
            message: "A user with this username already exists.".into(),
        },
        AddUserError::StoreRequired => AppError::validation("store", "a store user needs a store"),
        AddUserError::Invalid(m) => AppError::validation("username", m),
        AddUserError::Identity(field, m) => AppError::validation(field, m),
        AddUserError::Other(e) => AppError::Internal(e),
    })?;
    tracing::warn!(by = %who.username, username = %user.username, role = %user.role, "user added");
    users::list(pool, Some(&who.tenant))
        .await?
        .into_iter()
        .find(|u| u.username == user.username)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the new user is not listed")))
}

/// The caller's tenant's user `username`, or `NOT_FOUND` (other tenants' users are
/// not shown to exist).
async fn tenant_user(pool: &PgPool, who: &Principal, username: &str) -> AppResult<User> {
    require_manager(who)?;
    users::find_by_username(pool, username)
        .await?
        .filter(|u| u.tenant_id == who.tenant)
        .ok_or_else(|| AppError::NotFound("No such user.".into()))
}

fn change_error(e: ChangeUserError) -> AppError {
    match e {
        ChangeUserError::Unknown(_) => AppError::NotFound("No such user.".into()),
        ChangeUserError::Invalid(m) => AppError::validation("password", m),
        ChangeUserError::Other(e) => AppError::Internal(e),
    }
}

/// Disables (its tokens and console sessions end) or enables a user of the tenant. A
/// manager cannot disable itself (that would lock the console's last door).
pub async fn set_disabled(
    pool: &PgPool,
    who: &Principal,
    username: &str,
    disabled: bool,
) -> AppResult<()> {
    let user = tenant_user(pool, who, username).await?;
    if disabled && user.id == who.user_id {
        return Err(AppError::validation(
            "username",
            "you cannot disable yourself",
        ));
    }
    users::set_disabled(pool, &user.username, disabled)
        .await
        .map_err(change_error)?;
    tracing::warn!(by = %who.username, username, disabled, "user changed from the admin API");
    Ok(())
}

/// Gives a user of the tenant a new password; its tokens end.
pub async fn set_password(
    pool: &PgPool,
    who: &Principal,
    username: &str,
    password: &str,
) -> AppResult<()> {
    if password.len() < 8 || password.len() > 1024 || password.contains('\0') {
        return Err(AppError::validation(
            "password",
            "must have 8 to 1024 characters, without NUL",
        ));
    }
    let user = tenant_user(pool, who, username).await?;
    users::set_password(pool, &user.username, password)
        .await
        .map_err(change_error)?;
    tracing::warn!(by = %who.username, username, "password reset from the admin API");
    Ok(())
}

/// The tenant's devices, most recently synced first (callers flush the pull ledger
/// first, so last pulls are current: `sync::activity::PullLedger::flush_now`).
pub async fn list_devices(pool: &PgPool, who: &Principal) -> AppResult<Vec<Device>> {
    require_manager(who)?;
    Ok(devices::list(pool, Some(&who.tenant)).await?)
}

/// A manager does not revoke or release the device it is calling from: that would end
/// its own session in the middle of its work. Signing out is `POST /api/v1/auth/logout`.
fn not_own_device(who: &Principal, device_id: &str) -> AppResult<()> {
    if device_id == who.device_id {
        return Err(AppError::validation(
            "device_id",
            "this is the device you are using; sign out instead (POST /api/v1/auth/logout)",
        ));
    }
    Ok(())
}

/// Revokes a device of the tenant: its tokens fail with `DEVICE_REVOKED` at once.
pub async fn revoke_device(pool: &PgPool, who: &Principal, device_id: &str) -> AppResult<()> {
    require_manager(who)?;
    not_own_device(who, device_id)?;
    if !devices::revoke(pool, &who.tenant, device_id).await? {
        return Err(AppError::NotFound("No such device.".into()));
    }
    tracing::warn!(by = %who.username, device_id, "device revoked from the admin API");
    Ok(())
}

/// Releases a device of the tenant: its tokens end and its sync state is forgotten.
pub async fn release_device(pool: &PgPool, who: &Principal, device_id: &str) -> AppResult<()> {
    require_manager(who)?;
    not_own_device(who, device_id)?;
    match session::release(pool, &who.tenant, device_id).await? {
        Released::Done => Ok(()),
        Released::Unknown => Err(AppError::NotFound("No such device.".into())),
        Released::Revoked => Err(AppError::Conflict {
            code: "DEVICE_REVOKED",
            message: "This device is revoked and stays revoked; it cannot be released.".into(),
        }),
    }
}

/// Sets or clears a user's email and Odoo user id (`identity`).
pub async fn set_identity(
    pool: &PgPool,
    who: &Principal,
    username: &str,
    change: IdentityChange,
) -> AppResult<Identity> {
    require_manager(who)?;
    users::set_identity(pool, Some(&who.tenant), username, change)
        .await
        .map_err(|e| match e {
            ChangeUserError::Unknown(_) => AppError::NotFound("No such user.".into()),
            ChangeUserError::Invalid(m) => AppError::validation("identity", m),
            ChangeUserError::Other(e) => AppError::Internal(e),
        })
}
