//! The pull horizon is held back by this database's writers only (migration V19,
//! `sync_horizon()`): a long writing transaction in another database of the same
//! PostgreSQL delays nothing, one in this database still holds later changes back and
//! loses nothing.

use crate::common::*;

use std::str::FromStr;

use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// The cluster-wide horizon PostgreSQL itself gives (what pulls used before V19).
async fn cluster_xmin(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Ids of the `forms` rows a fresh pull of everything returns.
async fn fresh_pull_ids(dev: &mut Device) -> Vec<String> {
    dev.cursor = None;
    dev.local.clear();
    dev.sync_down().await;
    dev.local_rows("forms").into_keys().collect()
}

#[tokio::test]
async fn a_long_writing_transaction_in_another_database_holds_no_pull_back() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let mut reader = app.manager("clerk", "clerk-phone").await;
    reader.settle = false;

    // Another application's database on the same PostgreSQL, with a transaction
    // that wrote and stays open (as a long import or a forgotten psql session would).
    let other = TestDb::new().await;
    let mut foreign = PgConnection::connect_with(&PgConnectOptions::from_str(&other.url).unwrap())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut foreign).await.unwrap();
    sqlx::query("CREATE TABLE imports (n int)")
        .execute(&mut foreign)
        .await
        .unwrap();
    let foreign_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut foreign)
        .await
        .unwrap();
    // It does hold PostgreSQL's own horizon: the test can fail.
    assert!(cluster_xmin(&app).await <= foreign_xid);

    let row = id();
    writer
        .push(json!({"forms": [{"id": row, "title": "pushed", "updated_at": now()}]}))
        .await;
    let ids = fresh_pull_ids(&mut reader).await;
    assert!(
        ids.contains(&row),
        "a row pushed and committed was held back by another database's transaction: {ids:?}"
    );
    // BridgeCore's event numbering reads the same horizon: the row gets its number.
    sqlx::query("SELECT sync_number_events(tenant_id) FROM forms WHERE id = $1::uuid")
        .bind(&row)
        .execute(&app.pool)
        .await
        .unwrap();
    let event: Option<i64> =
        sqlx::query_scalar("SELECT event_id FROM sync_changes WHERE row_id = $1::uuid")
            .bind(&row)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(event.is_some(), "the pushed row was not numbered");
    assert!(
        cluster_xmin(&app).await <= foreign_xid,
        "the foreign transaction was open throughout"
    );
    sqlx::query("ROLLBACK").execute(&mut foreign).await.unwrap();
}

#[tokio::test]
async fn a_long_writing_transaction_in_this_database_holds_later_changes_back_and_loses_nothing() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let mut reader = app.manager("clerk", "clerk-phone").await;
    reader.settle = false;
    reader.sync_down().await;

    // A slow writer of this database: a row written in SQL, its transaction open.
    let slow_row = id();
    let mut slow = app.pool.acquire().await.unwrap().detach();
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    sqlx::query(
        "INSERT INTO forms (id, tenant_id, title, updated_at)
         SELECT $1::uuid, tenant_id, 'slow', now() FROM users WHERE username = 'boss'",
    )
    .bind(&slow_row)
    .execute(&mut slow)
    .await
    .unwrap();

    // A later writer commits first; its row waits behind the slow one.
    let fast_row = id();
    writer
        .push(json!({"forms": [{"id": fast_row, "title": "fast", "updated_at": now()}]}))
        .await;
    reader.sync_down().await;
    assert!(
        !reader.local_rows("forms").contains_key(&fast_row),
        "a pull moved past a running writer of this database"
    );

    // Once the slow one commits, the next pull brings both: nothing skipped.
    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    reader.sync_down().await;
    let local = reader.local_rows("forms");
    assert!(
        local.contains_key(&slow_row),
        "the slow writer's row was skipped"
    );
    assert!(local.contains_key(&fast_row), "the later row never came");
}
