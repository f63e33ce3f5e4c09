//! "History": the tenant's audit trail (`audit::read`, as `GET /api/v1/audit`),
//! searched by table, row, device, user, origin and dates, newest first, each entry's
//! changed fields old beside new; "Older" pages on; the search exported as CSV or
//! NDJSON (streamed, as `GET /api/v1/audit/export`). The conflicts page links here
//! for a row's history.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::failed;
use crate::audit::read::{self, AuditEntry, Filter};
use crate::console::layout;
use crate::console::session::Console;
use crate::error::AppError;
use crate::state::AppState;

/// Entries per page.
const PAGE: i64 = 50;
/// The origins, as the filter offers them.
const ORIGINS: [&str; 7] = [
    "push",
    "bridgecore",
    "inbox",
    "console",
    "odoo_mirror",
    "odoo_write_back",
    "sql",
];

/// The search form's fields, as the browser sends them (empty means "any").
#[derive(Debug, Default, Deserialize)]
pub struct Search {
    #[serde(default)]
    table: String,
    #[serde(default)]
    row_id: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    origin: String,
    /// A day (YYYY-MM-DD), from its start.
    #[serde(default)]
    from: String,
    /// A day (YYYY-MM-DD), to its end.
    #[serde(default)]
    to: String,
    before: Option<i64>,
    /// The export's format: `csv` or `ndjson`.
    format: Option<String>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn day(s: &str, field: &str) -> Result<Option<NaiveDate>, AppError> {
    some(s)
        .map(|d| {
            NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .map_err(|_| AppError::validation(field, "a date, YYYY-MM-DD"))
        })
        .transpose()
}

impl Search {
    fn filter(&self) -> Result<Filter, AppError> {
        let row_id = some(&self.row_id)
            .map(|r| {
                Uuid::parse_str(&r).map_err(|_| AppError::validation("row", "a row id (UUID)"))
            })
            .transpose()?;
        let start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        Ok(Filter {
            table: some(&self.table),
            row_id,
            device_id: some(&self.device_id),
            user: some(&self.user),
            origin: some(&self.origin),
            since: day(&self.from, "from")?.and_then(start),
            until: day(&self.to, "to")?
                .and_then(|d| d.succ_opt())
                .and_then(start),
            store: None,
        })
    }

    /// The query string of this search, without the page.
    fn query(&self) -> String {
        let pairs = [
            ("table", &self.table),
            ("row_id", &self.row_id),
            ("device_id", &self.device_id),
            ("user", &self.user),
            ("origin", &self.origin),
            ("from", &self.from),
            ("to", &self.to),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", layout::segment(v.trim())))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// A changed field's value as text.
fn shown(v: &Value) -> Markup {
    match v {
        Value::Null => html! { span.muted { "empty" } },
        Value::String(s) => html! { (s) },
        other => html! { (other.to_string()) },
    }
}

fn changes(e: &AuditEntry) -> Markup {
    html! {
        @if let Some(fields) = e.changed.as_object() {
            dl.changes {
                @for (name, pair) in fields {
                    dt { (name) }
                    dd {
                        span.old { (shown(&pair[0])) }
                        " → "
                        span.new { (shown(&pair[1])) }
                    }
                }
            }
        }
    }
}

/// `GET /admin/history`.
pub async fn page(
    State(state): State<AppState>,
    console: Console,
    search: Result<Query<Search>, QueryRejection>,
) -> Response {
    let (search, refused) = match search {
        Ok(Query(s)) => (s, None),
        Err(e) => (
            Search::default(),
            Some(AppError::validation("search", e.body_text())),
        ),
    };
    let found = match refused.map_or_else(|| search.filter(), Err) {
        Ok(f) => read::page(&state.pool, &console.who.tenant, &f, search.before, PAGE)
            .await
            .map(|entries| (f, entries))
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    let (entries, problem) = match found {
        Ok((_, e)) => (e, None),
        Err(e) if e.status().is_client_error() => (Vec::new(), Some(e.message())),
        Err(e) => return failed(&e),
    };
    let older = (entries.len() as i64 == PAGE)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    let query = search.query();
    let body = html! {
        form.search method="get" action="/admin/history" {
            label { "Table" input name="table" value=(search.table) placeholder="kpi_data"; }
            label { "Row" input name="row_id" value=(search.row_id) placeholder="row id"; }
            label { "Device" input name="device_id" value=(search.device_id); }
            label { "User" input name="user" value=(search.user); }
            label { "Origin"
                select name="origin" {
                    option value="" { "any" }
                    @for o in ORIGINS {
                        option value=(o) selected[search.origin == o] { (o) }
                    }
                }
            }
            label { "From" input type="date" name="from" value=(search.from); }
            label { "To" input type="date" name="to" value=(search.to); }
            button type="submit" { "Search" }
        }
        @if let Some(p) = problem { p.error { (p) } }
        p.muted {
            "Export this search: "
            a href=(format!("/admin/history/export?format=csv&{query}")) { "CSV" } " · "
            a href=(format!("/admin/history/export?format=ndjson&{query}")) { "NDJSON" }
        }
        @if entries.is_empty() {
            p.muted { "No change matches." }
        } @else {
            div.table-wrap {
            table.history {
                thead { tr {
                    th { "When" } th { "Row" } th { "Who" } th { "Origin" } th { "Changes" }
                } }
                tbody {
                    @for e in &entries {
                        tr data-seq=(e.seq) {
                            td data-label="When" {
                                (layout::when(Some(e.server_time)))
                                @if let Some(t) = e.device_time {
                                    br; span.muted { "device: " (t.format("%Y-%m-%d %H:%M:%S")) }
                                }
                            }
                            td data-label="Row" {
                                (e.table) " "
                                a href=(format!("/admin/history?table={}&row_id={}", layout::segment(&e.table), e.row_id)) {
                                    code { (e.row_id.to_string()[..8]) "…" }
                                }
                                br; span.muted { (e.op) @if let Some(v) = e.version { " → v" (v) } }
                            }
                            td data-label="Who" {
                                (e.user.clone().unwrap_or_else(|| "—".into()))
                                @if let Some(d) = &e.device_id { br; span.muted { (d) } }
                                @if let Some(r) = &e.role { br; span.muted { (r) } }
                            }
                            td data-label="Origin" { span.badge { (e.origin) } }
                            td data-label="Changes" { (changes(e)) }
                        }
                    }
                }
            }
            }
            @if let Some(b) = older {
                p { a href=(format!("/admin/history?{query}&before={b}")) { "Older changes" } }
            }
        }
        p.muted { "Times are the server's, in UTC. " (Utc::now().format("%Y-%m-%d %H:%M")) " UTC now." }
    };
    layout::page(&console, "History", &body)
}

/// `GET /admin/history/export`: the search as CSV or NDJSON, streamed (as
/// `GET /api/v1/audit/export`).
pub async fn export(
    State(state): State<AppState>,
    console: Console,
    search: Result<Query<Search>, QueryRejection>,
) -> Response {
    let Ok(Query(search)) = search else {
        return failed(&AppError::validation(
            "search",
            "not a search this page makes",
        ));
    };
    let csv = search.format.as_deref() != Some("ndjson");
    match search.filter() {
        Ok(f) => crate::api::audit::export_response(&state, &console.who.tenant, f, csv),
        Err(e) => failed(&e),
    }
}
