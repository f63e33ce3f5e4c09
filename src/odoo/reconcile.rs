//! Deletions: Odoo deletes leave no trace, so they are found by comparing id sets.
//! Every reconcile interval (15 s by default) one `search_count` per model compares
//! Odoo's number of records in the mirrored range with the mirror's; only when they
//! differ are the id sets read (ids only, paged by id) and compared. Ids the mirror
//! has and Odoo lacks (checked once more without the range) become tombstones; ids
//! Odoo has and the mirror lacks (a transaction that committed later than the safety
//! lag) are fetched. Both commit in one transaction.

use std::collections::BTreeSet;

use chrono::Utc;
use serde_json::{Value, json};

use super::OdooCtx;
use super::client::{OdooClient, format_odoo_time};
use super::connections::Connection;
use super::mirror::{self, ModelState};
use super::outbox;
use crate::db::sql::Ident;

/// Ids read per call.
const ID_PAGE: i64 = 5000;

fn range_domain(model: &ModelState) -> Vec<Value> {
    match model.range_start {
        Some(start) if start > chrono::DateTime::UNIX_EPOCH.naive_utc() => {
            vec![json!(["write_date", ">=", format_odoo_time(start)])]
        }
        _ => Vec::new(),
    }
}

/// Reconciles every model whose interval has passed.
pub async fn run_due(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    models: &[ModelState],
) -> anyhow::Result<()> {
    let interval = chrono::Duration::from_std(ctx.settings.reconcile_interval)?;
    for model in models {
        if model.planned_until.is_none()
            || model
                .last_reconciled_at
                .is_some_and(|t| Utc::now() - t < interval)
            || outbox::has_unresolved_create(&ctx.pool, conn.id, &model.model).await?
        {
            continue;
        }
        if let Err(e) = reconcile(ctx, conn, client, model).await {
            tracing::warn!(connection = %conn.id, model = %model.model, error = %format!("{e:#}"),
                "reconciling deletions failed; retried at the next interval");
        }
        sqlx::query(
            "UPDATE odoo_model_state SET last_reconciled_at = now() WHERE connection_id = $1 AND model = $2",
        )
        .bind(conn.id)
        .bind(&model.model)
        .execute(&ctx.pool)
        .await?;
    }
    Ok(())
}

/// Compares one model's id sets and applies the difference.
pub async fn reconcile(
    ctx: &OdooCtx,
    conn: &Connection,
    client: &OdooClient,
    model: &ModelState,
) -> anyhow::Result<()> {
    let table = Ident(&model.table);
    let local: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT odoo_id FROM {table}
         WHERE odoo_connection_id = $1 AND tenant_id = $2 AND NOT deleted AND odoo_id IS NOT NULL"
    )))
    .bind(conn.id)
    .bind(&conn.tenant_id)
    .fetch_all(&ctx.pool)
    .await?;
    let remote_count = client
        .search_count(&model.model, Value::Array(range_domain(model)))
        .await?;
    if remote_count == local.len() as i64 {
        return Ok(());
    }
    let local: BTreeSet<i64> = local.into_iter().collect();
    let mut remote: BTreeSet<i64> = BTreeSet::new();
    let mut after = 0;
    loop {
        let mut domain = range_domain(model);
        domain.push(json!(["id", ">", after]));
        let page = client
            .search_read(
                &model.model,
                Value::Array(domain),
                &["id".to_string()],
                "id asc",
                Some(ID_PAGE),
            )
            .await?;
        let n = page.len() as i64;
        let ids: Vec<i64> = page
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_i64))
            .collect();
        remote.extend(ids.iter().copied());
        match ids.last() {
            Some(&last) if n >= ID_PAGE && last > after => after = last,
            _ => break,
        }
    }
    // Ids outside the range that still exist are not deletions.
    let mut gone: Vec<i64> = local.difference(&remote).copied().collect();
    for chunk in gone.clone().chunks(ID_PAGE as usize) {
        let still = client
            .search_read(
                &model.model,
                json!([["id", "in", chunk]]),
                &["id".to_string()],
                "id asc",
                None,
            )
            .await?;
        let still: BTreeSet<i64> = still
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_i64))
            .collect();
        gone.retain(|id| !still.contains(id));
    }
    let missing: Vec<i64> = remote.difference(&local).copied().collect();
    let fields: Vec<String> = model.fields.iter().map(|f| f.name.clone()).collect();
    let mut records = Vec::new();
    for chunk in missing.chunks(conn.batch_size.max(1) as usize) {
        records.extend(
            client
                .search_read(
                    &model.model,
                    json!([["id", "in", chunk]]),
                    &fields,
                    "id asc",
                    None,
                )
                .await?,
        );
    }
    let mut tx = ctx.pool.begin().await?;
    if !mirror::lock_connection(&mut tx, conn.id).await? {
        return Ok(());
    }
    crate::db::set_origin(&mut tx, "odoo_mirror").await?;
    let deleted = mirror::tombstone(&mut tx, conn, model, &gone).await?;
    let fetched = mirror::upsert(
        &mut tx,
        conn,
        model,
        &records,
        mirror::Overwrite::WhenChanged,
    )
    .await?;
    tx.commit().await?;
    if deleted > 0 || fetched > 0 {
        tracing::info!(connection = %conn.id, model = %model.model, deleted, fetched,
            "reconciled with Odoo's id set");
    }
    Ok(())
}
