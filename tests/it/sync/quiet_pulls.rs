//! Empty pulls answered from memory (`sync::quiet`): once a device is caught
//! up, its empty pulls skip the page statement, and yet every change written anywhere
//! (another server process, plain SQL, a conflict) still reaches it. No timing: the
//! test pulls until the state it waits for, with a bound on the attempts.

use crate::common::*;

use std::time::Duration;

use serde_json::{Value, json};

/// Pulls (as the device would, every 20 ms) until `done` says the answer is the one
/// awaited; returns that answer.
async fn pull_until(dev: &mut Device, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1500 {
        let page = dev.pull_page(None).await;
        if done(&page) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up pulling for {what}");
}

fn has_row(page: &Value, id: &str) -> bool {
    page["changes"]["kpi_data"]
        .as_array()
        .is_some_and(|rows| rows.iter().any(|r| r["id"] == id))
}

/// The device is caught up and its empty pulls come from memory.
async fn quiet(app: &TestApp, dev: &mut Device) {
    dev.sync_down().await;
    let before = app.state.sync.quiet.served();
    pull_until(dev, "a pull answered from memory", |p| {
        p["has_more"] == false && app.state.sync.quiet.served() > before
    })
    .await;
}

#[tokio::test]
async fn changes_from_another_process_or_plain_sql_reach_a_device_served_from_memory() {
    let app = TestApp::spawn().await;
    let mut reader = app.manager("reader", "reader-phone").await;
    reader.settle = false;
    let writer = app.manager("writer", "writer-phone").await;
    let first = id();
    writer
        .push(json!({"kpi_data": [{"id": first, "store_id": "s1", "metric": "m", "value": 1}]}))
        .await;
    quiet(&app, &mut reader).await;

    // The cursor does not move on a memory answer, and nothing is sent twice.
    let cursor = reader.cursor.clone();
    let page = reader.pull_page(None).await;
    assert_eq!(reader.cursor, cursor, "{page}");
    assert!(!has_row(&page, &first), "{page}");

    // A second server process over the same database writes.
    let config = test_config(&app.db.url, false);
    let other = Server::spawn(config.clone(), prepare_db(&config).await).await;
    let mut remote = app.manager("remote", "remote-phone").await;
    remote.base = other.base.clone();
    let second = id();
    remote
        .push(json!({"kpi_data": [{"id": second, "store_id": "s1", "metric": "m", "value": 2}]}))
        .await;
    pull_until(&mut reader, "the other process's row", |p| {
        has_row(p, &second)
    })
    .await;

    // Plain SQL, outside any server.
    quiet(&app, &mut reader).await;
    let third = id();
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value)
         VALUES ($1::uuid, 'default', 's1', 'm', 3)",
    )
    .bind(&third)
    .execute(&app.pool)
    .await
    .unwrap();
    pull_until(&mut reader, "the row written in SQL", |p| {
        has_row(p, &third)
    })
    .await;

    // A delete in SQL (a tombstone) too.
    quiet(&app, &mut reader).await;
    sqlx::query("DELETE FROM kpi_data WHERE id = $1::uuid")
        .bind(&first)
        .execute(&app.pool)
        .await
        .unwrap();
    pull_until(&mut reader, "the tombstone", |p| has_row(p, &first)).await;
    assert!(!reader.local_rows("kpi_data").contains_key(&first));
}

#[tokio::test]
async fn a_new_epoch_is_not_hidden_by_memory() {
    let app = TestApp::spawn().await;
    let mut dev = app.manager("boss", "boss-phone").await;
    dev.settle = false;
    dev.push(json!({"kpi_data": [{"id": id(), "store_id": "s1", "metric": "m", "value": 1}]}))
        .await;
    quiet(&app, &mut dev).await;
    // As a restore does: every cursor of the old epoch must answer RESYNC_REQUIRED.
    sqlx::query("UPDATE server_meta SET value = gen_random_uuid()::text WHERE key = 'epoch'")
        .execute(&app.pool)
        .await
        .unwrap();
    let body = json!({"device_id": dev.device_id, "cursor": dev.cursor});
    for _ in 0..1500 {
        let (status, resp) = dev.post("/api/v1/sync/pull", &body).await;
        if status.as_u16() == 409 {
            assert_error(status, &resp, 409, "RESYNC_REQUIRED");
            return;
        }
        assert_eq!(status.as_u16(), 200, "{resp}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the old cursor never answered RESYNC_REQUIRED");
}

/// The Insight apps always name their tables (the seed's selective sync): those empty
/// pulls come from memory too, and a change to a named table still reaches them.
#[tokio::test]
async fn pulls_naming_tables_are_answered_from_memory_and_miss_nothing() {
    let app = TestApp::spawn().await;
    let reader = app.manager("reader", "reader-phone").await;
    let writer = app.manager("writer", "writer-phone").await;
    writer
        .push(json!({"kpi_data": [{"id": id(), "store_id": "s1", "metric": "m", "value": 1}]}))
        .await;
    let tables = json!(["forms", "submissions", "team", "kpi_data"]);
    let mut cursor = Value::Null;
    let pull = |cursor: &Value| {
        let body = json!({"device_id": "reader-phone", "tables": tables, "cursor": cursor});
        let reader = &reader;
        async move {
            let (status, page) = reader.post("/api/v1/sync/pull", &body).await;
            assert_eq!(status.as_u16(), 200, "{page}");
            page
        }
    };
    let served = app.state.sync.quiet.served();
    let mut rounds = 0;
    while app.state.sync.quiet.served() == served {
        let page = pull(&cursor).await;
        cursor = page["cursor"].clone();
        rounds += 1;
        assert!(rounds < 1500, "no pull naming tables came from memory");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Memory answers give the cursor back, and touch no table: with `devices` locked
    // (a session check would wait for it), the answer still comes. A remembered
    // session passes without the check, as for pulls that name no tables.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let page = tokio::time::timeout(Duration::from_secs(20), pull(&cursor))
        .await
        .expect("the pull waited for the locked devices table: it was not answered from memory");
    lock.rollback().await.unwrap();
    assert_eq!(page["cursor"], cursor, "{page}");

    let second = id();
    writer
        .push(json!({"kpi_data": [{"id": second, "store_id": "s1", "metric": "m", "value": 2}]}))
        .await;
    for attempt in 0.. {
        let page = pull(&cursor).await;
        if has_row(&page, &second) {
            break;
        }
        cursor = page["cursor"].clone();
        assert!(attempt < 1500, "the new row never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
