//! Invariant 5, cost follows change: the pull's queries are index-driven on a table of
//! tens of thousands of rows, so a delta of a hundred changes never scans the tables.
//! (Timings are measured by `scripts/bench.sh`, never asserted here.)
use crate::common::*;

use nas_sync::sync::pull::page_sql;
use serde_json::Value;

async fn plan(pool: &sqlx::PgPool, sql: &str, binds: impl FnOnce(String) -> String) -> String {
    let explained: Vec<(String,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(binds(format!("EXPLAIN {sql}"))))
            .fetch_all(pool)
            .await
            .expect("explain");
    joined(explained)
}

/// EXPLAIN's rows as one text.
fn joined(explained: Vec<(String,)>) -> String {
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

/// The plan PostgreSQL caches for `sql` (one text parameter, bound to 'small') once it
/// goes generic, as it does for a prepared statement run often.
async fn generic_plan(app: &TestApp, sql: &str) -> String {
    let mut conn = app.pool.acquire().await.unwrap();
    for sql in [
        "SET plan_cache_mode = force_generic_plan".to_string(),
        format!("PREPARE probe(text) AS {sql}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let explained: Vec<(String,)> = sqlx::query_as("EXPLAIN EXECUTE probe('small')")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    for sql in ["DEALLOCATE probe", "RESET plan_cache_mode"] {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
    joined(explained)
}

/// BridgeCore pulls number a tenant's changes first (`sync::events`). With another
/// tenant holding many unnumbered entries, the generic plan PostgreSQL caches for the
/// prepared statement must still reach the tenant's entries through the index: an
/// `EXISTS` test planned a sequential scan of the whole change log here (9 s a pull
/// in scenario (h) of the benchmark after (f) loaded 10 million history entries).
#[tokio::test]
async fn event_numbering_stays_on_the_index_under_a_generic_plan() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value)
         SELECT gen_random_uuid(), CASE WHEN g % 1000 = 0 THEN 'small' ELSE 'big' END,
                's1', 'm' || g, g FROM generate_series(1, 40000) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&app.pool).await.unwrap();
    let plan = generic_plan(&app, nas_sync::sync::events::NUMBER_SQL).await;
    assert!(
        !plan.contains("Seq Scan on sync_changes"),
        "the numbering test scans the change log:\n{plan}"
    );
    assert!(plan.contains("sync_changes_unnumbered"), "{plan}");
    // The memory of empty pulls primes a tenant from its newest entry the same way.
    let plan = generic_plan(&app, nas_sync::sync::quiet::PRIME_SQL).await;
    assert!(
        plan.contains("Index Only Scan Backward using sync_changes_pull")
            || plan.contains("Index Scan Backward using sync_changes_pull"),
        "the prime does not read the index backwards:\n{plan}"
    );
    // And it numbers: the small tenant's 40 rows get event ids, the function's own
    // statements planned for it.
    let numbered: Option<i64> = sqlx::query_scalar(nas_sync::sync::events::NUMBER_SQL)
        .bind("small")
        .fetch_optional(&app.pool)
        .await
        .unwrap();
    assert_eq!(numbered, Some(40));
    let settings: Option<Vec<String>> =
        sqlx::query_scalar("SELECT proconfig FROM pg_proc WHERE proname = 'sync_number_events'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        settings,
        Some(vec!["plan_cache_mode=force_custom_plan".to_string()])
    );
}
