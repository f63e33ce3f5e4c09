//! `GET /api/v1/audit` and `/api/v1/audit/export` as a manager's tools use them:
//! filters, pages without gaps, who may read what, and the streamed export.

use crate::common::*;

use nas_sync::audit::seal;
use nas_sync::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn kpi(row: &str, store: &str, version: i64, value: i64) -> Value {
    json!({"kpi_data": [{"id": row, "store_id": store, "metric": "sales", "value": value,
                         "period": "2026-12", "version": version, "updated_at": now()}]})
}

async fn seal_everything(app: &TestApp) {
    seal::seal_all(&app.pool, &app.state.audit).await.unwrap();
}

fn seqs(page: &Value) -> Vec<i64> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn managers_find_who_changed_a_row_and_page_through_the_rest() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "mgr-1").await;
    let clerk = app.store("clerk", "s1", "store-1").await;
    let row = id();
    boss.push(kpi(&row, "s1", 0, 10)).await;
    clerk.push(kpi(&row, "s1", 1, 11)).await;
    for i in 0..5 {
        clerk.push(kpi(&id(), "s1", 0, i)).await;
    }
    boss.push(kpi(&id(), "s2", 0, 1)).await;
    // Another tenant's changes never show.
    app.add_user("other-boss", Role::Manager, None, "acme")
        .await;
    let other = app.login("other-boss", "acme-1").await;
    other.push(kpi(&id(), "s1", 0, 5)).await;
    seal_everything(&app).await;

    let (s, page) = boss.get(&format!("/api/v1/audit?row_id={row}")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{page}");
    assert_eq!(entries[0]["user"], "clerk", "newest first: {page}");
    assert_eq!(entries[0]["device_id"], "store-1");
    assert_eq!(entries[0]["changed"], json!({"value": [10, 11]}));
    assert_eq!(entries[1]["user"], "boss");
    assert_eq!(page["next_before"], Value::Null);

    let (_, by_device) = boss.get("/api/v1/audit?device_id=store-1").await;
    assert_eq!(seqs(&by_device).len(), 6, "{by_device}");
    let (_, s2) = boss.get("/api/v1/audit?store_id=s2").await;
    assert_eq!(seqs(&s2).len(), 1, "{s2}");
    let (_, pushes) = boss.get("/api/v1/audit?origin=push&table=kpi_data").await;
    assert_eq!(seqs(&pushes).len(), 8, "only this tenant's: {pushes}");
    let (_, none) = boss.get("/api/v1/audit?until=2000-01-01T00:00:00Z").await;
    assert_eq!(seqs(&none).len(), 0);

    // Pages of 3: every entry once, newest first.
    let mut all = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/api/v1/audit?limit=3&before={b}"),
            None => "/api/v1/audit?limit=3".to_string(),
        };
        let (s, page) = boss.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        all.extend(seqs(&page));
        match page["next_before"].as_i64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(all, (1..=8).rev().collect::<Vec<i64>>());

    for bad in [
        "limit=0",
        "limit=1001",
        "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "row_id=nope",
    ] {
        let (s, b) = boss.get(&format!("/api/v1/audit?{bad}")).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
    }
    // Store users read nothing unless the setting allows it.
    let (s, b) = clerk.get("/api/v1/audit").await;
    assert_error(s, &b, 403, "FORBIDDEN");
}

#[tokio::test]
async fn store_users_may_be_allowed_their_own_store_only() {
    let app = TestApp::builder()
        .config(|c| c.audit_store_reads = true)
        .spawn()
        .await;
    let boss = app.manager("boss", "mgr-1").await;
    let clerk = app.store("clerk", "s1", "store-1").await;
    boss.push(kpi(&id(), "s1", 0, 1)).await;
    boss.push(kpi(&id(), "s2", 0, 2)).await;
    boss.push(json!({"forms": [{"id": id(), "title": "no store", "description": null}]}))
        .await;
    seal_everything(&app).await;
    let (s, page) = clerk.get("/api/v1/audit").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["store_id"], "s1");
    let (s, b) = clerk.get("/api/v1/audit?store_id=s2").await;
    assert_error(s, &b, 403, "FORBIDDEN");
}

#[tokio::test]
async fn the_export_streams_csv_and_ndjson_for_a_filter() {
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "mgr-1").await;
    let rows: Vec<Value> = (0..2500)
        .map(|i| {
            json!({"id": id(), "store_id": if i % 2 == 0 { "s1" } else { "s2" },
                         "metric": "m, \"quoted\"", "value": i, "period": null})
        })
        .collect();
    boss.push(json!({"kpi_data": rows})).await;
    seal_everything(&app).await;

    let resp = boss
        .http
        .get(format!(
            "{}/api/v1/audit/export?format=csv&store_id=s1",
            boss.base
        ))
        .bearer_auth(&boss.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        resp.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .is_none(),
        "streamed, not built whole"
    );
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("seq,server_time,"), "{}", lines[0]);
    assert_eq!(
        lines.len(),
        1 + 1250,
        "a header and one line per entry of s1"
    );
    assert!(
        lines[1].contains(r#",manager,"{""#)
            && lines[1].contains(r#"""metric"":[null,""m, \""quoted\"""""#),
        "JSON quoted inside CSV: {}",
        lines[1]
    );

    let resp = boss
        .http
        .get(format!("{}/api/v1/audit/export?format=ndjson", boss.base))
        .bearer_auth(&boss.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let seqs: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("a JSON line")["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=2500).collect::<Vec<i64>>(),
        "every entry once, oldest first"
    );

    let (s, b) = boss.get("/api/v1/audit/export?format=xml").await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");
}
