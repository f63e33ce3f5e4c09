//! `Principal`: who is calling, from which device, with which role and store. The
//! web layer builds it from a verified bearer token (`api::principal`); the domains
//! take it as the caller's identity and never see the request it came from.

use uuid::Uuid;

use super::Role;
use crate::error::AppError;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: Uuid,
    pub username: String,
    pub tenant: String,
    pub role: Role,
    pub store_id: Option<String>,
    pub device_id: String,
    /// The device's token generation the access token was issued under.
    pub generation: i64,
    /// The user's Odoo user id, as the access token carries it.
    pub odoo_user_id: Option<i64>,
    /// When the access token expires (Unix seconds); a WebSocket closes then.
    pub expires_at: i64,
}

impl Principal {
    /// A `device_id` in a body or query must be the token's own device.
    pub fn check_device(&self, device_id: Option<&str>) -> Result<(), AppError> {
        match device_id {
            Some(d) if d != self.device_id => Err(AppError::Forbidden(
                "device_id does not match the device this token was issued to.".into(),
            )),
            _ => Ok(()),
        }
    }
}
