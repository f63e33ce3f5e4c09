//! BridgeCore's tenant login, replayed from the package `geniustep/bridgecore_flutter`
//! at c4fe8f8a: `AuthService.login` (lib/src/auth/auth_service.dart:73-110) posts
//! `{email, password}` with no token and reads `TenantSession.fromJson`
//! (lib/src/auth/models/tenant_session.dart:23-36); the token manager refreshes with
//! the refresh token as the bearer and `{}` as the body
//! (lib/src/client/http_client.dart:172-185) and keeps the same refresh token
//! (lib/src/auth/token_manager.dart:199-218); `me` reads `TenantMeResponse.fromJson`
//! (lib/src/auth/models/tenant_me_response.dart); logout posts `{}`
//! (auth_service.dart:215-226). The sync calls name their device (`default` unless
//! the app set one, lib/src/sync/sync_service.dart:151, 376).

use crate::common::*;

use nas_sync::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::replay::dio;

async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn string(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("`{k} as String` throws on {}", v[k]))
        .to_string()
}

fn opt_string(v: &Value, k: &str) {
    assert!(
        v[k].is_null() || v[k].is_string(),
        "`{k} as String?` throws on {}",
        v[k]
    );
}

/// `TenantSession.fromJson` with `TenantUser` and `Tenant` (tenant_session.dart:23-36,
/// 69-78, 112-121): returns (access token, refresh token, odoo_user_id).
pub(super) fn tenant_session(v: &Value) -> (String, String, Option<i64>) {
    let access = string(v, "access_token");
    let refresh = string(v, "refresh_token");
    opt_string(v, "token_type");
    assert!(v["expires_in"].is_i64(), "`expires_in as int` throws: {v}");
    let user = &v["user"];
    for k in ["id", "email", "full_name", "role"] {
        string(user, k);
    }
    assert!(
        user["odoo_user_id"].is_null() || user["odoo_user_id"].is_i64(),
        "`odoo_user_id as int?` throws: {user}"
    );
    let tenant = &v["tenant"];
    for k in ["id", "name", "slug", "status"] {
        string(tenant, k);
    }
    opt_string(tenant, "odoo_database");
    opt_string(tenant, "odoo_version");
    (access, refresh, user["odoo_user_id"].as_i64())
}

pub(super) struct Package<'a> {
    pub(super) app: &'a TestApp,
}

impl Package<'_> {
    pub(super) async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        read(
            dio(self
                .app
                .http
                .post(format!("{}/api/v1/auth/tenant/login", self.app.base)))
            .body(json!({"email": email, "password": password}).to_string())
            .send()
            .await
            .unwrap(),
        )
        .await
    }

    /// `_performTokenRefresh`: a Dio of its own, the refresh token as the bearer.
    async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        read(
            self.app
                .http
                .post(format!("{}/api/v1/auth/tenant/refresh", self.app.base))
                .header("content-type", "application/json")
                .bearer_auth(refresh_token)
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub(super) async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        read(
            dio(self.app.http.post(format!("{}{path}", self.app.base)))
                .bearer_auth(token)
                .body(body.to_string())
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub(super) async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        read(
            dio(self.app.http.get(format!("{}{path}", self.app.base)))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

pub(super) async fn user_with_email(app: &TestApp, name: &str, email: &str, odoo: Option<i64>) {
    app.add_user(name, Role::Manager, None, "default").await;
    sqlx::query("UPDATE users SET email = $2, odoo_user_id = $3 WHERE username = $1")
        .bind(name)
        .bind(email)
        .bind(odoo)
        .execute(&app.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn login_sync_refresh_twice_me_and_logout_as_the_package_does() {
    let app = TestApp::spawn().await;
    user_with_email(&app, "maria", "maria@example.org", Some(42)).await;
    let pkg = Package { app: &app };

    // Wrong password and unknown email: the same answer.
    for (email, pw) in [
        ("maria@example.org", "nope"),
        ("nobody@example.org", "password"),
    ] {
        let (status, body) = pkg.login(email, pw).await;
        assert_error(status, &body, 401, "INVALID_CREDENTIALS");
    }
    // The email in another case logs in too.
    let (status, session) = pkg.login("Maria@Example.org", "password").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let (access, refresh, odoo_user_id) = tenant_session(&session);
    assert_eq!(odoo_user_id, Some(42));
    // `validateTenantToken` (token_manager.dart:404-440), which `validateAndCleanup`
    // runs at an app's start and signs out on failure: the access token's payload has
    // `user_type: "tenant"` and a `tenant_id`.
    let payload = access.split('.').nth(1).expect("a JWT");
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .expect("base64url"),
    )
    .expect("a JSON payload");
    assert_eq!(payload["user_type"], "tenant", "{payload}");
    assert_eq!(payload["tenant_id"], "default", "{payload}");

    // Sync calls name their device: `default`, registered to maria at first use.
    let (status, page) = pkg
        .post(
            &access,
            "/api/v2/sync/pull",
            json!({"user_id": 42, "device_id": "default"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, page) = pkg
        .post(
            &access,
            "/api/v1/offline-sync/pull",
            json!({"device_id": "default"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let owner: String = sqlx::query_scalar(
        "SELECT u.username FROM devices d JOIN users u ON u.id = d.user_id WHERE d.device_id = 'default'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(owner, "maria");

    // The token serves BridgeCore's routes only: elsewhere 403 (a 401 would send the
    // package into refresh-and-retry).
    let (status, body) = pkg
        .post(
            &access,
            "/api/v1/sync/pull",
            json!({"device_id": "default"}),
        )
        .await;
    assert_error(status, &body, 403, "FORBIDDEN");

    // Refresh twice with the same refresh token (the package never gets a new one);
    // each answer's access token works.
    for _ in 0..2 {
        let (status, fresh) = pkg.refresh(&refresh).await;
        assert_eq!(status, StatusCode::OK, "{fresh}");
        let token = string(&fresh, "access_token");
        assert!(
            fresh["expires_in"].is_i64(),
            "`expires_in as int?` throws: {fresh}"
        );
        let (status, _) = pkg
            .post(
                &token,
                "/api/v2/sync/pull",
                json!({"user_id": 42, "device_id": "default"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    // me (GET, and POST with odoo_fields_check), read as TenantMeResponse.
    for me in [
        pkg.get(&access, "/api/v1/auth/tenant/me").await,
        pkg.post(&access, "/api/v1/auth/tenant/me", json!({})).await,
    ] {
        let (status, me) = me;
        assert_eq!(status, StatusCode::OK, "{me}");
        let user = &me["user"];
        assert_eq!(string(user, "email"), "maria@example.org");
        for k in ["id", "full_name", "role"] {
            string(user, k);
        }
        assert_eq!(user["odoo_user_id"], 42);
        chrono::DateTime::parse_from_rfc3339(&string(user, "created_at"))
            .expect("DateTime.parse(created_at) throws");
        if let Some(at) = user["last_login"].as_str() {
            chrono::DateTime::parse_from_rfc3339(at).expect("DateTime.parse(last_login)");
        }
        let tenant = &me["tenant"];
        for k in ["id", "name", "slug", "status", "odoo_url", "odoo_database"] {
            string(tenant, k);
        }
        assert!(me["groups"].is_array() && me["company_ids"].is_array());
        assert_eq!(me["is_admin"], true);
    }

    // Logout ends the session: its access and refresh tokens stop working.
    let (status, out) = pkg
        .post(&access, "/api/v1/auth/tenant/logout", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, body) = pkg
        .post(
            &access,
            "/api/v2/sync/pull",
            json!({"user_id": 42, "device_id": "default"}),
        )
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = pkg.refresh(&refresh).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_user_session_follows_the_device_rules_and_ends_with_the_user() {
    let app = TestApp::spawn().await;
    user_with_email(&app, "maria", "maria@example.org", None).await;
    user_with_email(&app, "joao", "joao@example.org", None).await;
    let pkg = Package { app: &app };
    let (_, maria) = pkg.login("maria@example.org", "password").await;
    let (maria_access, maria_refresh, _) = tenant_session(&maria);
    let (_, joao) = pkg.login("joao@example.org", "password").await;
    let (joao_access, _, _) = tenant_session(&joao);

    // Maria's phone first: then it is hers.
    let pull = |token: String, device: &'static str| {
        let pkg = &pkg;
        async move {
            pkg.post(
                &token,
                "/api/v1/offline-sync/pull",
                json!({"device_id": device}),
            )
            .await
        }
    };
    let (status, _) = pull(maria_access.clone(), "maria-phone").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = pull(joao_access.clone(), "maria-phone").await;
    assert_error(status, &body, 409, "DEVICE_IN_USE");
    // A device login cannot take it either, and a revoked device stays revoked.
    let (status, body) = app.login_raw("joao", "password", "maria-phone").await;
    assert_error(status, &body, 409, "DEVICE_IN_USE");
    nas_sync::auth::devices::revoke(&app.pool, "default", "maria-phone")
        .await
        .unwrap();
    let (status, body) = pull(maria_access.clone(), "maria-phone").await;
    assert_error(status, &body, 401, "DEVICE_REVOKED");
    // A bad device id is refused before anything is stored.
    let (status, body) = pull(maria_access.clone(), "x").await;
    assert_error(status, &body, 400, "VALIDATION_FAILED");

    // Disabling maria ends her session at once: calls and refresh.
    nas_sync::auth::users::set_disabled(&app.pool, "maria", true)
        .await
        .unwrap();
    let (status, body) = pull(maria_access, "maria-tablet").await;
    assert_error(status, &body, 401, "USER_DISABLED");
    let (status, body) = pkg.refresh(&maria_refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Joao is untouched.
    let (status, _) = pull(joao_access, "joao-phone").await;
    assert_eq!(status, StatusCode::OK);
}
