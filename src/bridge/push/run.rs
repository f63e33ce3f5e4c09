//! One attempt at an offline push's transaction: each change's references resolved
//! (local ids of this push or earlier ones), the change applied as one engine row under
//! the push's strategy, and each create's local id remembered.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::answer::{Outcome, error_result, server_id, success_result};
use super::{Checked, local_ref};
use crate::auth::Principal;
use crate::bridge::BridgeCtx;
use crate::error::AppResult;
use crate::sync::push::{self, Applied, Savepoint};
use crate::sync::registry::{Registry, Table};
use crate::sync::rules::Strategy;
use crate::sync::validate::{RowError, parse_time};

/// `2026-12-07T10:15:30.123456`: a date and time with no offset.
fn is_local_time(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

/// What the local ids of one push created: local id → (table, row).
type Created = HashMap<String, (String, Uuid)>;

/// One attempt at the push's transaction.
pub(super) struct Run<'a> {
    pub ctx: &'a BridgeCtx,
    pub who: &'a Principal,
    pub registry: &'a Registry,
    pub strategy: Strategy,
    pub stop_on_error: bool,
}

impl Run<'_> {
    pub async fn apply(
        &self,
        checked: &[Checked<'_>],
        order: &[usize],
        mut results: Vec<Value>,
    ) -> AppResult<Outcome> {
        let mut tx = self.ctx.sync.pool.begin().await?;
        push::set_writer(&mut tx, self.who).await?;
        crate::db::set_origin(&mut tx, "bridgecore").await?;
        let all = match self.stop_on_error {
            true => Some(Savepoint::open(&mut tx, "offline_all").await?),
            false => None,
        };
        let receipt = Utc::now().round_subsecs(6);
        let mut created: Created = HashMap::new();
        let mut id_mapping = BTreeMap::new();
        for &i in order {
            let c = &checked[i];
            let t0 = Instant::now();
            let done = self.apply_change(&mut tx, c, receipt, &mut created).await?;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let ch = &c.change;
            results[c.index] = match done {
                Ok(applied) => {
                    let server_id = applied.row.as_ref().and_then(server_id);
                    if ch.action == "create"
                        && let (Some(l), Some(id)) = (&ch.local_id, &server_id)
                    {
                        id_mapping.insert(l.clone(), id.clone());
                    }
                    success_result(ch, &applied, server_id, receipt, ms)
                }
                Err(e) => error_result(ch.local_id.as_deref(), &ch.action, &ch.model, &e, ms),
            };
        }
        let failed = results.iter().any(|r| r["status"] == "failed");
        if let Some(all) = all
            && failed
        {
            all.roll_back(&mut tx).await?;
            for r in results.iter_mut().filter(|r| r["status"] != "failed") {
                r["status"] = json!("failed");
                r["code"] = json!("NOT_APPLIED");
                r["message"] = json!("another change failed and stop_on_error is set");
            }
            id_mapping.clear();
        }
        tx.commit().await?;
        self.ctx.sync.quiet.wrote(&self.who.tenant);
        Ok(Outcome {
            results,
            id_mapping,
            receipt,
        })
    }

    /// Resolves a change's references and applies it as one engine row.
    async fn apply_change(
        &self,
        conn: &mut PgConnection,
        c: &Checked<'_>,
        receipt: DateTime<Utc>,
        created: &mut Created,
    ) -> AppResult<Result<Applied, RowError>> {
        let who = self.who;
        let ch = &c.change;
        let mut data = ch.data.clone().unwrap_or_default();
        for (field, value) in &mut data {
            if let Some(l) = local_ref(value) {
                match self.local_row(conn, l, created).await? {
                    Some((_, id)) => *value = json!(id),
                    None => return Ok(Err(unknown_local(field, l))),
                }
            }
        }
        let id = match ch.action.as_str() {
            "create" => {
                let local = ch.local_id.as_deref().unwrap_or_default();
                if let Some((table, id)) = self.local_row(conn, local, created).await? {
                    // Pushed before: the same row, nothing created. Only a row of this
                    // model and tenant: a local id that created a row of another model
                    // (whose id may be any UUID the client chose) shows nothing else.
                    if table != c.table.name {
                        return Ok(Err(RowError::validation(format!(
                            "local_id '{local}' already created a row of model '{table}'"
                        ))));
                    }
                    let row = current_row(conn, c.table, &who.tenant, id).await?;
                    return Ok(Ok(Applied {
                        row,
                        written: false,
                        conflict: None,
                    }));
                }
                match data.get("id").and_then(Value::as_str) {
                    Some(s) => match Uuid::parse_str(s) {
                        Ok(id) => id,
                        Err(_) => return Ok(Err(RowError::validation("'id' must be a UUID"))),
                    },
                    None => Uuid::new_v4(),
                }
            }
            _ => match self.target(conn, c, created).await? {
                Some(id) => id,
                None => {
                    return Ok(Err(RowError::new(
                        "NOT_FOUND",
                        "record_id names no row of this model",
                    )));
                }
            },
        };
        data.insert("id".into(), json!(id));
        let version = match (ch.action.as_str(), ch.version) {
            ("create", _) => 0,
            (_, Some(v)) if v > 1 => v,
            // No version tracked (the example clients always send 1): the version this
            // device last saw.
            _ => seen_version(conn, who, &c.table.name, id).await?,
        };
        data.insert("version".into(), json!(version));
        if ch.action == "delete" {
            data.insert("deleted".into(), json!(true));
        }
        if let Some(ts) = &ch.local_timestamp {
            match (parse_time(ts), is_local_time(ts)) {
                (Some(_), _) => {
                    data.insert("updated_at".into(), json!(ts));
                }
                // Dart's `DateTime.now().toIso8601String()`: a wall-clock time with no
                // zone cannot be placed in time, so the change counts as made when the
                // server received it (as a change with no timestamp does).
                (None, true) => {}
                (None, false) => {
                    return Ok(Err(RowError::validation(
                        "local_timestamp must be an RFC 3339 timestamp (or a local time without an offset)",
                    )));
                }
            }
        }
        let raw = Value::Object(data);
        let local_id = ch.local_id.as_deref();
        let writer = push::Writer {
            registry: self.registry,
            who,
            strategy: Some(self.strategy),
            receipt,
            limits: self.ctx.sync.limits,
        };
        let applied = push::apply_one(conn, &writer, c.table, &raw, local_id).await?;
        if let (Ok(a), "create", Some(local)) = (&applied, ch.action.as_str(), local_id)
            && a.row.is_some()
        {
            remember(conn, who, local, &c.table.name, id).await?;
            created.insert(local.to_string(), (c.table.name.clone(), id));
        }
        Ok(applied)
    }

    /// The table and row a local id created: in this push, or before (this device's
    /// map).
    async fn local_row(
        &self,
        conn: &mut PgConnection,
        local: &str,
        created: &Created,
    ) -> sqlx::Result<Option<(String, Uuid)>> {
        if let Some(found) = created.get(local) {
            return Ok(Some(found.clone()));
        }
        sqlx::query_as(
            "SELECT table_name, row_id FROM offline_local_ids
             WHERE tenant_id = $1 AND device_id = $2 AND local_id = $3",
        )
        .bind(&self.who.tenant)
        .bind(&self.who.device_id)
        .bind(local)
        .fetch_optional(conn)
        .await
    }

    /// The row an update or delete names: a UUID, an Odoo id (mirror tables), or
    /// `{"local_id": ...}`; without `record_id`, the row its own local id created.
    async fn target(
        &self,
        conn: &mut PgConnection,
        c: &Checked<'_>,
        created: &Created,
    ) -> sqlx::Result<Option<Uuid>> {
        let by_local = |found: Option<(String, Uuid)>| found.map(|(_, id)| id);
        match &c.change.record_id {
            Some(Value::String(s)) => {
                let Ok(id) = Uuid::parse_str(s) else {
                    return Ok(None);
                };
                // An update never creates: the row must exist (whose it is, the
                // engine checks).
                let sql = format!("SELECT id FROM {} WHERE id = $1", c.table.ident());
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(conn)
                    .await
            }
            Some(Value::Number(n)) if c.table.column("odoo_id").is_some() => {
                let sql = format!(
                    "SELECT id FROM {} WHERE odoo_id = $1 AND tenant_id = $2 LIMIT 1",
                    c.table.ident()
                );
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(n.as_i64())
                    .bind(&self.who.tenant)
                    .fetch_optional(conn)
                    .await
            }
            Some(v) => match local_ref(v) {
                Some(l) => self.local_row(conn, l, created).await.map(by_local),
                None => Ok(None),
            },
            None => match &c.change.local_id {
                Some(l) => self.local_row(conn, l, created).await.map(by_local),
                None => Ok(None),
            },
        }
    }
}

fn unknown_local(field: &str, local: &str) -> RowError {
    RowError::new(
        "REFERENCE_MISSING",
        format!("'{field}' refers to local_id '{local}', which created no row"),
    )
}

/// Keeps `local` → row for this device, so a retried create maps to the same row.
async fn remember(
    conn: &mut PgConnection,
    who: &Principal,
    local: &str,
    table: &str,
    id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO offline_local_ids (tenant_id, device_id, local_id, table_name, row_id)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&who.tenant)
    .bind(&who.device_id)
    .bind(local)
    .bind(table)
    .bind(id)
    .execute(conn)
    .await
    .map(|_| ())
}

/// A row of the caller's tenant, as a push answers it.
/// The version of a row a device last saw: the newest at or before the point its
/// event positions cover (`offline_sync_state.seen_xid`), or written by the device
/// itself. 0 when there is none (never pulled, or the versions it saw were pruned):
/// an edit of an existing row is then a conflict, never a silent overwrite.
async fn seen_version(
    conn: &mut PgConnection,
    who: &Principal,
    table: &str,
    id: Uuid,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT coalesce(max(h.version), 0) FROM sync_row_history h
         WHERE h.table_name = $1 AND h.row_id = $2 AND h.tenant_id = $3
           AND (h.origin_device = $4
                OR h.xid <= (SELECT max(seen_xid) FROM offline_sync_state
                             WHERE tenant_id = $3 AND device_id = $4 AND user_id = $5))",
    )
    .bind(table)
    .bind(id)
    .bind(&who.tenant)
    .bind(&who.device_id)
    .bind(who.user_id)
    .fetch_one(conn)
    .await
}

async fn current_row(
    conn: &mut PgConnection,
    table: &Table,
    tenant: &str,
    id: Uuid,
) -> sqlx::Result<Option<Value>> {
    let sql = format!(
        "SELECT to_jsonb(t) - 'tenant_id' FROM {} t WHERE id = $1 AND tenant_id = $2",
        table.ident()
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(tenant)
        .fetch_optional(conn)
        .await
}
