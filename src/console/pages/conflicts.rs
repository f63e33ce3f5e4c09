//! "Conflicts": each open conflict of the tenant with the server's and the device's
//! values side by side, differing fields marked; "Keep server", "Take device", or
//! edit and "Save" (`sync::resolve::run`, as
//! `POST /api/v1/sync/conflicts/{id}/resolve` with `server_wins`, `client_wins`,
//! `custom`).

use std::collections::BTreeSet;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{done, failed, posted};
use crate::console::Fields;
use crate::console::layout::{self, csrf_field, segment, when};
use crate::console::session::Console;
use crate::state::AppState;
use crate::sync::conflicts::{self, Conflict, ListQuery};
use crate::sync::registry::SYNC_COLUMNS;
use crate::sync::resolve::{self, Resolve};

/// A value as the page shows and edits it: strings as they are, the rest as JSON.
fn text(v: Option<&Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The data fields of both sides, in name order.
fn field_names(c: &Conflict) -> Vec<String> {
    let mut names = BTreeSet::new();
    for side in [&c.server_data, &c.client_data] {
        if let Some(o) = side.as_object() {
            names.extend(
                o.keys()
                    .filter(|k| !SYNC_COLUMNS.contains(&k.as_str()))
                    .cloned(),
            );
        }
    }
    names.into_iter().collect()
}

fn conflict_card(console: &Console, c: &Conflict) -> Markup {
    let action = format!("/admin/conflicts/{}/resolve", c.id);
    let names = field_names(c);
    html! {
        article.card.conflict data-conflict=(c.id) {
            h2 { (c.table) " " code { (c.record_id) } }
            p.muted {
                "From device " strong { (c.device_id) }
                @if let Some(store) = &c.store_id { ", store " (store) }
                ", " (when(Some(c.created_at)))
                ", based on version " (c.base_version)
                " · "
                a href=(format!("/admin/history?table={}&row_id={}", segment(&c.table), c.record_id)) {
                    "History of this row"
                }
            }
            div.table-wrap {
            table.sides {
                thead { tr { th { "Field" } th { "Server" } th { "Device" } } }
                tbody {
                    @for name in &names {
                        @let server = c.server_data.get(name);
                        @let device = c.client_data.get(name);
                        @let differs = device.is_some() && device != server;
                        tr class=(if differs { "differs" } else { "" }) {
                            td data-label="Field" {
                                (name)
                                @if differs { " " span.badge.warn title="The two sides differ" { "differs" } }
                            }
                            td data-label="Server" { code { (text(server)) } }
                            td data-label="Device" {
                                @if device.is_some() { code { (text(device)) } }
                                @else { span.muted { "(unchanged)" } }
                            }
                        }
                    }
                }
            }
            }
            div.actions {
                form.inline method="post" action=(action) {
                    (csrf_field(console))
                    input type="hidden" name="strategy" value="server_wins";
                    button type="submit" { "Keep server" }
                }
                form.inline method="post" action=(action) {
                    (csrf_field(console))
                    input type="hidden" name="strategy" value="client_wins";
                    button type="submit" { "Take device" }
                }
            }
            details.edit {
                summary { "Edit and save" }
                form.stack method="post" action=(action) {
                    (csrf_field(console))
                    input type="hidden" name="strategy" value="custom";
                    @for name in &names {
                        @let id = format!("f-{}-{}", c.id, name);
                        @let value = c.client_data.get(name).or_else(|| c.server_data.get(name));
                        label for=(id) { (name) }
                        input id=(id) name=(format!("f:{name}")) type="text" value=(text(value));
                    }
                    button type="submit" { "Save" }
                }
            }
        }
    }
}

/// `GET /admin/conflicts`.
pub async fn page(State(state): State<AppState>, console: Console) -> Response {
    let q = ListQuery {
        status: Some("open".into()),
        limit: Some(200),
    };
    let open = match conflicts::list(&state.sync, &console.who, &q).await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let body = html! {
        @if open.is_empty() {
            p.muted { "No open conflicts." }
        } @else {
            p.muted { (open.len()) " open. Differing fields are marked." }
            @for c in &open { (conflict_card(&console, c)) }
        }
    };
    layout::page(&console, "Conflicts", &body)
}

/// The edited fields of a "Save": each `f:<name>`, typed like the stored value (text
/// stays text; otherwise JSON when it parses, else text; empty is null).
fn edited(fields: &Fields, c: &Conflict) -> Map<String, Value> {
    let mut data = Map::new();
    for (key, raw) in &fields.0 {
        let Some(name) = key.strip_prefix("f:") else {
            continue;
        };
        if SYNC_COLUMNS.contains(&name) {
            continue;
        }
        let was = c.server_data.get(name).or_else(|| c.client_data.get(name));
        let value = match was {
            Some(Value::String(_)) => Value::String(raw.clone()),
            _ if raw.is_empty() => Value::Null,
            _ => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone())),
        };
        data.insert(name.to_string(), value);
    }
    data
}

/// `POST /admin/conflicts/{id}/resolve`.
pub async fn resolve(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match posted(&console, form) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return layout::problem(StatusCode::NOT_FOUND, "No such conflict.");
    };
    let strategy = fields.get("strategy").unwrap_or_default().to_string();
    let data = if strategy == "custom" {
        let q = ListQuery {
            status: Some("all".into()),
            limit: Some(1000),
        };
        let found = match conflicts::list(&state.sync, &console.who, &q).await {
            Ok(list) => list.into_iter().find(|c| c.id == id),
            Err(e) => return failed(&e),
        };
        let Some(c) = found else {
            return layout::problem(StatusCode::NOT_FOUND, "No such conflict.");
        };
        Some(Value::Object(edited(&fields, &c)))
    } else {
        None
    };
    let label = match strategy.as_str() {
        "server_wins" => "kept the server's values",
        "client_wins" => "took the device's values",
        "custom" => "saved the edited values",
        _ => "",
    };
    let outcome = resolve::run(
        &state.sync,
        &console.who,
        id,
        Resolve {
            strategy: strategy.clone(),
            data,
        },
    )
    .await
    .map(|c| format!("Conflict on {} resolved: {label}.", c.table));
    done(&state, &console, outcome, "/admin/conflicts").await
}
