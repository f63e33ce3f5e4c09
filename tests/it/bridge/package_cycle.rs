//! The bridgecore_flutter package's whole offline loop, replayed from
//! `geniustep/bridgecore_flutter` at c4fe8f8a, `lib/src/sync/sync_service.dart`:
//! after the tenant login, `fullSyncCycle` (:536-583) pushes `pushLocalChanges`
//! (:188-238: `changes` as a map of model → records, each with `id` and `_action` as
//! the README's example at :389-395), pulls `pullUpdates` and reads `getSyncState`;
//! `resolveConflicts` (:242-277) sends `{device_id, resolutions}`; `hasUpdates`
//! (:65-100) and `getWebhookEvents` (:105-140) ask what is new. Each answer is read
//! with the package's own parsing: `OfflineSyncPushResult.fromJson` (:713-737),
//! `ConflictResolutionResult.fromJson` (:740-757), `WebhookEvent.fromJson` (:649-660).

use crate::common::*;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::replay::{as_map, dio, offline_sync_pull_result};
use super::tenant_auth::{Package, tenant_session, user_with_email};

/// `OfflineSyncPushResult.fromJson`: `(successful as List?)?.cast<String>()`, `failed`
/// and `conflicts` as lists of maps (`Map<String, dynamic>.from` of each). An int
/// where a list is read throws.
fn push_result(v: &Value) -> (Vec<String>, Vec<Value>, Vec<Value>) {
    let list = |k: &str| -> Vec<Value> {
        match &v[k] {
            Value::Null => Vec::new(),
            Value::Array(items) => {
                assert!(items.iter().all(Value::is_object), "`Map.from` throws: {v}");
                items.clone()
            }
            other => panic!("`{k} as List?` throws on {other}"),
        }
    };
    let successful = match &v["successful"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .unwrap_or_else(|| panic!("`cast<String>()` throws on {s}"))
                    .to_string()
            })
            .collect(),
        other => panic!("`successful as List?` throws on {other}"),
    };
    (successful, list("failed"), list("conflicts"))
}

/// `ConflictResolutionResult.fromJson`: `resolved` as `List<String>`, `failed` as a
/// list of maps.
fn resolution_result(v: &Value) -> (Vec<String>, Vec<Value>) {
    let resolved = match &v["resolved"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|s| s.as_str().expect("`cast<String>()` throws").to_string())
            .collect(),
        other => panic!("`resolved as List?` throws on {other}"),
    };
    let failed = match &v["failed"] {
        Value::Null => Vec::new(),
        Value::Array(items) => {
            assert!(items.iter().all(Value::is_object), "{v}");
            items.clone()
        }
        other => panic!("`failed as List?` throws on {other}"),
    };
    (resolved, failed)
}

/// A package app signed in by email, on device `default`.
async fn signed_in(app: &TestApp) -> String {
    user_with_email(app, "maria", "maria@example.org", Some(42)).await;
    let (status, session) = Package { app }.login("maria@example.org", "password").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    tenant_session(&session).0
}

/// `pushLocalChanges`: `{device_id, changes, timestamp}`, the timestamp Dart's local
/// `toIso8601String()`.
async fn push_local_changes(app: &TestApp, token: &str, changes: Value) -> Value {
    let (status, answer) = Package { app }
        .post(
            token,
            "/api/v1/offline-sync/push",
            json!({"device_id": "default", "changes": changes,
                   "timestamp": "2026-12-07T10:15:30.123456"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test]
async fn full_sync_cycle_with_changes_by_model() {
    let app = TestApp::spawn().await;
    let token = signed_in(&app).await;
    let pkg = Package { app: &app };

    // Step 1 of fullSyncCycle: a form made offline, under the app's temporary id.
    let create = json!({"forms": [{"id": "tmp-1", "title": "Daily check", "_action": "create",
                                   "_synced": false}]});
    let answer = push_local_changes(&app, &token, create.clone()).await;
    let (successful, failed, conflicts) = push_result(&answer);
    assert_eq!((failed.len(), conflicts.len()), (0, 0), "{answer}");
    assert_eq!(successful.len(), 1, "{answer}");
    let form = successful[0].clone();
    assert_eq!(answer["id_mapping"]["forms/tmp-1"], json!(form), "{answer}");

    // Step 2, pullUpdates with the cycle's models, and step 3, getSyncState.
    settle(&app.pool).await;
    let (status, page) = pkg
        .post(
            &token,
            "/api/v1/offline-sync/pull",
            json!({"device_id": "default", "models": ["forms"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (data, total) = offline_sync_pull_result(page.as_object().expect("a map"));
    assert_eq!(total, 1, "{page}");
    assert_eq!(data["forms"][0]["title"], "Daily check");
    let (status, state) = pkg
        .get(&token, "/api/v1/offline-sync/state?device_id=default")
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert!(state["last_sync_at"].is_string(), "{state}");

    // The same changes sent again (an answer lost on the way): the same row.
    let again = push_local_changes(&app, &token, create).await;
    assert_eq!(push_result(&again).0, vec![form.clone()], "{again}");
    assert_eq!(app.server_rows("forms", "default").await.len(), 1);

    // An edit by id, as the README's example.
    let edit = push_local_changes(
        &app,
        &token,
        json!({"forms": [{"id": form, "title": "Daily check v2", "_action": "update"}]}),
    )
    .await;
    assert_eq!(push_result(&edit).0, vec![form.clone()], "{edit}");

    // Another device of the tenant edits the form; the app, not having pulled, edits it
    // too: the server's value stays (server_wins, the default) and the app hears of a
    // conflict.
    let other = app.manager("boss", "office-pc").await;
    let rows = app.server_rows("forms", "default").await;
    let mut row = rows[&form].clone();
    row["title"] = json!("From the office");
    row["updated_at"] = json!(now());
    other.push(json!({"forms": [row]})).await;
    let late = push_local_changes(
        &app,
        &token,
        json!({"forms": [{"id": form, "title": "From the phone", "_action": "update"}]}),
    )
    .await;
    let (successful, failed, conflicts) = push_result(&late);
    assert!(successful.is_empty() && failed.is_empty(), "{late}");
    assert_eq!(conflicts.len(), 1, "{late}");
    assert_eq!(
        conflicts[0]["conflict"]["server_data"]["title"],
        "From the office"
    );
    assert_eq!(
        app.server_rows("forms", "default").await[&form]["title"],
        "From the office"
    );

    // A record that is not an object, and an edit of a row that does not exist: each
    // is a failed entry saying why; the rest applies.
    let mixed = push_local_changes(
        &app,
        &token,
        json!({"forms": ["nonsense",
                         {"id": "7d4c2a6e-8b1f-4f2e-9c3d-5a6b7c8d9e0f", "title": "x", "_action": "update"},
                         {"id": "tmp-2", "title": "Second", "_action": "create"}]}),
    )
    .await;
    let (successful, failed, _) = push_result(&mixed);
    assert_eq!(successful.len(), 1, "{mixed}");
    let codes: Vec<&str> = failed.iter().filter_map(|f| f["code"].as_str()).collect();
    assert_eq!(codes, ["VALIDATION_FAILED", "NOT_FOUND"], "{mixed}");
    assert!(failed.iter().all(|f| f["error"].is_string()), "{mixed}");
}

#[tokio::test]
async fn resolve_conflicts_answers_lists_to_the_package_and_counts_to_bridgecore() {
    let app = TestApp::builder()
        .rules(&[("forms", "manual")])
        .spawn()
        .await;
    let token = signed_in(&app).await;
    let pkg = Package { app: &app };
    let other = app.manager("boss", "office-pc").await;
    let form = id();
    other
        .push(json!({"forms": [{"id": form, "title": "v1", "updated_at": now()}]}))
        .await;
    let (status, _) = pkg
        .post(
            &token,
            "/api/v1/offline-sync/pull",
            json!({"device_id": "default"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The office edits after the app's pull; the app's two edits meet the change and
    // wait (the table's rule is manual).
    let office_edit = |title: &str| json!({"forms": [{"id": form, "title": title, "updated_at": now(), "version": 1}]});
    other.push(office_edit("v2 office")).await;
    let answer = push_local_changes(
        &app,
        &token,
        json!({"forms": [{"id": form, "title": "v2 phone", "_action": "update",
                          "_local_id": "edit-1"}]}),
    )
    .await;
    let (_, _, conflicts) = push_result(&answer);
    assert_eq!(conflicts.len(), 1, "{answer}");
    assert!(
        conflicts[0]["conflict"]["conflict_id"].is_string(),
        "{answer}"
    );

    // resolveConflicts: `{device_id, resolutions}`, read as lists.
    let resolve = |resolutions: Value| {
        pkg.post(
            &token,
            "/api/v1/offline-sync/resolve-conflicts",
            json!({"device_id": "default", "resolutions": resolutions}),
        )
    };
    let (status, done) = resolve(json!([{"local_id": "edit-1", "strategy": "client_wins"}])).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        resolution_result(&done),
        (vec!["edit-1".to_string()], vec![]),
        "{done}"
    );
    assert_eq!(
        app.server_rows("forms", "default").await[&form]["title"],
        "v2 phone"
    );
    let (_, twice) = resolve(json!([{"local_id": "edit-1", "strategy": "client_wins"}])).await;
    let (resolved, failed) = resolution_result(&twice);
    assert!(resolved.is_empty(), "{twice}");
    assert_eq!(failed.len(), 1, "{twice}");
    assert!(failed[0]["error"].is_string(), "{twice}");

    // BridgeCore's own schema (its request carries `conflicts`) gets its counts, and
    // its `merge` with `merged_data` stores those fields.
    let rows = app.server_rows("forms", "default").await;
    let version = rows[&form]["version"].clone();
    let mut office = office_edit("v3 office");
    office["forms"][0]["version"] = version;
    other.push(office).await;
    let answer = push_local_changes(
        &app,
        &token,
        json!({"forms": [{"id": form, "title": "v3 phone", "_action": "update",
                          "_local_id": "edit-2"}]}),
    )
    .await;
    assert_eq!(push_result(&answer).2.len(), 1, "{answer}");
    let (status, counted) = pkg
        .post(
            &token,
            "/api/v1/offline-sync/resolve-conflicts",
            json!({"device_id": "default", "conflicts": [],
                   "resolutions": [{"local_id": "edit-2", "strategy": "merge",
                                    "merged_data": {"title": "v3 agreed"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{counted}");
    assert_eq!(
        (counted["resolved"].clone(), counted["failed"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(
        app.server_rows("forms", "default").await[&form]["title"],
        "v3 agreed"
    );
}

/// `WebhookEvent.fromJson`: `id?.toString()`, `event_type as String?`, `model as
/// String?`, `data as Map?`, `status as String?`, `DateTime.parse(created_at)`.
fn webhook_event(e: &Value) -> (String, String) {
    for k in ["event_type", "model", "status"] {
        assert!(
            e[k].is_null() || e[k].is_string(),
            "`{k} as String?` throws: {e}"
        );
    }
    assert!(
        e["data"].is_null() || e["data"].is_object(),
        "`data as Map?` throws: {e}"
    );
    let at = e["created_at"].as_str().expect("`created_at as String`");
    chrono::DateTime::parse_from_rfc3339(at).expect("DateTime.parse throws");
    (
        e["model"].as_str().unwrap_or_default().to_string(),
        e["event_type"].as_str().unwrap_or_default().to_string(),
    )
}

/// The package's `hasUpdates(userId, deviceId)` and `getWebhookEvents(model, limit)`,
/// and the example smart sync client's `hasUpdates()` (smart_sync_service.dart:305-315:
/// no query, `data['has_update'] as bool`): what waits for the device, without moving
/// its position.
#[tokio::test]
async fn has_updates_and_webhook_events_show_what_waits_without_moving_the_position() {
    let app = TestApp::spawn().await;
    let token = signed_in(&app).await;
    let other = app.manager("boss", "office-pc").await;
    other
        .push(json!({
            "forms": [{"id": id(), "title": "one", "updated_at": now()}],
            "kpi_data": [{"id": id(), "store_id": "s1", "metric": "sales", "value": 1,
                          "period": "2026-12", "updated_at": now()}],
        }))
        .await;
    settle(&app.pool).await;
    let get = |path: &str| {
        dio(app.http.get(format!("{}{path}", app.base)))
            .bearer_auth(&token)
            .send()
    };
    let (status, check) = as_map(
        get("/api/v1/webhooks/check-updates?user_id=42&device_id=default")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{check:?}");
    assert_eq!(check["has_updates"], true, "{check:?}");
    assert_eq!(check["pending_events"], 2, "{check:?}");
    // The example client: no query at all (the device is the token's, `default`).
    let (_, example) = as_map(get("/api/v1/webhooks/check-updates").await.unwrap()).await;
    assert_eq!(
        example["has_update"], true,
        "`has_update as bool`: {example:?}"
    );

    let (status, listed) = as_map(
        get("/api/v1/webhooks/events?model=forms&limit=10")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{listed:?}");
    let events = listed["events"].as_array().expect("`events as List?`");
    let seen: Vec<(String, String)> = events.iter().map(webhook_event).collect();
    assert_eq!(
        seen,
        [("forms".to_string(), "create".to_string())],
        "{listed:?}"
    );
    assert_eq!(events[0]["data"]["title"], "one");

    // Nothing moved: the pull still brings both; after it, nothing waits.
    let pkg = Package { app: &app };
    let (_, page) = pkg
        .post(
            &token,
            "/api/v1/offline-sync/pull",
            json!({"device_id": "default"}),
        )
        .await;
    assert_eq!(
        offline_sync_pull_result(page.as_object().unwrap()).1,
        2,
        "{page}"
    );
    let (_, after) = as_map(get("/api/v1/webhooks/check-updates").await.unwrap()).await;
    assert_eq!(
        (after["has_update"].clone(), after["has_updates"].clone()),
        (json!(false), json!(false))
    );
    // resetSyncState (sync_service.dart:303-330) names its device in the body, not
    // the query: that device's next pull starts over.
    let pull_on = |device: &'static str| {
        let pkg = Package { app: &app };
        let token = token.clone();
        async move {
            let (status, page) = pkg
                .post(
                    &token,
                    "/api/v1/offline-sync/pull",
                    json!({"device_id": device}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            offline_sync_pull_result(page.as_object().unwrap()).1
        }
    };
    assert_eq!(pull_on("phone-7").await, 2);
    assert_eq!(pull_on("phone-7").await, 0);
    let (status, reset) = pkg
        .post(
            &token,
            "/api/v1/offline-sync/reset",
            json!({"device_id": "phone-7"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(reset["success"], true, "`success as bool?`: {reset}");
    assert_eq!(pull_on("phone-7").await, 2, "phone-7 starts over");
    assert_eq!(
        pull_on("default").await,
        0,
        "the default device kept its position"
    );

    // Another user's number is refused, as for smart sync.
    let (status, _) = as_map(
        get("/api/v1/webhooks/check-updates?user_id=43")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
