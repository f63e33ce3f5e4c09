//! Authentication: password hashes, access and refresh tokens, the `Principal` (the
//! caller's identity; its HTTP extractor lives in `api::principal`), users, devices and
//! their sessions (who owns a device id, and ending its tokens).

pub mod console;
pub mod devices;
pub mod identity;
pub mod manage;
pub mod password;
pub mod principal;
pub mod remembered;
pub mod service;
pub mod session;
pub mod tenant;
pub mod token;
pub mod users;

pub use principal::Principal;

use serde::{Deserialize, Serialize};

/// What a user may do: managers read and write everything of their tenant; store
/// devices only what the table registry allows, within their store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Manager,
    Store,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Store => "store",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "manager" => Some(Role::Manager),
            "store" => Some(Role::Store),
            _ => None,
        }
    }
}

/// A `device_id` is 3 to 128 characters of `[A-Za-z0-9._:-]` (docs/contract.md §3).
pub fn valid_device_id(id: &str) -> bool {
    (3..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(valid_device_id("store-iphone-001"));
        assert!(valid_device_id("a.b:c_d"));
        assert!(!valid_device_id("ab"));
        assert!(!valid_device_id("has space"));
        assert!(!valid_device_id("ünïcode"));
        assert!(!valid_device_id(&"x".repeat(129)));
        assert!(valid_device_id(&"x".repeat(128)));
    }
}
