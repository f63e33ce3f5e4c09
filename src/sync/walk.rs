//! A first sync walks the data, not the change log: the tables in name order, each by
//! primary key, then the log from the walk's starting horizon on.
//!
//! Reading the log from its start joins every entry to its row by key, in transaction
//! order: random reads all over the table. The walk reads each table in key order
//! instead, a page at a time, each page at a snapshot of its own. What makes that
//! safe is the horizon `H` read before the walk's first page (`sync_horizon()`):
//!
//! - every transaction of this database below `H` had finished then, so every later
//!   snapshot, each page's included, sees all they wrote;
//! - every change made by a transaction at or above `H` has its change-log entry at
//!   `(xid, seq)` past `Position::before_xid(H)` (an entry only ever moves forward),
//!   and the pull reads the log from there once the walk is done.
//!
//! So a row the walk read before a change, or never saw (inserted behind it, or
//! deleted), comes in its latest state, or as a tombstone, from the log afterwards; a
//! row last changed below `H` is read by the walk as it is. The cursor carries the walk's
//! place (`cursor::Walk`) and `before_xid(H)` as its position.

use sqlx::PgPool;
use uuid::Uuid;

use super::cursor::Walk;
use super::registry::Table;
use crate::db::sql::Ident;

/// Rows read by one page of the walk.
pub struct Walked {
    /// Table, id and the row as JSON text (without `tenant_id`), in walk order.
    pub rows: Vec<(String, Uuid, String)>,
    /// Bytes of row text read.
    pub bytes: usize,
    /// Where the next page goes on; `None`: every table was walked to its end.
    pub next: Option<Walk>,
}

/// Where a walk of `tables` starts; `None` when there is nothing to walk.
pub fn first(tables: &[&Table]) -> Option<Walk> {
    tables.iter().map(|t| t.name.as_str()).min().map(|t| Walk {
        table: t.to_string(),
        after: None,
    })
}

/// Reads up to `limit` rows (and at most about `max_bytes` of them, always one) of
/// tenant `tenant` from `from` on, going on to the next table in name order when one
/// ends. A store user's page (`store`) holds that store's rows and unscoped ones.
pub async fn page(
    pool: &PgPool,
    tables: &[&Table],
    tenant: &str,
    store: Option<&str>,
    from: Walk,
    limit: usize,
    max_bytes: usize,
) -> sqlx::Result<Walked> {
    let mut order: Vec<&Table> = tables.to_vec();
    order.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Walked {
        rows: Vec::new(),
        bytes: 0,
        next: None,
    };
    let mut at = Some(from);
    for table in order {
        let Some(place) = at.take() else { break };
        if table.name < place.table {
            at = Some(place);
            continue;
        }
        // A table named in the cursor that is gone from the set starts the next one.
        let after = (table.name == place.table).then_some(place.after).flatten();
        let room = limit - out.rows.len();
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(table_sql(table, after.is_some())))
                .bind(tenant)
                .bind(store)
                .bind(room as i64 + 1)
                .bind(after)
                .fetch_all(pool)
                .await?;
        for (id, doc) in rows.into_iter().take(room) {
            if !out.rows.is_empty() && out.bytes >= max_bytes {
                break;
            }
            out.bytes += doc.len();
            out.rows.push((table.name.clone(), id, doc));
        }
        let full = out.rows.len() >= limit || out.bytes >= max_bytes;
        if full {
            // Stopped inside this table (or at its very end: the next page reads none
            // of it and goes on).
            let last = out
                .rows
                .iter()
                .rev()
                .find(|r| r.0 == table.name)
                .map(|r| r.1);
            out.next = Some(Walk {
                table: table.name.clone(),
                after: last.or(after),
            });
            return Ok(out);
        }
        // This table is done: the next one from its start.
        at = Some(Walk {
            table: String::new(),
            after: None,
        });
    }
    Ok(out)
}

/// One table's rows of a tenant in key order, after `$4` when `after`.
/// Binds: tenant, store, limit, after id.
fn table_sql(table: &Table, after: bool) -> String {
    let scope = match &table.scope_column {
        Some(c) => format!("r.{}::text", Ident(c)),
        None => "NULL::text".to_string(),
    };
    let from = if after {
        "AND r.id > $4"
    } else {
        "AND $4::uuid IS NULL"
    };
    format!(
        "SELECT r.id, {} AS doc FROM {} r
         WHERE r.tenant_id = $1 {from}
           AND ($2::text IS NULL OR {scope} IS NULL OR {scope} = $2)
         ORDER BY r.id LIMIT $3",
        table.row_json_sql("r"),
        table.ident()
    )
}
