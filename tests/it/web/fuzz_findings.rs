//! What fuzzing the API (scripts/fuzz-api.sh, Schemathesis against /api/openapi.json)
//! found, each pinned here: NUL characters in query values and in a resolution's
//! `local_id` (500 from PostgreSQL before), and axum's own rejections answered in
//! plain text (a path parameter that is not UTF-8, the WebSocket route without the
//! upgrade headers). Also the rejections the contract's shape must cover whatever
//! route: malformed JSON, no content type, wrong query types, unknown routes and
//! methods, bodies over the limit.
use crate::common::*;

use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn nul_in_a_query_value_is_validation_failed_naming_it() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    for (method, path) in [
        (Method::GET, "/api/v1/offline-sync/state?app_type=a%00"),
        (Method::POST, "/api/v1/offline-sync/reset?app_type=a%00"),
        (Method::GET, "/api/v2/sync/state?app_type=%00"),
        (
            Method::POST,
            "/api/v2/sync/reset?device_id=boss-tablet&app_type=x%00y",
        ),
    ] {
        let resp = app
            .http
            .request(method.clone(), format!("{}{path}", app.base))
            .bearer_auth(&boss.token)
            .send()
            .await
            .unwrap();
        let (s, b) = read(resp).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
        assert_eq!(b["details"]["field"], "app_type", "{method} {path}: {b}");
    }
}

#[tokio::test]
async fn nul_in_a_resolution_local_id_is_that_resolution_not_found() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    let (s, b) = boss
        .post(
            "/api/v1/offline-sync/resolve-conflicts",
            &json!({"resolutions": [{"local_id": "a\u{0}", "strategy": "server_wins"}]}),
        )
        .await;
    assert_eq!(s.as_u16(), 200, "{b}");
    assert_eq!(b["results"][0]["code"], "NOT_FOUND", "{b}");
    assert_eq!(b["failed_count"], json!(1), "{b}");
}

#[tokio::test]
async fn axum_rejections_have_the_error_shape() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    let send = |method: Method, path: &str| {
        app.http
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(&boss.token)
    };

    // A path parameter that is not UTF-8 once decoded (axum's Path rejection).
    for (method, path) in [
        (Method::GET, "/api/v1/odoo/connections/%FF%FE"),
        (Method::DELETE, "/api/v1/odoo/connections/%C3"),
        (Method::GET, "/api/v1/odoo/connections/%FF/status"),
    ] {
        let (s, b) = read(send(method, path).send().await.unwrap()).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
    }
    let (s, b) = read(
        send(Method::POST, "/api/v1/sync/conflicts/%FF/resolve")
            .json(&json!({"strategy": "server_wins"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");

    // The WebSocket route called as plain HTTP (no Connection: upgrade).
    let (s, b) = read(send(Method::GET, "/api/v1/sync/ws").send().await.unwrap()).await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");

    // Unknown route, unknown method, malformed JSON, no content type, wrong query type.
    let (s, b) = read(send(Method::GET, "/api/v1/nope").send().await.unwrap()).await;
    assert_error(s, &b, 404, "NOT_FOUND");
    let (s, b) = read(send(Method::PUT, "/api/v1/sync/pull").send().await.unwrap()).await;
    assert_error(s, &b, 405, "METHOD_NOT_ALLOWED");
    let (s, b) = read(
        send(Method::POST, "/api/v1/sync/pull")
            .header("content-type", "application/json")
            .body("{\"limit\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");
    let (s, b) = read(
        send(Method::POST, "/api/v1/sync/pull")
            .body("{\"limit\": \"ten\"}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");
    assert_eq!(b["details"]["field"], "limit", "{b}");
    let (s, b) = read(
        send(Method::GET, "/api/v1/sync/conflicts?limit=ten")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn a_body_over_the_limit_has_the_error_shape() {
    let app = TestApp::builder()
        .config(|c| c.body_limit = 1024)
        .spawn()
        .await;
    let boss = app.manager("boss", "boss-tablet").await;
    let big = json!({"device_id": "boss-tablet", "changes": {"forms": [{"id": id(), "title": "x".repeat(4096)}]}});
    let (s, b) = boss.post("/api/v1/sync/push", &big).await;
    assert_error(s, &b, 413, "PAYLOAD_TOO_LARGE");
}
