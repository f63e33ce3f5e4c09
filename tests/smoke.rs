//! Health, readiness, metrics, OpenAPI and the error shape for unknown routes.
mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn probes_and_documents() {
    let app = TestApp::spawn().await;
    let (s, b) = app.get("/health", None).await;
    assert_eq!((s.as_u16(), b), (200, json!({"status": "ok"})));
    let (s, _) = app.get("/ready", None).await;
    assert_eq!(s.as_u16(), 200);
    let (s, b) = app.get("/api/openapi.json", None).await;
    assert_eq!(s.as_u16(), 200);
    for path in [
        "/api/v1/auth/login",
        "/api/v1/sync/pull",
        "/api/v1/sync/push",
        "/api/v1/sync/status",
        "/health",
    ] {
        assert!(b["paths"][path].is_object(), "openapi lacks {path}");
    }
    let (s, b) = app.get("/nope", None).await;
    assert_error(s, &b, 404, "NOT_FOUND");
    let (s, b) = app.get("/api/v1/sync/push", None).await;
    assert_error(s, &b, 405, "METHOD_NOT_ALLOWED");
    let m = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("http_requests_total"), "{m}");
}
