//! Load shedding: a route family with as many requests running and waiting
//! as `NAS_SYNC_LOAD_LIMITS` allows answers 503 `UNAVAILABLE` with `Retry-After` at
//! once, while other families still answer; one device past its share of a family
//! gets 429. No timing: pushes are held by a table lock the test takes, and the test
//! waits for the states it needs by polling them.

use crate::common::*;

use std::str::FromStr;
use std::time::Duration;

use nas_sync::guard::limits::Family;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Polls `cond` every 20 ms (up to a minute) until it holds.
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..3000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}

#[tokio::test]
async fn a_full_family_sheds_with_retry_after_while_others_answer() {
    let app = TestApp::spawn_with(|c| {
        c.load_limits = nas_sync::guard::shed::LoadLimits::parse("push=1+1", 16).unwrap();
    })
    .await;
    let m = app.manager("boss", "boss-phone").await;
    let other = app.manager("other", "other-phone").await;
    let mut reader = app.manager("reader", "reader-phone").await;

    // Writers to kpi_data wait behind this lock; readers do not.
    let mut locker = PgConnectOptions::from_str(&app.db.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE kpi_data IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();

    let push = |m: &Device, n: i64| {
        let (http, base, token, device) = (
            m.http.clone(),
            m.base.clone(),
            m.token.clone(),
            m.device_id.clone(),
        );
        tokio::spawn(async move {
            let body = json!({"device_id": device, "timestamp": now(), "changes": {
                "kpi_data": [{"id": id(), "store_id": "s1", "metric": "m", "value": n}]}});
            let resp = http
                .post(format!("{base}/api/v1/sync/push"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let (status, body) = read(resp).await;
            (status, retry_after, body)
        })
    };

    // The first push runs and waits on the lock inside PostgreSQL.
    let first = push(&m, 1);
    let pool = app.pool.clone();
    until("the first push to wait on the lock", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
            >= 1
    })
    .await;
    // The second is admitted and waits for a running slot.
    let second = push(&m, 2);
    let shed = app.state.shed.clone();
    until("the second push to wait for its turn", async || {
        shed.waiting(Family::Push) == 1
    })
    .await;

    // The first device holds its share of the family (2 places): a third push of its
    // own is refused as its own excess, 429.
    let (status, retry_after, body) = push(&m, 3).await.unwrap();
    assert_error(status, &body, 429, "RATE_LIMITED");
    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");

    // Every further push, of any device, is refused at once, in the contract's shape.
    for n in 4..9 {
        let (status, retry_after, body) = push(&other, n).await.unwrap();
        assert_error(status, &body, 503, "UNAVAILABLE");
        assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
        assert_eq!(body["details"]["retry_after"], 1, "{body}");
    }

    // Another family still answers.
    let page = reader.pull_page(None).await;
    assert!(page["cursor"].is_string(), "{page}");
    let (status, _) = reader.get("/api/v1/sync/state").await;
    assert_eq!(status, StatusCode::OK);

    // Released, the two admitted pushes complete.
    tx.rollback().await.unwrap();
    for handle in [first, second] {
        let (status, _, body) = handle.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(app.state.shed.waiting(Family::Push), 0);
}
