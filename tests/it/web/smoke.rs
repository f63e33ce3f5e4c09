//! Health, readiness, metrics, OpenAPI and the error shape for unknown routes.
use crate::common::*;
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
    assert!(m.contains("sync_requests_total"), "{m}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_then_stops() {
    let mut app = TestApp::spawn().await;
    let dev = app.manager("boss", "boss-tablet").await;
    // A request in flight (a large push) while the shutdown signal arrives.
    let rows: Vec<_> = (0..3000)
        .map(|i| json!({"id": id(), "store_id": "s1", "metric": format!("m{i}")}))
        .collect();
    let body = json!({"device_id": "boss-tablet", "changes": {"kpi_data": rows}});
    let in_flight = tokio::spawn(async move { dev.push_raw(body).await });
    // Wait until the push is writing (its transaction holds a lock on kpi_data).
    for _ in 0..400 {
        let locks: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
             WHERE c.relname = 'kpi_data' AND l.pid <> pg_backend_pid()
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if locks > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    app.stop().await;
    let (status, resp) = in_flight.await.unwrap();
    assert_eq!(status.as_u16(), 200, "{resp}");
    assert_eq!(
        resp["applied"]["kpi_data"].as_array().map(Vec::len),
        Some(3000)
    );
    // And the listener is closed.
    let err = app.http.get(format!("{}/health", app.base)).send().await;
    assert!(err.is_err(), "server still answering after shutdown");
}

#[tokio::test]
async fn a_request_over_the_timeout_answers_503_and_applies_nothing() {
    // Log in on a server with the normal timeout (argon2 on a busy machine may take
    // longer than the short one), then push to a second server over the same database
    // whose requests may take 200 ms.
    let app = TestApp::spawn().await;
    let mut dev = app.manager("boss", "boss-tablet").await;
    let mut config = test_config(&app.db.url, false);
    config.request_timeout = std::time::Duration::from_millis(200);
    let hasty = Server::spawn(config, app.pool.clone()).await;
    dev.base = hasty.base.clone();
    let rows: Vec<_> = (0..5000)
        .map(|i| json!({"id": id(), "store_id": "s1", "metric": format!("m{i}")}))
        .collect();
    let (status, body) = dev
        .push_raw(json!({"device_id": "boss-tablet", "changes": {"kpi_data": rows}}))
        .await;
    assert_error(status, &body, 503, "UNAVAILABLE");
    // The abandoned transaction rolls back: nothing half-applied.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM kpi_data")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
