//! Invariant 1, no missed change: under concurrent writers (devices pushing over HTTP
//! and operators writing in SQL, some holding their transaction open before
//! committing, some rolling back) and devices pulling in a loop, every device ends
//! with exactly the server's rows.
//!
//! `naive_updated_at_cursor_misses_a_late_commit` shows, on the same schema, why a
//! `updated_at > last_sync` cursor cannot pass this test: a transaction that starts
//! first but commits last stamps an older `updated_at` than rows a reader already
//! saw, so the reader skips it forever. The change-log cursor does not.
use crate::common::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nas_sync::auth::Role;
use serde_json::json;

const TABLES: [&str; 3] = ["kpi_data", "submissions", "forms"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_converge_under_concurrent_writers() {
    let app = TestApp::spawn().await;
    let seeder = app.manager("seed", "seed-device").await;
    let form = id();
    seeder
        .push(json!({"forms": [{"id": form, "title": "Daily"}]}))
        .await;

    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();

    // Four HTTP writers: two stores, a manager, each inserting and updating rows.
    app.add_user("store1", Role::Store, Some("s1"), "default")
        .await;
    app.add_user("store2", Role::Store, Some("s2"), "default")
        .await;
    app.add_user("boss", Role::Manager, None, "default").await;
    for (n, user) in ["store1", "store2", "boss", "store1"]
        .into_iter()
        .enumerate()
    {
        let dev = app.login(user, &format!("writer-{n}")).await;
        let form = form.clone();
        writers.push(tokio::spawn(async move {
            let mut mine: Vec<(String, i64)> = Vec::new();
            for i in 0..30 {
                let mut rows = vec![];
                let kid = id();
                rows.push(json!({"id": kid, "store_id": if user == "store2" { "s2" } else { "s1" },
                    "metric": format!("m{n}-{i}"), "value": i, "updated_at": now()}));
                if let Some((old, v)) = mine.get(i % mine.len().max(1)).cloned() {
                    rows.push(json!({"id": old, "value": i * 10, "version": v, "updated_at": now()}));
                }
                let sub = json!({"id": id(), "form_id": form, "store_id": if user == "store2" { "s2" } else { "s1" },
                    "status": "in_progress", "updated_at": now()});
                let resp = dev.push(json!({"kpi_data": rows, "submissions": [sub]})).await;
                assert_eq!(resp["success"], json!(true), "{resp}");
                for r in resp["applied"]["kpi_data"].as_array().unwrap() {
                    let rid = r["id"].as_str().unwrap().to_string();
                    let v = r["version"].as_i64().unwrap();
                    match mine.iter_mut().find(|(m, _)| *m == rid) {
                        Some(e) => e.1 = v,
                        None => mine.push((rid, v)),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // Four SQL writers: long-open transactions that commit late, and some rollbacks.
    for w in 0..4u64 {
        let pool = app.pool.clone();
        writers.push(tokio::spawn(async move {
            let mut ids: Vec<uuid::Uuid> = Vec::new();
            for i in 0..25u64 {
                let mut tx = pool.begin().await.unwrap();
                let new_id = uuid::Uuid::new_v4();
                sqlx::query("INSERT INTO kpi_data (id, tenant_id, store_id, metric, value) VALUES ($1, 'default', 's1', $2, $3)")
                    .bind(new_id)
                    .bind(format!("sql{w}-{i}"))
                    .bind(i as i64)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                if let Some(old) = ids.last() {
                    sqlx::query("UPDATE kpi_data SET value = value + 1, period = $2 WHERE id = $1")
                        .bind(old)
                        .bind(format!("p{i}"))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                // Hold the transaction open while others commit around it.
                let hold = 20 + (w * 37 + i * 53) % 180;
                tokio::time::sleep(Duration::from_millis(hold)).await;
                if i % 7 == 3 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    ids.push(new_id);
                }
            }
        }));
    }

    // Four pulling devices, in a loop with small pages, while the writers run.
    let mut pullers = Vec::new();
    for p in 0..4 {
        let mut dev = if p == 3 {
            app.login("store1", "puller-store1").await
        } else {
            app.login("boss", &format!("puller-{p}")).await
        };
        let done = done.clone();
        // Pull raw while writers run; settle only for the final catch-up.
        dev.settle = false;
        pullers.push(tokio::spawn(async move {
            let mut pages = 0;
            while !done.load(Ordering::SeqCst) {
                dev.pull_page(Some(7 + p as i64 * 5)).await;
                pages += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            // Writers are done: catch up completely.
            dev.settle = true;
            dev.sync_down().await;
            (dev, pages)
        }));
    }

    for w in writers {
        w.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);

    for p in pullers {
        let (dev, pages) = p.await.expect("puller");
        assert!(
            pages > 3,
            "{} pulled only {pages} pages during the writes",
            dev.device_id
        );
        let is_store = dev.device_id == "puller-store1";
        for table in TABLES {
            let mut expected = app.server_rows(table, "default").await;
            if is_store && table != "forms" {
                expected.retain(|_, row| row["store_id"] == json!("s1"));
            }
            let local = dev.local_rows(table);
            assert!(!expected.is_empty(), "no {table} rows written");
            let missing: Vec<&String> = expected
                .keys()
                .filter(|k| !local.contains_key(*k))
                .collect();
            let extra: Vec<&String> = local
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{} {table}: {} missing, {} extra",
                dev.device_id,
                missing.len(),
                extra.len()
            );
            for (k, row) in &expected {
                assert_eq!(&local[k], row, "{} {table} row {k} differs", dev.device_id);
            }
        }
    }
}

#[tokio::test]
async fn naive_updated_at_cursor_misses_a_late_commit() {
    let app = TestApp::spawn().await;
    let mut device = app.manager("boss", "boss-tablet").await;
    device.sync_down().await;

    // T1 starts first (its now() is early) and commits last.
    let mut t1 = app.pool.begin().await.unwrap();
    let late = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO kpi_data (id, tenant_id, store_id, metric) VALUES ($1, 'default', 's1', 'late')")
        .bind(late)
        .execute(&mut *t1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let early = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO kpi_data (id, tenant_id, store_id, metric) VALUES ($1, 'default', 's1', 'early')")
        .bind(early)
        .execute(&app.pool)
        .await
        .unwrap();

    // A naive reader syncs now and remembers the newest updated_at it saw.
    let seen: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, updated_at FROM kpi_data ORDER BY updated_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let last_sync = seen.iter().map(|(_, t)| *t).max().unwrap();
    assert_eq!(
        seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![early]
    );
    // The protocol's pull at the same moment (no settling: T1 is ours and still open).
    device.settle = false;
    device.sync_down().await;
    device.settle = true;
    assert!(
        !device
            .local_rows("kpi_data")
            .contains_key(&late.to_string()),
        "an uncommitted row cannot have been pulled"
    );

    t1.commit().await.unwrap();

    let naive: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM kpi_data WHERE updated_at > $1")
            .bind(last_sync)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(
        !naive.contains(&late),
        "the naive cursor should miss the late commit"
    );

    device.sync_down().await;
    let local = device.local_rows("kpi_data");
    assert!(
        local.contains_key(&late.to_string()),
        "the change-log cursor must deliver the late commit"
    );
    assert!(local.contains_key(&early.to_string()));
}
