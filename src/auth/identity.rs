//! A user's identity for apps built on BridgeCore: an email (the name BridgeCore's
//! tenant login takes; unique across tenants, as usernames are) and an Odoo user id
//! (the `user_id` BridgeCore's smart-sync routes name; unique within a tenant). Both
//! optional, set with `nas-sync user add/set`, the admin API and the console
//! (stored by `users`).

use serde::{Deserialize, Deserializer, Serialize};

/// The identity given to a new user.
// Named `UserIdentity` in the document: a bare `Identity` is too generic a class
// name for the clients generated from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = UserIdentity)]
pub struct Identity {
    #[schema(max_length = 254)]
    pub email: Option<String>,
    #[schema(minimum = 1)]
    pub odoo_user_id: Option<i64>,
}

/// A change of identity: an absent field stays, `null` clears it.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserIdentityChange)]
pub struct IdentityChange {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 254)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub odoo_user_id: Option<Option<i64>>,
}

/// A field that is present (`null` included) is `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `email` trimmed, or why it is not one.
pub fn check_email(email: &str) -> Result<String, String> {
    let email = email.trim();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email.to_string())
    } else {
        Err(format!("'{email}' is not an email address"))
    }
}

/// `id`, or why it is not an Odoo user id.
pub fn check_odoo_user_id(id: i64) -> Result<i64, String> {
    if id > 0 {
        Ok(id)
    } else {
        Err(format!("{id} is not an Odoo user id (a positive integer)"))
    }
}

impl Identity {
    /// The identity with its values checked (the email trimmed), or the field refused
    /// and why.
    pub fn checked(self) -> Result<Identity, (&'static str, String)> {
        Ok(Identity {
            email: (self.email.as_deref().map(check_email).transpose())
                .map_err(|m| ("email", m))?,
            odoo_user_id: (self.odoo_user_id.map(check_odoo_user_id).transpose())
                .map_err(|m| ("odoo_user_id", m))?,
        })
    }
}

/// The field and message of a unique violation of an identity, if it was one.
pub fn taken(e: &sqlx::Error) -> Option<(&'static str, &'static str)> {
    let db = e.as_database_error()?;
    match db.constraint()? {
        "users_email_key" => Some(("email", "this email is already another user's")),
        "users_odoo_user_id_key" => Some((
            "odoo_user_id",
            "this Odoo user id is already another user's in the tenant",
        )),
        _ => None,
    }
}
