//! The admin API (`/api/v1/admin/...`, docs/contract.md §10 additions), over HTTP as a
//! client would call it: managers list, add, disable, enable and re-password users,
//! list, revoke and release devices, within their tenant only; store users get 403.
use crate::common::*;

use nas_sync::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn store_users_are_forbidden_everywhere() {
    let app = TestApp::spawn().await;
    let _boss = app.manager("boss", "mgr-1").await;
    let store = app.store("clerk", "s1", "store-1").await;
    for path in ["/api/v1/admin/users", "/api/v1/admin/devices"] {
        let (status, body) = store.get(path).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    for path in [
        "/api/v1/admin/users/boss/disable",
        "/api/v1/admin/users/boss/enable",
        "/api/v1/admin/devices/mgr-1/revoke",
        "/api/v1/admin/devices/mgr-1/release",
    ] {
        let (status, body) = store.post(path, &json!({})).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    let (status, body) = store
        .post(
            "/api/v1/admin/users/boss/password",
            &json!({"password": "newpassword"}),
        )
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = store
        .post(
            "/api/v1/admin/users",
            &json!({"username": "x1", "password": "password", "role": "manager"}),
        )
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");
    // Nothing changed.
    app.login("boss", "mgr-2").await;
}

#[tokio::test]
async fn managers_add_users_who_then_log_in() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "mgr-1").await;
    let (status, body) = boss
        .post(
            "/api/v1/admin/users",
            &json!({"username": "newclerk", "password": "secret-pw-1", "role": "store", "store": "s7"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["store_id"], "s7");
    assert_eq!(body["tenant_id"], "default");
    let (status, body) = app
        .login_raw("newclerk", "secret-pw-1", "clerk-phone")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["role"], "store");

    // Listed; bad input is a clear 4xx.
    let (status, list) = boss.get("/api/v1/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["boss", "newclerk"]);
    let (status, body) = boss
        .post(
            "/api/v1/admin/users",
            &json!({"username": "newclerk", "password": "secret-pw-1", "role": "manager"}),
        )
        .await;
    assert_error(status, &body, 409, "USER_EXISTS");
    for (bad, field) in [
        (
            json!({"username": "a", "password": "secret-pw-1", "role": "king"}),
            "role",
        ),
        (
            json!({"username": "a", "password": "short", "role": "manager"}),
            "password",
        ),
        (
            json!({"username": "a", "password": "secret-pw-1", "role": "store"}),
            "store",
        ),
        (
            json!({"username": "", "password": "secret-pw-1", "role": "manager"}),
            "username",
        ),
    ] {
        let (status, body) = boss.post("/api/v1/admin/users", &bad).await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");
        assert_eq!(body["details"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn disable_enable_and_reset_password() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "mgr-1").await;
    let clerk = app.store("clerk", "s1", "store-1").await;

    let (status, _) = boss
        .post("/api/v1/admin/users/clerk/disable", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = clerk.get("/api/v1/sync/status").await;
    assert_error(status, &body, 401, "USER_DISABLED");
    let (status, body) = app.login_raw("clerk", "password", "store-1").await;
    assert_error(status, &body, 401, "USER_DISABLED");

    let (status, _) = boss
        .post("/api/v1/admin/users/clerk/enable", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.login("clerk", "store-1").await;

    let (status, _) = boss
        .post(
            "/api/v1/admin/users/clerk/password",
            &json!({"password": "another-pw"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.login_raw("clerk", "password", "store-1").await;
    assert_error(status, &body, 401, "INVALID_CREDENTIALS");
    let (status, body) = app.login_raw("clerk", "another-pw", "store-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Yourself, unknown users, bad passwords.
    let (status, body) = boss
        .post("/api/v1/admin/users/boss/disable", &json!({}))
        .await;
    assert_error(status, &body, 400, "VALIDATION_FAILED");
    let (status, body) = boss
        .post("/api/v1/admin/users/nobody/disable", &json!({}))
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = boss
        .post(
            "/api/v1/admin/users/clerk/password",
            &json!({"password": ""}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_FAILED");
    let (status, body) = boss
        .post(
            "/api/v1/admin/users/clerk/password",
            &json!({"pass": "another-pw"}),
        )
        .await;
    assert_error(status, &body, 400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn other_tenants_are_out_of_reach() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "mgr-1").await;
    app.add_user("other-boss", Role::Manager, None, "acme")
        .await;
    app.add_user("other-clerk", Role::Store, Some("s1"), "acme")
        .await;
    app.login("other-clerk", "acme-phone").await;

    let (_, list) = boss.get("/api/v1/admin/users").await;
    assert!(!list.to_string().contains("other-"), "{list}");
    let (_, devices) = boss.get("/api/v1/admin/devices").await;
    assert!(!devices.to_string().contains("acme-phone"), "{devices}");
    let (status, body) = boss
        .post("/api/v1/admin/users/other-clerk/disable", &json!({}))
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = boss
        .post("/api/v1/admin/devices/acme-phone/revoke", &json!({}))
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app
        .login_raw("other-clerk", "password", "acme-phone-2")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn devices_are_listed_revoked_and_released() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "mgr-1").await;
    let mut clerk = app.store("clerk", "s1", "store-1").await;
    clerk.pull_page(None).await;
    let lost = app.store("clerk2", "s1", "lost-phone").await;

    let (status, devices) = boss.get("/api/v1/admin/devices").await;
    assert_eq!(status, StatusCode::OK, "{devices}");
    let by_id = |id: &str| -> Value {
        devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed: {devices}"))
    };
    assert_eq!(by_id("store-1")["username"], "clerk");
    assert!(by_id("store-1")["last_pull_at"].is_string(), "{devices}");
    assert!(by_id("lost-phone")["revoked_at"].is_null());

    let (status, _) = boss
        .post("/api/v1/admin/devices/lost-phone/revoke", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = lost.get("/api/v1/sync/status").await;
    assert_error(status, &body, 401, "DEVICE_REVOKED");
    let (status, body) = boss
        .post("/api/v1/admin/devices/lost-phone/release", &json!({}))
        .await;
    assert_error(status, &body, 409, "DEVICE_REVOKED");

    // Released: the old token ends, another user may log in with the id.
    let (status, _) = boss
        .post("/api/v1/admin/devices/store-1/release", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = clerk.get("/api/v1/sync/status").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = app.login_raw("clerk2", "password", "store-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = boss
        .post("/api/v1/admin/devices/no-such-device/revoke", &json!({}))
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");

    // The device the manager is calling from is neither revoked nor released (it would
    // end the caller's own session); the manager's token still works.
    for action in ["revoke", "release"] {
        let (status, body) = boss
            .post(&format!("/api/v1/admin/devices/mgr-1/{action}"), &json!({}))
            .await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");
        assert_eq!(body["details"]["field"], "device_id", "{body}");
    }
    let (status, body) = boss.get("/api/v1/sync/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A user's email and Odoo user id (for apps built on BridgeCore): given at creation,
/// listed, changed and cleared (`null`), unique (emails across tenants, Odoo ids in a
/// tenant), checked, and reachable only in the manager's own tenant.
#[tokio::test]
async fn managers_set_and_clear_a_users_email_and_odoo_user_id() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "mgr-1").await;
    let (status, body) = boss
        .post(
            "/api/v1/admin/users",
            &json!({"username": "ana", "password": "secret-pw-1", "role": "store", "store": "s1",
                    "email": " Ana@Example.org ", "odoo_user_id": 12}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["email"].clone(), body["odoo_user_id"].clone()),
        (json!("Ana@Example.org"), json!(12))
    );

    // Unique: the same email (any case) or the same Odoo id in the tenant.
    for (field, value) in [
        ("email", json!("ana@example.ORG")),
        ("odoo_user_id", json!(12)),
    ] {
        let (status, body) = boss
            .post(
                "/api/v1/admin/users",
                &json!({"username": format!("dup-{field}"), "password": "secret-pw-1",
                        "role": "manager", field: value}),
            )
            .await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");
        assert_eq!(body["details"]["field"], field, "{body}");
    }
    // Checked values.
    for change in [json!({"email": "not-an-email"}), json!({"odoo_user_id": 0})] {
        let (status, body) = boss.patch("/api/v1/admin/users/ana", &change).await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");
    }
    // A field left out stays; null clears.
    let (status, body) = boss
        .patch("/api/v1/admin/users/ana", &json!({"odoo_user_id": 13}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"email": "Ana@Example.org", "odoo_user_id": 13})
    );
    let (_, body) = boss
        .patch("/api/v1/admin/users/ana", &json!({"email": null}))
        .await;
    assert_eq!(body, json!({"email": null, "odoo_user_id": 13}));
    let (_, list) = boss.get("/api/v1/admin/users").await;
    let ana = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "ana")
        .unwrap();
    assert_eq!(
        (ana["email"].clone(), ana["odoo_user_id"].clone()),
        (Value::Null, json!(13))
    );

    // Another tenant's manager does not reach ana, and may reuse Odoo id 13.
    app.add_user("other-boss", Role::Manager, None, "other")
        .await;
    let other = app.login("other-boss", "other-1").await;
    let (status, body) = other
        .patch("/api/v1/admin/users/ana", &json!({"odoo_user_id": 1}))
        .await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = other
        .patch(
            "/api/v1/admin/users/other-boss",
            &json!({"odoo_user_id": 13}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Store users may not.
    let clerk = app.store("clerk", "s2", "clerk-phone").await;
    let (status, body) = clerk
        .patch("/api/v1/admin/users/ana", &json!({"odoo_user_id": 2}))
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");
}
