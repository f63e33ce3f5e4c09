//! Sessions remembered in memory (`auth::remembered`): a device whose token
//! passed the session check lately has its empty pulls answered without any database
//! round trip, and every way a session can end (revocation, a disabled user, ended
//! tokens, a deleted device), written by anything (this server, plain SQL), voids the
//! memory through the `nas_sync_session` notes. A remembered session never serves data:
//! the pull checks it in PostgreSQL before the page statement. No timing: the tests wait
//! for states with a bound on the attempts.

use crate::common::*;

use std::time::Duration;

use nas_sync::auth::session::Session;
use nas_sync::auth::token::Claims;
use nas_sync::error::AppError;
use nas_sync::sync::pull::{self, PullRequest};
use serde_json::json;
use sqlx::postgres::PgListener;

fn claims(app: &TestApp, dev: &Device) -> Claims {
    app.state.keys.verify(&dev.token).unwrap()
}

/// A manager's `Principal` as the token's claims give it.
fn principal(c: &Claims) -> nas_sync::auth::Principal {
    nas_sync::auth::Principal {
        user_id: c.sub,
        username: c.username.clone(),
        tenant: c.tenant.clone(),
        role: nas_sync::auth::Role::Manager,
        store_id: None,
        device_id: c.device_id.clone(),
        generation: c.generation,
        odoo_user_id: c.odoo_user_id,
        expires_at: c.exp,
    }
}

fn remembered(app: &TestApp, c: &Claims) -> bool {
    app.state.sync.sessions.trusts(c.into())
}

/// Waits until `done` holds, pulling as the device would every 20 ms.
async fn pull_until(dev: &mut Device, what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        dev.pull_page(None).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}

/// The device is caught up, its session remembered and its empty pulls from memory.
async fn caught_up(app: &TestApp, dev: &mut Device) -> Claims {
    dev.sync_down().await;
    let c = claims(app, dev);
    let served = app.state.sync.quiet.served();
    pull_until(dev, "a remembered session and a memory answer", || {
        remembered(app, &c) && app.state.sync.quiet.served() > served
    })
    .await;
    c
}

/// Waits until this server has forgotten `c` (the note of its change arrived).
async fn forgotten(app: &TestApp, c: &Claims) {
    for _ in 0..500 {
        if !remembered(app, c) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the session of {} is still remembered", c.device_id);
}

#[tokio::test]
async fn every_way_a_session_ends_in_plain_sql_is_forgotten_and_then_refused() {
    let app = TestApp::spawn().await;
    let mut phone = app.manager("remembered", "remembered-phone").await;
    phone.settle = false;

    // A memory answer hands back the same cursor and nothing else.
    let c = caught_up(&app, &mut phone).await;
    let cursor = phone.cursor.clone();
    let page = phone.pull_page(None).await;
    assert_eq!(phone.cursor, cursor, "{page}");

    // Revoked outside the server: forgotten, then refused.
    sqlx::query("UPDATE devices SET revoked_at = now() WHERE device_id = 'remembered-phone'")
        .execute(&app.pool)
        .await
        .unwrap();
    forgotten(&app, &c).await;
    let (status, body) = phone
        .post("/api/v1/sync/pull", &json!({"cursor": cursor}))
        .await;
    assert_error(status, &body, 401, "DEVICE_REVOKED");

    // A disabled user.
    let mut other = app.manager("remembered-2", "remembered-phone-2").await;
    other.settle = false;
    let c = caught_up(&app, &mut other).await;
    sqlx::query("UPDATE users SET disabled_at = now() WHERE username = 'remembered-2'")
        .execute(&app.pool)
        .await
        .unwrap();
    forgotten(&app, &c).await;
    let (status, body) = other.post("/api/v1/sync/pull", &json!({})).await;
    assert_error(status, &body, 401, "USER_DISABLED");

    // Ended tokens (a new generation), then a deleted device.
    let mut third = app.manager("remembered-3", "remembered-phone-3").await;
    third.settle = false;
    let c = caught_up(&app, &mut third).await;
    sqlx::query(
        "UPDATE devices SET token_generation = nextval('device_token_generation')
         WHERE device_id = 'remembered-phone-3'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    forgotten(&app, &c).await;
    let (status, _) = third.post("/api/v1/sync/pull", &json!({})).await;
    assert_eq!(status, 401);

    let mut fourth = app.manager("remembered-4", "remembered-phone-4").await;
    fourth.settle = false;
    let c = caught_up(&app, &mut fourth).await;
    sqlx::query("DELETE FROM devices WHERE device_id = 'remembered-phone-4'")
        .execute(&app.pool)
        .await
        .unwrap();
    forgotten(&app, &c).await;
    let (status, _) = fourth.post("/api/v1/sync/pull", &json!({})).await;
    assert_eq!(status, 401);
}

/// The process that revokes, releases, disables or re-passwords forgets the sessions
/// at once: the very next empty pull, answered by the same process, is refused, with
/// no wait for the PostgreSQL note (before, 2 runs in 12 still got 200 from memory).
/// Several devices, each revoked then pulling at once, so a race would show. And the
/// pull ledger writes nothing for a revoked device.
#[tokio::test]
async fn the_server_s_own_revocation_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.manager("boss", "boss-phone").await;
    for (i, action) in ["revoke", "release", "revoke", "release", "revoke", "revoke"]
        .iter()
        .enumerate()
    {
        let device = format!("clerk-phone-{i}");
        let mut phone = app.manager(&format!("clerk-{i}"), &device).await;
        phone.settle = false;
        let c = caught_up(&app, &mut phone).await;
        let (status, body) = admin
            .post(
                &format!("/api/v1/admin/devices/{device}/{action}"),
                &json!({}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        assert!(
            !remembered(&app, &c),
            "{action}: still remembered after the 204"
        );
        let cursor = phone.cursor.clone();
        let (status, body) = phone
            .post("/api/v1/sync/pull", &json!({"cursor": cursor}))
            .await;
        assert_eq!(status, 401, "{action}: the next pull got {body}");
    }
    // Disable and a new password forget the user's sessions too.
    for (i, action) in ["disable", "password"].iter().enumerate() {
        let user = format!("worker-{i}");
        let mut phone = app.manager(&user, &format!("worker-phone-{i}")).await;
        phone.settle = false;
        let c = caught_up(&app, &mut phone).await;
        let (status, body) = admin
            .post(
                &format!("/api/v1/admin/users/{user}/{action}"),
                &json!({"password": "a-new-password-1"}),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        assert!(
            !remembered(&app, &c),
            "{action}: still remembered after the 204"
        );
        let (status, body) = phone.post("/api/v1/sync/pull", &json!({})).await;
        assert_eq!(status, 401, "{action}: the next pull got {body}");
    }

    // A pull recorded for a device that is revoked by then leaves no trace on it.
    let mut late = app.manager("late", "late-phone").await;
    late.settle = false;
    late.sync_down().await;
    let c = claims(&app, &late);
    let who = principal(&c);
    let ledger = || {
        sqlx::query_as::<_, (Option<chrono::DateTime<chrono::Utc>>, i64)>(
            "SELECT last_pull_at, sync_count FROM devices WHERE device_id = 'late-phone'",
        )
        .fetch_one(&app.pool)
    };
    let before = ledger().await.unwrap();
    sqlx::query("UPDATE devices SET revoked_at = now() WHERE device_id = 'late-phone'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.state
        .sync
        .pull_ledger
        .record(&who, "a-cursor-from-memory".into());
    app.state.sync.pull_ledger.flush(&app.pool).await.unwrap();
    let after = ledger().await.unwrap();
    assert_eq!(before, after, "the ledger wrote a revoked device's pull");
}

#[tokio::test]
async fn a_remembered_session_is_checked_before_anything_is_read() {
    let app = TestApp::spawn().await;
    let mut phone = app.manager("reader", "reader-phone").await;
    phone.settle = false;
    let c = caught_up(&app, &mut phone).await;
    let who = principal(&c);
    // Revoked in SQL; the pull below runs as if its note had not arrived yet, from a
    // full pull (no cursor), which memory cannot answer.
    sqlx::query("UPDATE devices SET revoked_at = now() WHERE device_id = 'reader-phone'")
        .execute(&app.pool)
        .await
        .unwrap();
    let req: PullRequest = serde_json::from_value(json!({})).unwrap();
    let err = pull::pull(&app.state.sync, &who, Session::Remembered, req)
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::DeviceRevoked), "{err:?}");
    // The same pull with a cursor memory could answer is an empty page at most.
    let req: PullRequest = serde_json::from_value(json!({"cursor": phone.cursor})).unwrap();
    match pull::pull(&app.state.sync, &who, Session::Remembered, req).await {
        Ok(page) => assert!(page.changes.values().all(Vec::is_empty)),
        Err(e) => assert!(matches!(e, AppError::DeviceRevoked), "{e:?}"),
    }
}

#[tokio::test]
async fn the_triggers_send_a_note_for_every_change_that_ends_a_session() {
    let app = TestApp::spawn().await;
    let _phone = app.manager("noted", "noted-phone").await;
    let mut listener = PgListener::connect_with(&app.pool).await.unwrap();
    listener.listen("nas_sync_session").await.unwrap();
    let user: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = 'noted'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let device = r#"{"t" : "default", "d" : "noted-phone"}"#;
    let cases = [
        (
            "UPDATE devices SET last_seen_at = now() WHERE device_id = 'noted-phone'",
            None,
        ),
        (
            "UPDATE devices SET revoked_at = now() WHERE device_id = 'noted-phone'",
            Some(device.to_string()),
        ),
        (
            "UPDATE users SET disabled_at = now() WHERE username = 'noted'",
            Some(format!(r#"{{"u" : "{user}"}}"#)),
        ),
        (
            "DELETE FROM devices WHERE device_id = 'noted-phone'",
            Some(device.to_string()),
        ),
    ];
    for (sql, want) in cases {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
        // A marker after each statement: the note, if any, comes before it.
        sqlx::query("SELECT pg_notify('nas_sync_session', 'marker')")
            .execute(&app.pool)
            .await
            .unwrap();
        let first = listener.recv().await.unwrap();
        match &want {
            Some(payload) => {
                assert_eq!(first.payload(), payload, "{sql}");
                assert_eq!(listener.recv().await.unwrap().payload(), "marker");
            }
            None => assert_eq!(first.payload(), "marker", "{sql} should send no note"),
        }
    }
}
