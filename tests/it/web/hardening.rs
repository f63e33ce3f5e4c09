//! Inputs an attacker or a buggy client may send, found in review: ids shared across
//! tables, repeated stale edits in one push, NUL characters, numbers beyond f64,
//! unsupported encodings. Each gets a clear answer and loses nothing.
use crate::common::*;

use serde_json::json;

#[tokio::test]
async fn rows_of_different_tables_with_the_same_id_stay_apart() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    let shared = id();
    boss.push(json!({"forms": [{"id": shared, "title": "A form"}]}))
        .await;
    let store = app.store("ann", "s1", "ann-phone").await;
    let r = store
        .push(json!({"kpi_data": [{"id": shared, "metric": "sales"}]}))
        .await;
    assert_eq!(r["success"], json!(true), "{r}");

    let mut fresh = app.login("boss", "boss-laptop").await;
    fresh.sync_down().await;
    assert_eq!(fresh.local_rows("forms")[&shared]["title"], "A form");
    assert_eq!(fresh.local_rows("kpi_data")[&shared]["metric"], "sales");
}

#[tokio::test]
async fn a_second_stale_edit_in_one_push_still_meets_the_rule() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    let member = id();
    boss.push(json!({"team": [{"id": member, "store_id": "s1", "name": "Ann"}]}))
        .await;
    boss.push(json!({"team": [{"id": member, "name": "Ann B", "version": 1}]}))
        .await;
    boss.push(json!({"team": [{"id": member, "name": "Ann C", "version": 2}]}))
        .await;
    // A device that saw version 1 sends two queued edits; team is server_wins.
    let other = app.login("boss", "old-phone").await;
    let r = other
        .push(json!({"team": [
            {"id": member, "name": "X", "version": 1},
            {"id": member, "name": "Y", "version": 1},
        ]}))
        .await;
    assert_eq!(r["conflicts"].as_array().unwrap().len(), 2, "{r}");
    let name: String = sqlx::query_scalar("SELECT name FROM team WHERE id = $1::uuid")
        .bind(&member)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(name, "Ann C");
}

#[tokio::test]
async fn nul_characters_are_refused_clearly() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    let (s, b) = boss
        .push_raw(json!({"device_id": "boss-tablet", "push_id": "p\u{0}1", "changes": {}}))
        .await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");

    let good = id();
    let body = json!({"device_id": "boss-tablet", "push_id": "nul-1", "changes": {"forms": [
        {"id": good, "title": "fine"},
        {"id": id(), "title": "bad\u{0}title"},
        {"id": "x\u{0}", "title": "bad id"},
    ]}});
    let (s, first) = boss.push_raw(body.clone()).await;
    assert_eq!(s.as_u16(), 200, "{first}");
    assert_eq!(first["errors"].as_array().unwrap().len(), 2, "{first}");
    assert!(
        first["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["code"] == "VALIDATION_FAILED")
    );
    assert_eq!(first["applied"]["forms"][0]["id"], json!(good));
    // The recorded answer replays.
    let (_, again) = boss.push_raw(body).await;
    assert_eq!(again, first);

    let (s, b) = app
        .post_json(
            "/api/v1/auth/login",
            None,
            &json!({"username": "bo\u{0}ss", "password": "password", "device_id": "dev-x"}),
        )
        .await;
    assert_error(s, &b, 401, "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn numbers_keep_every_digit() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    let kpi = id();
    boss.push(json!({"kpi_data": [{"id": kpi, "store_id": "s1", "metric": "m", "value": 0.1}]}))
        .await;
    let precise: serde_json::Value = serde_json::from_str(&format!(
        r#"{{"kpi_data": [{{"id": "{kpi}", "value": 0.1000000000000000001, "version": 1}}]}}"#
    ))
    .unwrap();
    let r = boss.push(precise).await;
    assert_eq!(r["applied"]["kpi_data"][0]["version"], json!(2), "{r}");
    let stored: String = sqlx::query_scalar("SELECT value::text FROM kpi_data WHERE id = $1::uuid")
        .bind(&kpi)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "0.1000000000000000001");
}

#[tokio::test]
async fn an_unsupported_content_encoding_gets_the_error_shape() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    let resp = app
        .http
        .post(format!("{}/api/v1/sync/pull", app.base))
        .bearer_auth(&boss.token)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    let (s, b) = read(resp).await;
    assert_error(s, &b, 415, "UNSUPPORTED_MEDIA_TYPE");
}

/// A value over NAS_SYNC_MAX_VALUE_BYTES is that row's VALIDATION_FAILED; the others
/// of the push are stored.
#[tokio::test]
async fn values_over_the_size_limit_are_refused_per_row() {
    let app = TestApp::spawn_with(|c| c.max_value_bytes = 1000).await;
    let dev = app.manager("boss", "boss-tablet").await;
    let (small, big, json_big) = (id(), id(), id());
    let r = dev
        .push(json!({"kpi_data": [
            {"id": small, "store_id": "s1", "metric": "x".repeat(1000)},
            {"id": big, "store_id": "s1", "metric": "x".repeat(1001)}
        ], "settings": [{"id": json_big, "key": "k", "value": {"blob": "y".repeat(1000)}}]}))
        .await;
    assert_eq!(r["success"], json!(false), "{r}");
    let codes: Vec<(&str, &str)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["record_id"].as_str().unwrap(),
                e["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(codes.len(), 2, "{r}");
    assert!(codes.contains(&(big.as_str(), "VALIDATION_FAILED")), "{r}");
    assert!(
        codes.contains(&(json_big.as_str(), "VALIDATION_FAILED")),
        "{r}"
    );
    assert_eq!(r["applied"]["kpi_data"][0]["id"], json!(small));
}

/// A pull page stops adding rows past NAS_SYNC_MAX_PAGE_BYTES (always at least one
/// row) and says `has_more`; paging on delivers every row, through both protocols.
#[tokio::test]
async fn pages_stop_at_the_byte_limit_and_paging_delivers_everything() {
    let app = TestApp::spawn_with(|c| c.max_page_bytes = 3000).await;
    let mut dev = app.manager("boss", "boss-tablet").await;
    let rows: Vec<_> = (0..10)
        .map(
            |i| json!({"id": id(), "store_id": "s1", "metric": format!("{i}{}", "m".repeat(1000))}),
        )
        .collect();
    let huge = id();
    dev.push(json!({"kpi_data": rows})).await;
    dev.push(json!({"kpi_data": [{"id": huge, "store_id": "s1", "metric": "h".repeat(10_000)}]}))
        .await;
    settle(&app.pool).await;
    let (_, first) = dev
        .post(
            "/api/v1/sync/pull",
            &json!({"tables": ["kpi_data"], "limit": 100}),
        )
        .await;
    let n = first["changes"]["kpi_data"].as_array().unwrap().len();
    assert!(
        (1..10).contains(&n),
        "a 3,000-byte page held {n} rows of 1,000 bytes"
    );
    assert_eq!(first["has_more"], json!(true));
    dev.sync_down().await;
    let local = dev.local_rows("kpi_data");
    assert_eq!(local.len(), 11, "paging lost rows");
    assert!(
        local.contains_key(&huge),
        "a row over the page limit must still come, alone"
    );

    // BridgeCore pages too.
    let mut after = 0;
    let mut seen = 0;
    for _ in 0..30 {
        let (_, page) = dev
            .post(
                "/api/v1/offline-sync/pull",
                &json!({"app_type": "store_manager_app", "models_filter": ["kpi_data"],
                        "last_event_id": after, "limit": 100}),
            )
            .await;
        let events = page["events"].as_array().unwrap().len();
        assert!(
            events <= 3 || page["has_more"] == json!(false),
            "{events} events in one page"
        );
        seen += events;
        after = page["last_event_id"].as_i64().unwrap();
        if page["has_more"] == json!(false) {
            break;
        }
    }
    assert_eq!(seen, 11);
}
