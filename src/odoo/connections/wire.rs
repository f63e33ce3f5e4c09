//! The connection routes' bodies and the view they answer with (never the key), and
//! the checks of the values a manager sends.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// `POST /api/v1/odoo/connections` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Odoo's base URL, e.g. `https://erp.example.com`.
    #[schema(format = "uri", pattern = "^https?://", max_length = 2000)]
    pub url: String,
    #[schema(min_length = 1, max_length = 200)]
    pub database: String,
    #[schema(min_length = 1, max_length = 200)]
    pub username: String,
    /// An API key (or password) of that user; stored, never returned.
    #[schema(min_length = 1, max_length = 500)]
    pub api_key: String,
    /// Models to mirror; the six defaults when absent.
    pub models: Option<Vec<String>>,
    /// Days of history to mirror first (90); 0 mirrors everything.
    #[schema(minimum = 0, maximum = 36_500)]
    pub initial_range_days: Option<i32>,
    /// Records per batch (200).
    #[schema(minimum = 1, maximum = 5000)]
    pub batch_size: Option<i32>,
    /// Seconds re-read behind Odoo's clock at each poll, for transactions that commit
    /// late with an older write_date (120).
    #[schema(minimum = 0, maximum = 86_400)]
    pub safety_lag_seconds: Option<i32>,
    /// Seconds between incremental polls (10).
    #[schema(minimum = 1, maximum = 86_400)]
    pub poll_interval_seconds: Option<i32>,
}

/// `PATCH /api/v1/odoo/connections/{id}` body: a new key (checked with Odoo first)
/// and pacing settings.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    /// A new API key for the same user (Odoo keys expire).
    #[schema(min_length = 1, max_length = 500)]
    pub api_key: Option<String>,
    #[schema(minimum = 1, maximum = 5000)]
    pub batch_size: Option<i32>,
    #[schema(minimum = 0, maximum = 86_400)]
    pub safety_lag_seconds: Option<i32>,
    #[schema(minimum = 1, maximum = 86_400)]
    pub poll_interval_seconds: Option<i32>,
}

/// A connection as routes show it (no key).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: Uuid,
    pub url: String,
    pub database: String,
    pub username: String,
    pub protocol: String,
    pub server_version: String,
    pub models: Vec<String>,
    pub initial_range_days: i32,
    pub batch_size: i32,
    pub safety_lag_seconds: i32,
    pub poll_interval_seconds: i32,
    /// Same as `sync_status`.
    pub status: String,
    pub sync_status: String,
    pub first_mirror_done_at: Option<DateTime<Utc>>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Default models this Odoo does not serve, with the reason (creation only).
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub skipped_models: Map<String, Value>,
}

/// `value` (or `default`) when within `min..=max`, else `VALIDATION_FAILED` naming
/// `field`.
pub(super) fn bounded(
    field: &str,
    value: Option<i32>,
    default: i32,
    min: i32,
    max: i32,
) -> AppResult<i32> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(AppError::validation(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(v)
}

/// A trimmed, non-empty text of at most `max` bytes without NUL.
pub(super) fn text(field: &str, value: &str, max: usize) -> AppResult<String> {
    let v = value.trim();
    if v.is_empty() || v.len() > max || v.contains('\0') {
        return Err(AppError::validation(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    Ok(v.to_string())
}
