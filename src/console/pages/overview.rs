//! "Overview": version, database size, devices active in 24 hours, pulls and pushes
//! per hour over the last 24 hours (an SVG chart drawn here, from
//! `sync::activity::last_day`), open conflicts, change-feed lag, Odoo health and when
//! the audit chain was last verified and whether it held, each figure from the module
//! that owns it (no SQL here).

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::failed;
use crate::auth::{Principal, devices};
use crate::console::layout;
use crate::console::session::Console;
use crate::db;
use crate::error::AppResult;
use crate::odoo::connections::{self, ConnectionView};
use crate::state::AppState;
use crate::sync::activity::{self, Hour};
use crate::sync::{conflicts, horizon};

struct Figures {
    database_size: String,
    active_devices: i64,
    devices: i64,
    open_conflicts: i64,
    lag_seconds: f64,
    odoo: Vec<ConnectionView>,
    hours: Vec<Hour>,
    audit: Option<crate::audit::verify::Verdict>,
    /// The trail is sealed (`NAS_SYNC_AUDIT` on).
    recording: bool,
}

/// The figures, each from the module that owns it.
async fn figures(state: &AppState, who: &Principal) -> AppResult<Figures> {
    let pool = &state.pool;
    let (active_devices, devices) = devices::counts(pool, &who.tenant).await?;
    Ok(Figures {
        database_size: db::size_pretty(pool).await?,
        active_devices,
        devices,
        open_conflicts: conflicts::open_count(pool, &who.tenant).await?,
        lag_seconds: horizon::horizon_lag_seconds(pool).await?,
        odoo: connections::list(&state.odoo, who).await?,
        hours: activity::last_day(pool, &who.tenant).await?,
        audit: crate::audit::verify::last_verdict(pool, &who.tenant).await?,
        recording: state.config.audit,
    })
}

/// Bars of pulls and pushes per hour, with the scale and hour labels, as SVG.
fn chart(hours: &[Hour]) -> Markup {
    let (w, h, left, bottom) = (720.0_f64, 220.0_f64, 40.0_f64, 24.0_f64);
    let max = hours
        .iter()
        .map(|x| x.pulls.max(x.pushes))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (w - left) / hours.len().max(1) as f64;
    let bar = (slot / 2.0 - 2.0).max(1.0);
    let scale = |n: i64| (h - bottom - 10.0) * n as f64 / max as f64;
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {w} {h}")) role="img"
                aria-label="Pulls and pushes per hour, last 24 hours" {
                line.axis x1=(left) y1=(h - bottom) x2=(w) y2=(h - bottom) {}
                text.tick x=(left - 6.0) y=(14) text-anchor="end" { (max) }
                text.tick x=(left - 6.0) y=(h - bottom) text-anchor="end" { "0" }
                @for (i, hour) in hours.iter().enumerate() {
                    @let x = left + slot * i as f64 + 1.0;
                    @let pulls = scale(hour.pulls);
                    @let pushes = scale(hour.pushes);
                    rect.pulls x=(format!("{x:.1}")) y=(format!("{:.1}", h - bottom - pulls))
                        width=(format!("{bar:.1}")) height=(format!("{pulls:.1}")) {
                        title { (hour.start.format("%H:00")) ": " (hour.pulls) " pulls" }
                    }
                    rect.pushes x=(format!("{:.1}", x + bar + 1.0)) y=(format!("{:.1}", h - bottom - pushes))
                        width=(format!("{bar:.1}")) height=(format!("{pushes:.1}")) {
                        title { (hour.start.format("%H:00")) ": " (hour.pushes) " pushes" }
                    }
                    @if i % 3 == 0 {
                        text.tick x=(format!("{x:.1}")) y=(h - 6.0) { (hour.start.format("%H:00")) }
                    }
                }
            }
            figcaption {
                span.key.pulls { "pulls" } " " span.key.pushes { "pushes" }
                " per hour, last 24 hours (UTC); "
                (hours.iter().map(|x| x.pulls).sum::<i64>()) " pulls, "
                (hours.iter().map(|x| x.pushes).sum::<i64>()) " pushes"
            }
        }
    }
}

fn tile(label: &str, value: Markup) -> Markup {
    html! { div.tile { span.label { (label) } span.value { (value) } } }
}

/// `GET /admin`.
pub async fn page(State(state): State<AppState>, console: Console) -> Response {
    state.sync.pull_ledger.flush_now(&state.pool).await;
    let f = match figures(&state, &console.who).await {
        Ok(f) => f,
        Err(e) => return failed(&e),
    };
    let odoo_health = if f.odoo.is_empty() {
        html! { span.muted { "no connection" } }
    } else if f.odoo.iter().any(|c| c.last_error.is_some()) {
        html! { span.badge.bad { "errors" } }
    } else {
        html! { span.badge.good { "healthy" } }
    };
    let body = html! {
        div.tiles {
            (tile("Version", html! { (env!("CARGO_PKG_VERSION")) }))
            (tile("Database size", html! { (f.database_size) }))
            (tile("Devices active in 24 hours", html! { (f.active_devices) " of " (f.devices) }))
            (tile("Open conflicts", html! {
                @if f.open_conflicts > 0 { a href="/admin/conflicts" { (f.open_conflicts) } }
                @else { "0" }
            }))
            (tile("Change-feed lag", html! { (format!("{:.1}", f.lag_seconds)) " s" }))
            (tile("Odoo health", odoo_health))
            (tile("Audit trail", match &f.audit {
                _ if !f.recording => html! {
                    span.badge.bad { "off" } " " span.muted { "NAS_SYNC_AUDIT=off: changes are not sealed" }
                },
                None => html! { span.muted { "not verified yet" } " " a href="/admin/history" { "history" } },
                Some(v) if v.held => html! {
                    span.badge.good { "held" } " " span.muted { "verified " (layout::when(Some(v.verified_at))) }
                },
                Some(v) => html! {
                    span.badge.bad { "broken" } " " span.muted { "verified " (layout::when(Some(v.verified_at))) }
                    @if let Some(p) = &v.problem { br; span.error { (p) } }
                },
            }))
        }
        section.card {
            h2 { "Pulls and pushes per hour" }
            (chart(&f.hours))
        }
        @if !f.odoo.is_empty() {
            section.card {
                h2 { "Odoo connections" }
                ul {
                    @for c in &f.odoo {
                        li {
                            (c.url) " / " (c.database) ": " (c.sync_status)
                            @if let Some(e) = &c.last_error { " — " span.error { (e) } }
                        }
                    }
                }
                p { a href="/admin/odoo" { "Details on the Odoo page" } }
            }
        }
    };
    layout::page(&console, "Overview", &body)
}
