//! Invariant 5, cost follows change: the pull's queries are index-driven on a table of
//! tens of thousands of rows, so a delta of a hundred changes never scans the tables.
//! (Timings are measured by `examples/bench_pull.rs`, never asserted here.)
mod common;
use common::*;

use nas_sync::sync::pull::{ENTRIES_SQL, rows_sql};
use serde_json::Value;

async fn plan(pool: &sqlx::PgPool, sql: &str, binds: impl FnOnce(String) -> String) -> String {
    let explained: Vec<(String,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(binds(format!("EXPLAIN {sql}"))))
            .fetch_all(pool)
            .await
            .expect("explain");
    explained
        .into_iter()
        .map(|(l,)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn delta_pull_queries_use_indexes_not_scans() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value)
         SELECT gen_random_uuid(), CASE WHEN g % 10 = 0 THEN 'other' ELSE 'default' END,
                's' || (g % 20), 'm' || g, g FROM generate_series(1, 40000) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (bulk_xid, bulk_seq): (i64, i64) =
        sqlx::query_as("SELECT max(xid::text::bigint), max(seq) FROM sync_changes")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    sqlx::query("UPDATE kpi_data SET value = value + 1 WHERE id IN (SELECT id FROM kpi_data WHERE tenant_id = 'default' LIMIT 100)")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE").execute(&app.pool).await.unwrap();
    let horizon: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&app.pool)
            .await
            .unwrap();

    // The change-log page, with the values a delta pull binds, inlined.
    let entries = plan(&app.pool, ENTRIES_SQL, |s| {
        s.replace("$1", "'default'")
            .replace("$2", &format!("'{bulk_xid}'"))
            .replace("$3", &bulk_seq.to_string())
            .replace("$4", &format!("'{horizon}'"))
            .replace("$5", "ARRAY['kpi_data','forms']")
            .replace("$6", "NULL")
            .replace("$7", "501")
    })
    .await;
    assert!(
        !entries.contains("Seq Scan"),
        "change-log page scans:\n{entries}"
    );
    assert!(
        entries.contains("sync_changes_pull"),
        "change-log page does not use its index:\n{entries}"
    );

    // The rows of that page, by primary key.
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT row_id FROM sync_changes WHERE xid::text::bigint > $1")
            .bind(bulk_xid)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(ids.len(), 100);
    let list = ids
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let registry = app.state.registry.current();
    let table = registry.get("kpi_data").unwrap();
    let rows = plan(&app.pool, &rows_sql(table), |s| {
        s.replace("$1", &format!("ARRAY[{list}]::uuid[]"))
            .replace("$2", "'default'")
    })
    .await;
    assert!(!rows.contains("Seq Scan"), "row fetch scans:\n{rows}");
    assert!(
        rows.contains("kpi_data_pkey"),
        "row fetch does not use the primary key:\n{rows}"
    );

    // A caught-up device gets nothing more.
    let mut device = app.manager("boss", "boss-tablet").await;
    device.sync_down().await;
    let (_, resp) = device
        .post(
            "/api/v1/sync/pull",
            &serde_json::json!({"device_id": "boss-tablet", "cursor": device.cursor}),
        )
        .await;
    assert_eq!(resp["changes"]["kpi_data"], Value::Array(vec![]));
}
