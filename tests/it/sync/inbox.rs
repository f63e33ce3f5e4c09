//! The `merge` and `manual` rules and the conflict inbox (docs/contract.md §8,
//! docs/conflicts.md), over HTTP with the Insight push: a three-way merge of disjoint
//! and of the same fields, a manual conflict left open, listed, shown on the device's
//! next pull, resolved by the device or by a manager, and never twice.
use crate::common::*;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// A kpi row in store s1 with `metric` and `value`, pushed by `dev`; returns its id.
async fn new_kpi(dev: &Device, metric: &str, value: i64) -> String {
    let kpi = id();
    let r = dev
        .push(
            json!({"kpi_data": [{"id": kpi, "store_id": "s1", "metric": metric,
                                   "value": value, "period": "2026-11", "version": 0}]}),
        )
        .await;
    assert_eq!(r["errors"], json!([]), "{r}");
    kpi
}

/// The kpi row as stored.
async fn stored(app: &TestApp, kpi: &str) -> Value {
    sqlx::query_scalar("SELECT to_jsonb(k) - 'tenant_id' FROM kpi_data k WHERE id = $1::uuid")
        .bind(kpi)
        .fetch_one(&app.pool)
        .await
        .expect("stored kpi")
}

fn edit(kpi: &str, version: i64, fields: Value) -> Value {
    let mut row = json!({"id": kpi, "version": version, "updated_at": now()});
    for (k, v) in fields.as_object().unwrap() {
        row[k] = v.clone();
    }
    json!({"kpi_data": [row]})
}

#[tokio::test]
async fn merge_applies_fields_only_the_device_changed() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "merge")])
        .spawn()
        .await;
    let manager = app.manager("boss", "mgr-1").await;
    let store = app.store("s1user", "s1", "store-1").await;
    let kpi = new_kpi(&store, "sales", 10).await;

    // The manager renames the metric (version 1 -> 2).
    let r = manager
        .push(edit(&kpi, 1, json!({"metric": "revenue"})))
        .await;
    assert_eq!(r["conflicts"], json!([]), "{r}");
    // The store device, still at version 1, changes the value only.
    let r = store.push(edit(&kpi, 1, json!({"value": 12}))).await;
    let c = &r["conflicts"][0];
    assert_eq!(c["resolution"], "merge", "{r}");
    assert_eq!(c["winner"], "merged", "{r}");
    let row = stored(&app, &kpi).await;
    assert_eq!(row["metric"], "revenue", "the server's change stays: {row}");
    assert_eq!(
        row["value"],
        json!(12),
        "the device's change applies: {row}"
    );
    assert_eq!(row["version"], json!(3));
    assert_eq!(r["applied"]["kpi_data"][0]["version"], json!(3), "{r}");
}

#[tokio::test]
async fn merge_of_the_same_field_goes_to_the_newer_change() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "merge")])
        .spawn()
        .await;
    let a = app.store("a", "s1", "store-a").await;
    let b = app.store("b", "s1", "store-b").await;
    let kpi = new_kpi(&a, "sales", 10).await;

    // Device B changed the value an hour ago (offline); A changes it now.
    let mut old = edit(&kpi, 1, json!({"value": 20, "period": "2026-12"}));
    old["kpi_data"][0]["updated_at"] = json!("2020-01-01T00:00:00Z");
    a.push(edit(&kpi, 1, json!({"value": 30}))).await;
    let r = b.push(old).await;
    let c = &r["conflicts"][0];
    assert_eq!(c["resolution"], "merge", "{r}");
    let row = stored(&app, &kpi).await;
    assert_eq!(
        row["value"],
        json!(30),
        "the newer change of the field wins: {row}"
    );
    assert_eq!(
        row["period"], "2026-12",
        "B's other field still merges in: {row}"
    );
    assert_eq!(c["winner"], "merged");

    // Only the overlapping field (from version 1 again), older: nothing of B's applies.
    let r = b
        .push({
            let mut e = edit(&kpi, 1, json!({"value": 99}));
            e["kpi_data"][0]["updated_at"] = json!("2020-01-01T00:00:00Z");
            e
        })
        .await;
    assert_eq!(r["conflicts"][0]["winner"], "server", "{r}");
    assert_eq!(stored(&app, &kpi).await["value"], json!(30));
}

/// The resolve route of the conflict `c` reported.
fn resolve_path(c: &Value) -> String {
    let id = c["conflict_id"].as_str().expect("conflict_id");
    format!("/api/v1/sync/conflicts/{id}/resolve")
}

/// A manual-rule table: the store device's stale write opens a conflict.
async fn manual_conflict(app: &TestApp, manager: &Device, store: &Device) -> (String, Value) {
    let kpi = new_kpi(store, "sales", 10).await;
    manager.push(edit(&kpi, 1, json!({"value": 11}))).await;
    let r = store.push(edit(&kpi, 1, json!({"value": 12}))).await;
    assert_eq!(r["success"], json!(true), "{r}");
    let c = r["conflicts"][0].clone();
    assert_eq!(c["resolution"], "manual", "{r}");
    assert_eq!(c["winner"], "pending", "{r}");
    assert!(c["conflict_id"].is_string(), "{r}");
    assert_eq!(
        r["applied"]["kpi_data"][0]["value"],
        json!(11),
        "the server row is kept: {r}"
    );
    assert_eq!(stored(app, &kpi).await["value"], json!(11));
    (kpi, c)
}

#[tokio::test]
async fn manual_conflicts_are_listed_shown_on_pull_and_resolved_once() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "manual")])
        .spawn()
        .await;
    let manager = app.manager("boss", "mgr-1").await;
    let mut store = app.store("s1user", "s1", "store-1").await;
    let other = app.store("s1other", "s1", "store-2").await;
    let (kpi, c) = manual_conflict(&app, &manager, &store).await;
    let conflict_id = c["conflict_id"].as_str().unwrap().to_string();

    // Listed: for the device that caused it and for managers, not for another device.
    let (status, mine) = store.get("/api/v1/sync/conflicts").await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let listed = &mine[0];
    assert_eq!(listed["id"], json!(conflict_id));
    assert_eq!(listed["record_id"], json!(kpi));
    assert_eq!(listed["base_version"], json!(1));
    assert_eq!(listed["base_data"]["value"], json!(10), "{listed}");
    assert_eq!(listed["server_data"]["value"], json!(11), "{listed}");
    assert_eq!(listed["client_data"]["value"], json!(12), "{listed}");
    assert_eq!(listed["status"], "open");
    let (_, theirs) = manager.get("/api/v1/sync/conflicts").await;
    assert_eq!(theirs.as_array().unwrap().len(), 1, "{theirs}");
    let (_, none) = other.get("/api/v1/sync/conflicts").await;
    assert_eq!(none, json!([]), "another device sees nothing");

    // Shown to the device on its next pull.
    let page = store.pull_page(None).await;
    assert_eq!(page["conflicts"][0]["id"], json!(conflict_id), "{page}");

    // Another device may not resolve it (it is not there for it).
    let path = format!("/api/v1/sync/conflicts/{conflict_id}/resolve");
    let (status, body) = other.post(&path, &json!({"strategy": "client_wins"})).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    // The device takes its own value; the row is written as a new version.
    let (status, done) = store.post(&path, &json!({"strategy": "client_wins"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "resolved");
    assert_eq!(done["resolution"], "client_wins");
    assert_eq!(done["resolved_data"]["value"], json!(12), "{done}");
    let row = stored(&app, &kpi).await;
    assert_eq!(
        (row["value"].clone(), row["version"].clone()),
        (json!(12), json!(3))
    );

    // Resolved once: the second attempt, by anyone, is refused.
    let (status, body) = manager
        .post(&path, &json!({"strategy": "server_wins"}))
        .await;
    assert_error(status, &body, 409, "CONFLICT_ALREADY_RESOLVED");
    assert_eq!(stored(&app, &kpi).await["value"], json!(12));
    let page = store.pull_page(None).await;
    assert_eq!(
        page["conflicts"],
        Value::Null,
        "no open conflict left: {page}"
    );
    let (_, open) = manager.get("/api/v1/sync/conflicts").await;
    assert_eq!(open, json!([]));
    let (_, resolved) = manager.get("/api/v1/sync/conflicts?status=resolved").await;
    assert_eq!(resolved[0]["resolved_by"], "s1user@store-1", "{resolved}");
}

#[tokio::test]
async fn a_manager_resolves_with_merge_custom_or_server_wins() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "manual")])
        .spawn()
        .await;
    let manager = app.manager("boss", "mgr-1").await;
    let store = app.store("s1user", "s1", "store-1").await;

    // custom: the manager's own values.
    let (kpi, c) = manual_conflict(&app, &manager, &store).await;
    let path = resolve_path(&c);
    let (status, done) = manager
        .post(
            &path,
            &json!({"strategy": "custom", "data": {"value": 50, "period": "Q4"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let row = stored(&app, &kpi).await;
    assert_eq!(
        (row["value"].clone(), row["period"].clone()),
        (json!(50), json!("Q4"))
    );

    // server_wins: nothing changes.
    let (kpi, c) = manual_conflict(&app, &manager, &store).await;
    let before = stored(&app, &kpi).await;
    let path = resolve_path(&c);
    let (status, done) = manager
        .post(&path, &json!({"strategy": "server_wins"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(stored(&app, &kpi).await, before);

    // merge: the device changed `value` only, the manager too: overlaps keep the
    // server's value; bad input is refused clearly and leaves the conflict open.
    let (kpi, c) = manual_conflict(&app, &manager, &store).await;
    let path = resolve_path(&c);
    let (status, body) = manager.post(&path, &json!({"strategy": "custom"})).await;
    assert_error(status, &body, 400, "VALIDATION_FAILED");
    let (status, body) = manager.post(&path, &json!({"strategy": "whatever"})).await;
    assert_error(status, &body, 400, "VALIDATION_FAILED");
    let (status, body) = manager
        .post(&path, &json!({"strategy": "custom", "data": {"nope": 1}}))
        .await;
    assert_error(status, &body, 400, "VALIDATION_FAILED");
    let (status, done) = manager.post(&path, &json!({"strategy": "merge"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(stored(&app, &kpi).await["value"], json!(11));
}

#[tokio::test]
async fn conflicts_stay_inside_their_tenant() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "manual")])
        .spawn()
        .await;
    let manager = app.manager("boss", "mgr-1").await;
    let store = app.store("s1user", "s1", "store-1").await;
    let (_, c) = manual_conflict(&app, &manager, &store).await;
    app.add_user("intruder", nas_sync::auth::Role::Manager, None, "other")
        .await;
    let intruder = app.login("intruder", "intruder-1").await;
    let (_, listed) = intruder.get("/api/v1/sync/conflicts").await;
    assert_eq!(listed, json!([]));
    let path = resolve_path(&c);
    let (status, body) = intruder
        .post(&path, &json!({"strategy": "client_wins"}))
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = intruder
        .post(
            "/api/v1/sync/conflicts/not-a-uuid/resolve",
            &json!({"strategy": "server_wins"}),
        )
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
}
