//! WebSocket pokes (docs/contract.md §6) with a real WebSocket client
//! (tokio-tungstenite): who is poked, when, how urgent rows arrive, and how the server
//! copes with revoked and signed-out devices, slow readers, a lost LISTEN connection
//! and several server processes on one database.

use std::time::{Duration, Instant};

use crate::common::{Device, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the device's socket with its token in the Authorization header.
async fn open(base: &str, device: &Device) -> Socket {
    let url = format!("{}/api/v1/sync/ws", base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", device.token).parse().unwrap(),
    );
    let (socket, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    socket
}

/// The next JSON message within `secs`, skipping pings; `None` on timeout.
async fn next_json(socket: &mut Socket, secs: f64) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Some(
                    json!({"closed": frame.map(|f| (u16::from(f.code), f.reason.to_string()))}),
                );
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Some(json!({"error": e.to_string()})),
            Ok(None) => return Some(json!({"closed": null})),
        }
    }
}

/// Waits for a `changes` message naming `table`.
async fn expect_poke(socket: &mut Socket, table: &str) -> Value {
    let start = Instant::now();
    loop {
        let msg = next_json(socket, 10.0)
            .await
            .unwrap_or_else(|| panic!("no poke for {table} within 10 s"));
        if msg["type"] == "changes" && msg["tables"].as_array().unwrap().iter().any(|t| t == table)
        {
            return msg;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no poke for {table}: last {msg}"
        );
    }
}

fn kpi(store: &str) -> Value {
    json!({"kpi_data": [{"id": crate::common::id(), "store_id": store, "metric": "sales", "value": 1, "updated_at": crate::common::now()}]})
}

#[tokio::test]
async fn a_push_by_another_device_pokes_within_a_second_and_only_those_who_may_read() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "boss-phone").await;
    let s1 = app.store("s1-user", "s1", "s1-phone").await;
    let s1_other = app.login("s1-user", "s1-tablet").await;
    let s2 = app.store("s2-user", "s2", "s2-phone").await;
    app.add_user("rival", nas_sync::auth::Role::Manager, None, "other")
        .await;
    let rival = app.login("rival", "rival-phone").await;
    let mut ws_s1 = open(&app.base, &s1).await;
    let mut ws_s2 = open(&app.base, &s2).await;
    let mut ws_manager = open(&app.base, &manager).await;
    let mut ws_rival = open(&app.base, &rival).await;
    let mut ws_pusher = open(&app.base, &s1_other).await;

    let pushed = Instant::now();
    s1_other.push(kpi("s1")).await;
    let poke = expect_poke(&mut ws_s1, "kpi_data").await;
    let latency = pushed.elapsed();
    assert_eq!(poke, json!({"type": "changes", "tables": ["kpi_data"]}));
    eprintln!("poke latency after the push answered: {latency:?}");
    expect_poke(&mut ws_manager, "kpi_data").await;
    // Another store, another tenant and the device that pushed hear nothing.
    for (who, ws) in [
        ("s2", &mut ws_s2),
        ("rival", &mut ws_rival),
        ("pusher", &mut ws_pusher),
    ] {
        assert_eq!(next_json(ws, 1.5).await, None, "{who} was poked");
    }
    // A table the store role cannot read: no poke for store devices.
    let manager_tablet = app.login("boss", "boss-tablet").await;
    let mut ws_tablet = open(&app.base, &manager_tablet).await;
    manager
        .push(json!({"form_templates": [{"id": crate::common::id(), "name": "t", "updated_at": crate::common::now()}]}))
        .await;
    expect_poke(&mut ws_tablet, "form_templates").await;
    assert_eq!(
        next_json(&mut ws_s1, 1.5).await,
        None,
        "store device poked for form_templates"
    );
}

#[tokio::test]
async fn a_burst_of_commits_is_one_message_and_urgent_rows_come_whole() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let reader = app.login("boss", "boss-tablet").await;
    let mut ws = open(&app.base, &reader).await;
    // Forty separate transactions, as fast as they go.
    let burst = Instant::now();
    for i in 0..40 {
        sqlx::query("INSERT INTO settings (id, tenant_id, key, value) VALUES (gen_random_uuid(), 'default', $1, '1')")
            .bind(format!("k{i}"))
            .execute(&app.pool)
            .await
            .unwrap();
    }
    let burst_ms = burst.elapsed().as_millis() as usize;
    let first = expect_poke(&mut ws, "settings").await;
    assert_eq!(first["tables"], json!(["settings"]));
    let mut messages = 1;
    while let Some(m) = next_json(&mut ws, 1.0).await {
        assert_eq!(m["type"], "changes", "{m}");
        messages += 1;
    }
    // At most one message per 100 ms of burst, plus the leading and trailing ones.
    assert!(
        messages <= 2 + burst_ms / 100 && messages < 40,
        "{messages} messages for 40 commits in {burst_ms} ms: not coalesced"
    );

    // Urgent table: the row itself arrives as an event.
    sqlx::query("UPDATE sync_tables SET urgent = true WHERE table_name = 'kpi_data'")
        .execute(&app.pool)
        .await
        .unwrap();
    let row = crate::common::id();
    writer
        .push(json!({"kpi_data": [{"id": row, "store_id": "s9", "metric": "alarm", "value": 42, "updated_at": crate::common::now()}]}))
        .await;
    let mut event = None;
    for _ in 0..3 {
        match next_json(&mut ws, 5.0).await {
            Some(m) if m["type"] == "event" => {
                event = Some(m);
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    let event = event.expect("no event for an urgent row");
    assert_eq!(event["table"], "kpi_data");
    assert_eq!(event["record"]["id"], json!(row));
    assert_eq!(event["record"]["metric"], "alarm");
    assert!(event["record"].get("tenant_id").is_none());
}

#[tokio::test]
async fn a_signed_out_device_is_disconnected() {
    let app = TestApp::spawn().await;
    let phone = app.manager("boss", "boss-phone").await;
    let tablet = app.login("boss", "boss-tablet").await;
    let mut by_logout = open(&app.base, &phone).await;
    let mut by_replay = open(&app.base, &tablet).await;

    // Logout closes the device's sockets.
    let (s, b) = phone.post("/api/v1/auth/logout", &json!({})).await;
    assert_eq!(s.as_u16(), 204, "{b}");
    let msg = next_json(&mut by_logout, 5.0)
        .await
        .expect("socket left open");
    assert_eq!(msg["closed"][0], 4001, "{msg}");
    assert_eq!(msg["closed"][1], "SIGNED_OUT", "{msg}");

    // So does a replayed refresh token, which ends the device's tokens.
    for expected in [200, 401] {
        let (s, b) = app
            .post_json(
                "/api/v1/auth/refresh",
                None,
                &json!({"refresh_token": tablet.refresh_token}),
            )
            .await;
        assert_eq!(s.as_u16(), expected, "{b}");
    }
    let msg = next_json(&mut by_replay, 5.0)
        .await
        .expect("socket left open");
    assert_eq!(msg["closed"][0], 4001, "{msg}");
    assert_eq!(msg["closed"][1], "SIGNED_OUT", "{msg}");
}

#[tokio::test]
async fn a_revoked_device_is_disconnected_and_bad_tokens_cannot_connect() {
    let app = TestApp::spawn().await;
    let device = app.manager("boss", "boss-phone").await;
    let mut ws = open(&app.base, &device).await;
    assert!(
        nas_sync::auth::devices::revoke(&app.pool, "default", "boss-phone")
            .await
            .unwrap()
    );
    let msg = next_json(&mut ws, 5.0).await.expect("socket left open");
    assert_eq!(msg["closed"][0], 4001, "{msg}");
    assert_eq!(msg["closed"][1], "DEVICE_REVOKED", "{msg}");
    // The revoked token, a tampered one and none at all are refused before the upgrade.
    let url = format!("{}/api/v1/sync/ws", app.base.replace("http://", "ws://"));
    for query in [
        format!("?access_token={}", device.token),
        "?access_token=forged".into(),
        String::new(),
    ] {
        let err = tokio_tungstenite::connect_async(format!("{url}{query}"))
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                assert_eq!(resp.status().as_u16(), 401);
            }
            other => panic!("expected 401, got {other}"),
        }
    }
    // ?access_token= works for clients that cannot set headers.
    let other = app.login("boss", "boss-tablet").await;
    let (mut ws2, _) =
        tokio_tungstenite::connect_async(format!("{url}?access_token={}", other.token))
            .await
            .unwrap();
    ws2.send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws2, 5.0).await,
        Some(json!({"type": "pong"}))
    );
}

#[tokio::test]
async fn a_slow_reader_does_not_delay_the_others() {
    let app = TestApp::spawn().await;
    sqlx::query("UPDATE sync_tables SET urgent = true WHERE table_name = 'settings'")
        .execute(&app.pool)
        .await
        .unwrap();
    let writer = app.manager("boss", "boss-phone").await;
    let slow = app.login("boss", "slow-tablet").await;
    let fast = app.login("boss", "fast-tablet").await;
    let mut ws_slow = open(&app.base, &slow).await;
    let mut ws_fast = open(&app.base, &fast).await;
    // Large urgent rows: the slow socket, never read, fills its TCP buffers and its queue.
    let big = "x".repeat(1_000_000);
    let mut worst = Duration::ZERO;
    for round in 0..30 {
        let start = Instant::now();
        writer
            .push(json!({"settings": [{"id": crate::common::id(), "key": format!("big{round}"), "value": big, "updated_at": crate::common::now()}]}))
            .await;
        loop {
            let m = next_json(&mut ws_fast, 10.0)
                .await
                .expect("fast reader starved");
            if m["type"] == "event" {
                break;
            }
        }
        worst = worst.max(start.elapsed());
    }
    eprintln!("fast reader's worst event latency while another socket stalls: {worst:?}");
    // The server gives up on the socket that does not read.
    let start = Instant::now();
    while app.state.hub.len() > 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stalled socket was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reading it now ends in a close, not in thirty whole rows.
    let mut events = 0;
    while let Some(m) = next_json(&mut ws_slow, 2.0).await {
        if m["type"] == "event" {
            events += 1;
        } else if m.get("closed").is_some() || m.get("error").is_some() {
            break;
        }
    }
    assert!(
        events < 30,
        "the slow socket received all {events} events: nothing was dropped"
    );
}

#[tokio::test]
async fn the_listener_recovers_from_a_lost_connection_and_sockets_are_told_to_resync() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let store = app.store("clerk", "s1", "clerk-phone").await;
    let mut ws = open(&app.base, &store).await;
    // PostgreSQL drops the LISTEN connection (as on a restart of the server).
    kill_listener(&app.pool).await;
    // Told to resync: every table the store role reads.
    let poke = next_json(&mut ws, 15.0).await.expect("no resync poke");
    let tables: Vec<&str> = poke["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in ["submissions", "kpi_data", "forms", "team"] {
        assert!(tables.contains(&t), "resync poke lacks {t}: {poke}");
    }
    assert!(!tables.contains(&"form_templates"), "{poke}");
    // Pokes work again.
    writer.push(kpi("s1")).await;
    expect_poke(&mut ws, "kpi_data").await;
}

#[tokio::test]
async fn a_write_through_one_server_process_pokes_sockets_of_another() {
    let app = TestApp::spawn().await;
    // Process B: the real binary, as a second container would run it.
    let mut b =
        crate::common::ServerProcess::start(&app.db.url, &[], std::process::Stdio::null()).await;
    let base_b = b.base.clone();
    let writer = app.manager("boss", "boss-phone").await;
    let reader = app.store("clerk", "s1", "clerk-phone").await;
    let mut ws = open(&base_b, &reader).await;
    writer.push(kpi("s1")).await;
    expect_poke(&mut ws, "kpi_data").await;
    // Shutting B down (SIGTERM) closes its sockets with "going away".
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(b.child.id().to_string())
        .status();
    let msg = next_json(&mut ws, 10.0)
        .await
        .expect("socket not closed at shutdown");
    assert_eq!(msg["closed"][0], 1001, "{msg}");
    b.terminate();
}

#[tokio::test]
async fn a_commit_by_the_odoo_mirror_pokes_devices() {
    use fake_odoo::{FakeOdoo, FakeOptions};
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    fake.insert("res.partner", json!({"name": "First"}));
    let app = TestApp::spawn_with(|c| {
        c.odoo.tick = Duration::from_secs(1);
        c.odoo.call_delay = Duration::ZERO;
    })
    .await;
    let manager = app.manager("boss", "boss-phone").await;
    let store = app.store("clerk", "s1", "clerk-phone").await;
    let mut ws = open(&app.base, &store).await;
    let (code, resp) = manager
        .post(
            "/api/v1/odoo/connections",
            &json!({"url": fake.url, "database": "odoo", "username": "bot", "api_key": "bot-api-key",
                    "models": ["res.partner"], "poll_interval_seconds": 1, "safety_lag_seconds": 2}),
        )
        .await;
    assert_eq!(code.as_u16(), 201, "{resp}");
    // The first mirror commits its batch: the store device hears of it.
    expect_poke(&mut ws, "odoo_res_partner").await;
    // And of a later change in Odoo.
    fake.insert("res.partner", json!({"name": "Second"}));
    expect_poke(&mut ws, "odoo_res_partner").await;
}

#[tokio::test]
async fn a_socket_closes_when_its_token_expires() {
    let app = TestApp::spawn_with(|c| c.access_token_ttl = Duration::from_secs(2)).await;
    let device = app.manager("boss", "boss-phone").await;
    let mut ws = open(&app.base, &device).await;
    let msg = next_json(&mut ws, 10.0)
        .await
        .expect("socket outlived its token");
    assert_eq!(msg["closed"][0], 4002, "{msg}");
    assert_eq!(msg["closed"][1], "TOKEN_EXPIRED", "{msg}");
}

/// At most 8 WebSockets per device: the ninth is refused with 429 before the upgrade,
/// and the token in the query string is taken on this route only.
#[tokio::test]
async fn a_device_holds_at_most_eight_sockets_and_query_tokens_work_only_here() {
    let app = TestApp::spawn().await;
    let device = app.manager("boss", "boss-phone").await;
    let mut open_sockets = Vec::new();
    for _ in 0..8 {
        open_sockets.push(open(&app.base, &device).await);
    }
    let url = format!("{}/api/v1/sync/ws", app.base.replace("http://", "ws://"));
    let err = tokio_tungstenite::connect_async(format!("{url}?access_token={}", device.token))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 429);
        }
        other => panic!("expected 429, got {other}"),
    }
    // Another device is not affected; a closed socket frees a place.
    let other = app.login("boss", "boss-tablet").await;
    let _theirs = open(&app.base, &other).await;
    drop(open_sockets.pop());
    let mut freed = false;
    for _ in 0..50 {
        if tokio_tungstenite::connect_async(format!("{url}?access_token={}", device.token))
            .await
            .is_ok()
        {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "a closed socket did not free its place");

    // Elsewhere a token in the URL is not a credential.
    let (status, body) = app
        .get(
            &format!("/api/v1/sync/status?access_token={}", device.token),
            None,
        )
        .await;
    crate::common::assert_error(status, &body, 401, "UNAUTHORIZED");
}

/// PostgreSQL drops the server's LISTEN connection (as on a restart of the server).
async fn kill_listener(pool: &sqlx::PgPool) {
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE '%LISTEN%' AND pid <> pg_backend_pid()",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(killed, 1, "the listener's connection was not found");
}

/// Skips pokes until the socket closes; the close frame as `[code, reason]`.
async fn closed(socket: &mut Socket) -> Value {
    loop {
        let msg = next_json(socket, 15.0).await.expect("socket left open");
        if msg.get("closed").is_some() {
            return msg["closed"].clone();
        }
    }
}

/// Every way a session ends closes its sockets, whatever wrote it: plain SQL (which
/// sends no revocation note, only the trigger's session note), and a revocation whose
/// note was lost because nobody listened (checked again when the listener returns).
#[tokio::test]
async fn sockets_close_on_every_revocation_path_even_a_lost_note() {
    let app = TestApp::spawn().await;
    let revoked = app.manager("boss", "revoked-by-sql").await;
    let clerk = app.store("clerk", "s1", "clerk-phone").await;
    let quiet = app.manager("quiet", "revoked-unheard").await;
    let kept = app.manager("keeper", "still-fine").await;
    let mut ws_revoked = open(&app.base, &revoked).await;
    let mut ws_clerk = open(&app.base, &clerk).await;
    let mut ws_quiet = open(&app.base, &quiet).await;
    let mut ws_kept = open(&app.base, &kept).await;

    sqlx::query("UPDATE devices SET revoked_at = now() WHERE device_id = 'revoked-by-sql'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        closed(&mut ws_revoked).await,
        json!([4001, "DEVICE_REVOKED"])
    );
    sqlx::query("UPDATE users SET disabled_at = now() WHERE username = 'clerk'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(closed(&mut ws_clerk).await, json!([4001, "SIGNED_OUT"]));

    // Revoked with the triggers off: no note at all, as if it was sent while the
    // listener was down. Then the listener loses its connection and comes back.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE devices SET revoked_at = now() WHERE device_id = 'revoked-unheard'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        next_json(&mut ws_quiet, 1.0).await.is_none(),
        "no note was sent, so nothing should have happened yet"
    );
    kill_listener(&app.pool).await;
    assert_eq!(closed(&mut ws_quiet).await, json!([4001, "DEVICE_REVOKED"]));
    // A session that did not end is only told to resync.
    let poke = next_json(&mut ws_kept, 5.0).await.expect("no resync poke");
    assert!(poke.get("tables").is_some(), "{poke}");
    assert!(
        next_json(&mut ws_kept, 1.0).await.is_none(),
        "a live session's socket was closed"
    );
}
