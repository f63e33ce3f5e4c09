//! Resolving a conflict from the inbox, once: `server_wins` keeps the server row,
//! `client_wins` applies the device's fields, `merge` merges them three-way (overlaps
//! keep the server's values), `custom` applies the fields given. A resolution is a write
//! by the resolver, checked like any push row (role, store, types, references), in the
//! same transaction that closes the conflict. It sits above both `conflicts` (the
//! inbox) and `push` (the write), which know nothing of it.

use serde::Deserialize;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::SyncCtx;
use super::conflicts::{Conflict, SELECT};
use super::merge;
use super::registry::{SYNC_COLUMNS, Table};
use crate::auth::{Principal, Role};
use crate::error::{AppError, AppResult};

/// `POST /api/v1/sync/conflicts/{id}/resolve` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// `server_wins`, `client_wins`, `merge` or `custom`.
    pub strategy: String,
    /// The fields to store, for `custom`.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// Resolves one open conflict; a second resolution is refused.
pub async fn run(ctx: &SyncCtx, who: &Principal, id: Uuid, req: Resolve) -> AppResult<Conflict> {
    let mut tx = ctx.pool.begin().await?;
    // A store device reaches only the conflicts of its device under its user.
    let own = (who.role != Role::Manager).then_some(who);
    let sql = format!(
        "{SELECT} WHERE id = $1 AND tenant_id = $2
           AND ($3::text IS NULL OR (device_id = $3 AND user_id = $4))
         FOR UPDATE"
    );
    let conflict: Option<Conflict> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&who.tenant)
        .bind(own.map(|p| p.device_id.as_str()))
        .bind(own.map(|p| p.user_id))
        .fetch_optional(&mut *tx)
        .await?;
    let Some(conflict) = conflict else {
        return Err(AppError::NotFound("No such conflict.".into()));
    };
    if conflict.status != "open" {
        return Err(AppError::Conflict {
            code: "CONFLICT_ALREADY_RESOLVED",
            message: "This conflict was already resolved.".into(),
        });
    }
    let registry = ctx.registry.current();
    let table = registry
        .get(&conflict.table)
        .ok_or_else(|| AppError::UnknownTable(conflict.table.clone()))?;
    let fields = resolution_fields(&mut tx, table, &conflict, &req).await?;
    let origin = if who.device_id == crate::auth::console::CONSOLE_DEVICE {
        "console"
    } else {
        "inbox"
    };
    crate::db::set_origin(&mut tx, origin).await?;
    let stored = match fields {
        None => conflict.server_data.clone(),
        Some(fields) => super::push::write_fields(
            &mut tx,
            ctx,
            &registry,
            who,
            table,
            conflict.record_id,
            fields,
        )
        .await?
        .map_err(|e| AppError::validation(format!("data ({})", e.code), e.message))?,
    };
    let resolved_by = format!("{}@{}", who.username, who.device_id);
    let sql = format!(
        "WITH done AS (
             UPDATE sync_conflicts SET status = 'resolved', resolution = $2, resolved_data = $3,
                 resolved_by = $4, resolved_at = now()
             WHERE id = $1 RETURNING *)
         {} ",
        SELECT.replace("FROM sync_conflicts", "FROM done")
    );
    let done: Conflict = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&req.strategy)
        .bind(&stored)
        .bind(&resolved_by)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    ctx.quiet.wrote(&who.tenant);
    tracing::info!(conflict = %id, table = %done.table, record = %done.record_id,
        strategy = %req.strategy, by = %resolved_by, "conflict resolved");
    Ok(done)
}

/// The fields a resolution writes over the current row; `None` keeps it.
async fn resolution_fields(
    conn: &mut PgConnection,
    table: &Table,
    conflict: &Conflict,
    req: &Resolve,
) -> AppResult<Option<Map<String, Value>>> {
    let client = data_fields(&conflict.client_data);
    match (req.strategy.as_str(), &req.data) {
        ("server_wins", None) => Ok(None),
        ("client_wins", None) => Ok(Some(client)),
        ("merge", None) => {
            let current = current_row(conn, table, conflict.record_id).await?;
            let merged =
                merge::three_way(table, conflict.base_data.as_ref(), &current, &client, false);
            Ok((!merged.apply.is_empty()).then_some(merged.apply))
        }
        ("custom", Some(Value::Object(data))) => {
            Ok(Some(data_fields(&Value::Object(data.clone()))))
        }
        ("custom", _) => Err(AppError::validation(
            "data",
            "custom needs the fields to store, as an object",
        )),
        ("server_wins" | "client_wins" | "merge", Some(_)) => {
            Err(AppError::validation("data", "only custom takes data"))
        }
        _ => Err(AppError::validation(
            "strategy",
            "must be server_wins, client_wins, merge or custom",
        )),
    }
}

/// The data fields of a row (the sync columns are the server's).
fn data_fields(row: &Value) -> Map<String, Value> {
    row.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !SYNC_COLUMNS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn current_row(conn: &mut PgConnection, table: &Table, id: Uuid) -> AppResult<Value> {
    let sql = format!(
        "SELECT to_jsonb(t) - 'tenant_id' FROM {} t WHERE id = $1",
        table.ident()
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| AppError::NotFound("The conflicting row no longer exists.".into()))
}
