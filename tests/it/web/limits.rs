//! Rate limits per device and route family (seed defaults, configurable): a device
//! over its budget gets 429 `RATE_LIMITED` with `Retry-After`; other devices and
//! other route families are unaffected. Login limits count per client address and per
//! (username, client address); behind a trusted proxy (`NAS_SYNC_TRUSTED_PROXIES`)
//! the client address is the one `X-Forwarded-For` gives. The test client connects
//! from 127.0.0.1, so trusting 127.0.0.1 makes it the proxy.

use std::time::Duration;

use crate::common::*;
use nas_sync::guard::limits::LimitSettings;
use nas_sync::guard::proxies::TrustedProxies;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An answer's status, its `Retry-After` header and its body.
async fn with_retry_after(resp: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (s, b) = read(resp).await;
    (s, retry, b)
}

async fn pull_status(device: &Device) -> (StatusCode, Option<String>, Value) {
    let resp = device
        .http
        .post(format!("{}/api/v1/sync/pull", device.base))
        .bearer_auth(&device.token)
        .json(&json!({"device_id": device.device_id, "tables": ["forms"]}))
        .send()
        .await
        .unwrap();
    with_retry_after(resp).await
}

#[tokio::test]
async fn a_device_over_its_pull_budget_waits_and_others_do_not() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit = true;
        c.rate_limits = LimitSettings::parse("pull=3/m,reset=1/h").unwrap();
    })
    .await;
    let a = app.manager("boss", "phone-a").await;
    let b = app.login("boss", "phone-b").await;
    for _ in 0..3 {
        let (s, _, body) = pull_status(&a).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let (s, retry, body) = pull_status(&a).await;
    assert_error(s, &body, 429, "RATE_LIMITED");
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // Another device of the same user, and another route family of the same device.
    let (s, _, body) = pull_status(&b).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let pushed = a
        .push(json!({"forms": [{"id": id(), "title": "t", "updated_at": now()}]}))
        .await;
    assert_eq!(pushed["success"], true);
    // Reset: once an hour here.
    let (s, body) = a
        .post("/api/v1/sync/reset?device_id=phone-a", &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = a
        .post("/api/v1/sync/reset?device_id=phone-a", &json!({}))
        .await;
    assert_error(s, &body, 429, "RATE_LIMITED");
}

#[test]
fn a_bad_limit_setting_names_itself() {
    let e = nas_sync::Config::from_lookup(|k| {
        (k == "NAS_SYNC_RATE_LIMITS").then(|| "pull=many".to_string())
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("NAS_SYNC_RATE_LIMITS"), "{e:#}");
}

/// A login attempt as forwarded by a proxy for `client`.
async fn login_from(
    app: &TestApp,
    client: &str,
    username: &str,
    password: &str,
) -> (StatusCode, Option<String>, Value) {
    let resp = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base))
        .header("x-forwarded-for", client)
        .json(&json!({"username": username, "password": password, "device_id": format!("{username}-phone")}))
        .send()
        .await
        .unwrap();
    with_retry_after(resp).await
}

/// A server with tight login limits that trusts `proxies`.
async fn login_app(limits: &str, proxies: &str) -> TestApp {
    let limits = LimitSettings::parse(limits).unwrap();
    let proxies = TrustedProxies::parse(proxies).unwrap();
    let app = TestApp::spawn_with(|c| {
        c.rate_limit = true;
        c.rate_limits = limits;
        c.trusted_proxies = proxies;
    })
    .await;
    app.add_user("boss", nas_sync::auth::Role::Manager, None, "default")
        .await;
    app
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_have_login_budgets_of_their_own() {
    let app = login_app("login_ip=3/m,login_user=10/m", "127.0.0.1").await;
    // A phone guesses names through the proxy until its address is refused...
    for i in 0..3 {
        let (s, _, body) = login_from(&app, "100.64.0.1", &format!("nobody{i}"), "x").await;
        assert_error(s, &body, 401, "INVALID_CREDENTIALS");
    }
    let (s, retry, body) = login_from(&app, "100.64.0.1", "nobody", "x").await;
    assert_error(s, &body, 429, "RATE_LIMITED");
    assert!(retry.is_some(), "Retry-After");
    // ...and another phone behind the same proxy still logs in.
    let (s, _, body) = login_from(&app, "100.64.0.2", "boss", "password").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // A forged left-most entry does not buy a fresh budget: the proxy appended the
    // real client, which is the right-most untrusted one.
    let (s, _, body) = login_from(&app, "9.9.9.9, 100.64.0.1", "boss", "password").await;
    assert_error(s, &body, 429, "RATE_LIMITED");
}

#[tokio::test]
async fn an_untrusted_peers_forwarded_for_is_ignored() {
    let app = login_app("login_ip=3/m,login_user=10/m", "10.9.9.9").await;
    for i in 0..3 {
        let client = format!("100.64.0.{i}");
        let (s, _, body) = login_from(&app, &client, &format!("nobody{i}"), "x").await;
        assert_error(s, &body, 401, "INVALID_CREDENTIALS");
    }
    // Every attempt counted against the real peer, whatever the header claimed.
    let (s, retry, body) = login_from(&app, "100.64.0.200", "boss", "password").await;
    assert_error(s, &body, 429, "RATE_LIMITED");
    assert!(retry.is_some(), "Retry-After");
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out_of_another() {
    let app = login_app("login_ip=100/m,login_user=3/m", "127.0.0.1").await;
    let mut refused = 0;
    for _ in 0..6 {
        let (s, _, body) = login_from(&app, "203.0.113.9", "boss", "guess").await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_error(s, &body, 429, "RATE_LIMITED");
            refused += 1;
        } else {
            assert_error(s, &body, 401, "INVALID_CREDENTIALS");
        }
    }
    assert_eq!(refused, 3, "the guesser is limited");
    // The owner, from their own phone.
    let (s, _, body) = login_from(&app, "100.64.0.7", "boss", "password").await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// 60 wrong passwords for one manager from 60 addresses of one IPv6 /64 share one
/// budget (they were 60 budgets), and the account slows down after 5 wrong
/// passwords from anywhere; the owner still gets in, after the wait.
#[tokio::test]
async fn one_ipv6_64_is_one_client_and_wrong_passwords_slow_the_account_not_lock_it() {
    let app = login_app("login_ip=30/m,login_user=10/m", "127.0.0.1").await;
    let (mut refused, mut wrong) = (0, 0);
    for i in 0..60 {
        let client = format!("2001:db8:aa:bb::{:x}", i + 1);
        let (s, _, body) = login_from(&app, &client, "boss", "guess").await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_error(s, &body, 429, "RATE_LIMITED");
            refused += 1;
        } else {
            assert_error(s, &body, 401, "INVALID_CREDENTIALS");
            wrong += 1;
        }
    }
    assert_eq!((wrong, refused), (10, 50), "one /64, one budget");
    // Another /64 has a budget of its own.
    let (s, _, body) = login_from(&app, "2001:db8:aa:cc::1", "boss", "guess").await;
    assert_error(s, &body, 401, "INVALID_CREDENTIALS");
    // 11 wrong passwords: the next attempt for the account waits 250 ms doubled five
    // times (8 s at most), and the owner's right password then gets in.
    let started = std::time::Instant::now();
    let (s, _, body) = login_from(&app, "100.64.0.7", "boss", "password").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "no slowdown after 11 wrong passwords: {:?}",
        started.elapsed()
    );
    // A right password clears it.
    let started = std::time::Instant::now();
    let (s, _, body) = login_from(&app, "100.64.0.8", "boss", "password").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn a_bad_trusted_proxies_setting_stops_the_server_at_start() {
    let db = TestDb::new().await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nas-sync"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("NAS_SYNC_BIND", "127.0.0.1:0")
        .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
        .env(
            "NAS_SYNC_TRUSTED_PROXIES",
            "172.30.87.10, tailscale-sidecar",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start nas-sync");
    let id = child.id();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(out) = out else {
        let _ = std::process::Command::new("kill")
            .arg(id.to_string())
            .status();
        panic!("nas-sync serve started with a bad NAS_SYNC_TRUSTED_PROXIES");
    };
    let out = out.unwrap().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("NAS_SYNC_TRUSTED_PROXIES") && err.contains("'tailscale-sidecar'"),
        "{err}"
    );
}
