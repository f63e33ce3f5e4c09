//! BridgeCore event pulls (docs/contract.md §8, docs/bridgecore.md): integer event ids,
//! create/write/unlink actions, positions per user, device and app type, the v1 and v2
//! shapes, isolation, and no missed change when transactions commit late.
use crate::common::*;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// A BridgeCore client: keeps `last_event_id` and a local copy by uuid.
struct Bridge<'a> {
    dev: &'a Device,
    app_type: &'a str,
    last_event_id: i64,
    local: BTreeMap<String, Value>,
}

impl<'a> Bridge<'a> {
    fn new(dev: &'a Device, app_type: &'a str) -> Self {
        Bridge {
            dev,
            app_type,
            last_event_id: 0,
            local: BTreeMap::new(),
        }
    }

    /// One v1 page from the client's own `last_event_id`; applies it locally.
    async fn page(&mut self, limit: i64) -> Value {
        settle(&self.dev.pool).await;
        let (status, body) = self
            .dev
            .post(
                "/api/v1/offline-sync/pull",
                &json!({"device_id": self.dev.device_id, "app_type": self.app_type,
                        "last_event_id": self.last_event_id, "limit": limit}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut previous = self.last_event_id;
        for e in body["events"].as_array().expect("events") {
            let id = e["event_id"].as_i64().expect("integer event_id");
            assert!(id > previous, "event ids must increase: {body}");
            assert!(id < (1_i64 << 53), "event ids must fit in 2^53: {id}");
            previous = id;
            let uuid = e["uuid"].as_str().expect("uuid").to_string();
            match e["action"].as_str() {
                Some("unlink") => {
                    self.local.remove(&uuid);
                }
                Some("create" | "write") => {
                    self.local.insert(uuid, e["data"].clone());
                }
                other => panic!("unknown action {other:?}"),
            }
        }
        let last = body["last_event_id"].as_i64().expect("last_event_id");
        assert!(last >= previous, "{body}");
        self.last_event_id = last;
        body
    }

    /// Pulls until `has_more` is false.
    async fn catch_up(&mut self) {
        loop {
            if self.page(7).await["has_more"] == json!(false) {
                return;
            }
        }
    }
}

fn kpi(id: &str, store: &str, value: i64) -> Value {
    json!({"id": id, "store_id": store, "metric": "m", "value": value, "period": "p", "version": 0})
}

#[tokio::test]
async fn events_number_rows_with_their_latest_action_and_stop_when_caught_up() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    let (a, b) = (id(), id());
    manager
        .push(json!({"kpi_data": [kpi(&a, "s1", 1), kpi(&b, "s1", 2)]}))
        .await;
    let mut client = Bridge::new(&manager, "store_manager_app");
    let first = client.page(100).await;
    let actions: Vec<&str> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["model"] == "kpi_data")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "create"], "{first}");
    assert_eq!(first["success"], json!(true));
    assert_eq!(first["has_updates"], json!(true));
    let e = &first["events"][0];
    assert_eq!(
        e["record_id"], e["uuid"],
        "rows without an Odoo id use their uuid"
    );
    assert_eq!(e["data"]["value"], json!(1), "{e}");

    // Nothing new: an empty, current answer, with the same position.
    let again = client.page(100).await;
    assert_eq!(again["events"], json!([]), "{again}");
    assert_eq!(again["has_updates"], json!(false));
    assert_eq!(again["last_event_id"], first["last_event_id"]);

    // An edit is a `write`, a deletion an `unlink`; each row comes once, latest state.
    manager
        .push(json!({"kpi_data": [{"id": a, "value": 5, "version": 1}]}))
        .await;
    manager
        .push(json!({"kpi_data": [{"id": b, "deleted": true, "version": 1}]}))
        .await;
    let next = client.page(100).await;
    let got: Vec<(String, String)> = next["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["uuid"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(a.clone(), "write".into()), (b.clone(), "unlink".into())]
    );
    assert_eq!(client.local.get(&a).unwrap()["value"], json!(5));
    assert!(!client.local.contains_key(&b));
    assert_eq!(client.page(100).await["events"], json!([]));
}

#[tokio::test]
async fn the_position_is_kept_per_app_type_and_reset_starts_over() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    manager
        .push(json!({"kpi_data": [kpi(&id(), "s1", 1)]}))
        .await;
    settle(&app.pool).await;
    let pull = |app_type: &str| json!({"device_id": "mgr-1", "app_type": app_type, "models_filter": ["kpi_data"]});
    // Without last_event_id: the stored position (none yet: everything).
    let (_, first) = manager
        .post("/api/v1/offline-sync/pull", &pull("store_manager_app"))
        .await;
    assert_eq!(first["events"].as_array().unwrap().len(), 1, "{first}");
    let (_, second) = manager
        .post("/api/v1/offline-sync/pull", &pull("store_manager_app"))
        .await;
    assert_eq!(
        second["events"],
        json!([]),
        "the stored position moved: {second}"
    );
    // Another app type has a position of its own.
    let (_, other) = manager
        .post("/api/v1/offline-sync/pull", &pull("store_app"))
        .await;
    assert_eq!(other["events"].as_array().unwrap().len(), 1, "{other}");

    let (status, state) = manager
        .get("/api/v1/offline-sync/state?device_id=mgr-1&app_type=store_manager_app")
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["last_event_id"], first["last_event_id"]);
    assert_eq!(state["total_syncs"], json!(2));
    assert_eq!(state["total_events_synced"], json!(1));
    assert_eq!(state["app_type"], "store_manager_app");

    let (status, reset) = manager
        .post("/api/v1/offline-sync/reset?device_id=mgr-1", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(reset["success"], json!(true));
    let (_, after) = manager
        .post("/api/v1/offline-sync/pull", &pull("store_manager_app"))
        .await;
    assert_eq!(
        after["events"].as_array().unwrap().len(),
        1,
        "full again: {after}"
    );
}

#[tokio::test]
async fn v2_pull_state_and_reset_belong_to_the_caller() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    let store = app.store("s1user", "s1", "store-1").await;
    manager
        .push(json!({"kpi_data": [kpi(&id(), "s1", 1)]}))
        .await;
    settle(&app.pool).await;
    let body = json!({"device_id": "mgr-1", "app_type": "store_manager_app", "limit": 100});
    let (status, page) = manager.post("/api/v2/sync/pull", &body).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["status"], "success");
    let e = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["model"] == "kpi_data")
        .expect("the kpi event")
        .clone();
    assert!(e["id"].is_i64() && e["event"] == "create", "{e}");
    assert_eq!(
        page["next_sync_token"],
        json!(page["last_event_id"].to_string())
    );
    let (_, again) = manager.post("/api/v2/sync/pull", &body).await;
    assert_eq!(again["events"], json!([]), "{again}");
    assert_eq!(again["has_updates"], json!(false));

    // user_id, when sent, must be the caller's: its id or its username (or its Odoo
    // user id: tests/it/bridge/replay.rs).
    let (_, me) = manager.get("/api/v2/sync/state?device_id=mgr-1").await;
    let my_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = 'boss'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(me["last_event_id"], page["last_event_id"]);
    assert_eq!(me["sync_count"], json!(2));
    let (status, _) = manager
        .get(&format!(
            "/api/v2/sync/state?user_id={my_id}&device_id=mgr-1"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = manager
        .post(
            "/api/v2/sync/pull",
            &json!({"user_id": "boss", "device_id": "mgr-1", "app_type": "store_app"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = store.get("/api/v2/sync/state").await;
    assert_eq!(status, StatusCode::OK);
    let theirs: uuid::Uuid = sqlx::query_scalar("SELECT user_id FROM devices WHERE device_id = $1")
        .bind(&store.device_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let (status, body) = manager
        .post(
            "/api/v2/sync/pull",
            &json!({"user_id": theirs, "device_id": "mgr-1", "app_type": "store_app"}),
        )
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = manager
        .post(
            "/api/v2/sync/pull",
            &json!({"user_id": 1, "app_type": "store_app"}),
        )
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = manager
        .post(
            &format!("/api/v2/sync/reset?user_id={theirs}&device_id=mgr-1"),
            &json!({}),
        )
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = manager
        .post("/api/v2/sync/reset?device_id=store-1", &json!({}))
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");

    let (status, done) = manager
        .post(
            &format!("/api/v2/sync/reset?user_id={my_id}&device_id=mgr-1"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, done["status"].clone()),
        (StatusCode::OK, json!("success"))
    );
    let (_, full) = manager
        .post("/api/v2/sync/pull", &body_without_limit())
        .await;
    assert!(!full["events"].as_array().unwrap().is_empty(), "{full}");
    let (status, health) = manager.get("/api/v2/sync/health").await;
    assert_eq!(
        (status, health["status"].clone()),
        (StatusCode::OK, json!("healthy"))
    );
}

fn body_without_limit() -> Value {
    json!({"device_id": "mgr-1", "app_type": "store_manager_app"})
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    for (body, code) in [
        (json!({"app_type": "no_such_app"}), "VALIDATION_FAILED"),
        (
            json!({"app_type": "store_app", "limit": 0}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"app_type": "store_app", "last_event_id": -1}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"app_type": "store_app", "offset": 10}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"app_type": "store_app", "last_event_id": "x"}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"app_type": "store_app", "device_id": "other-device"}),
            "FORBIDDEN",
        ),
    ] {
        let (status, resp) = manager.post("/api/v1/offline-sync/pull", &body).await;
        let want = if code == "FORBIDDEN" { 403 } else { 400 };
        assert_error(status, &resp, want, code);
    }
    // Models this server does not mirror are skipped: an empty answer, not an error.
    let (status, resp) = manager
        .post(
            "/api/v1/offline-sync/pull",
            &json!({"app_type": "delivery_app"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["events"], json!([]));
    let (status, _) = manager.get("/api/v2/sync/health").await;
    assert_eq!(status, StatusCode::OK);
    // Without a token too, as BridgeCore serves it (tests/it/bridge/replay.rs).
    let (status, resp) = app.get("/api/v2/sync/health", None).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
}

#[tokio::test]
async fn events_stay_in_their_store_and_tenant() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    let s1 = app.store("s1user", "s1", "store-1").await;
    let s2 = app.store("s2user", "s2", "store-2").await;
    app.add_user("other", nas_sync::auth::Role::Manager, None, "acme")
        .await;
    let other = app.login("other", "acme-1").await;
    let (mine, theirs, foreign) = (id(), id(), id());
    s1.push(json!({"kpi_data": [kpi(&mine, "s1", 1)]})).await;
    s2.push(json!({"kpi_data": [kpi(&theirs, "s2", 2)]})).await;
    other
        .push(json!({"kpi_data": [kpi(&foreign, "x", 3)]}))
        .await;

    let mut c1 = Bridge::new(&s1, "store_app");
    c1.catch_up().await;
    assert!(c1.local.contains_key(&mine));
    assert!(
        !c1.local.contains_key(&theirs),
        "another store's row leaked"
    );
    assert!(
        !c1.local.contains_key(&foreign),
        "another tenant's row leaked"
    );
    let mut m = Bridge::new(&manager, "store_manager_app");
    m.catch_up().await;
    assert!(m.local.contains_key(&mine) && m.local.contains_key(&theirs));
    assert!(
        !m.local.contains_key(&foreign),
        "another tenant's row leaked"
    );
    // A store device may not read manager-only tables, whatever it asks.
    let (status, resp) = s1
        .post(
            "/api/v1/offline-sync/pull",
            &json!({"app_type": "store_manager_app", "models_filter": ["form_templates"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["events"], json!([]));
}

/// A transaction that commits after a later one: its row gets a later event id, so a
/// client that already moved past the later one still receives it.
#[tokio::test]
async fn a_late_commit_is_never_skipped() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    let mut client = Bridge::new(&manager, "store_manager_app");
    client.catch_up().await;

    let (early, late) = (id(), id());
    let mut slow = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value, period)
         VALUES ($1::uuid, 'default', 's1', 'slow', 1, 'p')",
    )
    .bind(&early)
    .execute(&mut *slow)
    .await
    .unwrap();
    // A later transaction commits first; the client pulls past it.
    manager
        .push(json!({"kpi_data": [kpi(&late, "s1", 2)]}))
        .await;
    // Pull without waiting for the slow transaction (it holds the horizon back).
    let (status, body) = manager
        .post(
            "/api/v1/offline-sync/pull",
            &json!({"app_type": "store_manager_app", "last_event_id": client.last_event_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen_late = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["uuid"] == json!(late));
    let position = body["last_event_id"].as_i64().unwrap();
    assert!(
        !body["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["uuid"] == json!(early)),
        "an uncommitted row was served"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    slow.commit().await.unwrap();

    client.last_event_id = position;
    client.catch_up().await;
    assert!(
        client.local.contains_key(&early),
        "the late commit was skipped"
    );
    if !seen_late {
        assert!(client.local.contains_key(&late));
    }
}

/// Writers over HTTP and in SQL (some holding transactions open, some rolling back)
/// against clients pulling events in small pages: every client ends equal to the
/// server.
#[tokio::test]
async fn clients_converge_through_events_under_concurrent_writers() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let pool = app.pool.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let mut tx = pool.begin().await.unwrap();
                    sqlx::query(
                        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value, period)
                         VALUES (gen_random_uuid(), 'default', 's1', $1, $2, 'p')",
                    )
                    .bind(format!("w{w}"))
                    .bind(i as i64)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                    sqlx::query(
                        "UPDATE kpi_data SET value = value + 100
                         WHERE id = (SELECT id FROM kpi_data WHERE metric = $1 ORDER BY random() LIMIT 1)",
                    )
                    .bind(format!("w{w}"))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                    tokio::time::sleep(Duration::from_millis((i * 7 + w * 13) % 40)).await;
                    if i % 5 == 4 {
                        tx.rollback().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                    }
                }
            })
        })
        .collect();
    let mut a = Bridge::new(&manager, "store_manager_app");
    let mut b = Bridge::new(&manager, "store_app");
    for _ in 0..15 {
        // Pull without settling: pages race the writers.
        for c in [&mut a, &mut b] {
            let (status, body) = manager
                .post(
                    "/api/v1/offline-sync/pull",
                    &json!({"app_type": c.app_type, "last_event_id": c.last_event_id, "limit": 5}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            for e in body["events"].as_array().unwrap() {
                let uuid = e["uuid"].as_str().unwrap().to_string();
                if e["action"] == "unlink" {
                    c.local.remove(&uuid);
                } else {
                    c.local.insert(uuid, e["data"].clone());
                }
            }
            c.last_event_id = body["last_event_id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    a.catch_up().await;
    b.catch_up().await;
    let server = app.server_rows("kpi_data", "default").await;
    for c in [&a, &b] {
        let kpis: BTreeMap<String, Value> = c
            .local
            .iter()
            .filter(|(_, row)| row.get("metric").is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(kpis.len(), server.len(), "{} rows differ", c.app_type);
        for (k, row) in &server {
            assert_eq!(kpis.get(k), Some(row), "row {k} differs for {}", c.app_type);
        }
    }
}

/// Numbering never waits on a writer: a pull answers while another transaction holds
/// the lock on an unnumbered row's change-log entry, and that row arrives once the
/// writer commits.
#[tokio::test]
async fn a_pull_does_not_wait_for_a_writer_holding_a_row() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    let held = id();
    manager
        .push(json!({"kpi_data": [kpi(&held, "s1", 1)]}))
        .await;
    settle(&app.pool).await;
    // Unnumbered (no pull yet), now rewritten by an open transaction.
    let mut writer = app.pool.begin().await.unwrap();
    sqlx::query("UPDATE kpi_data SET value = 2 WHERE id = $1::uuid")
        .bind(&held)
        .execute(&mut *writer)
        .await
        .unwrap();
    let body = json!({"app_type": "store_manager_app", "last_event_id": 0});
    let pulled = tokio::time::timeout(
        Duration::from_secs(10),
        manager.post("/api/v1/offline-sync/pull", &body),
    )
    .await
    .expect("the pull waited for the writer");
    assert_eq!(pulled.0, StatusCode::OK, "{}", pulled.1);
    let position = pulled.1["last_event_id"].as_i64().unwrap();
    writer.commit().await.unwrap();

    let mut client = Bridge::new(&manager, "store_manager_app");
    client.last_event_id = position;
    client.catch_up().await;
    assert_eq!(
        client.local[&held]["value"],
        json!(2),
        "the held row never arrived"
    );
}
