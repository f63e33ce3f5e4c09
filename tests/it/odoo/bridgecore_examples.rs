//! BridgeCore's two example Flutter clients (`geniustep/BridgeCore` at e2e8ca20,
//! `examples/flutter/`), their whole cycles replayed on Odoo models (their parsers
//! read every `record_id` as an `int`, so they sync mirrored models only):
//! - `smart_sync_service.dart`: `backgroundSync` (:179-216, `limit` 100),
//!   `manualSync` (:219-254, `limit` 500, `models_filter`), `forceFullSync` (:257-279,
//!   reset with `user_id` and `device_id` in the query, then a manual sync),
//!   `getSyncState` (:282-298), `hasUpdates` (:301-312); answers read by
//!   `SyncResponse.fromJson` (:64-77) and `SyncEvent.fromJson` (:37-46);
//! - `offline_sync_service.dart`: `pull` (:513-555) from the stored `last_event_id`,
//!   read by `PullResponse.fromJson` (:206-216) and `ServerChange.fromJson` (:113-125),
//!   the position stored only when `has_updates`.

use std::time::Duration;

use fake_odoo::{FakeOdoo, FakeOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::mirror::{connect, fast, wait_done};
use crate::common::{Device, TestApp, read, settle};

/// `SyncEvent.fromJson`: `id as int`, `model as String`, `record_id as int`, `event as
/// String`, `timestamp as String`, `payload as Map?`. Returns (model, record id).
fn sync_event(e: &Value) -> (String, i64) {
    assert!(e["id"].is_i64(), "`id as int` throws: {e}");
    assert!(e["event"].is_string() && e["timestamp"].is_string(), "{e}");
    assert!(e["payload"].is_null() || e["payload"].is_object(), "{e}");
    let model = e["model"].as_str().expect("`model as String` throws");
    let id = e["record_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("`record_id as int` throws: {e}"));
    (model.to_string(), id)
}

/// `SyncResponse.fromJson`: `events as List`, `has_updates as bool`,
/// `new_events_count as int`, `next_sync_token as String` (not nullable),
/// `last_sync_time as String?`. Returns the events read.
fn sync_response(v: &Value) -> Vec<(String, i64)> {
    assert!(
        v["has_updates"].is_boolean(),
        "`has_updates as bool` throws: {v}"
    );
    assert!(v["new_events_count"].is_i64(), "{v}");
    assert!(
        v["next_sync_token"].is_string(),
        "`next_sync_token as String` throws: {v}"
    );
    assert!(
        v["last_sync_time"].is_null() || v["last_sync_time"].is_string(),
        "{v}"
    );
    let events: Vec<(String, i64)> = v["events"]
        .as_array()
        .expect("`events as List` throws")
        .iter()
        .map(sync_event)
        .collect();
    assert_eq!(v["has_updates"], json!(!events.is_empty()), "{v}");
    events
}

/// A request as the examples' Dio sends it (JSON, the stored access token).
async fn call(dev: &Device, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    read(
        req.header("content-type", "application/json")
            .bearer_auth(&dev.token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn the_example_clients_full_cycles_on_odoo_models() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partner = fake.insert("res.partner", json!({"name": "Customer"}));
    for n in 1..=3 {
        fake.insert(
            "sale.order",
            json!({"name": format!("S000{n}"), "partner_id": partner}),
        );
    }
    let app = TestApp::spawn_with(fast).await;
    let boss = app.manager("boss", "boss-tablet").await;
    let id = connect(&boss, &fake, json!({})).await;
    wait_done(&boss, &id).await;
    // The salesperson's user carries its Odoo user id; the example sends it.
    let (status, body) = boss
        .patch("/api/v1/admin/users/boss", &json!({"odoo_user_id": 7}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let phone = app.login("boss", "sales-phone").await;
    settle(&app.pool).await;
    let url = |p: &str| format!("{}{p}", app.base);

    // Smart sync: backgroundSync.
    let pull = |limit: i64, filter: Option<Value>| {
        let mut body = json!({"user_id": 7, "device_id": "sales-phone", "app_type": "sales_app",
                              "limit": limit});
        if let Some(f) = filter {
            body["models_filter"] = f;
        }
        app.http
            .post(url("/api/v2/sync/pull"))
            .body(body.to_string())
    };
    let (status, page) = call(&phone, pull(100, None)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let first = sync_response(&page);
    let orders = first.iter().filter(|(m, _)| m == "sale.order").count();
    assert_eq!(orders, 3, "{page}");
    assert!(first.iter().any(|(m, _)| m == "res.partner"), "{page}");
    // Nothing new: the next background sync is empty (and still parses).
    let (_, page) = call(&phone, pull(100, None)).await;
    assert!(sync_response(&page).is_empty(), "{page}");

    // hasUpdates: `has_update as bool`, false now; true after a change in Odoo.
    let has_update = || async {
        let (status, v) = call(&phone, app.http.get(url("/api/v1/webhooks/check-updates"))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["has_update"]
            .as_bool()
            .unwrap_or_else(|| panic!("`has_update as bool` throws: {v}"))
    };
    assert!(!has_update().await);
    fake.insert(
        "sale.order",
        json!({"name": "S0004", "partner_id": partner}),
    );
    let start = std::time::Instant::now();
    while !has_update().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the new order never showed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        settle(&app.pool).await;
    }

    // manualSync with a models filter brings only the new order.
    let (_, page) = call(&phone, pull(500, Some(json!(["sale.order"])))).await;
    let manual = sync_response(&page);
    assert_eq!(manual.len(), 1, "{page}");
    assert_eq!(manual[0].0, "sale.order");

    // forceFullSync: reset (query parameters, no body), then everything again.
    let (status, reset) = call(
        &phone,
        app.http
            .post(url("/api/v2/sync/reset?user_id=7&device_id=sales-phone")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let (_, page) = call(&phone, pull(500, None)).await;
    let full = sync_response(&page);
    assert_eq!(
        full.iter().filter(|(m, _)| m == "sale.order").count(),
        4,
        "{page}"
    );

    // getSyncState: `response.data as Map<String, dynamic>`.
    let (status, state) = call(
        &phone,
        app.http
            .get(url("/api/v2/sync/state?user_id=7&device_id=sales-phone")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["user_id"], 7, "{state}");

    // The offline example on another phone: pages of 2 from its stored position,
    // stored only when the page has updates, until a page has none.
    let tablet = app.login("boss", "offline-tablet").await;
    let mut last_event_id = 0;
    let mut seen = Vec::new();
    loop {
        let body = json!({"device_id": "offline-tablet", "app_type": "sales_app",
                          "last_event_id": last_event_id, "models_filter": null,
                          "limit": 2, "include_payload": true});
        let (status, page) = call(
            &tablet,
            app.http
                .post(url("/api/v1/offline-sync/pull"))
                .body(body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        // PullResponse.fromJson: success, has_updates, new_events_count, events,
        // last_event_id; ServerChange: event_id, model, record_id (int), action,
        // DateTime.parse(timestamp).
        assert!(
            page["success"].is_boolean() && page["new_events_count"].is_i64(),
            "{page}"
        );
        let events = page["events"].as_array().expect("`events as List`");
        for e in events {
            assert!(e["event_id"].is_i64(), "{e}");
            let id = e["record_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("`int recordId`: {e}"));
            chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().expect("timestamp"))
                .expect("DateTime.parse throws");
            seen.push((e["model"].as_str().unwrap_or_default().to_string(), id));
        }
        if page["has_updates"] != json!(true) {
            break;
        }
        assert!(events.len() <= 2, "{page}");
        last_event_id = page["last_event_id"]
            .as_i64()
            .expect("`last_event_id` an int");
        assert!(seen.len() < 50, "the pages never end: {seen:?}");
    }
    let mut orders: Vec<i64> = seen
        .iter()
        .filter(|(m, _)| m == "sale.order")
        .map(|(_, id)| *id)
        .collect();
    orders.sort_unstable();
    orders.dedup();
    assert_eq!(orders.len(), 4, "{seen:?}");
    assert_eq!(
        fake.count("sale.order"),
        4,
        "the cycles wrote nothing to Odoo"
    );
}
