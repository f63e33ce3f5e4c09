//! Rate limits per device and route family (seed defaults, configurable): a device
//! over its budget gets 429 `RATE_LIMITED` with `Retry-After`; other devices and
//! other route families are unaffected.

mod common;

use common::*;
use nas_sync::api::limits::LimitSettings;
use reqwest::StatusCode;
use serde_json::json;

async fn pull_status(device: &Device) -> (StatusCode, Option<String>, serde_json::Value) {
    let resp = device
        .http
        .post(format!("{}/api/v1/sync/pull", device.base))
        .bearer_auth(&device.token)
        .json(&json!({"device_id": device.device_id, "tables": ["forms"]}))
        .send()
        .await
        .unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (s, b) = read(resp).await;
    (s, retry, b)
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
