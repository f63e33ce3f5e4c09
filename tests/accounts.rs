//! Users and devices managed from the command line (docs/contract.md §1 and §9),
//! through the real binary, against a running server: `device release`.
mod common;
use common::nas_cli::*;
use common::*;

use reqwest::StatusCode;
use serde_json::{Value, json};

async fn login_raw(
    app: &TestApp,
    username: &str,
    password: &str,
    device_id: &str,
) -> (StatusCode, Value) {
    app.post_json(
        "/api/v1/auth/login",
        None,
        &json!({"username": username, "password": password, "device_id": device_id}),
    )
    .await
}

async fn refresh(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.post_json(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": token}),
    )
    .await
}

/// Creates a user with the CLI, with the password the test harness logs in with.
async fn add(app: &TestApp, args: &[&str]) {
    let mut all = vec!["user", "add"];
    all.extend_from_slice(args);
    all.push("--password-stdin");
    assert_ok(&cli(&app.db.url, &all, Some("password\n")).await);
}

#[tokio::test]
async fn device_release_ends_the_tokens_and_frees_the_device() {
    let app = TestApp::spawn().await;
    add(&app, &["alice", "--role", "manager"]).await;
    add(&app, &["kiosk", "--role", "store", "--store", "s1"]).await;
    let mut alice = app.login("alice", "shared-tablet").await;
    let form = id();
    let (s, b) = alice
        .push_raw(
            json!({"device_id": "shared-tablet", "timestamp": now(), "push_id": "push-0001",
                         "changes": {"forms": [{"id": form, "title": "Closing checklist"}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    alice.sync_down().await;
    let (s, b) = login_raw(&app, "kiosk", "password", "shared-tablet").await;
    assert_error(s, &b, 409, "DEVICE_IN_USE");

    // Unknown devices, or in another tenant: non-zero, nothing released.
    let out = cli(&app.db.url, &["device", "release", "no-such-device"], None).await;
    assert_fails(&out);
    let out = cli(
        &app.db.url,
        &["device", "release", "shared-tablet", "--tenant", "acme"],
        None,
    )
    .await;
    assert_fails(&out);
    let (s, b) = alice.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let out = cli(&app.db.url, &["device", "release", "shared-tablet"], None).await;
    assert_ok(&out);
    let (s, b) = alice.get("/api/v1/sync/status").await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
    let (s, b) = refresh(&app, &alice.refresh_token).await;
    assert_error(s, &b, 401, "UNAUTHORIZED");

    // The next user starts from nothing, and its push_id is its own.
    let kiosk = app.login("kiosk", "shared-tablet").await;
    let (s, state) = kiosk.get("/api/v1/sync/state").await;
    assert_eq!(s, StatusCode::OK, "{state}");
    assert_eq!(
        (
            &state["sync_count"],
            &state["cursor"],
            &state["last_pull_at"],
            &state["last_push_at"]
        ),
        (&json!(0), &Value::Null, &Value::Null, &Value::Null),
        "{state}"
    );
    let (s, b) = kiosk
        .push_raw(json!({"device_id": "shared-tablet", "timestamp": now(), "push_id": "push-0001",
                         "changes": {"submissions": [{"id": id(), "form_id": form, "store_id": "s1"}]}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["applied"]["submissions"].as_array().map(Vec::len),
        Some(1),
        "{b}"
    );

    // A revoked device is not released: it stays revoked.
    assert_ok(&cli(&app.db.url, &["device", "revoke", "shared-tablet"], None).await);
    let out = cli(&app.db.url, &["device", "release", "shared-tablet"], None).await;
    assert_fails(&out);
    assert!(text(&out).contains("revoked"), "unclear: {}", text(&out));
    let (s, b) = login_raw(&app, "alice", "password", "shared-tablet").await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
}
