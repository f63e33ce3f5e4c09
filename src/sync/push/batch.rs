//! The set-based push path: a chunk of one table's rows in a handful of statements
//! (lock and read the server rows, check references, read the conflicting rows'
//! origins, write the inserts and the updates) instead of four or five round trips
//! per row. Decisions are the row-by-row path's own (`decide::plan`,
//! `decide::settle`), so both give the same answer.
//!
//! It declines (`Ok(None)`) whatever it cannot settle in bulk: a row PostgreSQL
//! refuses (a constraint, a trigger) or a reference that is not a UUID. The caller then
//! rolls the chunk back and applies its rows one by one, each under its own savepoint,
//! which names the failing row.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use uuid::Uuid;

use super::decide::{
    Caller, Done, Outcome, Plan, Written, check_scope, checked_row, insert_doc, owned_by_caller,
    plan, reference_missing, reference_to_check, report, settle, update_doc,
};
use super::wire::ConflictReport;
use super::write::{Failure, insert_sql, parent_store_filter};
use crate::db::sql::ident_list;
use crate::error::AppResult;
use crate::sync::registry::{Registry, Table};
use crate::sync::rules::Settlement;
use crate::sync::validate::{PushedRow, RowError};

/// Most rows in one chunk (one set of statements).
const MAX_CHUNK: usize = 1_000;

/// Splits a table's rows into chunks that can be applied in bulk: no id twice in a
/// chunk (a later edit of a row must see the earlier one), at most `MAX_CHUNK` rows.
/// A table that refers to itself goes row by row (a child may need a parent sent
/// just before it in the same chunk).
pub(super) fn chunks<'a>(table: &Table, rows: &'a [Value]) -> Vec<&'a [Value]> {
    if table.parents.iter().any(|p| p.parent == table.name) {
        return rows.chunks(1).collect();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let id = row.get("id").and_then(Value::as_str);
        let repeated = id.is_some_and(|id| !seen.insert(id));
        if repeated || i - start == MAX_CHUNK {
            out.push(&rows[start..i]);
            start = i;
            seen.clear();
            if let Some(id) = id {
                seen.insert(id);
            }
        }
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// A row of the chunk on its way through.
enum Step {
    Failed(RowError),
    /// Well formed and writable by the role.
    Valid(PushedRow),
    /// Owned by the caller and in its store; with the server row, if any.
    Checked(PushedRow, Option<Value>),
    /// Decided; a settled conflict's report rides along.
    Planned(PushedRow, Plan, Option<ConflictReport>),
}

impl Step {
    fn take(&mut self) -> Step {
        std::mem::replace(self, Step::Failed(RowError::validation("")))
    }
}

/// Applies `chunk` in bulk; `None` when it must go row by row (see the module doc).
pub(super) async fn apply_chunk(
    conn: &mut sqlx::PgConnection,
    caller: &Caller<'_>,
    registry: &Registry,
    table: &Table,
    chunk: &[Value],
    written: &Written,
) -> AppResult<Option<Vec<Result<Done, RowError>>>> {
    let who = caller.who;
    let mut steps: Vec<Step> = chunk
        .iter()
        .map(
            |raw| match checked_row(table, who, raw, caller.max_value_bytes) {
                Ok(row) => Step::Valid(row),
                Err(e) => Step::Failed(e),
            },
        )
        .collect();

    // Lock the server rows in id order (concurrent pushes then never deadlock on them).
    let ids: Vec<Uuid> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Valid(row) => Some(row.id),
            _ => None,
        })
        .collect();
    let sql = format!(
        "SELECT id, tenant_id, to_jsonb(t) - 'tenant_id' FROM {} t
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        table.ident()
    );
    let mut existing: HashMap<Uuid, (String, Value)> =
        sqlx::query_as::<_, (Uuid, String, Value)>(sqlx::AssertSqlSafe(sql))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(id, tenant, doc)| (id, (tenant, doc)))
            .collect();
    for step in &mut steps {
        *step = match step.take() {
            Step::Valid(mut row) => {
                let server = owned_by_caller(who, existing.remove(&row.id)).and_then(|server| {
                    check_scope(table, who, server.as_ref(), &mut row).map(|()| server)
                });
                match server {
                    Ok(server) => Step::Checked(row, server),
                    Err(e) => Step::Failed(e),
                }
            }
            other => other,
        };
    }

    if !check_references(conn, caller, registry, table, &mut steps).await? {
        return Ok(None);
    }
    for step in &mut steps {
        *step = match step.take() {
            Step::Checked(row, server) => match plan(table, &row, server, written) {
                Ok(p) => Step::Planned(row, p, None),
                Err(e) => Step::Failed(e),
            },
            other => other,
        };
    }
    if !settle_conflicts(conn, caller, table, chunk, &mut steps).await? {
        return Ok(None);
    }

    let Some(mut stored) = write(conn, caller, table, &steps).await? else {
        return Ok(None);
    };
    let results = steps
        .into_iter()
        .map(|step| match step {
            Step::Planned(_, Plan::Nothing, report) => Ok((Outcome::Nothing, report)),
            Step::Planned(_, Plan::Keep(server), report) => Ok((Outcome::Kept(server), report)),
            Step::Planned(row, _, report) => match stored.remove(&row.id) {
                Some(doc) => Ok((Outcome::Written(doc), report)),
                None => Err(RowError::validation("the row was not written")),
            },
            Step::Failed(e) => Err(e),
            Step::Valid(_) | Step::Checked(..) => {
                Err(RowError::validation("the row was not decided"))
            }
        })
        .collect();
    Ok(Some(results))
}

/// Checks every reference the chunk sets, one query per parent column. `false` when a
/// reference cannot be checked in bulk.
async fn check_references(
    conn: &mut sqlx::PgConnection,
    caller: &Caller<'_>,
    registry: &Registry,
    table: &Table,
    steps: &mut [Step],
) -> AppResult<bool> {
    let who = caller.who;
    for parent_ref in &table.parents {
        let Some(parent) = registry.get(&parent_ref.parent) else {
            continue;
        };
        let mut wanted: Vec<(usize, Uuid)> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let Step::Checked(row, server) = step else {
                continue;
            };
            let Some(target) = reference_to_check(parent_ref, server.as_ref(), row) else {
                continue;
            };
            match Uuid::parse_str(target) {
                Ok(id) => wanted.push((i, id)),
                Err(_) => return Ok(false),
            }
        }
        if wanted.is_empty() {
            continue;
        }
        let targets: Vec<Uuid> = wanted.iter().map(|(_, id)| *id).collect();
        let sql = format!(
            "SELECT p.id FROM {} p WHERE p.id = ANY($1) AND p.tenant_id = $2{}",
            parent.ident(),
            parent_store_filter(parent, who)
        );
        let found: HashSet<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&targets)
            .bind(&who.tenant)
            .bind(who.store_id.as_deref())
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        for (i, id) in wanted {
            if !found.contains(&id) {
                steps[i] = Step::Failed(reference_missing(&parent_ref.column, &parent.name));
            }
        }
    }
    Ok(true)
}

/// Settles the chunk's conflicts by the table's rule, reading who last wrote each
/// conflicting row in one query. `false` when a conflict needs the row-by-row path
/// (a merge or a manual conflict).
async fn settle_conflicts(
    conn: &mut sqlx::PgConnection,
    caller: &Caller<'_>,
    table: &Table,
    chunk: &[Value],
    steps: &mut [Step],
) -> AppResult<bool> {
    let conflicting: Vec<Uuid> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Planned(row, Plan::Conflict(_), _) => Some(row.id),
            _ => None,
        })
        .collect();
    if conflicting.is_empty() {
        return Ok(true);
    }
    let roles: HashMap<Uuid, Option<String>> = sqlx::query_as(
        "SELECT row_id, origin_role FROM sync_changes WHERE table_name = $1 AND row_id = ANY($2)",
    )
    .bind(&table.name)
    .bind(&conflicting)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    for (step, raw) in steps.iter_mut().zip(chunk) {
        if let Step::Planned(row, Plan::Conflict(server), None) = step {
            let role = roles.get(&row.id).cloned().flatten();
            // Merges read the base version and manual conflicts open an inbox entry:
            // both are rare, and go row by row.
            match settle(table, caller, row, server, role.as_deref()) {
                Settlement::Merge { .. } | Settlement::Manual => return Ok(false),
                Settlement::Client | Settlement::Server => {}
            }
        }
        *step = match step.take() {
            Step::Planned(row, Plan::Conflict(server), None) => {
                let role = roles.get(&row.id).cloned().flatten();
                let (plan, winner) = match settle(table, caller, &row, &server, role.as_deref()) {
                    Settlement::Client => (Plan::Update(server.clone()), "client"),
                    _ => (Plan::Keep(server.clone()), "server"),
                };
                let report = report(table, caller, &row, raw, &server, winner, None);
                Step::Planned(row, plan, Some(report))
            }
            other => other,
        };
    }
    Ok(true)
}

/// Writes the planned inserts and updates, one statement per set of columns sent
/// (rows of one device usually share one). The stored rows, by id; `None` when
/// PostgreSQL refused a row.
async fn write(
    conn: &mut sqlx::PgConnection,
    caller: &Caller<'_>,
    table: &Table,
    steps: &[Step],
) -> AppResult<Option<HashMap<Uuid, Value>>> {
    let mut inserts: BTreeMap<Vec<String>, Vec<Value>> = BTreeMap::new();
    let mut updates: BTreeMap<Vec<String>, (Vec<Value>, Vec<Uuid>)> = BTreeMap::new();
    for step in steps {
        let (doc, groups) = match step {
            Step::Planned(row, Plan::Insert, _) => {
                (insert_doc(row, caller.who, caller.receipt), &mut inserts)
            }
            Step::Planned(row, Plan::Update(server), _) => {
                let mut doc = update_doc(row, caller.receipt, server);
                let names: Vec<String> = doc.keys().cloned().collect();
                doc.insert("id".into(), Value::String(row.id.to_string()));
                let group = updates.entry(names).or_default();
                group.0.push(Value::Object(doc));
                group.1.push(row.id);
                continue;
            }
            _ => continue,
        };
        let names: Vec<String> = doc.keys().cloned().collect();
        groups.entry(names).or_default().push(Value::Object(doc));
    }
    let t = table.ident();
    let mut stored = HashMap::new();
    for (names, docs) in inserts {
        let sql = insert_sql(table, &ident_list("", &names), "jsonb_populate_recordset")
            + " RETURNING t.id, to_jsonb(t) - 'tenant_id'";
        if !run_write(conn, sql, docs, None, &mut stored).await? {
            return Ok(None);
        }
    }
    for (names, (docs, ids)) in updates {
        let cols = ident_list("", &names);
        let from_r = ident_list("r.", &names);
        // `t.id = ANY($2)` lets the planner reach the rows by primary key: it cannot
        // see how many rows the recordset holds, and would scan the table instead.
        let sql = format!(
            "UPDATE {t} AS t SET ({cols}) = ROW({from_r})
             FROM jsonb_populate_recordset(NULL::{t}, $1) AS r
             WHERE t.id = ANY($2) AND t.id = r.id
             RETURNING t.id, to_jsonb(t) - 'tenant_id'"
        );
        if !run_write(conn, sql, docs, Some(ids), &mut stored).await? {
            return Ok(None);
        }
    }
    Ok(Some(stored))
}

/// Runs one bulk write; `false` when PostgreSQL refused one of its rows.
async fn run_write(
    conn: &mut sqlx::PgConnection,
    sql: String,
    docs: Vec<Value>,
    ids: Option<Vec<Uuid>>,
    stored: &mut HashMap<Uuid, Value>,
) -> AppResult<bool> {
    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(Value::Array(docs));
    if let Some(ids) = ids {
        query = query.bind(ids);
    }
    let rows: Result<Vec<(Uuid, Value)>, sqlx::Error> = query.fetch_all(&mut *conn).await;
    match rows.map_err(Failure::from) {
        Ok(rows) => {
            stored.extend(rows);
            Ok(true)
        }
        Err(Failure::Row(_)) => Ok(false),
        Err(Failure::Fatal(e)) => Err(e),
    }
}
