//! BridgeCore's real clients, replayed call by call: each test sends the bytes a
//! client sends (path, query or body, headers, field names and value formats, as read
//! in its Dart code) and reads the answer with that client's own parsing rules (`as
//! int` throws on a string, an enum look-up falls back, a cast to `Map` needs a JSON
//! object with a JSON content type). The citations name the file and lines mirrored:
//! - the package `geniustep/bridgecore_flutter` at c4fe8f8a ("package:");
//! - BridgeCore's example clients `geniustep/BridgeCore` at e2e8ca20,
//!   `examples/flutter/` ("example:").
//!
//! Here: health, the push's result status, strategy names and local timestamps,
//! smart sync's integer user id, the package's offline pull and state, and edits sent
//! with `version: 1`. The tenant login is `tenant_auth.rs`; integer ids of Odoo models
//! need the fake Odoo and are in `tests/it/odoo/mirror.rs`.

use crate::common::*;

use reqwest::StatusCode;
use serde_json::Value;

/// What Dio sends on every request of the package (package:
/// lib/src/client/http_client.dart:46-49, 80-85): JSON both ways.
pub(super) fn dio(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("content-type", "application/json")
        .header("accept", "application/json")
}

/// `response.data as Map<String, dynamic>` (package: http_client.dart:470, 524): Dio
/// decodes only a JSON content type, and the cast throws on anything but an object.
pub(super) async fn as_map(
    resp: reqwest::Response,
) -> (StatusCode, serde_json::Map<String, Value>) {
    let status = resp.status();
    let json_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    assert!(json_type, "Dio would not decode this answer ({status})");
    let body: Value = resp.json().await.expect("a JSON answer");
    match body {
        Value::Object(map) => (status, map),
        other => panic!("`as Map<String, dynamic>` throws on {other}"),
    }
}

/// `SyncHealthStatus.fromJson` (package: lib/src/sync/sync_service.dart:804-813):
/// `healthy as bool? ?? status == 'healthy'`, `status as String? ?? 'unknown'`,
/// `service`, `version as String?`, `(features as List?)?.cast<String>()`,
/// `details as Map?`. Returns `isHealthy`.
fn sync_health_status(m: &serde_json::Map<String, Value>) -> bool {
    let opt_str = |k: &str| match m.get(k) {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(v) => panic!("`{k} as String?` throws on {v}"),
    };
    opt_str("status");
    opt_str("service");
    opt_str("version");
    if let Some(f) = m.get("features").filter(|f| !f.is_null()) {
        let list = f.as_array().expect("`features as List?` throws");
        assert!(list.iter().all(Value::is_string), "`cast<String>()` throws");
    }
    if let Some(d) = m.get("details").filter(|d| !d.is_null()) {
        assert!(d.is_object(), "`details as Map?` throws");
    }
    match m.get("healthy") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => m.get("status") == Some(&Value::from("healthy")),
        Some(v) => panic!("`healthy as bool?` throws on {v}"),
    }
}

/// package: `SyncService.checkHealth` (sync_service.dart:335-346) and
/// `checkSmartSyncHealth` (:471-482): `GET` with no token (they run before login too;
/// with none stored the package sends no `Authorization`, http_client.dart:80-85).
#[tokio::test]
async fn check_health_and_check_smart_sync_health_before_login() {
    let app = TestApp::spawn().await;
    for path in ["/api/v1/offline-sync/health", "/api/v2/sync/health"] {
        let resp = dio(app.http.get(format!("{}{path}", app.base)))
            .send()
            .await
            .unwrap();
        let (status, body) = as_map(resp).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body:?}");
        assert!(
            sync_health_status(&body),
            "{path}: isHealthy is false: {body:?}"
        );
    }
}

/// example: `SyncStatus` (offline_sync_service.dart:34) and `PushResult.fromJson`
/// (:144-155): `SyncStatus.values.firstWhere((e) => e.name == json['status'],
/// orElse: () => SyncStatus.pending)`. A status outside the enum becomes `pending`,
/// and a pending change is pushed again at every sync, forever (:445-497, :650-656).
fn sync_status(result: &Value) -> &'static str {
    match result["status"].as_str() {
        Some("success") => "success",
        Some("failed") => "failed",
        Some("conflict") => "conflict",
        _ => "pending",
    }
}

/// example: `OfflineSyncService.push` (offline_sync_service.dart:412-420) with
/// `LocalChange.toJson` (:60-72): the strategy is the Dart enum's name
/// (`serverWins`, :417), `local_timestamp` is `DateTime.now().toIso8601String()`, a
/// local time with no offset (:319, :327, :368), `version` always 1 (:369). A change
/// the server cannot apply must come back `failed` (the client records the error),
/// never a status the client reads as `pending`.
#[tokio::test]
async fn the_example_push_with_camel_case_strategy_and_local_times() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "example-phone").await;
    // Exactly as jsonEncode writes it: compact, keys in the order of toJson.
    let body = r#"{"device_id":"example-phone","changes":[{"local_id":"c3a1c6b0-2f1e-4c55-9d1e-6f2f7c9b1a01","action":"create","model":"forms","record_id":null,"data":{"title":"Daily check"},"local_timestamp":"2026-12-07T10:15:30.123456","version":1,"priority":0,"dependencies":null},{"local_id":"c3a1c6b0-2f1e-4c55-9d1e-6f2f7c9b1a02","action":"create","model":"forms","record_id":null,"data":{"title":"Bad time"},"local_timestamp":"yesterday","version":1,"priority":0,"dependencies":null}],"conflict_strategy":"serverWins","stop_on_error":false}"#;
    let resp = dio(app
        .http
        .post(format!("{}/api/v1/offline-sync/push", app.base)))
    .bearer_auth(&manager.token)
    .body(body)
    .send()
    .await
    .unwrap();
    let (status, answer) = as_map(resp).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    // PushResponse.fromJson (:178-190): success bool, four ints, results a list.
    assert!(answer["success"].is_boolean(), "{answer:?}");
    for k in ["total", "succeeded", "failed", "conflicts"] {
        assert!(answer[k].is_i64(), "`{k}` is an int field: {answer:?}");
    }
    let results = answer["results"].as_array().expect("`results as List`");
    let statuses: Vec<&str> = results.iter().map(sync_status).collect();
    assert_eq!(statuses, ["success", "failed"], "{answer:?}");
    assert!(results.iter().all(|r| r["local_id"].is_string()));
    // `error as String?` (:150): the sentence the client stores with the change.
    assert!(
        results[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("local_timestamp")),
        "a failed change says why: {answer:?}"
    );
    assert_eq!(
        (answer["succeeded"].clone(), answer["failed"].clone()),
        (1.into(), 1.into())
    );
    // The local time without an offset stands for "when the server received it".
    let stamped: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT updated_at FROM forms WHERE title = 'Daily check'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let age = chrono::Utc::now() - stamped.expect("updated_at");
    assert!(
        age.num_seconds().abs() < 300,
        "updated_at is the receipt, not the wall-clock string read in some zone: {stamped:?}"
    );
}

/// `SmartSyncState.fromJson` (package: sync_service.dart:878-890): `user_id as int?
/// ?? 0`, `device_id as String?`, `last_event_id as int?`, `sync_count as int? ?? 0`,
/// `status as String?`. Returns the user id read.
fn smart_sync_state(m: &serde_json::Map<String, Value>) -> i64 {
    for k in ["device_id", "status"] {
        assert!(
            m.get(k).is_none_or(|v| v.is_null() || v.is_string()),
            "`{k} as String?` throws: {m:?}"
        );
    }
    for k in ["last_event_id", "sync_count"] {
        assert!(
            m.get(k).is_none_or(|v| v.is_null() || v.is_i64()),
            "`{k} as int?` throws: {m:?}"
        );
    }
    match m.get("user_id") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .unwrap_or_else(|| panic!("`user_id as int?` throws on {v}")),
    }
}

/// package: `SyncService.smartPull` (sync_service.dart:364-386) posts `user_id` as
/// the int the app got at login (`user.odoo_user_id`), `device_id` (default
/// `'default'`); `getSmartSyncState` (:410-426) sends it back as a query string
/// (`userId.toString()`) and reads `SmartSyncState`. A user whose manager gave it
/// Odoo user id 7 is served under 7; another number is refused.
#[tokio::test]
async fn smart_sync_names_the_user_by_its_odoo_user_id() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "mgr-1").await;
    let (status, body) = boss
        .patch(
            "/api/v1/admin/users/boss",
            &serde_json::json!({"odoo_user_id": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The token carries the Odoo user id from the next login (or refresh) on.
    let phone = app.login("boss", "default").await;
    let pull = |user_id: i64| {
        dio(app.http.post(format!("{}/api/v2/sync/pull", app.base)))
            .bearer_auth(&phone.token)
            .body(format!(
                r#"{{"user_id":{user_id},"device_id":"default","app_type":"store_app"}}"#
            ))
    };
    let (status, page) = as_map(pull(7).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{page:?}");
    // SmartSyncPullResult.fromJson (:834-848).
    assert!(page["has_updates"].is_boolean() && page["new_events_count"].is_i64());
    let (status, refused) = as_map(pull(8).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused:?}");

    let resp = dio(app.http.get(format!(
        "{}/api/v2/sync/state?user_id=7&device_id=default",
        app.base
    )))
    .bearer_auth(&phone.token)
    .send()
    .await
    .unwrap();
    let (status, state) = as_map(resp).await;
    assert_eq!(status, StatusCode::OK, "{state:?}");
    assert_eq!(smart_sync_state(&state), 7, "{state:?}");

    // A user without an Odoo user id: an integer names nobody, and the answer says
    // what to do; its state reads as user 0 (`?? 0`), not a throw.
    let clerk = app.store("clerk", "s1", "clerk-phone").await;
    let resp = dio(app.http.post(format!("{}/api/v2/sync/pull", app.base)))
        .bearer_auth(&clerk.token)
        .body(r#"{"user_id":7,"device_id":"clerk-phone","app_type":"store_app"}"#)
        .send()
        .await
        .unwrap();
    let (status, refused) = as_map(resp).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused:?}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("odoo-user-id")),
        "{refused:?}"
    );
    let resp = dio(app.http.get(format!(
        "{}/api/v2/sync/state?device_id=clerk-phone",
        app.base
    )))
    .bearer_auth(&clerk.token)
    .send()
    .await
    .unwrap();
    let (_, state) = as_map(resp).await;
    assert_eq!(smart_sync_state(&state), 0, "{state:?}");
}

/// `OfflineSyncPullResult.fromJson` (package: sync_service.dart:691-709): `data as
/// Map<String, dynamic>? ?? {}`, every list value's items through `Map<String,
/// dynamic>.from` (each must be an object), `total_records as int? ?? 0`,
/// `DateTime.parse(synced_at as String)`. Returns the rows by model and the total.
pub(super) fn offline_sync_pull_result(
    m: &serde_json::Map<String, Value>,
) -> (std::collections::BTreeMap<String, Vec<Value>>, i64) {
    let mut data = std::collections::BTreeMap::new();
    match m.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(models)) => {
            for (model, rows) in models {
                if let Value::Array(rows) = rows {
                    assert!(
                        rows.iter().all(Value::is_object),
                        "`Map.from` throws: {rows:?}"
                    );
                    data.insert(model.clone(), rows.clone());
                }
            }
        }
        Some(v) => panic!("`data as Map?` throws on {v}"),
    }
    let total = match m.get("total_records") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().expect("`total_records as int?` throws"),
    };
    if let Some(at) = m.get("synced_at").filter(|v| !v.is_null()) {
        let at = at.as_str().expect("`synced_at as String` throws");
        chrono::DateTime::parse_from_rfc3339(at).expect("DateTime.parse throws");
    }
    (data, total)
}

/// package: `SyncService.pullUpdates` (sync_service.dart:147-170) posts `device_id`,
/// `models`, `batch_size` and no `app_type` (BridgeCore's own server refuses that;
/// nas-sync reads it as every table the caller reads, and answers the package's
/// `data` by model besides its events); `getSyncState` (:283-296) reads
/// `OfflineSyncState` (:774-785): `last_sync_at` parsed as a date, `pending_changes as
/// int?`.
#[tokio::test]
async fn the_packages_pull_updates_and_sync_state() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "default").await;
    boss.push(serde_json::json!({
        "forms": [{"id": id(), "title": "one", "updated_at": now()},
                  {"id": id(), "title": "two", "updated_at": now()}],
        "kpi_data": [{"id": id(), "store_id": "s1", "metric": "sales", "value": 1,
                      "period": "2026-12", "updated_at": now()}],
    }))
    .await;
    settle(&app.pool).await;
    let pull = || {
        dio(app
            .http
            .post(format!("{}/api/v1/offline-sync/pull", app.base)))
        .bearer_auth(&boss.token)
        .body(r#"{"device_id":"default","models":["forms"],"batch_size":50}"#)
    };
    let (status, page) = as_map(pull().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{page:?}");
    let (data, total) = offline_sync_pull_result(&page);
    assert_eq!(total, 2, "{page:?}");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["forms"],
        "`models` filters: {page:?}"
    );
    let mut titles: Vec<&str> = data["forms"]
        .iter()
        .filter_map(|r| r["title"].as_str())
        .collect();
    titles.sort_unstable();
    assert_eq!(titles, ["one", "two"]);
    // The position is kept: the next pull brings nothing new.
    let (_, again) = as_map(pull().send().await.unwrap()).await;
    assert_eq!(offline_sync_pull_result(&again).1, 0, "{again:?}");

    let resp = dio(app.http.get(format!(
        "{}/api/v1/offline-sync/state?device_id=default",
        app.base
    )))
    .bearer_auth(&boss.token)
    .send()
    .await
    .unwrap();
    let (status, state) = as_map(resp).await;
    assert_eq!(status, StatusCode::OK, "{state:?}");
    assert_eq!(state["device_id"], "default");
    let at = state["last_sync_at"]
        .as_str()
        .expect("`last_sync_at` set after a pull");
    chrono::DateTime::parse_from_rfc3339(at).expect("DateTime.parse throws");
    assert!(state["pending_changes"].is_i64());
    assert!(
        state
            .get("metadata")
            .is_none_or(|m| m.is_null() || m.is_object())
    );
}

/// package: `smartPull` (sync_service.dart:374-381) sends `app_type` only when the
/// app configured one, and the model list as `models`.
#[tokio::test]
async fn smart_pull_without_app_type_and_with_models() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "default").await;
    boss.push(serde_json::json!({
        "forms": [{"id": id(), "title": "one", "updated_at": now()}],
        "kpi_data": [{"id": id(), "store_id": "s1", "metric": "sales", "value": 1,
                      "period": "2026-12", "updated_at": now()}],
    }))
    .await;
    settle(&app.pool).await;
    let resp = dio(app.http.post(format!("{}/api/v2/sync/pull", app.base)))
        .bearer_auth(&boss.token)
        .body(r#"{"user_id":"boss","device_id":"default","models":["kpi_data"]}"#)
        .send()
        .await
        .unwrap();
    let (status, page) = as_map(resp).await;
    assert_eq!(status, StatusCode::OK, "{page:?}");
    let models: Vec<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["model"].as_str())
        .collect();
    assert_eq!(models, ["kpi_data"], "{page:?}");
}

/// example: `OfflineSyncService` always sends `version: 1` (offline_sync_service.dart:
/// 369) and never learns versions (its `ServerChange` has none). BridgeCore skips the
/// check for `version <= 1`; nas-sync bases such an edit on the version this device
/// last saw (its event position, or its own write): an edit of a row unchanged since
/// applies, an edit of a row changed since is a conflict, and when the versions it
/// saw were pruned, a conflict too (never a silent overwrite).
#[tokio::test]
async fn version_one_edits_are_based_on_what_the_device_last_pulled() {
    let app = TestApp::spawn().await;
    let phone = app.manager("boss", "example-phone").await;
    let other = app.login("boss", "other-device").await;
    let form = id();
    other
        .push(serde_json::json!({"forms": [{"id": form, "title": "v1", "updated_at": now()}]}))
        .await;
    other
        .push(serde_json::json!({"forms": [{"id": form, "title": "v2", "version": 1, "updated_at": now()}]}))
        .await;
    let pull = || async {
        settle(&app.pool).await;
        let resp = dio(app
            .http
            .post(format!("{}/api/v1/offline-sync/pull", app.base)))
        .bearer_auth(&phone.token)
        .body(r#"{"device_id":"example-phone","app_type":"store_manager_app"}"#)
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    };
    let edit = |title: &str| {
        let body = format!(
            r#"{{"device_id":"example-phone","changes":[{{"local_id":"{}","action":"update","model":"forms","record_id":"{form}","data":{{"title":"{title}"}},"local_timestamp":"2026-12-07T10:15:30.123456","version":1,"priority":0,"dependencies":null}}],"conflict_strategy":"serverWins","stop_on_error":false}}"#,
            id()
        );
        let req = dio(app
            .http
            .post(format!("{}/api/v1/offline-sync/push", app.base)))
        .bearer_auth(&phone.token)
        .body(body);
        async move {
            let (status, answer) = as_map(req.send().await.unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{answer:?}");
            sync_status(&answer["results"][0]).to_string()
        }
    };
    let title = || async {
        sqlx::query_scalar::<_, String>("SELECT title FROM forms WHERE id = $1::uuid")
            .bind(&form)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };

    // Pulled version 2, unchanged since: the edit applies.
    pull().await;
    assert_eq!(edit("phone 1").await, "success");
    assert_eq!(title().await, "phone 1");
    // Its own write counts as seen: a second edit before any pull applies too.
    assert_eq!(edit("phone 2").await, "success");
    // Changed by another device since: a conflict, and serverWins keeps the server's.
    other
        .push(serde_json::json!({"forms": [{"id": form, "title": "other 4", "version": 4, "updated_at": now()}]}))
        .await;
    assert_eq!(title().await, "other 4");
    assert_eq!(edit("phone 3").await, "conflict");
    assert_eq!(title().await, "other 4");
    // Pulled again: based on version 5 now, the edit applies.
    pull().await;
    assert_eq!(edit("phone 4").await, "success");
    assert_eq!(title().await, "phone 4");

    // The other device edits again, and retention prunes every version but the
    // newest: what the phone saw is gone, so its edit is a conflict.
    other
        .push(serde_json::json!({"forms": [{"id": form, "title": "other 7", "version": 6, "updated_at": now()}]}))
        .await;
    sqlx::query(
        "DELETE FROM sync_row_history WHERE row_id = $1::uuid
           AND version < (SELECT version FROM forms WHERE id = $1::uuid)",
    )
    .bind(&form)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(edit("phone 5").await, "conflict");
    assert_eq!(title().await, "other 7");
}
