//! `/api/v1/audit`: the tenant's audit trail for managers (store users only their own
//! store's, when `NAS_SYNC_AUDIT_STORE_READS` is on), filtered and paged newest first,
//! and exported as CSV or NDJSON, streamed.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract;
use crate::audit::read::{self, AuditEntry, Filter};
use crate::auth::{Principal, Role};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The filters, shared by the page and the export.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// A synced table.
    pub table: Option<String>,
    /// One row.
    pub row_id: Option<Uuid>,
    pub device_id: Option<String>,
    /// A username.
    pub user: Option<String>,
    /// `push`, `bridgecore`, `inbox`, `console`, `odoo_mirror`, `odoo_write_back`, `sql`.
    pub origin: Option<String>,
    /// From this time (RFC 3339, inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Until this time (RFC 3339, exclusive).
    pub until: Option<DateTime<Utc>>,
    /// A store (managers; a store user always reads its own).
    pub store_id: Option<String>,
    /// The page: entries older than this `seq` (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Entries per page: 100 by default, at most 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Export format: `csv` or `ndjson`.
    pub format: Option<String>,
}

/// A page of the trail, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; `null` on the last one.
    pub next_before: Option<i64>,
}

/// The filter a caller may use: managers their tenant, store users (when allowed)
/// their store.
fn filter_for(state: &AppState, who: &Principal, q: &AuditQuery) -> AppResult<Filter> {
    let store = match who.role {
        Role::Manager => q.store_id.clone(),
        _ if state.config.audit_store_reads => who.store_id.clone(),
        _ => {
            return Err(AppError::Forbidden(
                "Only managers read the audit trail (NAS_SYNC_AUDIT_STORE_READS lets store users read their store's).".into(),
            ));
        }
    };
    if who.role != Role::Manager && q.store_id.is_some() && q.store_id != who.store_id {
        return Err(AppError::Forbidden(
            "A store user reads only its own store.".into(),
        ));
    }
    if let (Some(since), Some(until)) = (q.since, q.until)
        && since >= until
    {
        return Err(AppError::validation("until", "must be after since"));
    }
    Ok(Filter {
        table: q.table.clone(),
        row_id: q.row_id,
        device_id: q.device_id.clone(),
        user: q.user.clone(),
        origin: q.origin.clone(),
        since: q.since,
        until: q.until,
        store,
    })
}

/// Who changed what, newest first.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "auditList", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, description = "VALIDATION_FAILED"),
              (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    extract::Query(q): extract::Query<AuditQuery>,
) -> AppResult<Json<AuditPage>> {
    let f = filter_for(&state, &who, &q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::validation("limit", "between 1 and 1000"));
    }
    let entries = read::page(&state.pool, &who.tenant, &f, q.before, limit).await?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}

/// Every matching entry, oldest first, as CSV or NDJSON, streamed as it is read.
#[utoipa::path(get, path = "/api/v1/audit/export", operation_id = "auditExport", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "One line per entry, oldest first",
                content((String = "text/csv"), (String = "application/x-ndjson"))),
              (status = 400, description = "VALIDATION_FAILED"), (status = 403, description = "FORBIDDEN")),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    who: Principal,
    extract::Query(q): extract::Query<AuditQuery>,
) -> AppResult<Response> {
    let f = filter_for(&state, &who, &q)?;
    let csv = match q.format.as_deref() {
        Some("csv") | None => true,
        Some("ndjson") => false,
        Some(_) => return Err(AppError::validation("format", "csv or ndjson")),
    };
    Ok(export_response(&state, &who.tenant, f, csv))
}

/// The streamed export of `f` in tenant `tenant` (the API's and the console's).
pub fn export_response(state: &AppState, tenant: &str, f: Filter, csv: bool) -> Response {
    let pages = read::all(state.pool.clone(), tenant.to_string(), f);
    let lines = pages.map(move |page| {
        let page = page.map_err(|e| {
            // The answer has started: the error can only end it short (the client
            // sees a truncated body); the log says why.
            tracing::warn!(error = %e, "audit export failed mid-stream");
            std::io::Error::other("audit export failed")
        })?;
        let mut chunk = String::new();
        for e in &page {
            if csv {
                chunk.push_str(&read::csv_line(e));
            } else {
                chunk.push_str(&serde_json::to_string(e).unwrap_or_default());
                chunk.push('\n');
            }
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let (kind, head, name) = if csv {
        ("text/csv; charset=utf-8", read::CSV_HEADER, "audit.csv")
    } else {
        ("application/x-ndjson", "", "audit.ndjson")
    };
    let body = futures_util::stream::once(async move { Ok(head.to_string()) }).chain(lines);
    (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
