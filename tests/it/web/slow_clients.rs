//! Slow clients cannot starve others: requests that announce a
//! body and then stall, sent by one client, hold at most that client's share of a
//! route family, are cut off once the grace (the header timeout) is spent, and never
//! take the places a client of another tenant needs. Before this, 540 stalled logins
//! made every login, refresh and conflicts list answer 503, and 140 stalled pushes of
//! one store user made another tenant's manager get 503 on a normal push.
//!
//! The attacker speaks raw HTTP/1.1 from 127.0.0.2; the well-behaved clients use
//! 127.0.0.3, so per-address counting tells them apart as it would on a network.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::common::*;
use nas_sync::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ATTACKER: &str = "127.0.0.2";
const NEIGHBOUR: &str = "127.0.0.3";

/// A connection from `local` that sends `head` with `content-length: 100` and one
/// byte of the body, then nothing more.
async fn stalled(server: SocketAddr, local: &str, head: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(local.parse().unwrap(), 0))
        .unwrap();
    let mut tcp = socket.connect(server).await.expect("connect");
    let request = format!(
        "{head}\r\nhost: nas\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    tcp.write_all(request.as_bytes()).await.expect("send");
    tcp
}

/// The status and error code a stalled connection was answered with (0 and "" if it
/// was closed without an answer), waiting up to `within`.
async fn answer(tcp: &mut TcpStream, within: Duration) -> (u16, String) {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let text = String::from_utf8_lossy(&buf);
            if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                break;
            }
        }
    })
    .await;
    if read.is_err() {
        return (0, "no answer in time".into());
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let code = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .and_then(|b| b["code"].as_str().map(ToString::to_string))
        .unwrap_or_default();
    (status, code)
}

/// A client of the neighbour's address that gives up after five seconds.
fn neighbour() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(NEIGHBOUR.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// Counts the answers by status.
fn tally(answers: &[(u16, String)]) -> std::collections::BTreeMap<u16, usize> {
    let mut t = std::collections::BTreeMap::new();
    for (s, _) in answers {
        *t.entry(*s).or_insert(0) += 1;
    }
    t
}

#[tokio::test]
async fn stalled_logins_from_one_address_leave_every_other_client_answered() {
    let app = TestApp::spawn_with(|c| {
        // Small bounds, so that the old order (a place first, the body after) filled
        // them with few connections: 2 running + 30 waiting for the "other" family
        // that login and the conflicts list shared.
        c.load_limits = nas_sync::guard::shed::LoadLimits::parse("other=2+30", 16).unwrap();
        c.header_timeout = Duration::from_secs(2);
    })
    .await;
    app.add_user("owner", Role::Manager, None, "north").await;
    let server = addr(&app);

    let mut attack = Vec::new();
    for _ in 0..60 {
        attack.push(stalled(server, ATTACKER, "POST /api/v1/auth/login HTTP/1.1").await);
    }

    // Meanwhile a manager of another tenant logs in, refreshes and reads conflicts.
    let http = neighbour();
    let login = http
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"username": "owner", "password": "password", "device_id": "north-tab"}))
        .send()
        .await
        .expect("the neighbour's login is answered");
    let (status, body) = read(login).await;
    assert_eq!(status, StatusCode::OK, "login under attack: {body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let refresh = http
        .post(format!("{}/api/v1/auth/refresh", app.base))
        .json(&json!({"refresh_token": body["refresh_token"]}))
        .send()
        .await
        .expect("the neighbour's refresh is answered");
    let (status, body) = read(refresh).await;
    assert_eq!(status, StatusCode::OK, "refresh under attack: {body}");
    let conflicts = http
        .get(format!("{}/api/v1/sync/conflicts", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the conflicts list is answered");
    let (status, body) = read(conflicts).await;
    assert_eq!(status, StatusCode::OK, "conflicts under attack: {body}");

    // The attacker got its share of login places, 429 past it, and each place it held
    // was cut off with 408 once the grace was spent.
    let mut answers = Vec::new();
    for tcp in &mut attack {
        answers.push(answer(tcp, Duration::from_secs(10)).await);
    }
    let t = tally(&answers);
    let share = 16; // (8 running + 256 waiting) / 16, login's default for a pool of 16
    assert_eq!(t.get(&408), Some(&share), "{answers:?}");
    assert_eq!(t.get(&429), Some(&(60 - share)), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, c)| (*s == 408 && c == "REQUEST_TIMEOUT")
                || (*s == 429 && c == "RATE_LIMITED")),
        "{answers:?}"
    );
}

#[tokio::test]
async fn stalled_pushes_of_one_device_leave_another_tenants_pushes_answered() {
    let app = TestApp::spawn_with(|c| {
        c.load_limits = nas_sync::guard::shed::LoadLimits::parse("push=1+8", 16).unwrap();
        c.header_timeout = Duration::from_secs(2);
    })
    .await;
    let clerk = app.store("clerk", "s1", "clerk-phone").await;
    app.add_user("owner", Role::Manager, None, "north").await;
    let owner = app.login("owner", "north-tab").await;
    let server = addr(&app);

    let head = format!(
        "POST /api/v1/sync/push HTTP/1.1\r\nauthorization: Bearer {}",
        clerk.token
    );
    let mut attack = Vec::new();
    for _ in 0..20 {
        attack.push(stalled(server, ATTACKER, &head).await);
    }
    // Without a token, a stalled push is refused at once: it never waits for a body.
    let mut anonymous = stalled(server, ATTACKER, "POST /api/v1/sync/push HTTP/1.1").await;
    assert_eq!(
        answer(&mut anonymous, Duration::from_secs(5)).await,
        (401, "UNAUTHORIZED".to_string())
    );

    let push = neighbour()
        .post(format!("{}/api/v1/sync/push", app.base))
        .bearer_auth(&owner.token)
        .json(
            &json!({"device_id": "north-tab", "timestamp": now(), "changes": {
            "kpi_data": [{"id": id(), "store_id": "s9", "metric": "sales", "value": 1}]}}),
        )
        .send()
        .await
        .expect("the neighbour's push is answered");
    let (status, body) = read(push).await;
    assert_eq!(status, StatusCode::OK, "push under attack: {body}");
    assert_eq!(
        body["applied"]["kpi_data"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );

    let mut answers = Vec::new();
    for tcp in &mut attack {
        answers.push(answer(tcp, Duration::from_secs(10)).await);
    }
    let t = tally(&answers);
    // push=1+8 gives each client max(9 / 16, 2) = 2 places.
    assert_eq!(t.get(&408), Some(&2), "{answers:?}");
    assert_eq!(t.get(&429), Some(&18), "{answers:?}");
}

#[tokio::test]
async fn a_body_that_keeps_a_slow_but_steady_pace_is_served() {
    let app = TestApp::spawn_with(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.body_min_rate = 64;
    })
    .await;
    app.add_user("slowpoke", Role::Manager, None, "default")
        .await;
    // JSON may end in spaces: padded to 240 bytes, the body takes 1.5 s to send.
    let body = format!(
        "{:<240}",
        json!({"username": "slowpoke", "password": "password", "device_id": "edge-phone"})
    );
    let socket = TcpSocket::new_v4().unwrap();
    let mut tcp = socket.connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nhost: nas\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // 16 bytes every 100 ms is 160 bytes/s, over the 64 required, for about 0.5 s
    // past the grace.
    for chunk in body.as_bytes().chunks(16) {
        tcp.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, code) = answer(&mut tcp, Duration::from_secs(10)).await;
    assert_eq!((status, code.as_str()), (200, ""), "a steady slow body");
}
