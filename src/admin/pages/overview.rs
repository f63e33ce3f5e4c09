//! "Overview": version, database size, devices active in 24 hours, pulls and pushes
//! per hour over the last 24 hours (an SVG chart drawn here, from `sync_activity` and
//! the row history), open conflicts,
//! change-feed lag and Odoo health.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Duration, DurationRound, Utc};
use maud::{Markup, html};
use sqlx::PgPool;

use super::failed;
use crate::admin::layout;
use crate::admin::session::Console;
use crate::error::AppResult;
use crate::state::AppState;

/// Pulls and pushes in one hour.
struct Hour {
    start: DateTime<Utc>,
    pulls: i64,
    pushes: i64,
}

struct Figures {
    database_size: String,
    active_devices: i64,
    devices: i64,
    open_conflicts: i64,
    lag_seconds: f64,
    odoo: Vec<(String, String, Option<String>)>,
    hours: Vec<Hour>,
}

async fn figures(pool: &PgPool, tenant: &str) -> AppResult<Figures> {
    let database_size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
            .fetch_one(pool)
            .await?;
    let (active_devices, devices): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE revoked_at IS NULL AND greatest(last_seen_at, last_pull_at, last_push_at)
                                  > now() - interval '24 hours'),
                count(*) FILTER (WHERE revoked_at IS NULL)
         FROM devices WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    let open_conflicts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_conflicts WHERE tenant_id = $1 AND status = 'open'",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await?;
    let lag_seconds = crate::sync::horizon::horizon_lag_seconds(pool).await?;
    let odoo: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT url || ' / ' || database, sync_status, last_error FROM odoo_connections
         WHERE tenant_id = $1 ORDER BY created_at",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await?;
    let now = Utc::now();
    let first = now.duration_trunc(Duration::hours(1)).unwrap_or(now) - Duration::hours(23);
    // Pulls from the pull ledger's hourly counts; pushes are the device transactions
    // that changed rows (history), one per push.
    let rows: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "WITH hours AS (
             SELECT generate_series($2::timestamptz, $2::timestamptz + interval '23 hours',
                                    interval '1 hour') AS hour),
         pushes AS (
             SELECT date_trunc('hour', changed_at) AS hour, count(DISTINCT (origin_device, xid)) AS n
             FROM sync_row_history
             WHERE tenant_id = $1 AND origin_device IS NOT NULL AND changed_at >= $2
             GROUP BY 1)
         SELECT h.hour, coalesce(a.pulls, 0), coalesce(p.n, 0)
         FROM hours h
         LEFT JOIN sync_activity a ON a.tenant_id = $1 AND a.hour = h.hour
         LEFT JOIN pushes p ON p.hour = h.hour
         ORDER BY h.hour",
    )
    .bind(tenant)
    .bind(first)
    .fetch_all(pool)
    .await?;
    Ok(Figures {
        database_size,
        active_devices,
        devices,
        open_conflicts,
        lag_seconds,
        odoo,
        hours: rows
            .into_iter()
            .map(|(start, pulls, pushes)| Hour {
                start,
                pulls,
                pushes,
            })
            .collect(),
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
    if let Err(e) = state.sync.pull_ledger.flush(&state.pool).await {
        tracing::warn!(error = %e, "writing pull bookkeeping failed; will retry");
    }
    let f = match figures(&state.pool, &console.who.tenant).await {
        Ok(f) => f,
        Err(e) => return failed(&e),
    };
    let odoo_health = if f.odoo.is_empty() {
        html! { span.muted { "no connection" } }
    } else if f.odoo.iter().any(|(_, _, e)| e.is_some()) {
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
        }
        section.card {
            h2 { "Pulls and pushes per hour" }
            (chart(&f.hours))
        }
        @if !f.odoo.is_empty() {
            section.card {
                h2 { "Odoo connections" }
                ul {
                    @for (name, status, error) in &f.odoo {
                        li { (name) ": " (status) @if let Some(e) = error { " — " span.error { (e) } } }
                    }
                }
                p { a href="/admin/odoo" { "Details on the Odoo page" } }
            }
        }
    };
    layout::page(&console, "Overview", &body)
}
