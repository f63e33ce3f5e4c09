//! What an operator sees: Prometheus metrics that move with traffic (also on a
//! listener of their own), and one log line per request with route, device, tenant,
//! status and duration, as JSON when asked, with health checks kept quiet.
//! (A test binary of its own: the metrics recorder is process-wide.)

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use nas_sync::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the first sample whose line starts with `prefix` (name and labels).
/// The sum of every series whose line starts with `prefix` (the recorder is the
/// process's: other tests running beside this one add to the same series, so sums
/// only grow, and a series of another status does not hide this test's).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test]
async fn metrics_are_present_and_move_with_traffic() {
    let port = free_port();
    let app = TestApp::spawn_with(|c| {
        c.metrics_bind = Some(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await;
    let mut writer = app.manager("boss", "boss-phone").await;
    let reader = app.login("boss", "boss-tablet").await;
    let scrape = || async {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("# TYPE"), "{text}");
        text
    };
    let before = scrape().await;

    // Traffic: a socket that gets a poke, pushes (one conflicting), pulls, an error.
    let url = format!(
        "{}/api/v1/sync/ws?access_token={}",
        app.base.replace("http://", "ws://"),
        reader.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let form = id();
    writer
        .push(json!({"forms": [{"id": form, "title": "v1", "updated_at": now()}]}))
        .await;
    writer
        .push(json!({"forms": [{"id": form, "title": "v2", "updated_at": now(), "version": 1}]}))
        .await;
    writer
        .push(json!({"forms": [{"id": form, "title": "stale", "updated_at": now(), "version": 1}]}))
        .await;
    use futures_util::StreamExt;
    let poke = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("poke");
    assert!(poke.is_some());
    writer.sync_down().await;
    let (s, _) = writer
        .post("/api/v1/sync/pull", &json!({"tables": ["nope"]}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The horizon gauge is set by the clock every 2 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = scrape().await;

    let moved = |name: &str| {
        let b = sample(&before, name).unwrap_or(0.0);
        let a = sample(&after, name).unwrap_or_else(|| panic!("{name} missing:\n{after}"));
        assert!(a > b, "{name} did not move: {b} -> {a}");
    };
    moved("sync_requests_total{route=\"/api/v1/sync/pull\"");
    moved("sync_requests_total{route=\"/api/v1/sync/push\"");
    moved("sync_rows_pulled_total");
    moved("sync_rows_pushed_total");
    moved("sync_conflicts_total{table=\"forms\"");
    moved("sync_errors_total{code=\"UNKNOWN_TABLE\"}");
    moved("sync_duration_seconds_count{route=\"/api/v1/sync/push\"}");
    assert!(
        after.contains("sync_duration_seconds_bucket{route=\"/api/v1/sync/push\",le=\"0.005\"}"),
        "{after}"
    );
    moved("ws_messages_sent_total");
    // This test's socket is open (other tests' sockets count in the same gauge).
    assert!(
        sample(&after, "ws_connections").is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert!(
        sample(&after, "sync_horizon_lag_seconds").is_some(),
        "{after}"
    );
    // With a listener of its own, /metrics is not served on the API port.
    let (s, _) = app.get("/metrics", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn requests_are_logged_as_json_lines_with_route_device_tenant_status_and_duration() {
    let db = TestDb::new().await;
    let mut server = ServerProcess::start(
        &db.url,
        &[
            ("NAS_SYNC_LOG_FORMAT", "json"),
            ("NAS_SYNC_LOG", "info"),
            ("NAS_SYNC_ODOO_WORKER", "off"),
        ],
        Stdio::piped(),
    )
    .await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    nas_sync::auth::users::add(&pool, "default", "boss", Role::Manager, None, "password")
        .await
        .unwrap();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "boss", "password": "password", "device_id": "boss-phone"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap();
    for _ in 0..3 {
        http.get(format!("{base}/health")).send().await.unwrap();
    }
    let pull = http
        .post(format!("{base}/api/v1/sync/pull"))
        .bearer_auth(token)
        .json(&json!({"device_id": "boss-phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pull.status(), 200);
    let stderr = server.child.stderr.take().unwrap();
    server.terminate();
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .collect();
    let records: Vec<Value> = lines
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let requests: Vec<&Value> = records
        .iter()
        .filter(|r| r["fields"]["message"] == "request")
        .collect();
    let pull_line = requests
        .iter()
        .find(|r| r["fields"]["route"] == "/api/v1/sync/pull")
        .unwrap_or_else(|| panic!("no request line for the pull: {lines:#?}"));
    assert_eq!(pull_line["fields"]["status"], 200, "{pull_line}");
    assert!(
        pull_line["fields"]["duration_ms"].as_f64().is_some(),
        "{pull_line}"
    );
    assert_eq!(pull_line["span"]["device"], "boss-phone", "{pull_line}");
    assert_eq!(pull_line["span"]["tenant"], "default", "{pull_line}");
    assert!(
        requests.iter().all(|r| r["fields"]["route"] != "/health"),
        "health checks were logged"
    );
    assert!(
        requests
            .iter()
            .any(|r| r["fields"]["route"] == "/api/v1/auth/login")
    );
}
