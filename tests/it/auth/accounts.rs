//! Users and devices managed from the command line (docs/contract.md §1 and §9),
//! through the real binary, against a running server: `user list`, `user disable`,
//! `user enable`, `user passwd`, `device release`.
use crate::common::nas_cli::*;
use crate::common::*;

use reqwest::StatusCode;
use serde_json::{Value, json};

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

/// The `user list` line of `username`.
fn line_of(list: &str, username: &str) -> Option<String> {
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(username))
        .map(str::to_string)
}

async fn user_list(app: &TestApp, args: &[&str]) -> String {
    let mut all = vec!["user", "list"];
    all.extend_from_slice(args);
    let out = cli(&app.db.url, &all, None).await;
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn user_list_shows_name_role_store_tenant_and_status() {
    let app = TestApp::spawn().await;
    add(&app, &["alice", "--role", "manager"]).await;
    add(&app, &["bob", "--role", "store", "--store", "s7"]).await;
    add(
        &app,
        &[
            "erin", "--role", "store", "--store", "s9", "--tenant", "acme",
        ],
    )
    .await;
    assert_ok(&cli(&app.db.url, &["user", "disable", "bob"], None).await);

    let list = user_list(&app, &[]).await;
    let words = |name: &str| -> Vec<String> {
        line_of(&list, name)
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        words("alice"),
        ["alice", "manager", "-", "default", "active", "-", "-"]
    );
    assert_eq!(
        words("bob"),
        ["bob", "store", "s7", "default", "disabled", "-", "-"]
    );
    assert_eq!(
        words("erin"),
        ["erin", "store", "s9", "acme", "active", "-", "-"]
    );

    let acme = user_list(&app, &["--tenant", "acme"]).await;
    assert!(line_of(&acme, "erin").is_some(), "{acme}");
    assert!(line_of(&acme, "alice").is_none(), "{acme}");
}

#[tokio::test]
async fn a_disabled_user_is_locked_out_at_once_until_enabled() {
    let app = TestApp::spawn().await;
    add(&app, &["bob", "--role", "store", "--store", "s7"]).await;
    add(&app, &["alice", "--role", "manager"]).await;
    let bob = app.login("bob", "bob-tablet").await;
    let alice = app.login("alice", "alice-phone").await;

    let out = cli(&app.db.url, &["user", "disable", "bob"], None).await;
    assert_ok(&out);

    // His still-valid access token fails at once, and so does his refresh token.
    let (s, b) = bob.get("/api/v1/sync/status").await;
    assert_error(s, &b, 401, "USER_DISABLED");
    let (s, b) = bob
        .post("/api/v1/sync/pull", &json!({"device_id": "bob-tablet"}))
        .await;
    assert_error(s, &b, 401, "USER_DISABLED");
    let (s, b) = refresh(&app, &bob.refresh_token).await;
    assert_eq!(s.as_u16(), 401, "{b}");
    assert!(b.get("access_token").is_none(), "{b}");
    // He cannot log in; a wrong password still says only that.
    let (s, b) = app.login_raw("bob", "password", "bob-tablet").await;
    assert_error(s, &b, 401, "USER_DISABLED");
    let (s, b) = app.login_raw("bob", "wrong", "bob-tablet").await;
    assert_error(s, &b, 401, "INVALID_CREDENTIALS");
    // Others are untouched.
    let (s, b) = alice.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Enabled again: he logs in anew; the tokens ended by disabling stay ended.
    assert_ok(&cli(&app.db.url, &["user", "enable", "bob"], None).await);
    let again = app.login("bob", "bob-tablet").await;
    let (s, b) = again.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = bob.get("/api/v1/sync/status").await;
    assert_error(s, &b, 401, "UNAUTHORIZED");

    // Unknown users: non-zero, saying so.
    for verb in ["disable", "enable"] {
        let out = cli(&app.db.url, &["user", verb, "nobody"], None).await;
        assert_fails(&out);
        assert!(text(&out).contains("nobody"), "unclear: {}", text(&out));
    }
}

#[tokio::test]
async fn passwd_changes_the_password_and_ends_the_users_tokens() {
    let app = TestApp::spawn().await;
    add(&app, &["alice", "--role", "manager"]).await;
    add(&app, &["carol", "--role", "manager"]).await;
    let phone = app.login("alice", "alice-phone").await;
    let tablet = app.login("alice", "alice-tablet").await;
    let carol = app.login("carol", "carol-phone").await;

    let out = cli(
        &app.db.url,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("new secret 123\nsecond line\n"),
    )
    .await;
    assert_ok(&out);

    // The old password no longer works; the first line of stdin is the new one.
    let (s, b) = app.login_raw("alice", "password", "alice-phone").await;
    assert_error(s, &b, 401, "INVALID_CREDENTIALS");
    let (s, b) = app
        .login_raw("alice", "new secret 123\nsecond line", "alice-phone")
        .await;
    assert_error(s, &b, 401, "INVALID_CREDENTIALS");
    // Her old refresh and access tokens, on every device, fail.
    for dev in [&phone, &tablet] {
        let (s, b) = refresh(&app, &dev.refresh_token).await;
        assert_error(s, &b, 401, "UNAUTHORIZED");
        let (s, b) = dev.get("/api/v1/sync/status").await;
        assert_error(s, &b, 401, "UNAUTHORIZED");
    }
    let (s, b) = app
        .login_raw("alice", "new secret 123", "alice-phone")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Another user keeps her session.
    let (s, b) = refresh(&app, &carol.refresh_token).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // An unknown user or an empty password: non-zero.
    let out = cli(
        &app.db.url,
        &["user", "passwd", "nobody", "--password-stdin"],
        Some("x\n"),
    )
    .await;
    assert_fails(&out);
    let out = cli(
        &app.db.url,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("\n"),
    )
    .await;
    assert_fails(&out);
    let (s, b) = app
        .login_raw("alice", "new secret 123", "alice-phone")
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a refused passwd changed the password: {b}"
    );
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
    let (s, b) = app.login_raw("kiosk", "password", "shared-tablet").await;
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
    let (s, b) = app.login_raw("alice", "password", "shared-tablet").await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
}
