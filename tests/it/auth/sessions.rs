//! Device sessions (docs/contract.md §3 and §9): a device id belongs to the user who
//! logged in with it (another user gets `DEVICE_IN_USE`), logout ends its tokens and
//! frees it with a fresh sync state (its old owner's conflicts included), a replayed
//! refresh token ends every token of its device, and a store device sees only itself in
//! the sync status.
use crate::common::*;

use nas_sync::auth::{Role, devices};
use reqwest::StatusCode;
use serde_json::{Value, json};

const REFRESH: &str = "/api/v1/auth/refresh";
const LOGOUT: &str = "/api/v1/auth/logout";

async fn refresh(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.post_json(REFRESH, None, &json!({"refresh_token": token}))
        .await
}

/// How many rows of `table` belong to the device `device_id` of tenant `default`.
async fn rows_of_device(app: &TestApp, table: &str, device_id: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE tenant_id = 'default' AND device_id = $1"
    )))
    .bind(device_id)
    .fetch_one(&app.pool)
    .await
    .expect("count rows")
}

#[tokio::test]
async fn another_users_login_on_an_owned_device_is_device_in_use() {
    let app = TestApp::spawn().await;
    let maria = app.manager("maria", "shared-tablet").await;
    app.add_user("kiosk", Role::Store, Some("s1"), "default")
        .await;
    app.add_user("joao", Role::Manager, None, "default").await;

    for user in ["kiosk", "joao"] {
        let (s, b) = app.login_raw(user, "password", "shared-tablet").await;
        assert_error(s, &b, 409, "DEVICE_IN_USE");
        assert!(b.get("access_token").is_none(), "{b}");
    }
    // Without the password nothing is learned about the device.
    let (s, b) = app
        .login_raw("kiosk", "not-the-password", "shared-tablet")
        .await;
    assert_error(s, &b, 401, "INVALID_CREDENTIALS");

    // The owner keeps the device, and her tokens keep working.
    let d = devices::get(&app.pool, "default", "shared-tablet")
        .await
        .unwrap()
        .expect("device");
    assert_eq!(d.username, "maria", "the device was taken over");
    let (s, b) = maria.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = maria
        .post("/api/v1/sync/pull", &json!({"device_id": "shared-tablet"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = refresh(&app, &maria.refresh_token).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the owner's refresh token stopped working: {b}"
    );

    // The owner may log in on it again; another tenant's user may use the same id.
    let (s, b) = app.login_raw("maria", "password", "shared-tablet").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.add_user("erin", Role::Manager, None, "acme").await;
    let (s, b) = app.login_raw("erin", "password", "shared-tablet").await;
    assert_eq!(s, StatusCode::OK, "tenants share nothing: {b}");
}

#[tokio::test]
async fn logout_ends_the_tokens_and_frees_the_device_with_a_fresh_state() {
    let app = TestApp::spawn().await;
    let mut maria = app.manager("maria", "shared-tablet").await;
    app.add_user("kiosk", Role::Store, Some("s1"), "default")
        .await;

    // Maria's session leaves state behind: pulls, a push with a push_id, BridgeCore
    // positions and local ids.
    let form = id();
    let (s, b) = maria
        .push_raw(
            json!({"device_id": "shared-tablet", "timestamp": now(), "push_id": "push-0001",
                         "changes": {"forms": [{"id": form, "title": "Opening checklist"}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    maria.sync_down().await;
    let (s, state) = maria.get("/api/v1/sync/state").await;
    assert_eq!(s, StatusCode::OK, "{state}");
    assert!(state["sync_count"].as_i64() > Some(0), "{state}");
    assert!(
        state["cursor"].is_string() && state["last_push_at"].is_string(),
        "{state}"
    );
    let maria_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = 'maria'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO offline_sync_state (tenant_id, user_id, device_id, app_type, last_event_id)
         VALUES ('default', $1, 'shared-tablet', 'inventory', 42)",
    )
    .bind(maria_id)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO offline_local_ids (tenant_id, device_id, local_id, table_name, row_id)
         VALUES ('default', 'shared-tablet', 'local-1', 'forms', $1::uuid)",
    )
    .bind(&form)
    .execute(&app.pool)
    .await
    .unwrap();
    // A pull whose bookkeeping is still pending when she signs out.
    maria.pull_page(None).await;

    let (s, b) = maria.post(LOGOUT, &json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "logout: {b}");

    // Her access and refresh tokens end at once.
    let (s, b) = maria.get("/api/v1/sync/status").await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
    let (s, b) = maria
        .post("/api/v1/sync/pull", &json!({"device_id": "shared-tablet"}))
        .await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
    let (s, b) = refresh(&app, &maria.refresh_token).await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
    let (s, b) = maria.post(LOGOUT, &json!({})).await;
    assert_error(s, &b, 401, "UNAUTHORIZED");

    // Another user may now log in with the device id, and starts from nothing.
    let kiosk = app.login("kiosk", "shared-tablet").await;
    let (s, state) = kiosk.get("/api/v1/sync/state").await;
    assert_eq!(s, StatusCode::OK, "{state}");
    assert_eq!(state["device_id"], "shared-tablet");
    assert_eq!(state["sync_count"], 0, "{state}");
    assert_eq!(state["cursor"], Value::Null, "{state}");
    assert_eq!(state["last_pull_at"], Value::Null, "{state}");
    assert_eq!(state["last_push_at"], Value::Null, "{state}");
    let d = devices::get(&app.pool, "default", "shared-tablet")
        .await
        .unwrap()
        .expect("device");
    assert_eq!(d.username, "kiosk");
    for table in ["offline_sync_state", "offline_local_ids"] {
        assert_eq!(
            rows_of_device(&app, table, "shared-tablet").await,
            0,
            "{table} kept the old owner's rows"
        );
    }
    // Maria's push_id is not replayed to the new owner: its own push is applied.
    let submission = id();
    let (s, b) = kiosk
        .push_raw(json!({"device_id": "shared-tablet", "timestamp": now(), "push_id": "push-0001",
                         "changes": {"submissions": [{"id": submission, "form_id": form, "store_id": "s1"}]}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["applied"]["submissions"].as_array().map(Vec::len),
        Some(1),
        "{b}"
    );
    assert!(
        app.server_rows("submissions", "default")
            .await
            .contains_key(&submission),
        "the new owner's push was not applied"
    );

    // Maria, signed out, logs in elsewhere as usual.
    let (s, b) = app.login_raw("maria", "password", "maria-phone").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn a_replayed_refresh_token_ends_every_token_of_the_device() {
    let app = TestApp::spawn().await;
    let dev = app.manager("maria", "maria-phone").await;
    let laptop = app.login("maria", "maria-laptop").await;

    // The genuine client rotates once.
    let (s, rotated) = refresh(&app, &dev.refresh_token).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let access = rotated["access_token"].as_str().unwrap();
    let newest = rotated["refresh_token"].as_str().unwrap();
    let (s, b) = app.get("/api/v1/sync/status", Some(access)).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Someone presents the spent token again.
    let (s, b) = refresh(&app, &dev.refresh_token).await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
    assert!(b.get("access_token").is_none(), "{b}");

    // Every token of the device ends: the newest refresh token, the access tokens.
    let (s, b) = refresh(&app, newest).await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
    let (s, b) = app.get("/api/v1/sync/status", Some(access)).await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
    let (s, b) = dev.get("/api/v1/sync/status").await;
    assert_error(s, &b, 401, "UNAUTHORIZED");

    // The user's other device is untouched; the device itself logs in again and
    // keeps its owner.
    let (s, b) = laptop.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = refresh(&app, &laptop.refresh_token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let again = app.login("maria", "maria-phone").await;
    let (s, b) = again.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = refresh(&app, &again.refresh_token).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn store_devices_see_only_themselves_in_the_sync_status() {
    let app = TestApp::spawn().await;
    let mut boss = app.manager("maria", "maria-phone").await;
    let mut s1 = app.store("kiosk-1", "s1", "kiosk-1-tablet").await;
    let mut s2 = app.store("kiosk-2", "s2", "kiosk-2-tablet").await;
    for dev in [&mut boss, &mut s1, &mut s2] {
        dev.sync_down().await;
    }

    let (s, b) = s1.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let seen: Vec<&String> = b["last_sync"]
        .as_object()
        .expect("last_sync")
        .keys()
        .collect();
    assert_eq!(seen, ["kiosk-1-tablet"], "{b}");
    assert_eq!(b["active_devices"], 1, "{b}");

    let (s, b) = boss.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let seen: Vec<&String> = b["last_sync"]
        .as_object()
        .expect("last_sync")
        .keys()
        .collect();
    assert_eq!(
        seen,
        ["kiosk-1-tablet", "kiosk-2-tablet", "maria-phone"],
        "{b}"
    );
    assert_eq!(b["active_devices"], 3, "{b}");
}

#[tokio::test]
async fn a_new_owner_does_not_see_the_old_owners_conflicts() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "manual")])
        .spawn()
        .await;
    let boss = app.manager("maria", "maria-phone").await;
    let mut old = app.store("kiosk-1", "s1", "shared-tablet").await;
    app.add_user("kiosk-2", Role::Store, Some("s2"), "default")
        .await;

    // The old owner's stale write opens a manual conflict on the shared device.
    let kpi = id();
    old.push(
        json!({"kpi_data": [{"id": kpi, "store_id": "s1", "metric": "sales",
                                   "value": 10, "period": "2026-11", "version": 0}]}),
    )
    .await;
    boss.push(json!({"kpi_data": [{"id": kpi, "version": 1, "updated_at": now(), "value": 11}]}))
        .await;
    let r = old
        .push(json!({"kpi_data": [{"id": kpi, "version": 1, "updated_at": now(), "value": 12}]}))
        .await;
    let conflict = r["conflicts"][0]["conflict_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no conflict opened: {r}"))
        .to_string();
    let page = old.pull_page(None).await;
    assert_eq!(page["conflicts"][0]["id"], json!(conflict), "{page}");

    let (s, b) = old.post(LOGOUT, &json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let mut new = app.login("kiosk-2", "shared-tablet").await;

    // Nothing of it reaches the new owner: not on pulls, not in the inbox, not to resolve.
    let page = new.pull_page(None).await;
    assert_eq!(page["conflicts"], Value::Null, "{page}");
    let (s, b) = new.get("/api/v1/sync/conflicts").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!([]), "the old owner's conflicts are listed");
    let (s, b) = new
        .post(
            &format!("/api/v1/sync/conflicts/{conflict}/resolve"),
            &json!({"strategy": "client_wins"}),
        )
        .await;
    assert_error(s, &b, 404, "NOT_FOUND");
    // It stays in the tenant's inbox for managers.
    let (_, b) = boss.get("/api/v1/sync/conflicts").await;
    assert_eq!(b[0]["id"], json!(conflict), "{b}");
}
