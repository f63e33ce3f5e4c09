//! The BridgeCore seeds' request and answer shapes (docs/seeds/), for the v1
//! offline-sync and the v2 smart-sync routes, and the checks of what identifies the
//! caller in them (`device_id`, `user_id`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::events::{Pulled, Rendered};
use super::state::Position;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::sync::conflicts::Conflict;

/// `POST /api/v1/offline-sync/pull` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PullV1 {
    pub device_id: Option<String>,
    /// Absent (the package's `pullUpdates` sends none): `DEFAULT_APP_TYPE`, and the
    /// answer carries the package's shape too (`data`, `total_records`, `synced_at`).
    pub app_type: Option<String>,
    /// Events after this id; absent: the stored position; 0: everything.
    #[schema(minimum = 0)]
    pub last_event_id: Option<i64>,
    /// Models (`sale.order`) or tables (`forms`) to keep (the package calls it `models`).
    #[serde(alias = "models")]
    pub models_filter: Option<Vec<String>>,
    /// Keep events of these priorities (`high`, `medium`, `low`).
    pub priority_filter: Option<Vec<String>>,
    /// Default 100, at most 5000 (the package calls it `batch_size`).
    #[schema(minimum = 1, maximum = 5000)]
    #[serde(alias = "batch_size")]
    pub limit: Option<i64>,
    /// Only 0: events are read by position, never by offset.
    #[schema(minimum = 0, maximum = 0)]
    pub offset: Option<i64>,
    /// Rows in `data` (default true).
    pub include_payload: Option<bool>,
    /// Accepted; no metadata is added.
    pub include_metadata: Option<bool>,
}

/// `POST /api/v2/sync/pull` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PullV2 {
    /// The caller's user id (or username), when sent.
    #[schema(value_type = Option<String>)]
    pub user_id: Option<Value>,
    pub device_id: Option<String>,
    /// Absent (the package sends none unless the app set one): `DEFAULT_APP_TYPE`.
    pub app_type: Option<String>,
    #[schema(minimum = 1, maximum = 5000)]
    pub limit: Option<i64>,
    /// The package calls it `models`.
    #[serde(alias = "models")]
    pub models_filter: Option<Vec<String>>,
}

/// Query of the state and reset routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StateQuery {
    #[param(value_type = Option<String>)]
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    /// One app type; absent: the most recent (state) or all (reset).
    pub app_type: Option<String>,
}

/// `POST /api/v1/offline-sync/reset` body, optional: the bridgecore_flutter package's
/// `resetSyncState` names its device here rather than in the query.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ResetBody {
    #[schema(max_length = 200)]
    pub device_id: Option<String>,
    pub app_type: Option<String>,
}

/// `user_id`, when a v2 client sends it, must be the caller's: its Odoo user id (a
/// number, as BridgeCore's clients send the `odoo_user_id` they got at login; or that
/// number as a string, in a query), its UUID or its username.
pub fn check_user(who: &Principal, user_id: Option<&Value>) -> AppResult<()> {
    let odoo = who.odoo_user_id;
    let ok = match user_id {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => odoo.is_some() && n.as_i64() == odoo,
        Some(Value::String(s)) => {
            *s == who.user_id.to_string()
                || *s == who.username
                || odoo.is_some_and(|o| *s == o.to_string())
        }
        Some(_) => false,
    };
    if ok {
        return Ok(());
    }
    if odoo.is_none() && matches!(user_id, Some(Value::Number(_))) {
        return Err(AppError::Forbidden(
            "user_id names an Odoo user, and this user has none: a manager sets it \
             (nas-sync user set --odoo-user-id, the admin API or the console); the app's \
             next token (a refresh or a login) carries it."
                .into(),
        ));
    }
    Err(AppError::Forbidden(
        "user_id is not the user this token was issued to.".into(),
    ))
}

/// `offset`: only 0 (or absent) is served.
pub fn check_offset(offset: Option<i64>) -> AppResult<()> {
    match offset {
        None | Some(0) => Ok(()),
        Some(_) => Err(AppError::validation(
            "offset",
            "events are read from last_event_id; offset must be 0",
        )),
    }
}

fn token_v1(last: i64, device: &str, at: DateTime<Utc>) -> String {
    format!("{last}_{device}_{}", at.timestamp())
}

/// The app type of a pull that names none: every table the caller reads.
pub const DEFAULT_APP_TYPE: &str = "store_manager_app";

/// The app type a pull reads.
pub fn app_type(given: Option<&str>) -> &str {
    given.unwrap_or(DEFAULT_APP_TYPE)
}

/// The v1 pull answer; `conflicts` are the device's open ones.
pub fn pulled_v1(who: &Principal, req: &PullV1, p: Pulled, conflicts: Vec<Conflict>) -> Value {
    let include_payload = req.include_payload.unwrap_or(true);
    let events: Vec<Value> = p
        .events
        .iter()
        .filter(|r| {
            req.priority_filter
                .as_ref()
                .is_none_or(|f| f.contains(&r.priority))
        })
        .map(|r| {
            let mut e = json!({
                "event_id": r.event.event_id,
                "model": r.model,
                "record_id": r.record_id,
                "uuid": r.event.row_id,
                "action": r.action,
                "timestamp": r.event.updated_at,
                "priority": r.priority,
                "category": category(r),
            });
            if include_payload {
                e["data"] = r.event.row.clone().unwrap_or(Value::Null);
            }
            e
        })
        .collect();
    // The package's `OfflineSyncPullResult` (a request without `app_type` is its):
    // the rows by model, deletions left out (its shape has no way to say them).
    let package = req.app_type.is_none().then(|| {
        let mut data: serde_json::Map<String, Value> = serde_json::Map::new();
        for r in &p.events {
            if let Some(row) = r.event.row.clone() {
                let list = data.entry(r.model.clone()).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(row);
                }
            }
        }
        let total: usize = data
            .values()
            .filter_map(Value::as_array)
            .map(Vec::len)
            .sum();
        (data, total)
    });
    let mut answer = json!({
        "success": true,
        "has_updates": !events.is_empty(),
        "new_events_count": events.len(),
        "total_available": events.len(),
        "events": events,
        "next_sync_token": token_v1(p.last_event_id, &who.device_id, p.now),
        "last_event_id": p.last_event_id,
        "last_sync_time": p.now,
        "has_more": p.has_more,
        "full_sync": p.restarted,
        "server_timestamp": p.now,
        "conflicts": conflicts,
    });
    if let Some((data, total)) = package {
        answer["data"] = Value::Object(data);
        answer["total_records"] = json!(total);
        answer["synced_at"] = json!(p.now);
    }
    answer
}

/// `business` for Odoo models, `app` for the app's own tables.
fn category(r: &Rendered) -> &'static str {
    if r.model.contains('.') {
        "business"
    } else {
        "app"
    }
}

/// The v2 pull answer.
pub fn pulled_v2(p: Pulled) -> Value {
    let events: Vec<Value> = p
        .events
        .iter()
        .map(|r| {
            json!({
                "id": r.event.event_id,
                "model": r.model,
                "record_id": r.record_id,
                "uuid": r.event.row_id,
                "event": r.action,
                "timestamp": r.event.updated_at,
            })
        })
        .collect();
    json!({
        "status": "success",
        "has_updates": !events.is_empty(),
        "new_events_count": events.len(),
        "events": events,
        "next_sync_token": p.last_event_id.to_string(),
        "last_event_id": p.last_event_id,
        "last_sync_time": p.now,
        "has_more": p.has_more,
        "full_sync": p.restarted,
    })
}

/// The v1 state answer.
pub fn state_v1(who: &Principal, pos: Option<Position>) -> Value {
    let last = pos.as_ref().map_or(0, |p| p.last_event_id);
    let at = pos.as_ref().and_then(|p| p.last_sync_time);
    json!({
        "device_id": who.device_id,
        "user_id": who.user_id,
        "last_event_id": last,
        "last_sync_time": at,
        // The package's `OfflineSyncState` reads this name.
        "last_sync_at": at,
        "next_sync_token": at.map(|t| token_v1(last, &who.device_id, t)),
        "total_syncs": pos.as_ref().map_or(0, |p| p.total_syncs),
        "total_events_synced": pos.as_ref().map_or(0, |p| p.total_events_synced),
        "sync_status": "idle",
        "pending_changes": 0,
        "app_type": pos.as_ref().map(|p| p.app_type.clone()),
    })
}

/// The v2 state answer.
pub fn state_v2(who: &Principal, pos: Option<Position>) -> Value {
    json!({
        // BridgeCore's user id is the Odoo user's (an integer; null when none is set).
        "user_id": who.odoo_user_id,
        "device_id": who.device_id,
        "app_type": pos.as_ref().map(|p| p.app_type.clone()),
        "last_event_id": pos.as_ref().map_or(0, |p| p.last_event_id),
        "last_sync_time": pos.as_ref().and_then(|p| p.last_sync_time),
        "sync_count": pos.as_ref().map_or(0, |p| p.total_syncs),
        "is_active": true,
    })
}

/// Answer of `GET /api/v1/offline-sync/health` and `GET /api/v2/sync/health`: the
/// fields BridgeCore's `SyncHealthStatus` reads (`healthy`, `status`, `service`,
/// `version`, `features`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub healthy: bool,
    pub status: &'static str,
    /// `offline-sync` or `smart-sync`, as BridgeCore names them.
    pub service: &'static str,
    /// nas-sync's version.
    pub version: &'static str,
    pub features: Vec<&'static str>,
    pub timestamp: DateTime<Utc>,
}

impl Health {
    pub fn now(service: &'static str) -> Health {
        Health {
            healthy: true,
            status: "healthy",
            service,
            version: env!("CARGO_PKG_VERSION"),
            features: vec![
                "push",
                "pull",
                "conflict_resolution",
                "state",
                "reset",
                "id_mapping",
            ],
            timestamp: Utc::now(),
        }
    }
}
