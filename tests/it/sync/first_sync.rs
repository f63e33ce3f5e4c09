//! A first sync walks the tables by key, then reads the change log from the horizon
//! of its first page (`sync::walk`): nothing changed during a long first sync is
//! missed, whether behind the walk, ahead of it, deleted, or written by a transaction
//! that was running when the walk began.

use crate::common::*;

use std::collections::BTreeMap;

use nas_sync::sync::cursor::Cursor;
use serde_json::{Value, json};

/// The tenant's live rows of `table`: id -> version.
async fn server_rows(app: &TestApp, table: &str) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(format!(
        "SELECT id::text, version FROM {table} WHERE NOT deleted"
    )))
    .fetch_all(&app.pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// The device's rows of `table`: id -> version.
fn local_rows(dev: &Device, table: &str) -> BTreeMap<String, i64> {
    dev.local_rows(table)
        .into_iter()
        .map(|(id, row)| (id, row["version"].as_i64().unwrap()))
        .collect()
}

fn is_walking(app: &TestApp, page: &Value) -> bool {
    let cursor = Cursor::decode(page["cursor"].as_str().unwrap(), &app.state.keys).unwrap();
    cursor.walk.is_some()
}

async fn sql(app: &TestApp, statement: &str) {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&app.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_first_sync_in_pages_misses_nothing_changed_while_it_runs() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-phone").await;
    let forms: Vec<Value> = (0..30)
        .map(|i| json!({"id": id(), "title": format!("form {i}"), "updated_at": now()}))
        .collect();
    let kpis: Vec<Value> = (0..30)
        .map(|i| json!({"id": id(), "store_id": "s1", "metric": "sales", "value": i, "updated_at": now()}))
        .collect();
    boss.push(json!({"forms": forms, "kpi_data": kpis})).await;

    // A writer of this database already running when the first sync starts, its row
    // behind where the walk will be when it commits.
    let slow_row = "00000000-0000-4000-8000-000000000002".to_string();
    let mut slow = app.pool.acquire().await.unwrap().detach();
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    sqlx::query(
        "INSERT INTO forms (id, tenant_id, title) SELECT $1::uuid, tenant_id, 'slow'
         FROM forms LIMIT 1",
    )
    .bind(&slow_row)
    .execute(&mut slow)
    .await
    .unwrap();

    let mut fresh = app.manager("clerk", "clerk-phone").await;
    fresh.settle = false;
    let first = fresh.pull_page(Some(7)).await;
    assert_eq!(first["has_more"], json!(true));
    assert!(is_walking(&app, &first), "a first sync walks the tables");
    let walked: Vec<String> = fresh.local_rows("forms").into_keys().collect();
    assert_eq!(walked.len(), 7, "the walk goes by table name: forms first");

    // While it runs: a walked row changes, a row appears behind the walk, one ahead
    // of it is deleted through the API and one in SQL, and the slow writer commits.
    let behind = "00000000-0000-4000-8000-000000000001";
    let ahead: Vec<String> = server_rows(&app, "forms")
        .await
        .into_keys()
        .filter(|id| id.as_str() > walked.last().unwrap().as_str())
        .collect();
    let updated_at = now();
    boss.push(json!({"forms": [
        {"id": walked[0], "title": "changed after it was walked", "version": 1, "updated_at": updated_at},
        {"id": behind, "title": "behind the walk", "updated_at": updated_at},
        {"id": ahead[0], "title": "gone", "deleted": true, "version": 1, "updated_at": updated_at},
    ]}))
    .await;
    sql(
        &app,
        &format!("DELETE FROM forms WHERE id = '{}'", ahead[1]),
    )
    .await;
    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    let mut walking_pages = 1;
    loop {
        let page = fresh.pull_page(Some(7)).await;
        if is_walking(&app, &page) {
            walking_pages += 1;
        }
        if page["has_more"] == json!(false) {
            break;
        }
        assert!(walking_pages < 50, "the walk does not end");
    }
    assert!(walking_pages >= 8, "60 rows in pages of 7: {walking_pages}");

    for table in ["forms", "kpi_data"] {
        assert_eq!(
            local_rows(&fresh, table),
            server_rows(&app, table).await,
            "{table} after a first sync that ran while rows changed"
        );
    }
    let local = fresh.local_rows("forms");
    assert_eq!(
        local[&walked[0]]["title"],
        json!("changed after it was walked")
    );
    assert!(local.contains_key(behind) && local.contains_key(&slow_row));
    assert!(!local.contains_key(&ahead[0]) && !local.contains_key(&ahead[1]));

    // And the cursor it ended with reads the log: a later change comes as a delta.
    boss.push(
        json!({"forms": [{"id": behind, "title": "again", "version": 1, "updated_at": now()}]}),
    )
    .await;
    fresh.sync_down().await;
    assert_eq!(fresh.local_rows("forms")[behind]["title"], json!("again"));
}

#[tokio::test]
async fn a_small_first_sync_is_one_page_and_a_store_user_walks_only_its_store() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-phone").await;
    boss.push(json!({"kpi_data": [
        {"id": id(), "store_id": "s1", "metric": "m", "value": 1, "updated_at": now()},
        {"id": id(), "store_id": "s2", "metric": "m", "value": 2, "updated_at": now()},
    ], "forms": [{"id": id(), "title": "t", "updated_at": now()}]}))
        .await;
    let mut clerk = app.store("clerk", "s1", "clerk-tablet").await;
    let page = clerk.pull_page(None).await;
    assert_eq!(page["has_more"], json!(false), "{page}");
    assert!(!is_walking(&app, &page));
    let kpis = clerk.local_rows("kpi_data");
    assert_eq!(kpis.len(), 1, "{kpis:?}");
    assert!(kpis.values().all(|r| r["store_id"] == json!("s1")));
    assert_eq!(clerk.local_rows("forms").len(), 1);
}
