//! Auth (docs/contract.md §2 and §3): login, device ids, refresh rotation, bearer
//! tokens (missing, garbage, expired, revoked), device binding, and the failed-login
//! rate limit.
use crate::common::*;

use jsonwebtoken::{EncodingKey, Header};
use nas_sync::auth::{Role, devices, users};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LOGIN: &str = "/api/v1/auth/login";
const REFRESH: &str = "/api/v1/auth/refresh";

/// Signs claims shaped like the server's access-token claims with `secret`.
fn forge(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign token")
}

/// Claims for `device`'s user, as the server would issue them, expiring at `exp`: the
/// device's token generation is the one of the login's access token, if any.
fn claims_for(login: &Value, exp: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    let generation = login["access_token"].as_str().map_or(json!(0), |t| {
        jsonwebtoken::decode::<Value>(
            t,
            &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
            &jsonwebtoken::Validation::default(),
        )
        .expect("the server's access token")
        .claims["gen"]
            .clone()
    });
    json!({
        "sub": login["user"]["id"],
        "username": login["user"]["username"],
        "tenant": login["user"]["tenant"],
        "role": login["user"]["role"],
        "store_id": login["user"]["store_id"],
        "device_id": login["device_id"],
        "gen": generation,
        "iat": now - 7200,
        "exp": exp,
    })
}

#[tokio::test]
async fn login_returns_the_contract_shape() {
    let app = TestApp::spawn().await;
    app.add_user("maria", Role::Manager, None, "default").await;
    app.add_user("kiosk", Role::Store, Some("store-7"), "tenant-x")
        .await;

    let (s, b) = app
        .post_json(
            LOGIN,
            None,
            &json!({"username": "maria", "password": "password",
                    "device_id": "maria-ipad:01", "device_name": "Maria's iPad"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let stored = users::find_by_username(&app.pool, "maria")
        .await
        .unwrap()
        .expect("maria exists");
    assert!(
        b["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{b}"
    );
    assert!(
        b["refresh_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{b}"
    );
    assert_ne!(b["access_token"], b["refresh_token"]);
    assert_eq!(b["token_type"], "Bearer");
    assert!(
        b["expires_in"].as_u64().is_some_and(|n| n > 0),
        "expires_in must be a positive number of seconds: {b}"
    );
    assert_eq!(b["device_id"], "maria-ipad:01");
    assert_eq!(
        b["user"],
        json!({"id": stored.id.to_string(), "username": "maria", "role": "manager",
               "store_id": null, "tenant": "default"}),
        "{b}"
    );
    // The access token works on an authenticated route.
    let (s, st) = app
        .get("/api/v1/sync/status", b["access_token"].as_str())
        .await;
    assert_eq!(s, StatusCode::OK, "{st}");
    // The device is bound, with its name.
    let dev = devices::get(&app.pool, "default", "maria-ipad:01")
        .await
        .unwrap()
        .expect("device recorded at login");
    assert_eq!(dev.username, "maria");
    assert_eq!(dev.device_name.as_deref(), Some("Maria's iPad"));

    // A store user of another tenant.
    let (s, b) = app.login_raw("kiosk", "password", "kiosk-1").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let kiosk = users::find_by_username(&app.pool, "kiosk")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b["user"],
        json!({"id": kiosk.id.to_string(), "username": "kiosk", "role": "store",
               "store_id": "store-7", "tenant": "tenant-x"}),
        "{b}"
    );
    assert_eq!(b["device_id"], "kiosk-1");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_the_same() {
    let app = TestApp::spawn().await;
    app.add_user("maria", Role::Manager, None, "default").await;

    let (s1, wrong_password) = app.login_raw("maria", "not-the-password", "dev-1").await;
    assert_error(s1, &wrong_password, 401, "INVALID_CREDENTIALS");
    let (s2, unknown_user) = app.login_raw("nobody", "password", "dev-1").await;
    assert_error(s2, &unknown_user, 401, "INVALID_CREDENTIALS");
    assert_eq!(
        wrong_password, unknown_user,
        "the two failures must be indistinguishable"
    );
    let (s3, empty) = app.login_raw("maria", "", "dev-1").await;
    assert_error(s3, &empty, 401, "INVALID_CREDENTIALS");
    assert!(wrong_password.get("access_token").is_none());
    // No device was bound by the failed attempts.
    assert!(
        devices::get(&app.pool, "default", "dev-1")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn device_id_is_validated() {
    let app = TestApp::spawn().await;
    app.add_user("maria", Role::Manager, None, "default").await;
    let long = "x".repeat(129);
    for bad in [
        "",
        "ab",
        "has space",
        "slash/char",
        "semi;colon",
        "ünïcode",
        "emoji-📱",
        long.as_str(),
    ] {
        let (s, b) = app.login_raw("maria", "password", bad).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
        assert_eq!(b["details"]["field"], "device_id", "for {bad:?}: {b}");
    }
    // The boundaries and every allowed character are accepted.
    let max = "y".repeat(128);
    for good in ["abc", "A.b_c:d-9", max.as_str()] {
        let (s, b) = app.login_raw("maria", "password", good).await;
        assert_eq!(s, StatusCode::OK, "device_id {good:?} refused: {b}");
        assert_eq!(b["device_id"], good);
    }
    // A missing device_id also names the field.
    let (s, b) = app
        .post_json(
            LOGIN,
            None,
            &json!({"username": "maria", "password": "password"}),
        )
        .await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");
    assert_eq!(b["details"]["field"], "device_id", "{b}");
}

#[tokio::test]
async fn refresh_rotates_the_pair() {
    let app = TestApp::spawn().await;
    let dev = app.manager("maria", "maria-phone").await;

    let (s, first) = app
        .post_json(REFRESH, None, &json!({"refresh_token": dev.refresh_token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["device_id"], "maria-phone");
    assert_eq!(first["user"]["username"], "maria");
    assert!(first["expires_in"].as_u64().is_some_and(|n| n > 0));
    let new_refresh = first["refresh_token"].as_str().expect("refresh_token");
    let new_access = first["access_token"].as_str().expect("access_token");
    assert_ne!(new_refresh, dev.refresh_token, "refresh token must rotate");

    // The new access token works.
    let (s, b) = app.get("/api/v1/sync/status", Some(new_access)).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // The new one works once, and rotates again.
    let (s, second) = app
        .post_json(REFRESH, None, &json!({"refresh_token": new_refresh}))
        .await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"].as_str(), Some(new_refresh));

    // The spent refresh tokens stop working, now and on later tries (presenting one
    // also ends the device's other tokens: tests/it/auth/sessions.rs).
    for spent in [
        &dev.refresh_token,
        &new_refresh.to_string(),
        &dev.refresh_token,
    ] {
        let (s, b) = app
            .post_json(REFRESH, None, &json!({"refresh_token": spent}))
            .await;
        assert_eq!(s.as_u16(), 401, "reused refresh token accepted: {b}");
        assert!(b["code"].is_string() && b["message"].is_string() && b["details"].is_object());
    }

    // A refresh token that was never issued.
    let (s, b) = app
        .post_json(REFRESH, None, &json!({"refresh_token": "not-a-real-token"}))
        .await;
    assert_eq!(s.as_u16(), 401, "{b}");
    // An access token is not a refresh token.
    let (s, b) = app
        .post_json(REFRESH, None, &json!({"refresh_token": dev.token}))
        .await;
    assert_eq!(s.as_u16(), 401, "{b}");
}

#[tokio::test]
async fn missing_or_garbage_bearer_is_unauthorized() {
    let app = TestApp::spawn().await;
    let dev = app.manager("maria", "maria-phone").await;
    let pull_body = json!({"device_id": "maria-phone"});

    // No Authorization header, on every authenticated route.
    for (method, path) in [
        ("POST", "/api/v1/sync/pull"),
        ("POST", "/api/v1/sync/push"),
        ("GET", "/api/v1/sync/status"),
        ("GET", "/api/v1/sync/state"),
        ("POST", "/api/v1/sync/reset"),
    ] {
        let url = format!("{}{path}", app.base);
        let req = match method {
            "GET" => app.http.get(url),
            _ => app.http.post(url).json(&pull_body),
        };
        let (s, b) = read(req.send().await.unwrap()).await;
        assert_error(s, &b, 401, "UNAUTHORIZED");
    }

    // Malformed headers and tokens.
    let wrong_secret = forge(
        &claims_for(
            &json!({"user": {"id": id(), "username": "maria", "tenant": "default",
                             "role": "manager", "store_id": null},
                    "device_id": "maria-phone"}),
            chrono::Utc::now().timestamp() + 3600,
        ),
        "some-other-secret-of-enough-length",
    );
    let headers = [
        "Bearer garbage".to_string(),
        "Bearer ".to_string(),
        "Bearer a.b.c".to_string(),
        format!("Basic {}", dev.token),
        dev.token.clone(),
        format!("Bearer {}x", dev.token),
        format!("Bearer {wrong_secret}"),
    ];
    for h in headers {
        let resp = app
            .http
            .get(format!("{}/api/v1/sync/status", app.base))
            .header("Authorization", &h)
            .send()
            .await
            .unwrap();
        let (s, b) = read(resp).await;
        assert_error(s, &b, 401, "UNAUTHORIZED");
    }
    // The genuine token works (the rejections above are about the tokens).
    let (s, b) = dev.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn expired_token_says_token_expired() {
    let app = TestApp::spawn().await;
    app.add_user("maria", Role::Manager, None, "default").await;
    let (s, login) = app.login_raw("maria", "password", "maria-phone").await;
    assert_eq!(s, StatusCode::OK, "{login}");
    let t = chrono::Utc::now().timestamp();

    // Control: the same forged claims, not yet expired, are accepted.
    let fresh = forge(&claims_for(&login, t + 600), JWT_SECRET);
    let (s, b) = app.get("/api/v1/sync/status", Some(&fresh)).await;
    assert_eq!(s, StatusCode::OK, "forged fresh token refused: {b}");

    let expired = forge(&claims_for(&login, t - 3600), JWT_SECRET);
    let (s, b) = app.get("/api/v1/sync/status", Some(&expired)).await;
    assert_error(s, &b, 401, "TOKEN_EXPIRED");
    let (s, b) = app
        .post_json(
            "/api/v1/sync/pull",
            Some(&expired),
            &json!({"device_id": "maria-phone"}),
        )
        .await;
    assert_error(s, &b, 401, "TOKEN_EXPIRED");
    let (s, b) = app
        .post_json(
            "/api/v1/sync/push",
            Some(&expired),
            &json!({"device_id": "maria-phone", "timestamp": now(), "changes": {}}),
        )
        .await;
    assert_error(s, &b, 401, "TOKEN_EXPIRED");

    // Expired and signed with another secret: not ours, so not "expired".
    let foreign = forge(
        &claims_for(&login, t - 3600),
        "some-other-secret-of-enough-length",
    );
    let (s, b) = app.get("/api/v1/sync/status", Some(&foreign)).await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn revoked_device_is_locked_out() {
    let app = TestApp::spawn().await;
    let dev = app.manager("maria", "maria-phone").await;
    let other = app.login("maria", "maria-laptop").await;
    let (s, b) = dev.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Revoking an unknown device (or in the wrong tenant) does nothing.
    assert!(
        !devices::revoke(&app.pool, "default", "no-such-device")
            .await
            .unwrap()
    );
    assert!(
        !devices::revoke(&app.pool, "tenant-b", "maria-phone")
            .await
            .unwrap()
    );
    let (s, b) = dev.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");

    assert!(
        devices::revoke(&app.pool, "default", "maria-phone")
            .await
            .unwrap()
    );

    // The still-valid access token fails at once, on every route.
    let (s, b) = dev.get("/api/v1/sync/status").await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
    let (s, b) = dev
        .post("/api/v1/sync/pull", &json!({"device_id": "maria-phone"}))
        .await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
    let form = id();
    let (s, b) = dev
        .push_raw(json!({"device_id": "maria-phone", "timestamp": now(),
                         "changes": {"forms": [{"id": form, "title": "after revoke"}]}}))
        .await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM forms WHERE id = $1::uuid")
        .bind(&form)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a revoked device's push was applied");

    // Logging in again on that device is refused, even with the right password.
    let (s, b) = app.login_raw("maria", "password", "maria-phone").await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
    assert!(b.get("access_token").is_none(), "{b}");
    // ... and by another user of the tenant.
    app.add_user("joao", Role::Manager, None, "default").await;
    let (s, b) = app.login_raw("joao", "password", "maria-phone").await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
    let d = devices::get(&app.pool, "default", "maria-phone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.username, "maria", "a refused login re-bound the device");
    assert!(d.revoked_at.is_some());

    // The user's other device is untouched.
    let (s, b) = other.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn revoked_device_cannot_refresh() {
    let app = TestApp::spawn().await;
    let dev = app.manager("maria", "maria-phone").await;
    // A second refresh token of the same device, from a rotation before revoking.
    let (s, rotated) = app
        .post_json(REFRESH, None, &json!({"refresh_token": dev.refresh_token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    assert!(
        devices::revoke(&app.pool, "default", "maria-phone")
            .await
            .unwrap()
    );

    let (s, b) = app
        .post_json(
            REFRESH,
            None,
            &json!({"refresh_token": rotated["refresh_token"]}),
        )
        .await;
    assert_eq!(
        s.as_u16(),
        401,
        "a revoked device refreshed its tokens: {b}"
    );
    assert!(b.get("access_token").is_none(), "{b}");
    // docs/contract.md §1: revoking makes that device's tokens fail with
    // DEVICE_REVOKED at once; a refresh token is one of them.
    assert_error(s, &b, 401, "DEVICE_REVOKED");
}

#[tokio::test]
async fn device_id_must_match_the_token() {
    let app = TestApp::spawn().await;
    let dev = app.manager("maria", "maria-phone").await;
    // The user's other, genuine device: still not this token's device.
    let _laptop = app.login("maria", "maria-laptop").await;

    let (s, b) = dev
        .post("/api/v1/sync/pull", &json!({"device_id": "maria-laptop"}))
        .await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = dev
        .post("/api/v1/sync/pull", &json!({"device_id": "someone-else"}))
        .await;
    assert_error(s, &b, 403, "FORBIDDEN");

    let form = id();
    let (s, b) = dev
        .push_raw(json!({"device_id": "maria-laptop", "timestamp": now(),
                         "changes": {"forms": [{"id": form, "title": "wrong device"}]}}))
        .await;
    assert_error(s, &b, 403, "FORBIDDEN");
    assert!(
        app.server_rows("forms", "default").await.is_empty(),
        "a push with another device_id was applied"
    );

    let (s, b) = dev.get("/api/v1/sync/state?device_id=maria-laptop").await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = dev
        .post("/api/v1/sync/reset?device_id=maria-laptop", &json!({}))
        .await;
    assert_error(s, &b, 403, "FORBIDDEN");

    // Controls: the token's own device_id is accepted everywhere.
    let (s, b) = dev
        .post("/api/v1/sync/pull", &json!({"device_id": "maria-phone"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = dev
        .push_raw(json!({"device_id": "maria-phone", "timestamp": now(),
                         "changes": {"forms": [{"id": form, "title": "right device"}]}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["success"], true, "{b}");
    let (s, b) = dev.get("/api/v1/sync/state?device_id=maria-phone").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["device_id"], "maria-phone");
    let (s, b) = dev.get("/api/v1/sync/state").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["device_id"], "maria-phone");
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_username() {
    let app = TestApp::spawn_with(|c| c.rate_limit = true).await;
    app.add_user("maria", Role::Manager, None, "default").await;

    // Every attempt counts, right or wrong: ten per minute per username.
    let (s, b) = app.login_raw("maria", "password", "maria-phone").await;
    assert_eq!(s, StatusCode::OK, "{b}");

    for i in 0..9 {
        let (s, b) = app
            .login_raw("maria", &format!("guess-{i}"), "maria-phone")
            .await;
        assert_error(s, &b, 401, "INVALID_CREDENTIALS");
    }
    for password in ["guess-10", "password"] {
        let resp = app
            .http
            .post(format!("{}{LOGIN}", app.base))
            .json(&json!({"username": "maria", "password": password, "device_id": "maria-phone"}))
            .send()
            .await
            .unwrap();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let (s, b) = read(resp).await;
        assert_error(s, &b, 429, "RATE_LIMITED");
        let secs: u64 = retry_after
            .as_deref()
            .expect("429 without Retry-After")
            .parse()
            .expect("Retry-After in seconds");
        assert!(secs >= 1, "Retry-After {secs}");
        assert!(b.get("access_token").is_none());
    }
}

#[tokio::test]
async fn without_rate_limit_failures_are_never_limited() {
    let app = TestApp::spawn().await; // NAS_SYNC_RATE_LIMIT=off
    app.add_user("maria", Role::Manager, None, "default").await;
    for i in 0..15 {
        let (s, b) = app
            .login_raw("maria", &format!("guess-{i}"), "maria-phone")
            .await;
        assert_error(s, &b, 401, "INVALID_CREDENTIALS");
    }
    let (s, b) = app.login_raw("maria", "password", "maria-phone").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
