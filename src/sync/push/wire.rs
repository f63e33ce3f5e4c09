//! The push route's request and answer, as devices send and read them
//! (docs/contract.md §5).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// `POST /api/v1/sync/push` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PushRequest {
    pub device_id: Option<String>,
    /// Makes the push idempotent: the same id from the same device gets the same answer.
    #[schema(min_length = 1, max_length = 128)]
    pub push_id: Option<String>,
    /// The device clock when it sent the push (informative).
    #[schema(value_type = Option<String>)]
    pub timestamp: Option<Value>,
    /// Rows per table.
    #[schema(value_type = Object)]
    pub changes: BTreeMap<String, Value>,
    /// Apply nothing when any row fails.
    pub stop_on_error: Option<bool>,
}

/// A conflict, as reported to the device.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConflictReport {
    pub table: String,
    pub record_id: Uuid,
    #[schema(value_type = Object)]
    pub client_data: Value,
    /// The server row before the push.
    #[schema(value_type = Object)]
    pub server_data: Value,
    /// The rule applied.
    pub resolution: String,
    /// `server`, `client`, `merged` (a three-way merge took fields of both), or
    /// `pending` (left open in the conflict inbox, see `conflict_id`).
    pub winner: String,
    /// The open conflict to resolve (`manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_id: Option<Uuid>,
}

/// A row that was not applied.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowErrorReport {
    pub table: String,
    pub record_id: Option<String>,
    pub code: String,
    pub message: String,
}

/// The answer to a push.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushResponse {
    pub success: bool,
    pub timestamp: DateTime<Utc>,
    /// The device's current pull cursor (pushes do not move it).
    pub cursor: Option<String>,
    #[schema(value_type = Object)]
    pub applied: BTreeMap<String, Vec<Value>>,
    pub conflicts: Vec<ConflictReport>,
    pub errors: Vec<RowErrorReport>,
}
