//! Reading the trail: filtered pages, newest first, for the API and the console
//! (keyset on `seq`, so a page costs the same however deep), and every matching
//! entry oldest first for export, fetched a page at a time so that a year of a busy
//! store is never held in memory.

use chrono::{DateTime, Utc};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Entries per statement when exporting.
const EXPORT_PAGE: i64 = 1000;

/// Which entries: all of the tenant's, narrowed by each field that is set.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub table: Option<String>,
    pub row_id: Option<Uuid>,
    pub device_id: Option<String>,
    pub user: Option<String>,
    pub origin: Option<String>,
    /// From this time (inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Until this time (exclusive).
    pub until: Option<DateTime<Utc>>,
    /// Only this store's rows (a store user's reads are held to its store).
    pub store: Option<String>,
}

/// One change, as the API and the export show it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The entry's place in the tenant's chain.
    pub seq: i64,
    pub table: String,
    pub row_id: Uuid,
    /// The row's version after the change.
    pub version: Option<i64>,
    pub store_id: Option<String>,
    /// `insert`, `update` or `delete`.
    pub op: String,
    /// `{"column": [old, new]}` for each column that changed.
    #[schema(value_type = Object)]
    pub changed: Value,
    pub server_time: DateTime<Utc>,
    /// The row's `updated_at` as written (the device's clock, for a push).
    pub device_time: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub device_id: Option<String>,
    pub role: Option<String>,
    /// `push`, `bridgecore`, `inbox`, `console`, `odoo_mirror`, `odoo_write_back`, `sql`.
    pub origin: String,
}

const COLUMNS: &str = "seq, table_name AS table, row_id, version, store_id, op, changed,
    server_time, device_time, user_name AS user, device_id, role, origin";

const MATCHES: &str = "tenant_id = $1
    AND ($2::text IS NULL OR table_name = $2) AND ($3::uuid IS NULL OR row_id = $3)
    AND ($4::text IS NULL OR device_id = $4) AND ($5::text IS NULL OR user_name = $5)
    AND ($6::text IS NULL OR origin = $6) AND ($7::timestamptz IS NULL OR server_time >= $7)
    AND ($8::timestamptz IS NULL OR server_time < $8) AND ($9::text IS NULL OR store_id = $9)";

fn bind<'q>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, AuditEntry, sqlx::postgres::PgArguments>,
    tenant: &'q str,
    f: &'q Filter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, AuditEntry, sqlx::postgres::PgArguments> {
    q.bind(tenant)
        .bind(&f.table)
        .bind(f.row_id)
        .bind(&f.device_id)
        .bind(&f.user)
        .bind(&f.origin)
        .bind(f.since)
        .bind(f.until)
        .bind(&f.store)
}

/// Up to `limit` entries older than `before` (or the newest), newest first.
pub async fn page(
    pool: &PgPool,
    tenant: &str,
    f: &Filter,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<AuditEntry>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE {MATCHES}
           AND ($10::bigint IS NULL OR seq < $10) ORDER BY seq DESC LIMIT $11"
    );
    bind(sqlx::query_as(sqlx::AssertSqlSafe(sql)), tenant, f)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// Every matching entry, oldest first, a page per statement.
pub fn all(
    pool: PgPool,
    tenant: String,
    f: Filter,
) -> impl Stream<Item = sqlx::Result<Vec<AuditEntry>>> + Send + 'static {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE {MATCHES}
           AND seq > $10 ORDER BY seq LIMIT $11"
    );
    stream::unfold(Some(0i64), move |after| {
        let (pool, tenant, f, sql) = (pool.clone(), tenant.clone(), f.clone(), sql.clone());
        async move {
            let after = after?;
            let rows = bind(sqlx::query_as(sqlx::AssertSqlSafe(sql)), &tenant, &f)
                .bind(after)
                .bind(EXPORT_PAGE)
                .fetch_all(&pool)
                .await;
            match rows {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = (rows.len() as i64 == EXPORT_PAGE)
                        .then(|| rows.last().map(|r| r.seq))
                        .flatten();
                    Some((Ok(rows), next))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    })
    .fuse()
}

/// The CSV header and one entry as a CSV line (RFC 4180 quoting; `changed` as JSON).
pub const CSV_HEADER: &str = "seq,server_time,device_time,table,row_id,version,store_id,op,origin,user,device_id,role,changed\r\n";

pub fn csv_line(e: &AuditEntry) -> String {
    let fields = [
        e.seq.to_string(),
        e.server_time.to_rfc3339(),
        e.device_time.map(|t| t.to_rfc3339()).unwrap_or_default(),
        e.table.clone(),
        e.row_id.to_string(),
        e.version.map(|v| v.to_string()).unwrap_or_default(),
        e.store_id.clone().unwrap_or_default(),
        e.op.clone(),
        e.origin.clone(),
        e.user.clone().unwrap_or_default(),
        e.device_id.clone().unwrap_or_default(),
        e.role.clone().unwrap_or_default(),
        e.changed.to_string(),
    ];
    let mut line = fields.map(|f| csv_field(&f)).join(",");
    line.push_str("\r\n");
    line
}

fn csv_field(f: &str) -> String {
    // A leading = + - @ would run as a formula in a spreadsheet: quote it as text.
    let formula = match f.chars().next() {
        Some('=' | '+' | '@') => true,
        Some('-') => !f[1..].starts_with(|c: char| c.is_ascii_digit()),
        _ => false,
    };
    if formula || f.contains([',', '"', '\r', '\n']) {
        let body = if formula {
            format!("'{f}")
        } else {
            f.to_string()
        };
        format!("\"{}\"", body.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_field("-12.5"), "-12.5");
    }
}
