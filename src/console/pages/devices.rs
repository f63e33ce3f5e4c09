//! "Devices": each device of the tenant with its user, store, last pull and push, and
//! "Revoke" and "Release" (`auth::manage`, as `/api/v1/admin/devices/...`).

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{done, failed, posted};
use crate::auth::{manage, users};
use crate::console::layout::{self, segment, when};
use crate::console::session::Console;
use crate::state::AppState;

/// `GET /admin/devices`.
pub async fn page(State(state): State<AppState>, console: Console) -> Response {
    state.sync.pull_ledger.flush_now(&state.pool).await;
    let devices = match manage::list_devices(&state.pool, &console.who).await {
        Ok(d) => d,
        Err(e) => return failed(&e),
    };
    // The store of each device's user.
    let stores: HashMap<String, Option<String>> =
        users::list(&state.pool, Some(&console.who.tenant))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|u| (u.username, u.store_id))
            .collect();
    let body = html! {
        @if devices.is_empty() {
            p.muted { "No device has logged in yet." }
        } @else {
            div.table-wrap {
            table {
                thead { tr {
                    th { "Device" } th { "User" } th { "Store" } th { "Last pull" } th { "Last push" }
                    th { "State" } th { "Actions" }
                } }
                tbody {
                    @for d in &devices {
                        @let path = segment(&d.device_id);
                        tr data-device=(d.device_id) {
                            td data-label="Device" {
                                strong { (d.device_id) }
                                @if let Some(name) = &d.device_name { br; span.muted { (name) } }
                            }
                            td data-label="User" { (d.username) }
                            td data-label="Store" {
                                (stores.get(&d.username).cloned().flatten().unwrap_or_else(|| "all (manager)".into()))
                            }
                            td data-label="Last pull" { (when(d.last_pull_at)) }
                            td data-label="Last push" { (when(d.last_push_at)) }
                            td data-label="State" {
                                @if d.revoked_at.is_some() { span.badge.bad { "revoked" } }
                                @else { span.badge.good { "active" } }
                            }
                            td data-label="Actions" {
                                @if d.revoked_at.is_none() {
                                    (layout::action(&console, &format!("/admin/devices/{path}/revoke"), "Revoke", "danger"))
                                    (layout::action(&console, &format!("/admin/devices/{path}/release"), "Release", ""))
                                }
                            }
                        }
                    }
                }
            }
            }
            p.muted {
                "Revoke: a lost or stolen device; its tokens fail at once, for good. "
                "Release: the device's user signs out; another user may log in on it."
            }
        }
    };
    layout::page(&console, "Devices", &body)
}

/// `POST /admin/devices/{device_id}/revoke|release`.
pub async fn act(
    State(state): State<AppState>,
    console: Console,
    Path((device_id, action)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(r) = posted(&console, form) {
        return r.into_response();
    }
    let outcome = match action.as_str() {
        "revoke" => manage::revoke_device(&state.pool, &console.who, &device_id)
            .await
            .map(|()| format!("Device {device_id} revoked.")),
        "release" => manage::release_device(&state.pool, &console.who, &device_id)
            .await
            .map(|()| format!("Device {device_id} released.")),
        _ => return layout::problem(StatusCode::NOT_FOUND, "No such action."),
    };
    if outcome.is_ok() {
        state
            .sync
            .sessions
            .forget(&console.who.tenant, Some(&device_id));
    }
    done(&state, &console, outcome, "/admin/devices").await
}
