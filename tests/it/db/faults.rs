//! Faults (docs/contract.md §9): the server process killed with SIGKILL in the middle
//! of a push, and PostgreSQL restarted under a running server. Real parts only: the
//! `nas-sync` binary as a child process, a PostgreSQL cluster of the test's own for
//! the restart (the shared one is never restarted), a real WebSocket client.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::pg_private::PrivatePg;
use crate::common::{ServerProcess, TestApp, TestDb, assert_error, id, now};
use futures_util::StreamExt;
use nas_sync::auth::{Role, users};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ROWS: usize = 3_000;

/// Logs `username` in on `base` as `device`; the access token.
async fn login(http: &reqwest::Client, base: &str, username: &str, device: &str) -> String {
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": "password", "device_id": device}))
        .send()
        .await
        .expect("login request");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("login body");
    body["access_token"].as_str().expect("token").to_string()
}

/// Sends a push body; status and the body's exact bytes.
async fn push_bytes(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: &Value,
) -> reqwest::Result<(StatusCode, Vec<u8>)> {
    let resp = http
        .post(format!("{base}/api/v1/sync/push"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    Ok((status, resp.bytes().await?.to_vec()))
}

/// How many of `ids` are stored, and how many change-log entries they have.
async fn applied(pool: &PgPool, ids: &[String]) -> (i64, i64) {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM kpi_data WHERE id::text = ANY($1)")
        .bind(ids)
        .fetch_one(pool)
        .await
        .expect("count rows");
    let changes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_changes WHERE table_name = 'kpi_data' AND row_id::text = ANY($1)",
    )
    .bind(ids)
    .fetch_one(pool)
    .await
    .expect("count changes");
    (rows, changes)
}

async fn push_logged(pool: &PgPool, push_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM push_log WHERE push_id = $1")
        .bind(push_id)
        .fetch_one(pool)
        .await
        .expect("read push_log")
}

/// The push is blocked inside its transaction, behind a row lock the test holds, after
/// two of its three chunks were written; the server is killed there. Nothing of it may
/// remain. The same `push_id` after a restart applies it once, and a retry answers
/// the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_in_the_middle_of_a_push_applied_nothing_and_the_retry_applies_it_once() {
    let db = TestDb::new().await;
    let mut server = ServerProcess::start(&db.url, &[], Stdio::null()).await;
    let pool = PgPool::connect(&db.url).await.expect("connect");
    users::add(&pool, "default", "boss", Role::Manager, None, "password")
        .await
        .expect("add user");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let token = login(&http, &server.base, "boss", "boss-tablet").await;

    // The row the push will wait for: stored now, locked by the test below.
    let blocker = id();
    let row = |id: &str, version: i64| {
        json!({"id": id, "store_id": "s1", "metric": "sales", "value": 1.25,
               "version": version, "updated_at": now()})
    };
    let (status, _) = push_bytes(
        &http,
        &server.base,
        &token,
        &json!({"device_id": "boss-tablet", "changes": {"kpi_data": [row(&blocker, 0)]}}),
    )
    .await
    .expect("first push");
    assert_eq!(status, StatusCode::OK);

    let ids: Vec<String> = (0..ROWS - 1).map(|_| id()).collect();
    let mut rows: Vec<Value> = ids.iter().map(|i| row(i, 0)).collect();
    // Last, so the chunks before it (1,000 rows each) are written when it blocks.
    let mut edit = row(&blocker, 1);
    edit["metric"] = json!("returns");
    rows.push(edit);
    let push_id = format!("big-{}", id());
    let body = json!({"device_id": "boss-tablet", "push_id": push_id, "timestamp": now(),
                      "changes": {"kpi_data": rows}});

    let mut lock = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM kpi_data WHERE id = $1::uuid FOR UPDATE")
        .bind(&blocker)
        .execute(&mut *lock)
        .await
        .expect("lock the row");
    let in_flight = {
        let (http, base, token, body) = (
            http.clone(),
            server.base.clone(),
            token.clone(),
            body.clone(),
        );
        tokio::spawn(async move { push_bytes(&http, &base, &token, &body).await })
    };
    // The push's connection waits for the test's lock: the push is in flight.
    let started = Instant::now();
    let backend: i32 = loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
             AND application_name = 'nas-sync' AND wait_event_type = 'Lock'",
        )
        .fetch_optional(&pool)
        .await
        .expect("read pg_stat_activity");
        if let Some(pid) = waiting {
            break pid;
        }
        assert!(
            !in_flight.is_finished(),
            "the push ended before it reached the locked row: {:?}",
            in_flight.await
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the push never waited for the locked row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.child.kill().expect("SIGKILL the server");
    let _ = server.child.wait();
    let answer = in_flight.await.expect("join");
    assert!(
        answer.is_err(),
        "the killed server answered the push: {answer:?}"
    );
    // Let the orphaned backend go on, meet the closed socket and roll back.
    lock.rollback().await.expect("release the lock");
    let started = Instant::now();
    loop {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(backend)
                .fetch_one(&pool)
                .await
                .expect("read pg_stat_activity");
        if !alive {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the killed server's database session never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Nothing: rows, change feed, push_log.
    assert_eq!(
        applied(&pool, &ids).await,
        (0, 0),
        "part of the push stayed"
    );
    assert_eq!(
        push_logged(&pool, &push_id).await,
        0,
        "push_log kept the push"
    );
    let blocker_version: i64 =
        sqlx::query_scalar("SELECT version FROM kpi_data WHERE id = $1::uuid")
            .bind(&blocker)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(blocker_version, 1);

    // A new server on the same database; the device retries with the same push_id.
    let mut server = ServerProcess::start(&db.url, &[], Stdio::null()).await;
    let (status, first) = push_bytes(&http, &server.base, &token, &body)
        .await
        .expect("retry after the restart");
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&first)
    );
    let answer: Value = serde_json::from_slice(&first).expect("JSON");
    assert_eq!(answer["success"], json!(true), "{answer}");
    assert_eq!(
        answer["applied"]["kpi_data"].as_array().map(Vec::len),
        Some(ROWS),
        "every row applied"
    );
    assert_eq!(
        applied(&pool, &ids).await,
        (ROWS as i64 - 1, ROWS as i64 - 1)
    );
    assert_eq!(push_logged(&pool, &push_id).await, 1);

    // Once more, twice: the same bytes, nothing applied again.
    for _ in 0..2 {
        let (status, again) = push_bytes(&http, &server.base, &token, &body)
            .await
            .expect("second retry");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&first),
            "a retry answered differently"
        );
    }
    assert_eq!(
        applied(&pool, &ids).await,
        (ROWS as i64 - 1, ROWS as i64 - 1)
    );
    let blocker_version: i64 =
        sqlx::query_scalar("SELECT version FROM kpi_data WHERE id = $1::uuid")
            .bind(&blocker)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(blocker_version, 2, "the retries applied the edit again");
    server.terminate();
    pool.close().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message as JSON within `secs` (pings skipped); `None` on timeout.
async fn next_json(socket: &mut Socket, secs: u64) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Some(json!({"closed": format!("{frame:?}")}));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Some(json!({"error": e.to_string()})),
            Ok(None) => return Some(json!({"closed": null})),
        }
    }
}

/// PostgreSQL stops and starts again under a running nas-sync: meanwhile the API
/// answers 503 `UNAVAILABLE`, `/ready` 503 and `/health` 200; afterwards everything
/// works without restarting nas-sync, and an open WebSocket is told to resync, then
/// poked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_is_survived_without_restarting_the_server() {
    let pg = PrivatePg::start();
    let db = TestDb::on(&pg.url("postgres")).await;
    let app = TestApp::builder()
        .db(db)
        .config(|c| c.db_acquire_timeout = Duration::from_secs(2))
        .spawn()
        .await;
    let boss = app.manager("boss", "boss-tablet").await;
    let mut clerk = app.store("clerk", "s1", "clerk-phone").await;
    let kpi = || {
        json!({"kpi_data": [{"id": id(), "store_id": "s1", "metric": "sales", "value": 2,
                             "updated_at": now()}]})
    };
    boss.push(kpi()).await;
    clerk.sync_down().await;

    let url = format!("{}/api/v1/sync/ws", app.base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", clerk.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");

    // A push in flight when PostgreSQL goes down: it waits for a row the test locks.
    let held = id();
    let row = json!({"id": held, "store_id": "s1", "metric": "sales", "value": 2});
    boss.push(json!({"kpi_data": [row]})).await;
    let poke = next_json(&mut ws, 30).await.expect("no poke for the push");
    assert_eq!(poke["tables"], json!(["kpi_data"]), "{poke}");
    let mut lock = app.pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM kpi_data WHERE id = $1::uuid FOR UPDATE")
        .bind(&held)
        .execute(&mut *lock)
        .await
        .expect("lock");
    let in_flight = {
        let (http, base, token) = (boss.http.clone(), app.base.clone(), boss.token.clone());
        let body = json!({"device_id": "boss-tablet", "changes": {"kpi_data": [
            {"id": held, "store_id": "s1", "metric": "returns", "value": 3, "version": 1}]}});
        tokio::spawn(async move {
            let resp = http
                .post(format!("{base}/api/v1/sync/push"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("push request");
            crate::common::read(resp).await
        })
    };
    let started = Instant::now();
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
         AND application_name = 'nas-sync' AND wait_event_type = 'Lock'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("read pg_stat_activity")
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the push never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    tokio::task::block_in_place(|| pg.stop());
    drop(lock);
    // Its connection was ended under it: 503 too, not 500.
    let (s, b) = in_flight.await.expect("join");
    assert_error(s, &b, 503, "UNAVAILABLE");

    // Down: every API route is 503 UNAVAILABLE in the contract's shape.
    let (s, b) = boss
        .push_raw(json!({"device_id": "boss-tablet", "changes": kpi()}))
        .await;
    assert_error(s, &b, 503, "UNAVAILABLE");
    let (s, b) = clerk
        .post("/api/v1/sync/pull", &json!({"device_id": "clerk-phone"}))
        .await;
    assert_error(s, &b, 503, "UNAVAILABLE");
    let (s, b) = boss.get("/api/v1/sync/status").await;
    assert_error(s, &b, 503, "UNAVAILABLE");
    let (s, b) = app.login_raw("boss", "password", "boss-laptop").await;
    assert_error(s, &b, 503, "UNAVAILABLE");
    let (s, b) = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": boss.refresh_token}),
        )
        .await;
    assert_error(s, &b, 503, "UNAVAILABLE");
    for path in [
        "/api/v1/sync/state",
        "/api/v1/sync/conflicts",
        "/api/v1/odoo/connections",
        "/api/v2/sync/state",
    ] {
        let (s, b) = boss.get(path).await;
        assert_error(s, &b, 503, "UNAVAILABLE");
    }
    let (s, b) = app.get("/ready", None).await;
    assert_error(s, &b, 503, "UNAVAILABLE");
    let (s, _) = app.get("/health", None).await;
    assert_eq!(s, StatusCode::OK);

    tokio::task::block_in_place(|| pg.ctl_start());

    // Back, without restarting nas-sync.
    let started = Instant::now();
    while app.get("/ready", None).await.0 != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "/ready did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The listener reconnected: the socket is told to resync every table it reads.
    let poke = next_json(&mut ws, 60).await.expect("no resync poke");
    assert_eq!(poke["type"], "changes", "{poke}");
    for t in ["submissions", "kpi_data", "forms", "team"] {
        assert!(
            poke["tables"].as_array().unwrap().iter().any(|x| x == t),
            "resync poke lacks {t}: {poke}"
        );
    }
    let r = boss.push(kpi()).await;
    assert_eq!(r["success"], json!(true), "{r}");
    // Pokes flow again.
    let started = Instant::now();
    loop {
        let msg = next_json(&mut ws, 30)
            .await
            .expect("no poke after the restart");
        if msg["type"] == "changes"
            && msg["tables"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == "kpi_data"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no kpi_data poke: {msg}"
        );
    }
    // The row locked before the outage and the one pushed after it.
    assert_eq!(clerk.sync_down().await, 2);
    let (s, _) = app.login_raw("boss", "password", "boss-laptop").await;
    assert_eq!(s, StatusCode::OK);
}
