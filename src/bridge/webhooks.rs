//! `GET /api/v1/webhooks/check-updates` and `GET /api/v1/webhooks/events`: the reads
//! BridgeCore's clients use to ask "anything new?" without pulling (the package's
//! `hasUpdates` and `getWebhookEvents`, the example smart sync client's `hasUpdates`).
//! BridgeCore answers them from Odoo's webhook log; nas-sync from the change log:
//! the events of the caller's app type (by default the one its device pulled last)
//! that its device has not pulled yet, without moving its position, so the pull that
//! follows still brings them.
//!
//! The two clients read different names for the same thing (`has_updates` in the
//! package, `has_update` in the example and BridgeCore's schema; `events` in the
//! package, `data` in BridgeCore's schema): both are sent.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::BridgeCtx;
use super::events::{self, EventPull, Rendered};
use super::wire;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};

/// Default and largest number of events looked at.
const DEFAULT_LIMIT: i64 = 200;
const MAX_LIMIT: i64 = 1000;

/// `check-updates` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CheckUpdatesQuery {
    /// The caller's own user id, when sent (as for smart sync).
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub app_type: Option<String>,
    /// Only events at or after this time (RFC 3339; a time without an offset is UTC).
    pub since: Option<String>,
    /// At most this many events are counted (default 200, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// `events` query: BridgeCore's filter names and the package's.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WebhookEventsQuery {
    pub device_id: Option<String>,
    pub app_type: Option<String>,
    /// The model (`sale.order`, `forms`); `model_name` is BridgeCore's name for it.
    pub model: Option<String>,
    pub model_name: Option<String>,
    /// `create`, `write` or `unlink`; `event_type` is the package's name for it.
    pub event: Option<String>,
    pub event_type: Option<String>,
    pub record_id: Option<String>,
    /// Every event listed is `pending` for this device (not pulled yet).
    pub status: Option<String>,
    pub since: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 1000)]
    pub offset: Option<i64>,
}

/// Whether anything waits for this device, and how much of it by model.
pub async fn check_updates(
    ctx: &BridgeCtx,
    who: &Principal,
    q: &CheckUpdatesQuery,
) -> AppResult<Value> {
    if let Some(u) = &q.user_id {
        wire::check_user(who, Some(&Value::String(u.clone())))?;
    }
    let limit = bounded("limit", q.limit, DEFAULT_LIMIT, 1, MAX_LIMIT)?;
    let since = since(q.since.as_deref())?;
    let waiting = waiting(ctx, who, q.app_type.as_deref(), None, limit, since).await?;
    let mut summary: Vec<(String, i64)> = Vec::new();
    for r in &waiting.events {
        match summary.iter_mut().find(|(m, _)| *m == r.model) {
            Some((_, n)) => *n += 1,
            None => summary.push((r.model.clone(), 1)),
        }
    }
    let any = !waiting.events.is_empty();
    Ok(json!({
        "has_update": any,
        "has_updates": any,
        "pending_events": waiting.events.len(),
        "more": waiting.has_more,
        "last_event_id": waiting.events.last().map(|r| r.event.event_id),
        "last_update_at": waiting.events.iter().map(|r| r.event.updated_at).max(),
        "summary": summary.iter().map(|(m, n)| json!({"model": m, "count": n})).collect::<Vec<_>>(),
    }))
}

/// The events waiting for this device, filtered, as BridgeCore's webhook events.
pub async fn list(ctx: &BridgeCtx, who: &Principal, q: &WebhookEventsQuery) -> AppResult<Value> {
    let limit = bounded("limit", q.limit, 100, 1, MAX_LIMIT)?;
    let offset = bounded("offset", q.offset, 0, 0, MAX_LIMIT)?;
    let since = since(q.since.as_deref())?;
    let model = q.model.as_deref().or(q.model_name.as_deref());
    let event = q.event.as_deref().or(q.event_type.as_deref());
    let models = model.map(|m| vec![m.to_string()]);
    let waiting = waiting(
        ctx,
        who,
        q.app_type.as_deref(),
        models.as_deref(),
        limit + offset,
        since,
    )
    .await?;
    let pending = q.status.as_deref().is_none_or(|s| s == "pending");
    let data: Vec<Value> = waiting
        .events
        .iter()
        .filter(|_| pending)
        .filter(|r| event.is_none_or(|e| e == r.action))
        .filter(|r| {
            q.record_id.as_deref().is_none_or(|id| match &r.record_id {
                Value::String(s) => s == id,
                other => other.as_i64().is_some_and(|n| id.parse() == Ok(n)),
            })
        })
        .skip(offset as usize)
        .take(limit as usize)
        .map(webhook_event)
        .collect();
    Ok(json!({"status": "success", "count": data.len(), "data": data, "events": data}))
}

/// One event as BridgeCore's `WebhookEventOut` and the package's `WebhookEvent` read it.
fn webhook_event(r: &Rendered) -> Value {
    json!({
        "id": r.event.event_id,
        "model": r.model,
        "record_id": r.record_id,
        "event": r.action,
        "event_type": r.action,
        "occurred_at": r.event.updated_at,
        "created_at": r.event.updated_at,
        "timestamp": r.event.updated_at,
        "priority": r.priority,
        "status": "pending",
        "data": r.event.row.clone().unwrap_or_else(|| json!({})),
        "payload": r.event.row,
    })
}

/// The events after the device's stored position (at most `limit`), at or after
/// `since` when given. Without an `app_type` (the example smart sync client sends
/// none), the app type the device pulled last.
async fn waiting(
    ctx: &BridgeCtx,
    who: &Principal,
    app_type: Option<&str>,
    models_filter: Option<&[String]>,
    limit: i64,
    since: Option<DateTime<Utc>>,
) -> AppResult<events::Pulled> {
    let last_used = match app_type {
        Some(_) => None,
        None => super::state::get(ctx, who, None).await?.map(|p| p.app_type),
    };
    let app_type = app_type.or(last_used.as_deref());
    let mut page = events::peek(
        ctx,
        who,
        &EventPull {
            app_type: wire::app_type(app_type),
            last_event_id: None,
            models_filter,
            limit: Some(limit),
        },
    )
    .await?;
    if let Some(since) = since {
        page.events.retain(|r| r.event.updated_at >= since);
    }
    Ok(page)
}

fn bounded(name: &str, v: Option<i64>, default: i64, min: i64, max: i64) -> AppResult<i64> {
    match v {
        None => Ok(default),
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(AppError::validation(
            name,
            format!("must be from {min} to {max}"),
        )),
    }
}

/// `since`: RFC 3339, or a date and time with no offset (Dart's `toIso8601String()`
/// of a local time), read as UTC.
fn since(s: Option<&str>) -> AppResult<Option<DateTime<Utc>>> {
    let Some(s) = s else { return Ok(None) };
    if let Some(t) = crate::sync::validate::parse_time(s) {
        return Ok(Some(t));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| Some(t.and_utc()))
        .map_err(|_| AppError::validation("since", "must be a date and time (RFC 3339)"))
}
