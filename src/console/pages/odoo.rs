//! "Odoo": the tenant's connections with their progress bars, per-model counts,
//! failed batches with "Retry", and write-back errors, and "Add connection"
//! (`odoo::connections`, as `/api/v1/odoo/connections/...`).

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;
use uuid::Uuid;

use super::{done, failed, posted};
use crate::console::layout::{self, csrf_field, when};
use crate::console::session::Console;
use crate::odoo::connections::{self, ConnectionView, CreateConnection};
use crate::state::AppState;

fn show(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn connection(console: &Console, c: &ConnectionView, status: &Value) -> Markup {
    let pct = status["progress"]["progress_percentage"]
        .as_i64()
        .unwrap_or(0);
    let failed_batches = status["failed_batches"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let write_errors = status["write_back"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    html! {
        article.card data-connection=(c.id) {
            h2 { (c.url) " · " (c.database) }
            p {
                "Status " strong { (c.sync_status) }
                " · Odoo " (c.server_version) " (" (c.protocol) ")"
                " · last poll " (when(c.last_poll_at))
            }
            @if let Some(e) = &c.last_error { p.error role="alert" { (e) } }
            label for=(format!("progress-{}", c.id)) { "First mirror: " (pct) " %" }
            progress id=(format!("progress-{}", c.id)) max="100" value=(pct) { (pct) " %" }
            p.muted {
                (show(&status["progress"]["completed_batches"])) " of "
                (show(&status["progress"]["total_batches"])) " batches; later: "
                (show(&status["incremental"]["completed_batches"])) " done, "
                (show(&status["incremental"]["pending_batches"])) " pending"
            }
            @if let Some(models) = status["models"].as_object() {
                div.table-wrap { table {
                    thead { tr { th { "Model" } th { "Table" } th { "Records" } th { "Mirrored until" } } }
                    tbody { @for (model, m) in models {
                        tr {
                            td data-label="Model" { (model) }
                            td data-label="Table" { (show(&m["table"])) }
                            td data-label="Records" { (show(&m["records"])) }
                            td data-label="Mirrored until" { (show(&m["mirrored_until"])) }
                        }
                    } }
                } }
            }
            h3 { "Failed batches" }
            @if failed_batches.is_empty() {
                p.muted { "None." }
            } @else {
                div.table-wrap { table {
                    thead { tr { th { "Model" } th { "Window" } th { "Status" } th { "Attempts" } th { "Error" } } }
                    tbody { @for b in &failed_batches {
                        tr {
                            td data-label="Model" { (show(&b["model"])) }
                            td data-label="Window" { (show(&b["window_start"])) " – " (show(&b["window_end"])) }
                            td data-label="Status" { (show(&b["status"])) }
                            td data-label="Attempts" { (show(&b["attempts"])) }
                            td data-label="Error" { (show(&b["last_error"])) }
                        }
                    } }
                } }
                (layout::action(console, &format!("/admin/odoo/{}/retry", c.id), "Retry", ""))
            }
            h3 { "Write-back" }
            p {
                (show(&status["write_back"]["pending"])) " pending, "
                (show(&status["write_back"]["failed"])) " failed, "
                (show(&status["write_back"]["done"])) " done"
            }
            @if !write_errors.is_empty() {
                div.table-wrap { table {
                    thead { tr { th { "Table" } th { "Record" } th { "Status" } th { "Attempts" } th { "Error" } } }
                    tbody { @for w in &write_errors {
                        tr {
                            td data-label="Table" { (show(&w["table"])) }
                            td data-label="Record" { code { (show(&w["record_id"])) } }
                            td data-label="Status" { (show(&w["status"])) }
                            td data-label="Attempts" { (show(&w["attempts"])) }
                            td data-label="Error" { (show(&w["error"])) }
                        }
                    } }
                } }
            }
        }
    }
}

/// `GET /admin/odoo`.
pub async fn page(State(state): State<AppState>, console: Console) -> Response {
    let list = match connections::list(&state.odoo, &console.who).await {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    let mut cards = Vec::with_capacity(list.len());
    for c in &list {
        match connections::status(&state.odoo, &console.who, c.id).await {
            Ok(status) => cards.push(connection(&console, c, &status)),
            Err(e) => return failed(&e),
        }
    }
    let body = html! {
        @if cards.is_empty() {
            p.muted { "No Odoo connection yet." }
        }
        @for card in &cards { (card) }
        (add_form(&console))
    };
    layout::page(&console, "Odoo", &body)
}

/// `POST /admin/odoo/{id}/retry`: "Retry".
pub async fn retry(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(r) = posted(&console, form) {
        return r.into_response();
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return layout::problem(StatusCode::NOT_FOUND, "No such Odoo connection.");
    };
    let outcome = connections::retry(&state.odoo, &console.who, id)
        .await
        .map(|v| {
            format!(
                "{} failed batches queued again.",
                show(&v["batches_requeued"])
            )
        });
    done(&state, &console, outcome, "/admin/odoo").await
}

/// The "Add connection" form: Odoo's address, database, user and API key; the models
/// and the first mirror's range are optional (the defaults of docs/odoo.md).
fn add_form(console: &Console) -> Markup {
    html! {
        section.card {
            h2 { "Add connection" }
            form.stack #add-connection method="post" action="/admin/odoo" {
                (csrf_field(console))
                label for="odoo-url" { "Odoo address (https://erp.example.com)" }
                input #odoo-url name="url" type="url" required maxlength="2048";
                label for="odoo-database" { "Database" }
                input #odoo-database name="database" type="text" autocomplete="off" required maxlength="256";
                label for="odoo-username" { "Odoo user (login)" }
                input #odoo-username name="username" type="text" autocomplete="off" required maxlength="256";
                label for="odoo-api-key" { "API key of that user" }
                input #odoo-api-key name="api_key" type="password" autocomplete="off" required maxlength="1024";
                label for="odoo-models" { "Models, comma-separated (empty: the six defaults)" }
                input #odoo-models name="models" type="text" autocomplete="off" maxlength="4096";
                label for="odoo-days" { "Days of history to mirror first (empty: 90; 0: everything)" }
                input #odoo-days name="initial_range_days" type="number" min="0" max="36500";
                button type="submit" { "Add connection" }
            }
        }
    }
}

/// `POST /admin/odoo`: "Add connection", through the same service as
/// `POST /api/v1/odoo/connections` (Odoo is asked first; a refusal is the message).
pub async fn add(
    State(state): State<AppState>,
    console: Console,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match posted(&console, form) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let field = |name: &str| fields.get(name).unwrap_or_default().trim().to_string();
    let models = Some(field("models")).filter(|m| !m.is_empty()).map(|m| {
        m.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let days = field("initial_range_days");
    let initial_range_days = if days.is_empty() {
        None
    } else if let Ok(d) = days.parse::<i32>() {
        Some(d)
    } else {
        let e = crate::error::AppError::validation(
            "initial_range_days",
            "days of history must be a whole number",
        );
        return done(&state, &console, Err(e), "/admin/odoo").await;
    };
    let req = CreateConnection {
        url: field("url"),
        database: field("database"),
        username: field("username"),
        api_key: fields.get("api_key").unwrap_or_default().to_string(),
        models,
        initial_range_days,
        batch_size: None,
        safety_lag_seconds: None,
        poll_interval_seconds: None,
    };
    let outcome = connections::create(&state.odoo, &console.who, req)
        .await
        .map(|c| {
            format!(
                "Connection to {} ({}) added; the first mirror starts now.",
                c.url, c.database
            )
        });
    done(&state, &console, outcome, "/admin/odoo").await
}
