//! Invariant 5, cost follows change: the pull's queries are index-driven on a table of
//! tens of thousands of rows, so a delta of a hundred changes never scans the tables.
//! (Timings are measured by `scripts/bench.sh`, never asserted here.)
mod common;
use common::*;

use nas_sync::sync::pull::page_sql;
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
    let registry = app.state.sync.registry.current();
    let tables = vec![
        registry.get("kpi_data").unwrap(),
        registry.get("forms").unwrap(),
    ];

    // The whole page statement, with the values a delta pull binds, inlined.
    let page = plan(&app.pool, &page_sql(&tables), |s| {
        s.replace("$1", "'default'")
            .replace("$2", &format!("'{bulk_xid}'"))
            .replace("$3", &bulk_seq.to_string())
            .replace("$4", "ARRAY['kpi_data','forms']")
            .replace("$5", "NULL")
            .replace("$6", "501")
            .replace("$7", "'dev-1'")
            .replace("$8", "4194304")
            .replace("$9", "'00000000-0000-0000-0000-000000000000'::uuid")
    })
    .await;
    // The big tables are never scanned (server_meta's handful of rows and the empty
    // forms table may be: that costs nothing).
    let scans: Vec<&str> = page
        .lines()
        .filter(|l| l.contains("Seq Scan on sync_changes") || l.contains("Seq Scan on kpi_data"))
        .collect();
    assert!(scans.is_empty(), "the page scans a table:\n{page}");
    assert!(
        page.contains("sync_changes_pull"),
        "the change-log page does not use its index:\n{page}"
    );
    assert!(
        page.contains("kpi_data_pkey"),
        "rows are not read by primary key:\n{page}"
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
