//! Connections through the server's own accept loop (src/serve.rs), with raw TCP
//! clients: a request head that never completes and an idle keep-alive connection
//! are closed by the server; normal requests, keep-alive reuse and WebSocket upgrades
//! still work; running out of descriptors does not end the loop.
//!
//! The waits below are upper bounds for a failure message, never timing assertions:
//! the server's timeouts are 1 s, the bounds 20 s and more.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a test waits for the server to close a connection before failing.
const CLOSE_BOUND: Duration = Duration::from_secs(20);

async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Whether the server closes `tcp` (end of stream or reset) within [`CLOSE_BOUND`];
/// bytes it sends first are skipped.
async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(CLOSE_BOUND, wait).await.is_ok()
}

/// Sends `GET path` on a kept-alive connection and reads one whole answer (its
/// `Content-Length` body); returns the status line and body.
async fn get(tcp: &mut TcpStream, path: &str) -> (String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: nas\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(CLOSE_BOUND, tcp.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before the answer: {data:?}");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if data.len() >= end + 4 + length {
                let status = head.lines().next().unwrap().to_string();
                return (status, text[end + 4..end + 4 + length].to_string());
            }
        }
    }
}

#[tokio::test]
async fn a_request_head_that_never_completes_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    // Half a request line, then nothing.
    let mut tcp = connect(&app.base).await;
    tcp.write_all(b"GET /hea").await.unwrap();
    assert!(
        closed_by_server(&mut tcp).await,
        "a half request line held its connection"
    );
    // Nothing at all after the accept.
    let mut silent = connect(&app.base).await;
    assert!(
        closed_by_server(&mut silent).await,
        "a silent connection was kept"
    );
    // A kept-alive connection that starts its next request and stalls: the long idle
    // timeout does not protect a request head already begun.
    let mut tcp = connect(&app.base).await;
    let (status, _) = get(&mut tcp, "/health").await;
    assert!(status.contains(" 200 "), "{status}");
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut tcp).await,
        "a stalled second request head held its connection"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.header_timeout = Duration::from_secs(3600);
        c.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut tcp = connect(&app.base).await;
    let (status, body) = get(&mut tcp, "/health").await;
    assert!(status.contains(" 200 "), "{status} {body}");
    assert!(
        closed_by_server(&mut tcp).await,
        "an idle keep-alive connection was kept"
    );
}

#[tokio::test]
async fn requests_keep_alive_and_websocket_upgrades_work_through_the_loop() {
    let app = TestApp::spawn().await;
    // Several requests on one connection.
    let mut tcp = connect(&app.base).await;
    for _ in 0..3 {
        let (status, body) = get(&mut tcp, "/health").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(body.contains("ok"), "{body}");
    }
    let (status, _) = get(&mut tcp, "/no-such-route").await;
    assert!(status.contains(" 404 "), "{status}");
    // A real client, and a WebSocket upgrade with a device's token.
    let device = app.manager("boss", "boss-phone").await;
    let (s, body) = device.get("/api/v1/sync/status").await;
    assert_eq!(s.as_u16(), 200, "{body}");
    let url = format!("{}/api/v1/sync/ws", app.base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", device.token).parse().unwrap(),
    );
    let (mut socket, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    use futures_util::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::Ping(
            b"hi".to_vec().into(),
        ))
        .await
        .expect("a frame over the upgraded connection");
    socket.close(None).await.ok();
}

/// The real binary with few descriptors (`ulimit -n`): clients that hold every one
/// make `accept` fail with EMFILE; the server logs it, backs off, and serves again
/// once they leave.
#[tokio::test]
async fn running_out_of_descriptors_does_not_end_the_accept_loop() {
    let db = TestDb::new().await;
    let config = test_config(&db.url, false);
    drop(prepare_db(&config).await);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 64 && exec \"$0\" serve",
            env!("CARGO_BIN_EXE_nas-sync"),
        ])
        .env("DATABASE_URL", &db.url)
        .env("NAS_SYNC_BIND", format!("127.0.0.1:{port}"))
        .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
        .env("NAS_SYNC_SECRET_KEY", SECRET_KEY)
        .env("NAS_SYNC_RATE_LIMIT", "off")
        .env("NAS_SYNC_ODOO_WORKER", "off")
        .env("NAS_SYNC_DB_MAX_CONNECTIONS", "4")
        .env("NAS_SYNC_HEADER_TIMEOUT_SECS", "3600")
        // Connection limits above the descriptors (they would refuse the hogs first,
        // tests/it/serve/connection_limits.rs): this is about running out regardless.
        .env("NAS_SYNC_MAX_CONNECTIONS", "1000")
        .env("NAS_SYNC_MAX_CONNECTIONS_PER_ADDRESS", "1000")
        .env("NAS_SYNC_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nas-sync serve");
    // Its log, read as it comes.
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            l.push_str(&line);
            l.push('\n');
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = async {
        while http
            .get(format!("{base}/health"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .expect("nas-sync serve did not start");

    // More silent connections than the server has descriptors.
    let mut hogs = Vec::new();
    for _ in 0..100 {
        hogs.push(connect(&base).await);
    }
    let saw_emfile = async {
        while !log
            .lock()
            .unwrap()
            .contains("could not accept a connection")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let saw = tokio::time::timeout(Duration::from_secs(30), saw_emfile).await;
    assert!(saw.is_ok(), "accept never failed: {}", log.lock().unwrap());
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server died: {}",
        log.lock().unwrap()
    );
    drop(hogs);
    // Served again once descriptors are free.
    let served = async {
        loop {
            let fresh = reqwest::Client::new();
            if let Ok(r) = fresh.get(format!("{base}/health")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let back = tokio::time::timeout(Duration::from_secs(30), served).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(back.is_ok(), "not served again: {}", log.lock().unwrap());
    assert!(status.success(), "{status}: {}", log.lock().unwrap());
}
