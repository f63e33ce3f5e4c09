//! The accept loop's connection limits, on the real `nas-sync serve` binary under a
//! low open-files limit (`ulimit -n 256`, as on a small NAS): one client holding
//! hundreds of connections gets 429 past its share and never takes the descriptors
//! every other client needs; a flood from many addresses fills the server (503 past
//! the limit), idle connections are then closed after the header timeout instead of
//! the idle timeout, and the server answers again within seconds.
//! (Before the limits, 996 idle connections from one client made /health and login
//! time out and the log say `Too many open files`.)

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `local`, with one `/health` request sent on it; its status code
/// (0 when the server closed it without an answer) and the open stream.
async fn held(server: SocketAddr, local: IpAddr) -> (u16, Option<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let Ok(mut tcp) = socket.connect(server).await else {
        return (0, None);
    };
    if tcp
        .write_all(b"GET /health HTTP/1.1\r\nhost: nas\r\n\r\n")
        .await
        .is_err()
    {
        return (0, None);
    }
    let mut buf = vec![0u8; 2048];
    let n = match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => 0,
    };
    let head = String::from_utf8_lossy(&buf[..n]);
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, Some(tcp))
}

/// A client of its own address, answering within five seconds or failing.
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn one_client_cannot_take_every_connection_and_a_flood_recovers() {
    // The test itself holds a few hundred sockets.
    let _ = rlimit::increase_nofile_limit(4096);
    let db = TestDb::new().await;
    let mut server = ServerProcess::start_limited(
        &db.url,
        &[("NAS_SYNC_HEADER_TIMEOUT_SECS", "2")],
        Stdio::null(),
        Some(256),
    )
    .await;
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    nas_sync::auth::users::add(
        &pool,
        "default",
        "boss",
        nas_sync::auth::Role::Manager,
        None,
        "password",
    )
    .await
    .unwrap();

    // 256 open files: 176 connections (256 less the pool's 16 and 64 spare), 44 of
    // them from one address. One client opens 300 and keeps them.
    let mut kept = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..300 {
        let (status, tcp) = held(addr, "127.0.0.1".parse().unwrap()).await;
        match status {
            200 => ok += 1,
            429 => refused += 1,
            other => panic!("a flood connection got {other}"),
        }
        kept.extend(tcp);
    }
    assert_eq!((ok, refused), (44, 256), "one address, one share");

    // Everyone else is served at once.
    let other = client_from("127.0.0.2");
    let health = other.get(format!("{}/health", server.base)).send().await;
    assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200));
    let login = other
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "boss", "password": "password", "device_id": "boss-phone"}))
        .send()
        .await
        .expect("login answered");
    assert_eq!(login.status().as_u16(), 200);

    // Many addresses fill the server: past 176, 503.
    let mut full = 0;
    for i in 3..=6 {
        for _ in 0..44 {
            let (status, tcp) = held(addr, format!("127.0.0.{i}").parse().unwrap()).await;
            assert!(matches!(status, 200 | 503), "got {status}");
            full += usize::from(status == 503);
            kept.extend(tcp);
        }
    }
    assert!(full > 0, "the server took more than its limit");
    let (status, _) = held(addr, "127.0.0.7".parse().unwrap()).await;
    assert_eq!(status, 503);
    // Under that pressure idle connections go after the header timeout (2 s), not the
    // idle timeout (75 s): the server answers again shortly.
    let mut answered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(r) = client_from("127.0.0.8")
            .get(format!("{}/health", server.base))
            .send()
            .await
            && r.status().as_u16() == 200
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "the server stayed full of idle connections");
    drop(kept);
    server.terminate();
}
