//! The SQL of a push: savepoints, the row-by-row path (lock, check references, write
//! one row), the statements that write rows from JSON documents, and the sorting of
//! PostgreSQL's refusals into row errors (a constraint, a bad value) or failures of
//! the whole push.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use super::decide::{
    Caller, Done, Outcome, Plan, Written, check_scope, checked_row, insert_doc, merged_row,
    owned_by_caller, plan, reference_missing, reference_to_check, report, settle, update_doc,
};
use crate::auth::{Principal, Role};
use crate::db::sql::{Ident, ident_list};
use crate::error::AppError;
use crate::sync::conflicts::{self, NewConflict};
use crate::sync::registry::{Registry, Table};
use crate::sync::rules::Settlement;
use crate::sync::validate::{PushedRow, RowError};

/// A savepoint inside a transaction. Released or rolled back (and then released too,
/// so failing rows never nest savepoints) by the caller.
pub struct Savepoint(&'static str);

impl Savepoint {
    pub async fn open(conn: &mut PgConnection, name: &'static str) -> sqlx::Result<Savepoint> {
        exec(conn, &format!("SAVEPOINT {name}")).await?;
        Ok(Savepoint(name))
    }

    /// Keeps what was done since the savepoint.
    pub async fn release(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        exec(conn, &format!("RELEASE SAVEPOINT {}", self.0)).await
    }

    /// Undoes what was done since the savepoint.
    pub async fn roll_back(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        exec(conn, &format!("ROLLBACK TO SAVEPOINT {}", self.0)).await?;
        self.release(conn).await
    }
}

async fn exec(conn: &mut PgConnection, sql: &str) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Why one row failed: a row-level error, or something that aborts the push.
pub(super) enum Failure {
    Row(RowError),
    Fatal(AppError),
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Failure::Fatal(e)
    }
}

impl From<RowError> for Failure {
    fn from(e: RowError) -> Self {
        Failure::Row(e)
    }
}

impl From<sqlx::Error> for Failure {
    /// Data errors PostgreSQL raises for one row become that row's error; anything
    /// else (including contention, which the caller retries) fails the push.
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            let code = d.code().unwrap_or_default();
            let constraint = d.constraint().unwrap_or("").to_string();
            let row = match code.as_ref() {
                "23503" => Some(RowError::new(
                    "REFERENCE_MISSING",
                    "a referenced row does not exist",
                )),
                "23502" => Some(RowError::validation("a required column is missing")),
                "23514" => Some(RowError::validation(format!(
                    "a value is not allowed ({constraint})"
                ))),
                "23505" => Some(RowError::validation(format!(
                    "a value must be unique ({constraint})"
                ))),
                "P0001" => Some(RowError::validation(d.message().to_string())),
                c if c.starts_with("22") => Some(RowError::validation(format!(
                    "a value is not valid: {}",
                    d.message()
                ))),
                _ => None,
            };
            if let Some(r) = row {
                return Failure::Row(r);
            }
        }
        Failure::Fatal(e.into())
    }
}

/// Applies one row on its own: lock, checks, plan, write. `local_id` (BridgeCore)
/// goes with a conflict left open.
pub(super) async fn apply_row(
    conn: &mut PgConnection,
    caller: &Caller<'_>,
    registry: &Registry,
    table: &Table,
    raw: &Value,
    written: &Written,
    local_id: Option<&str>,
) -> Result<Done, Failure> {
    let who = caller.who;
    let mut row = checked_row(table, who, raw, caller.max_value_bytes)?;

    let sql = format!(
        "SELECT tenant_id, to_jsonb(t) - 'tenant_id' FROM {} t WHERE id = $1 FOR UPDATE",
        table.ident()
    );
    let existing: Option<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(row.id)
        .fetch_optional(&mut *conn)
        .await?;
    let server = owned_by_caller(who, existing)?;
    check_scope(table, who, server.as_ref(), &mut row)?;
    check_references(conn, registry, table, who, server.as_ref(), &row).await?;

    match plan(table, &row, server, written)? {
        Plan::Nothing => Ok((Outcome::Nothing, None)),
        Plan::Keep(server) => Ok((Outcome::Kept(server), None)),
        Plan::Insert => Ok((
            Outcome::Written(insert(conn, table, who, caller.receipt, &row).await?),
            None,
        )),
        Plan::Update(server) => Ok((
            Outcome::Written(update(conn, table, caller.receipt, &row, &server).await?),
            None,
        )),
        Plan::Conflict(server) => {
            let server_role: Option<String> = sqlx::query_scalar(
                "SELECT origin_role FROM sync_changes WHERE table_name = $1 AND row_id = $2",
            )
            .bind(&table.name)
            .bind(row.id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
            let settlement = settle(table, caller, &row, &server, server_role.as_deref());
            let clash = Clash {
                row: &row,
                raw,
                server,
                local_id,
            };
            settle_conflict(conn, caller, table, clash, settlement).await
        }
    }
}

/// Both sides of a conflict, and the BridgeCore local id of the device's change.
struct Clash<'a> {
    row: &'a PushedRow,
    raw: &'a Value,
    server: Value,
    local_id: Option<&'a str>,
}

/// Carries out a settled conflict: keep the server row, write the device's, write the
/// merge of both, or keep the server row and open a conflict in the inbox.
async fn settle_conflict(
    conn: &mut PgConnection,
    caller: &Caller<'_>,
    table: &Table,
    clash: Clash<'_>,
    settlement: Settlement,
) -> Result<Done, Failure> {
    let Clash {
        row,
        raw,
        server,
        local_id,
    } = clash;
    let receipt = caller.receipt;
    let (outcome, winner, conflict_id) = match settlement {
        Settlement::Server => (Outcome::Kept(server.clone()), "server", None),
        Settlement::Client => {
            let stored = update(conn, table, receipt, row, &server).await?;
            (Outcome::Written(stored), "client", None)
        }
        Settlement::Merge { overlaps_to_client } => {
            let base = conflicts::base(conn, &table.name, row.id, row.base_version).await?;
            match merged_row(table, row, base.as_ref(), &server, overlaps_to_client) {
                Some(merged) => {
                    let stored = update(conn, table, receipt, &merged, &server).await?;
                    (Outcome::Written(stored), "merged", None)
                }
                None => (Outcome::Kept(server.clone()), "server", None),
            }
        }
        Settlement::Manual => {
            let new = NewConflict {
                table,
                record_id: row.id,
                base_version: row.base_version,
                server: &server,
                client: raw,
                strategy: "manual",
                local_id,
            };
            let id = conflicts::open(conn, caller.who, new).await?;
            (Outcome::Kept(server.clone()), "pending", Some(id))
        }
    };
    let report = report(table, caller, row, raw, &server, winner, conflict_id);
    Ok((outcome, Some(report)))
}

/// Every reference a row sets must name a row of the caller's tenant (and store, for
/// store-scoped parents) that exists now: earlier in this push or before it.
async fn check_references(
    conn: &mut PgConnection,
    registry: &Registry,
    table: &Table,
    who: &Principal,
    server: Option<&Value>,
    row: &PushedRow,
) -> Result<(), Failure> {
    for parent_ref in &table.parents {
        let Some(target) = reference_to_check(parent_ref, server, row) else {
            continue;
        };
        let Some(parent) = registry.get(&parent_ref.parent) else {
            continue;
        };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} p WHERE p.id = $1::uuid AND p.tenant_id = $2{})",
            parent.ident(),
            parent_store_filter(parent, who)
        );
        let found: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(target)
            .bind(&who.tenant)
            .bind(who.store_id.as_deref())
            .fetch_one(&mut *conn)
            .await?;
        if !found {
            return Err(reference_missing(&parent_ref.column, &parent.name).into());
        }
    }
    Ok(())
}

/// Store devices may only point at their own store's rows of a store-scoped parent.
/// Binds the store as `$3` (always bound, so the statement's parameters stay fixed).
pub(super) fn parent_store_filter(parent: &Table, who: &Principal) -> String {
    match (&parent.scope_column, who.role) {
        (Some(col), Role::Store) => format!(" AND p.{} = $3", Ident(col)),
        _ => " AND ($3::text IS NULL OR $3::text IS NOT NULL)".to_string(),
    }
}

async fn insert(
    conn: &mut PgConnection,
    table: &Table,
    who: &Principal,
    receipt: DateTime<Utc>,
    row: &PushedRow,
) -> Result<Value, sqlx::Error> {
    let doc = insert_doc(row, who, receipt);
    let names: Vec<&String> = doc.keys().collect();
    let sql = insert_sql(table, &ident_list("", &names), "jsonb_populate_record")
        + " RETURNING to_jsonb(t) - 'tenant_id'";
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(Value::Object(doc))
        .fetch_one(conn)
        .await
}

async fn update(
    conn: &mut PgConnection,
    table: &Table,
    receipt: DateTime<Utc>,
    row: &PushedRow,
    server: &Value,
) -> Result<Value, sqlx::Error> {
    let doc = update_doc(row, receipt, server);
    let names: Vec<&String> = doc.keys().collect();
    let cols = ident_list("", &names);
    let t = table.ident();
    let sql = format!(
        "UPDATE {t} AS t SET ({cols}) = (SELECT {cols} FROM jsonb_populate_record(NULL::{t}, $1))
         WHERE t.id = $2 RETURNING to_jsonb(t) - 'tenant_id'"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(Value::Object(doc))
        .bind(row.id)
        .fetch_one(conn)
        .await
}

/// `INSERT INTO t (cols) SELECT cols FROM <populate>(NULL::t, $1)`: one row from a
/// JSON object (`jsonb_populate_record`) or many from an array
/// (`jsonb_populate_recordset`). The caller adds its `RETURNING`.
pub(super) fn insert_sql(table: &Table, cols: &str, populate: &str) -> String {
    let t = table.ident();
    format!("INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM {populate}(NULL::{t}, $1)")
}
