//! The database connections never run with Nagle's algorithm: sqlx 0.9.0
//! opens TCP sockets without `TCP_NODELAY`, which made every statement with a large
//! parameter wait ~40 ms for PostgreSQL's delayed ACK. Instead of timing that, these
//! tests check the structure: every backend PostgreSQL serves for the pool is a TCP
//! connection the relay opened and read back with `TCP_NODELAY` set.

use crate::common::*;

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// The client ports of the `nas-sync` backends of `app`'s database, as PostgreSQL sees
/// them, read over a connection of the test's own (TCP, so it is not among them).
async fn backend_ports(app: &TestApp) -> Vec<i32> {
    let opts = PgConnectOptions::from_str(&app.db.url).unwrap();
    let mut conn = opts.connect().await.unwrap();
    sqlx::query_scalar(
        "SELECT client_port FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'nas-sync'
            AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// Skips when the test server is reached over a Unix socket (no TCP, nothing to relay).
fn over_tcp(app: &TestApp) -> bool {
    let opts = PgConnectOptions::from_str(&app.db.url).unwrap();
    let tcp = opts.get_socket().is_none() && !opts.get_host().starts_with('/');
    if !tcp {
        eprintln!("TEST_DATABASE_URL names a Unix socket: nothing to relay, skipped");
    }
    tcp
}

async fn push_rows(app: &TestApp, n: usize) {
    let m = app.manager("boss", "boss-phone").await;
    let rows: Vec<Value> = (0..n)
        .map(|i| json!({"id": id(), "store_id": "s1", "metric": format!("m{i}"), "value": i}))
        .collect();
    let r = m.push(json!({"kpi_data": rows})).await;
    assert_eq!(
        r["applied"]["kpi_data"].as_array().map(Vec::len),
        Some(n),
        "{r}"
    );
}

#[tokio::test]
async fn every_pool_connection_to_a_tcp_database_has_tcp_nodelay() {
    let app = TestApp::spawn().await;
    if !over_tcp(&app) {
        return;
    }
    // A push with a large parameter, and the listener's connection, are both open now.
    push_rows(&app, 100).await;
    let ports = backend_ports(&app).await;
    assert!(!ports.is_empty(), "no nas-sync backends found");
    let relayed: BTreeMap<u16, bool> = nas_sync::db::relay::open_upstreams()
        .into_iter()
        .map(|u| (u.local.port(), u.nodelay))
        .collect();
    for port in ports {
        let port = u16::try_from(port).expect("a TCP client port");
        assert_eq!(
            relayed.get(&port),
            Some(&true),
            "backend for client port {port} is not a relayed connection with TCP_NODELAY \
             (relayed: {relayed:?})"
        );
    }
}

#[tokio::test]
async fn the_relay_can_be_turned_off() {
    let app = TestApp::spawn_with(|c| c.db_tcp_relay = false).await;
    if !over_tcp(&app) {
        return;
    }
    push_rows(&app, 10).await;
    // The relays are the process's (other tests run in it too): a relayed connection
    // of another test that just closed may still be listed for a moment while its
    // port is reused by one of this server's direct connections, so a port counts as
    // relayed only if it stays so.
    let mut still = Vec::new();
    for _ in 0..20 {
        let ports = backend_ports(&app).await;
        assert!(!ports.is_empty(), "no nas-sync backends found");
        let relayed: Vec<u16> = nas_sync::db::relay::open_upstreams()
            .into_iter()
            .map(|u| u.local.port())
            .collect();
        still = ports
            .into_iter()
            .map(|p| u16::try_from(p).expect("a TCP client port"))
            .filter(|p| relayed.contains(p))
            .collect();
        if still.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        still.is_empty(),
        "NAS_SYNC_DB_TCP_RELAY=off still relayed (client ports {still:?})"
    );
}
