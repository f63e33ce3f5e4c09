//! The Odoo client's HTTP hardening, through the real client against the fake Odoo:
//! a redirect to another origin is refused before the request (and the API key in
//! its body) is re-sent there, one within the origin is followed, and an answer
//! larger than the limit is cut off while it streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fake_odoo::{FakeOdoo, FakeOptions, Fault};
use nas_sync::odoo::client::{CallPolicy, Credentials, OdooClient};
use nas_sync::odoo::fault::OdooError;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn creds(fake: &FakeOdoo) -> Credentials {
    Credentials {
        url: fake.url.clone(),
        database: "odoo".into(),
        username: "bot".into(),
        api_key: "bot-api-key".into(),
    }
}

fn policy(max_body_bytes: usize) -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_secs(30),
        polite_delay: Duration::ZERO,
        retries: 0,
        backoff: Duration::from_millis(10),
        max_body_bytes,
    }
}

/// Another origin (another port): counts the requests it gets and answers each with
/// a JSON-RPC success, so a client that followed the redirect would succeed.
async fn other_origin() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                let _ = tcp.read(&mut buf).await;
                let body = r#"{"jsonrpc": "2.0", "id": 1, "result": 2}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_the_key_never_leaves() {
    nas_sync::install_tls_provider();
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let (elsewhere, hits) = other_origin().await;
    for status in [307, 308, 302] {
        fake.fail_next(
            "authenticate",
            1,
            Fault::Redirect {
                status,
                location: format!("{elsewhere}/jsonrpc"),
            },
        );
        let connected = OdooClient::connect(creds(&fake), policy(1 << 20), "res.partner").await;
        let Err(err) = connected else {
            panic!("{status}: a redirect to {elsewhere} was followed");
        };
        assert!(matches!(err, OdooError::Redirected(_)), "{status}: {err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "Odoo answered with a redirect to {elsewhere}; set the connection's URL to \
                 the final address"
            )
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the other origin got a request"
    );
}

#[tokio::test]
async fn a_redirect_within_the_origin_is_followed() {
    nas_sync::install_tls_provider();
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    fake.fail_next(
        "authenticate",
        1,
        Fault::Redirect {
            status: 307,
            location: format!("{}/jsonrpc", fake.url),
        },
    );
    let client = OdooClient::connect(creds(&fake), policy(1 << 20), "res.partner")
        .await
        .expect("connect through a same-origin redirect");
    assert_eq!(client.uid, Some(2));
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_an_error_and_is_not_read_to_its_end() {
    nas_sync::install_tls_provider();
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let limit = 1 << 20;
    let client = OdooClient::connect(creds(&fake), policy(limit), "res.partner")
        .await
        .expect("connect");
    let huge = 512 << 20;
    fake.fail_next("search_read", 1, Fault::HugeBody(huge));
    let err = client
        .search_read("res.partner", json!([]), &["name".to_string()], "id", None)
        .await
        .expect_err("a 512 MiB answer was accepted");
    assert!(
        err.to_string()
            .contains("larger than 1048576 bytes (NAS_SYNC_ODOO_MAX_BODY_BYTES)"),
        "{err}"
    );
    // The rest of the answer was never read: what the fake managed to hand over is
    // bounded by the socket buffers, far below the whole body.
    let sent = fake.huge_bytes_sent();
    assert!(sent < huge / 8, "{sent} bytes of {huge} were sent");
    // An answer within the limit still reads.
    client
        .search_read("res.partner", json!([]), &["name".to_string()], "id", None)
        .await
        .expect("a normal answer");
}
