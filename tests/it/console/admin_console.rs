//! The admin console (`/admin`, docs/contract.md §10) over plain HTTP: sign-in for
//! managers only, the session cookie's attributes, the security headers, CSRF tokens
//! and the `Origin` check on every POST, sign-out and expiry. The same flows in a
//! real browser: tests/it/console/admin_browser.rs.
use crate::common::*;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, redirect};

/// A browser-like client: no redirects followed, cookies kept by hand.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), val.to_string()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        self.keep(&headers);
        (status, headers, r.text().await.unwrap())
    }

    async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        self.keep(&headers);
        (status, headers, r.text().await.unwrap())
    }

    /// Signs in; returns the answer to the form.
    async fn sign_in(&mut self, username: &str, password: &str) -> (StatusCode, HeaderMap, String) {
        let (_, _, html) = self.get("/admin/login").await;
        let csrf = hidden(&html, "csrf").expect("csrf field on the sign-in form");
        let origin = self.base.clone();
        self.post(
            "/admin/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
            ],
            Some(&origin),
        )
        .await
    }

    /// The CSRF token of a signed-in page.
    async fn csrf(&mut self, path: &str) -> String {
        let (status, _, html) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        hidden(&html, "csrf").expect("csrf field")
    }
}

/// A browser signed in as a new manager `boss`.
async fn signed_in_manager(app: &TestApp) -> Browser {
    app.add_user("boss", nas_sync::auth::Role::Manager, None, "default")
        .await;
    let mut b = Browser::new(app);
    let (status, _, _) = b.sign_in("boss", "password").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    b
}

#[tokio::test]
async fn sign_in_session_cookie_and_headers() {
    let app = TestApp::spawn().await;
    app.add_user("boss", nas_sync::auth::Role::Manager, None, "default")
        .await;
    let mut b = Browser::new(&app);

    let (status, headers, _) = b.get("/admin").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/admin/login");

    let (status, headers, html) = b.get("/admin/login").await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""));
    assert!(html.contains("<label for=\"username\""), "{html}");
    assert!(html.contains("name=\"viewport\""));
    assert!(!html.contains("<script"), "no script on the page");

    let (status, _, html) = b.sign_in("boss", "wrong-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Wrong username or password"), "{html}");

    let (status, headers, _) = b.sign_in("boss", "password").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("nas_sync_admin="))
        .expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");

    let (status, _, html) = b.get("/admin").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for name in [
        "Overview",
        "Devices",
        "Users",
        "Conflicts",
        "Odoo",
        "Sign out",
    ] {
        assert!(html.contains(name), "{name} missing");
    }
    assert!(html.contains("<svg"), "the chart");

    // Behind an HTTPS proxy, the cookie is Secure.
    let mut proxied = Browser::new(&app);
    let (_, _, html) = proxied.get("/admin/login").await;
    let csrf = hidden(&html, "csrf").unwrap();
    let r = proxied
        .http
        .post(format!("{}/admin/login", app.base))
        .header("cookie", proxied.cookie_header())
        .header("x-forwarded-proto", "https")
        .form(&[
            ("username", "boss"),
            ("password", "password"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let secure = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("nas_sync_admin="))
        .unwrap();
    assert!(secure.contains("; Secure"), "{secure}");

    // Sign out ends the session server-side: the old cookie no longer works.
    let old = b.cookie_header();
    let csrf = b.csrf("/admin").await;
    let origin = app.base.clone();
    let (status, headers, _) = b
        .post("/admin/logout", &[("csrf", &csrf)], Some(&origin))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/admin/login");
    let r = b
        .http
        .get(format!("{}/admin/users", app.base))
        .header("cookie", old)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn store_users_and_disabled_users_cannot_sign_in() {
    let app = TestApp::spawn().await;
    app.add_user("clerk", nas_sync::auth::Role::Store, Some("s1"), "default")
        .await;
    let mut b = Browser::new(&app);
    let (status, headers, html) = b.sign_in("clerk", "password").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("Store users cannot sign in"), "{html}");
    assert!(
        headers
            .get_all(SET_COOKIE)
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("nas_sync_admin=")),
        "no session for a store user"
    );
    app.add_user("boss", nas_sync::auth::Role::Manager, None, "default")
        .await;
    app.add_user("boss2", nas_sync::auth::Role::Manager, None, "default")
        .await;
    let (status, _, _) = b.sign_in("boss", "password").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // boss2 disables boss through the API: boss's console session ends.
    let boss2 = app.login("boss2", "mgr-2").await;
    let (status, _) = boss2
        .post("/api/v1/admin/users/boss/disable", &serde_json::json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = b.get("/admin/users").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, html) = b.sign_in("boss", "password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("disabled"), "{html}");
}

#[tokio::test]
async fn sign_in_counts_against_the_login_limit() {
    let app = TestApp::spawn_with(|c| c.rate_limit = true).await;
    let mut b = Browser::new(&app);
    let mut limited = false;
    for _ in 0..12 {
        let (status, headers, _) = b.sign_in("nobody", "wrong-password").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(headers.contains_key("retry-after"));
            limited = true;
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "the console's sign-in is under the login limit");
}

#[tokio::test]
async fn posts_without_the_csrf_token_or_from_elsewhere_are_refused() {
    let app = TestApp::spawn().await;
    let mut b = signed_in_manager(&app).await;
    let csrf = b.csrf("/admin/users").await;
    let origin = app.base.clone();
    let user = |name: &'static str| {
        [
            ("username", name),
            ("password", "password1"),
            ("role", "store"),
            ("store", "s1"),
        ]
    };

    // No token, a wrong token, a foreign origin: refused, nothing created.
    let (status, _, _) = b.post("/admin/users", &user("nocsrf"), Some(&origin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut wrong = user("wrongcsrf").to_vec();
    wrong.push(("csrf", "not-the-token"));
    let (status, _, _) = b.post("/admin/users", &wrong, Some(&origin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut foreign = user("foreign").to_vec();
    foreign.push(("csrf", &csrf));
    let (status, _, _) = b
        .post("/admin/users", &foreign, Some("https://evil.example"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The sign-in form too needs its token.
    let (status, _, _) = b
        .post(
            "/admin/login",
            &[("username", "boss"), ("password", "password")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for name in ["nocsrf", "wrongcsrf", "foreign"] {
        let (status, _) = app.login_raw(name, "password1", "phone-1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} was created");
    }

    // With the token: created, and logs in through the API.
    let mut good = user("goodcsrf").to_vec();
    good.push(("csrf", &csrf));
    let (status, headers, _) = b.post("/admin/users", &good, Some(&origin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/admin/users");
    let (_, _, html) = b.get("/admin/users").await;
    assert!(html.contains("User goodcsrf added"), "{html}");
    let (status, body) = app.login_raw("goodcsrf", "password1", "phone-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn sessions_expire() {
    let app = TestApp::spawn().await;
    app.add_user("boss", nas_sync::auth::Role::Manager, None, "default")
        .await;
    let mut b = Browser::new(&app);
    b.sign_in("boss", "password").await;
    let (status, _, _) = b.get("/admin/devices").await;
    assert_eq!(status, StatusCode::OK);
    let expires_in: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - now())::float8 FROM admin_sessions",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        (11.0 * 3600.0..=12.0 * 3600.0).contains(&expires_in),
        "{expires_in}"
    );
    sqlx::query("UPDATE admin_sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, headers, _) = b.get("/admin/devices").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/admin/login");
}

#[tokio::test]
async fn the_odoo_page_shows_progress_and_failed_batches_and_retries_them() {
    let app = TestApp::spawn_with(|c| c.odoo.worker = false).await;
    let boss = app.manager("boss", "mgr-1").await;
    let fake = fake_odoo::FakeOdoo::start(fake_odoo::FakeOptions::default()).await;
    let (status, conn) = boss
        .post(
            "/api/v1/odoo/connections",
            &serde_json::json!({"url": fake.url, "database": "odoo", "username": "bot",
                                "api_key": "bot-api-key", "initial_range_days": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{conn}");
    let id = conn["id"].as_str().unwrap();
    // Three batches of the first mirror: one done, one failed for good, one to do.
    sqlx::query(
        "INSERT INTO odoo_batches (connection_id, model, window_start, window_end, expected, initial,
                                   status, attempts, last_error)
         VALUES ($1::uuid, 'res.partner', '2026-01-01', '2026-02-01', 1, true, 'done', 1, NULL),
                ($1::uuid, 'res.partner', '2026-02-01', '2026-03-01', 1, true, 'permanently_failed', 4,
                 'Odoo said: boom'),
                ($1::uuid, 'res.partner', '2026-03-01', '2026-04-01', 1, true, 'pending', 0, NULL)",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();

    let mut b = Browser::new(&app);
    b.sign_in("boss", "password").await;
    let (status, _, html) = b.get("/admin/odoo").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(&format!("data-connection=\"{id}\"")),
        "{html}"
    );
    assert!(
        html.contains("<progress") && html.contains("value=\"66\""),
        "{html}"
    );
    assert!(html.contains("Odoo said: boom"), "{html}");
    let csrf = hidden(&html, "csrf").unwrap();
    let origin = app.base.clone();
    let (status, headers, _) = b
        .post(
            &format!("/admin/odoo/{id}/retry"),
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/admin/odoo");
    let (_, _, html) = b.get("/admin/odoo").await;
    assert!(html.contains("1 failed batches queued again."), "{html}");
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM odoo_batches WHERE connection_id = $1::uuid AND status = 'pending'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(pending, 2);
}

/// "Add connection": the form creates a connection through the same service as the
/// API (Odoo is asked first), a wrong key is the page's message and creates nothing.
#[tokio::test]
async fn a_manager_adds_an_odoo_connection_from_the_odoo_page() {
    let app = TestApp::spawn_with(|c| c.odoo.worker = false).await;
    let boss = app.manager("boss", "mgr-1").await;
    let fake = fake_odoo::FakeOdoo::start(fake_odoo::FakeOptions::default()).await;
    let mut b = Browser::new(&app);
    b.sign_in("boss", "password").await;
    let (status, _, html) = b.get("/admin/odoo").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("No Odoo connection yet."), "{html}");
    for label in [
        "for=\"odoo-url\"",
        "for=\"odoo-api-key\"",
        "for=\"odoo-models\"",
    ] {
        assert!(html.contains(label), "a label on every input: {label}");
    }
    let csrf = hidden(&html, "csrf").unwrap();
    let origin = app.base.clone();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM odoo_connections")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };

    // A key Odoo refuses: said on the page, nothing stored.
    let form = |key: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("url", fake.url.clone()),
            ("database", "odoo".to_string()),
            ("username", "bot".to_string()),
            ("api_key", key.to_string()),
            ("models", "res.partner, product.product".to_string()),
            ("initial_range_days", "0".to_string()),
        ]
    };
    let wrong = form("not-the-key");
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, headers, _) = b.post("/admin/odoo", &wrong, Some(&origin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/admin/odoo");
    let (_, _, html) = b.get("/admin/odoo").await;
    assert!(html.contains("Not done:"), "{html}");
    assert_eq!(count().await, 0);

    // The right key: the connection is there, with the models asked for.
    let right = form("bot-api-key");
    let right: Vec<(&str, &str)> = right.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = b.post("/admin/odoo", &right, Some(&origin)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = b.get("/admin/odoo").await;
    assert!(
        html.contains("added; the first mirror starts now."),
        "{html}"
    );
    assert_eq!(count().await, 1);
    let (_, list) = boss.get("/api/v1/odoo/connections").await;
    let models = list.to_string();
    assert!(
        models.contains("product.product") && models.contains("res.partner"),
        "{list}"
    );

    // Without the CSRF token: refused, nothing more created.
    let (status, _, _) = b.post("/admin/odoo", &right[1..], Some(&origin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(count().await, 1);
}

/// A foreign `Origin` with a matching `X-Forwarded-Host` passes the console's origin
/// check only when a trusted proxy sent it: from anyone else the header is dropped.
/// And a device that takes the console's old name is revoked like any other.
#[tokio::test]
async fn forwarded_host_counts_only_from_trusted_proxies_and_no_device_is_the_console() {
    for trusted in [false, true] {
        let app = TestApp::builder()
            .config(move |c| {
                if trusted {
                    c.trusted_proxies =
                        nas_sync::guard::proxies::TrustedProxies::parse("127.0.0.1").unwrap();
                }
            })
            .spawn()
            .await;
        let mut b = signed_in_manager(&app).await;
        let csrf = b.csrf("/admin/users").await;
        let r = b
            .http
            .post(format!("{}/admin/users", app.base))
            .header("cookie", b.cookie_header())
            .header("origin", "https://evil.example")
            .header("x-forwarded-host", "evil.example")
            .form(&[
                ("username", "forwarded"),
                ("password", "password1"),
                ("role", "store"),
                ("store", "s1"),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .unwrap();
        let want = if trusted {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(r.status(), want, "trusted proxy: {trusted}");

        // A store device named like the console's old device id.
        app.add_user("clerk", nas_sync::auth::Role::Store, Some("s1"), "default")
            .await;
        let (status, body) = app.login_raw("clerk", "password", "admin-console").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let csrf = b.csrf("/admin/devices").await;
        let origin = app.base.clone();
        let (status, _, _) = b
            .post(
                "/admin/devices/admin-console/revoke",
                &[("csrf", &csrf)],
                Some(&origin),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (_, _, html) = b.get("/admin/devices").await;
        assert!(html.contains("Device admin-console revoked"), "{html}");
        let (status, body) = app.login_raw("clerk", "password", "admin-console").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["code"], "DEVICE_REVOKED", "{body}");
    }
}

/// "Add user" with an email and an Odoo user id, then "Email and Odoo user" changing
/// and clearing them: the list shows what is stored, a bad value says why.
#[tokio::test]
async fn a_manager_sets_a_users_email_and_odoo_user_from_the_users_page() {
    let app = TestApp::spawn().await;
    let mut b = signed_in_manager(&app).await;
    let origin = app.base.clone();
    let csrf = b.csrf("/admin/users").await;
    let (status, _, _) = b
        .post(
            "/admin/users",
            &[
                ("csrf", &csrf),
                ("username", "ana"),
                ("password", "a long password"),
                ("role", "store"),
                ("store", "s1"),
                ("email", "ana@example.org"),
                ("odoo_user_id", "12"),
            ],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let stored = || async {
        let ana = nas_sync::auth::users::find_by_username(&app.pool, "ana")
            .await
            .unwrap()
            .expect("ana added");
        (ana.email, ana.odoo_user_id)
    };
    assert_eq!(stored().await, (Some("ana@example.org".into()), Some(12)));
    let (_, _, html) = b.get("/admin/users").await;
    assert!(
        html.contains("ana@example.org") && html.contains(">12<"),
        "{html}"
    );

    // Cleared email (empty field), new Odoo id.
    let (status, _, _) = b
        .post(
            "/admin/users/ana/identity",
            &[("csrf", &csrf), ("email", ""), ("odoo_user_id", "13")],
            Some(&origin),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(stored().await, (None, Some(13)));
    let (_, _, html) = b.get("/admin/users").await;
    assert!(html.contains("Email and Odoo user of ana saved."), "{html}");

    // Not a number: refused with the reason, nothing changed.
    b.post(
        "/admin/users/ana/identity",
        &[("csrf", &csrf), ("email", ""), ("odoo_user_id", "twelve")],
        Some(&origin),
    )
    .await;
    let (_, _, html) = b.get("/admin/users").await;
    assert!(
        html.contains("Not done:") && html.contains("whole number"),
        "{html}"
    );
    assert_eq!(stored().await, (None, Some(13)));
}

#[tokio::test]
async fn the_history_page_shows_who_changed_a_row_and_the_overview_the_chains_verdict() {
    let app = TestApp::spawn().await;
    let dev = app.manager("clerk-boss", "tablet-7").await;
    let row = id();
    let kpi = |version: i64, value: i64| {
        serde_json::json!({"kpi_data": [{"id": row, "store_id": "s1", "metric": "sales",
            "value": value, "period": "2026-12", "version": version, "updated_at": now()}]})
    };
    dev.push(kpi(0, 10)).await;
    dev.push(kpi(1, 11)).await;
    nas_sync::audit::seal::seal_all(&app.pool, &app.state.audit)
        .await
        .unwrap();
    let mut b = signed_in_manager(&app).await;

    let (status, _, html) = b
        .get(&format!("/admin/history?table=kpi_data&row_id={row}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(html.matches("data-seq=").count(), 2, "{html}");
    for shown in [
        "clerk-boss",
        "tablet-7",
        "push",
        "value",
        "10",
        "11",
        "History",
    ] {
        assert!(html.contains(shown), "{shown} missing: {html}");
    }
    // Another row's search finds nothing; a bad row id says so.
    let (_, _, html) = b.get(&format!("/admin/history?row_id={}", id())).await;
    assert!(html.contains("No change matches"), "{html}");
    let (status, _, html) = b.get("/admin/history?row_id=not-a-uuid").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("a row id"), "{html}");
    // The export keeps the search.
    let (status, _, csv) = b
        .get(&format!("/admin/history/export?format=csv&row_id={row}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csv.lines().count(), 3, "a header and two entries: {csv}");

    let (_, _, html) = b.get("/admin").await;
    assert!(html.contains("not verified yet"), "{html}");
    nas_sync::audit::verify::verify(&app.pool, &app.state.audit, None)
        .await
        .unwrap();
    let (_, _, html) = b.get("/admin").await;
    assert!(
        html.contains("Audit trail") && html.contains("held"),
        "{html}"
    );
}

#[tokio::test]
async fn the_overview_says_when_the_audit_trail_is_off() {
    let app = TestApp::spawn_with(|c| c.audit = false).await;
    let mut b = signed_in_manager(&app).await;
    let (status, _, html) = b.get("/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("NAS_SYNC_AUDIT=off"), "{html}");
    assert!(!html.contains("not verified yet"), "{html}");
}
