//! Pull (docs/contract.md §5): full and delta syncs, paging, tombstones, writes made
//! in SQL, the legacy `last_sync_timestamp` path, the `tables` filter, cursor
//! validation and scoping, device sync state and status, bad input, and compressed
//! responses.
use crate::common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::Duration;

use nas_sync::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PULL: &str = "/api/v1/sync/pull";

/// The nine tables of docs/contract.md §4.
const INSIGHT_TABLES: [&str; 9] = [
    "fields",
    "form_sections",
    "form_templates",
    "forms",
    "kpi_data",
    "settings",
    "submission_answers",
    "submissions",
    "team",
];

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// Waits until every transaction that wrote to the change log has left the pull
/// horizon (`sync_horizon()`): a writer of this test still finishing would (rightly)
/// have its rows withheld. Waiting for that makes the exact assertions below
/// deterministic without weakening them.
async fn settle(app: &TestApp) {
    crate::common::settle(&app.pool).await;
}

/// One pull with an explicit body; `device_id` is added.
async fn pull(dev: &Device, mut body: Value) -> (StatusCode, Value) {
    body["device_id"] = json!(dev.device_id);
    dev.post(PULL, &body).await
}

/// One pull that must succeed.
async fn pull_ok(dev: &Device, body: Value) -> Value {
    let (s, b) = pull(dev, body).await;
    assert_eq!(s, StatusCode::OK, "pull failed: {b}");
    b
}

/// Total rows in a pull answer.
fn row_count(resp: &Value) -> usize {
    resp["changes"]
        .as_object()
        .expect("changes is an object")
        .values()
        .map(|v| v.as_array().expect("rows are a list").len())
        .sum()
}

/// The rows of `table` in a pull answer.
fn rows<'a>(resp: &'a Value, table: &str) -> &'a [Value] {
    resp["changes"][table]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Ids of the rows of `table` in a pull answer, in order.
fn ids(resp: &Value, table: &str) -> Vec<String> {
    rows(resp, table)
        .iter()
        .map(|r| r["id"].as_str().expect("row id").to_string())
        .collect()
}

/// Table names present in `changes`.
fn table_keys(resp: &Value) -> BTreeSet<String> {
    resp["changes"]
        .as_object()
        .expect("changes is an object")
        .keys()
        .cloned()
        .collect()
}

/// Tables the registry lets `role` read, from the database.
async fn readable_tables(app: &TestApp, role: &str) -> BTreeSet<String> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT table_name FROM sync_tables WHERE $1 = ANY(read_roles)")
            .bind(role)
            .fetch_all(&app.pool)
            .await
            .expect("read sync_tables");
    names.into_iter().collect()
}

/// Real columns of `table`, from the catalog.
async fn columns(app: &TestApp, table: &str) -> BTreeSet<String> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(&app.pool)
    .await
    .expect("read columns");
    names.into_iter().collect()
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

fn kpi(id: &str, store: &str, value: f64) -> Value {
    json!({"id": id, "store_id": store, "metric": "sales", "value": value,
           "period": "2024-06", "updated_at": now()})
}

/// Pushes `n` new kpi rows for `store` in one push; returns their ids.
async fn push_kpis(dev: &Device, store: &str, n: usize) -> BTreeSet<String> {
    let ids: Vec<String> = (0..n).map(|_| id()).collect();
    let batch: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| kpi(id, store, i as f64))
        .collect();
    let resp = dev.push(json!({ "kpi_data": batch })).await;
    assert_eq!(resp["success"], json!(true), "push: {resp}");
    assert_eq!(
        resp["applied"]["kpi_data"].as_array().map(Vec::len),
        Some(n),
        "push: {resp}"
    );
    ids.into_iter().collect()
}

/// Inserts `n` kpi rows for `store` directly in SQL, as an operator would.
async fn sql_kpis(app: &TestApp, store: &str, n: i32) {
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value, period)
         SELECT gen_random_uuid(), 'default', $1, 'visits', g, '2024-06'
         FROM generate_series(1, $2) g",
    )
    .bind(store)
    .bind(n)
    .execute(&app.pool)
    .await
    .expect("insert kpi rows");
}

/// A pull body with a raw byte body and optional extra headers.
async fn post_raw(dev: &Device, body: Vec<u8>, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = dev
        .http
        .post(format!("{}{PULL}", dev.base))
        .bearer_auth(&dev.token)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send().await.expect("request")).await
}

/// `cursor` with one character in the middle replaced by another base64url one.
fn flip_char(cursor: &str, at: usize) -> String {
    let mut chars: Vec<char> = cursor.chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

// ---------------------------------------------------------------------------------
// Full sync
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn full_sync_returns_every_readable_table_with_every_column() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let (form, section, field, sub) = (id(), id(), id(), id());
    // One row in every table but `settings`, which stays empty.
    let resp = writer
        .push(json!({
            "forms": [{"id": form, "title": "Audit", "description": "weekly"}],
            "form_sections": [{"id": section, "form_id": form, "title": "Front", "position": 1}],
            "fields": [{"id": field, "form_id": form, "section_id": section, "label": "Clean?",
                        "field_type": "bool", "required": true, "position": 1}],
            "form_templates": [{"id": id(), "name": "Template", "definition": {"a": [1, 2]}}],
            "team": [{"id": id(), "store_id": "s1", "name": "Ann", "role": "lead"},
                     {"id": id(), "store_id": "s2", "name": "Bob", "role": "clerk"}],
            "submissions": [{"id": sub, "form_id": form, "store_id": "s1",
                             "status": "completed", "submitted_by": "ann"}],
            "submission_answers": [{"id": id(), "submission_id": sub, "field_id": field,
                                    "store_id": "s1", "value": {"v": "yes"}}],
            "kpi_data": [kpi(&id(), "s1", 12.5), kpi(&id(), "s2", 3.0)],
        }))
        .await;
    assert_eq!(resp["success"], json!(true), "seed push: {resp}");
    settle(&app).await;

    let reader = app.manager("boss2", "boss-tablet").await;
    let full = pull_ok(&reader, json!({})).await;

    // Envelope.
    assert_eq!(full["success"], json!(true), "{full}");
    assert!(is_rfc3339(&full["timestamp"]), "timestamp: {full}");
    assert!(
        full["cursor"].as_str().is_some_and(|c| !c.is_empty()),
        "cursor: {full}"
    );
    assert_eq!(full["has_more"], json!(false), "{full}");
    assert!(
        full.get("conflicts").is_some_and(Value::is_null),
        "conflicts must be null: {full}"
    );

    // Every readable table is there, the empty one too.
    let readable = readable_tables(&app, "manager").await;
    for t in INSIGHT_TABLES {
        assert!(readable.contains(t), "manager cannot read {t}");
    }
    assert_eq!(table_keys(&full), readable, "tables in a full sync");
    assert_eq!(rows(&full, "settings").len(), 0);
    assert!(full["changes"]["settings"].is_array(), "{full}");

    // Every row, with every column, exactly as stored, and no tenant_id.
    for table in &readable {
        let server = app.server_rows(table, "default").await;
        let cols: BTreeSet<String> = columns(&app, table)
            .await
            .into_iter()
            .filter(|c| c != "tenant_id")
            .collect();
        let pulled = rows(&full, table);
        assert_eq!(pulled.len(), server.len(), "row count of {table}: {full}");
        for row in pulled {
            let keys: BTreeSet<String> = row.as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys, cols, "columns of a {table} row");
            assert!(row.get("tenant_id").is_none(), "tenant_id leaked: {row}");
            let id = row["id"].as_str().unwrap();
            assert_eq!(Some(row), server.get(id), "{table} row {id} differs");
            assert_eq!(row["version"], json!(1));
            assert_eq!(row["deleted"], json!(false));
            assert!(is_rfc3339(&row["updated_at"]), "{row}");
        }
    }

    // A store device gets the tables its role may read, and only its store's rows.
    let store = app.store("clerk1", "s1", "s1-phone").await;
    let full = pull_ok(&store, json!({})).await;
    let readable = readable_tables(&app, "store").await;
    assert!(!readable.contains("form_templates"));
    assert_eq!(table_keys(&full), readable, "tables in a store full sync");
    for table in ["team", "submissions", "submission_answers", "kpi_data"] {
        let got = rows(&full, table);
        assert!(!got.is_empty(), "store s1 should see its {table} rows");
        for row in got {
            assert_eq!(row["store_id"], json!("s1"), "{table}: {row}");
        }
    }
    assert_eq!(rows(&full, "forms").len(), 1);
    assert_eq!(full["has_more"], json!(false));
}

// ---------------------------------------------------------------------------------
// Delta sync
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn delta_pull_returns_each_changed_row_once_in_its_latest_state() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let mut reader = app.manager("boss2", "boss-tablet").await;
    let (a, b) = (id(), id());
    writer
        .push(json!({"kpi_data": [kpi(&a, "s1", 1.0), kpi(&b, "s1", 2.0)]}))
        .await;
    settle(&app).await;
    reader.sync_down().await;
    assert_eq!(reader.local_rows("kpi_data").len(), 2);

    // Three updates of `a` between two pulls.
    for (version, value) in [(1, 10.0), (2, 20.0), (3, 30.0)] {
        let mut row = kpi(&a, "s1", value);
        row["version"] = json!(version);
        let resp = writer.push(json!({"kpi_data": [row]})).await;
        assert_eq!(resp["success"], json!(true), "{resp}");
        assert!(
            resp["conflicts"].as_array().is_some_and(Vec::is_empty),
            "{resp}"
        );
    }
    settle(&app).await;

    let delta = reader.pull_page(None).await;
    assert_eq!(delta["has_more"], json!(false), "{delta}");
    assert_eq!(row_count(&delta), 1, "only `a` changed: {delta}");
    let got = &rows(&delta, "kpi_data")[0];
    assert_eq!(got["id"], json!(a));
    assert_eq!(got["version"], json!(4), "latest version: {got}");
    assert_eq!(got["value"].as_f64(), Some(30.0), "latest value: {got}");
    assert_eq!(
        Some(got),
        app.server_rows("kpi_data", "default").await.get(&a)
    );

    // Nothing changed since: nothing comes.
    let again = reader.pull_page(None).await;
    assert_eq!(row_count(&again), 0, "unchanged pull: {again}");
    assert_eq!(again["has_more"], json!(false));
    assert_eq!(again["success"], json!(true));
    assert!(is_rfc3339(&again["timestamp"]));

    // A change in another table after that comes alone.
    let form = id();
    writer
        .push(json!({"forms": [{"id": form, "title": "New"}]}))
        .await;
    settle(&app).await;
    let next = reader.pull_page(None).await;
    assert_eq!(row_count(&next), 1, "{next}");
    assert_eq!(ids(&next, "forms"), vec![form]);
    assert_eq!(
        reader.local_rows("kpi_data"),
        app.server_rows("kpi_data", "default").await
    );
}

// ---------------------------------------------------------------------------------
// Paging and limits
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn paging_has_no_gaps_or_duplicates() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let pushed = push_kpis(&writer, "s1", 1250).await;
    settle(&app).await;

    let mut reader = app.manager("boss2", "boss-tablet").await;
    let mut seen: Vec<String> = Vec::new();
    let mut shape = Vec::new();
    for _ in 0..3 {
        let page = reader.pull_page(Some(500)).await;
        shape.push((row_count(&page), page["has_more"].clone()));
        seen.extend(ids(&page, "kpi_data"));
    }
    assert_eq!(
        shape,
        vec![(500, json!(true)), (500, json!(true)), (250, json!(false))]
    );
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a row came twice across pages");
    assert_eq!(unique, pushed, "pages must cover exactly the pushed rows");
    let last = reader.pull_page(Some(500)).await;
    assert_eq!(row_count(&last), 0, "{last}");
    assert_eq!(last["has_more"], json!(false));
    assert_eq!(
        reader.local_rows("kpi_data"),
        app.server_rows("kpi_data", "default").await
    );
}

#[tokio::test]
async fn default_limit_is_500_and_large_limits_are_capped_at_5000() {
    let app = TestApp::spawn().await;
    sql_kpis(&app, "s1", 5100).await;
    settle(&app).await;
    let mut dev = app.manager("boss", "boss-phone").await;

    let page = pull_ok(&dev, json!({})).await;
    assert_eq!(row_count(&page), 500, "default limit");
    assert_eq!(page["has_more"], json!(true));

    // Above the maximum: capped, not refused.
    let page = dev.pull_page(Some(100_000)).await;
    assert_eq!(row_count(&page), 5000, "capped limit");
    assert_eq!(page["has_more"], json!(true));
    let rest = dev.pull_page(Some(100_000)).await;
    assert_eq!(row_count(&rest), 100);
    assert_eq!(rest["has_more"], json!(false));
    assert_eq!(dev.local_rows("kpi_data").len(), 5100);

    for bad in [json!(0), json!(-5)] {
        let (s, b) = pull(&dev, json!({ "limit": bad })).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
        assert_eq!(b["details"]["field"], json!("limit"), "{b}");
    }
}

// ---------------------------------------------------------------------------------
// Tombstones
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn soft_delete_reaches_other_devices_as_a_tombstone() {
    let app = TestApp::spawn().await;
    let a = app.store("clerk", "s1", "s1-phone").await;
    let mut b = app.login("clerk", "s1-tablet").await;
    let row_id = id();
    a.push(json!({"kpi_data": [kpi(&row_id, "s1", 5.0)]})).await;
    settle(&app).await;
    b.sync_down().await;
    assert!(b.local_rows("kpi_data").contains_key(&row_id));

    let mut del = kpi(&row_id, "s1", 5.0);
    del["version"] = json!(1);
    del["deleted"] = json!(true);
    let resp = a.push(json!({ "kpi_data": [del] })).await;
    assert_eq!(resp["success"], json!(true), "{resp}");
    settle(&app).await;

    let delta = b.pull_page(None).await;
    assert_eq!(row_count(&delta), 1, "{delta}");
    let t = &rows(&delta, "kpi_data")[0];
    assert_eq!(t["id"], json!(row_id), "{t}");
    assert_eq!(t["deleted"], json!(true), "{t}");
    assert_eq!(t["version"], json!(2), "{t}");
    assert!(is_rfc3339(&t["updated_at"]), "{t}");
    assert!(!b.local_rows("kpi_data").contains_key(&row_id));
}

#[tokio::test]
async fn hard_delete_in_sql_reaches_devices_as_a_tombstone() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let mut store = app.store("clerk", "s1", "s1-phone").await;
    let mut manager = app.manager("boss2", "boss-tablet").await;
    let (gone, kept) = (id(), id());
    writer
        .push(json!({"kpi_data": [kpi(&gone, "s1", 1.0), kpi(&kept, "s1", 2.0)]}))
        .await;
    // Make the deleted row's version more than 1, to see which one the tombstone has.
    let mut upd = kpi(&gone, "s1", 1.5);
    upd["version"] = json!(1);
    writer.push(json!({ "kpi_data": [upd] })).await;
    settle(&app).await;
    store.sync_down().await;
    manager.sync_down().await;
    assert!(store.local_rows("kpi_data").contains_key(&gone));

    let deleted = sqlx::query("DELETE FROM kpi_data WHERE id = $1::uuid")
        .bind(&gone)
        .execute(&app.pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 1);
    settle(&app).await;

    for dev in [&mut store, &mut manager] {
        let delta = dev.pull_page(None).await;
        assert_eq!(row_count(&delta), 1, "{delta}");
        let t = &rows(&delta, "kpi_data")[0];
        assert_eq!(t["id"], json!(gone), "{t}");
        assert_eq!(t["deleted"], json!(true), "{t}");
        assert!(
            t["version"].as_i64().is_some_and(|v| v >= 2),
            "tombstone version: {t}"
        );
        assert!(is_rfc3339(&t["updated_at"]), "{t}");
        // The row schema requires the nullable columns (generated clients parse it).
        for c in ["value", "period"] {
            assert!(t.get(c).is_some_and(Value::is_null), "{c} in {t}");
        }
        assert!(!dev.local_rows("kpi_data").contains_key(&gone));
        assert!(dev.local_rows("kpi_data").contains_key(&kept));
    }
}

// ---------------------------------------------------------------------------------
// Writes made in SQL
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn operator_sql_writes_are_pulled_like_device_writes() {
    let app = TestApp::spawn().await;
    let mut manager = app.manager("boss", "boss-phone").await;
    let mut s1 = app.store("clerk1", "s1", "s1-phone").await;
    let mut s2 = app.store("clerk2", "s2", "s2-phone").await;
    for d in [&mut manager, &mut s1, &mut s2] {
        d.sync_down().await;
    }

    let (k, f) = (id(), id());
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value, period)
         VALUES ($1::uuid, 'default', 's1', 'sales', 10, '2024-06')",
    )
    .bind(&k)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO forms (id, tenant_id, title) VALUES ($1::uuid, 'default', 'Ops')")
        .bind(&f)
        .execute(&app.pool)
        .await
        .unwrap();
    settle(&app).await;

    let delta = manager.pull_page(None).await;
    assert_eq!(row_count(&delta), 2, "{delta}");
    let row = &rows(&delta, "kpi_data")[0];
    assert_eq!(row["id"], json!(k));
    assert_eq!(row["version"], json!(1), "{row}");
    assert_eq!(row["value"].as_f64(), Some(10.0), "{row}");
    assert_eq!(row["deleted"], json!(false), "{row}");
    assert!(row.get("tenant_id").is_none(), "{row}");
    assert_eq!(
        Some(row),
        app.server_rows("kpi_data", "default").await.get(&k)
    );
    assert_eq!(ids(&delta, "forms"), vec![f.clone()]);
    let first_updated = row["updated_at"].as_str().unwrap().to_string();

    // Store scoping applies to SQL writes too.
    let d1 = s1.pull_page(None).await;
    assert_eq!(ids(&d1, "kpi_data"), vec![k.clone()]);
    assert_eq!(ids(&d1, "forms"), vec![f.clone()]);
    let d2 = s2.pull_page(None).await;
    assert!(rows(&d2, "kpi_data").is_empty(), "s2 got s1's row: {d2}");
    assert_eq!(ids(&d2, "forms"), vec![f.clone()]);

    // An UPDATE bumps the version through the trigger and is pulled once.
    tokio::time::sleep(Duration::from_millis(20)).await;
    sqlx::query("UPDATE kpi_data SET value = 11 WHERE id = $1::uuid")
        .bind(&k)
        .execute(&app.pool)
        .await
        .unwrap();
    settle(&app).await;
    let delta = manager.pull_page(None).await;
    assert_eq!(row_count(&delta), 1, "{delta}");
    let row = &rows(&delta, "kpi_data")[0];
    assert_eq!(row["version"], json!(2), "{row}");
    assert_eq!(row["value"].as_f64(), Some(11.0), "{row}");
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    assert!(
        parse(row["updated_at"].as_str().unwrap()) > parse(&first_updated),
        "updated_at must move on an UPDATE: {row}"
    );
    let d1 = s1.pull_page(None).await;
    assert_eq!(rows(&d1, "kpi_data"), std::slice::from_ref(row));
}

// ---------------------------------------------------------------------------------
// Legacy last_sync_timestamp
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn legacy_last_sync_timestamp_is_at_least_once() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let reader = app.manager("boss2", "boss-tablet").await;
    let old = id();
    writer
        .push(json!({"kpi_data": [kpi(&old, "s1", 1.0)]}))
        .await;
    settle(&app).await;
    // A wall-clock mark past the old row, so the legacy pull below starts from a mark
    // rather than from the beginning.
    nas_sync::sync::horizon::tick(&app.pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let first = pull_ok(&reader, json!({})).await;
    let since = first["timestamp"].as_str().expect("timestamp").to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // After `since`: a device whose clock is an hour slow, an operator's insert that
    // sets an old updated_at, and an update of the old row.
    let (slow, sql_row) = (id(), id());
    let mut row = kpi(&slow, "s1", 2.0);
    row["updated_at"] = json!((chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339());
    writer.push(json!({ "kpi_data": [row] })).await;
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value, updated_at)
         VALUES ($1::uuid, 'default', 's1', 'sales', 3, '2001-01-01T00:00:00Z')",
    )
    .bind(&sql_row)
    .execute(&app.pool)
    .await
    .unwrap();
    let mut upd = kpi(&old, "s1", 9.0);
    upd["version"] = json!(1);
    writer.push(json!({ "kpi_data": [upd] })).await;
    settle(&app).await;
    nas_sync::sync::horizon::tick(&app.pool).await.unwrap();

    let legacy = pull_ok(&reader, json!({ "last_sync_timestamp": since })).await;
    assert_eq!(legacy["success"], json!(true));
    assert_eq!(legacy["has_more"], json!(false), "{legacy}");
    let got: BTreeMap<String, Value> = rows(&legacy, "kpi_data")
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    for want in [&slow, &sql_row, &old] {
        assert!(
            got.contains_key(want.as_str()),
            "row {want} changed after {since} is missing: {legacy}"
        );
    }
    assert_eq!(got[&old]["version"], json!(2), "latest state: {legacy}");
    assert_eq!(got[&old]["value"].as_f64(), Some(9.0));

    // Its cursor continues as a delta: nothing new.
    let cursor = legacy["cursor"].as_str().expect("cursor");
    let next = pull_ok(&reader, json!({ "cursor": cursor })).await;
    assert_eq!(row_count(&next), 0, "{next}");

    // Malformed timestamps.
    for bad in [
        json!("yesterday"),
        json!("2024-13-45T99:00:00Z"),
        json!(12345),
    ] {
        let (s, b) = pull(&reader, json!({ "last_sync_timestamp": bad })).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
        assert_eq!(b["details"]["field"], json!("last_sync_timestamp"), "{b}");
    }
}

#[tokio::test]
async fn legacy_timestamp_works_with_the_background_clock() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    let reader = app.manager("boss2", "boss-tablet").await;
    writer
        .push(json!({"kpi_data": [kpi(&id(), "s1", 1.0)]}))
        .await;
    settle(&app).await;
    // Let the server's own clock (every 2 s) record marks on both sides of `since`.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let since = pull_ok(&reader, json!({}))
        .await
        .get("timestamp")
        .and_then(Value::as_str)
        .expect("timestamp")
        .to_string();
    // One row right away (before the clock's next mark), one after ~3 s.
    let (soon, later) = (id(), id());
    writer
        .push(json!({"kpi_data": [kpi(&soon, "s1", 2.0)]}))
        .await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    writer
        .push(json!({"kpi_data": [kpi(&later, "s1", 3.0)]}))
        .await;
    settle(&app).await;
    let legacy = pull_ok(&reader, json!({ "last_sync_timestamp": since })).await;
    let got = ids(&legacy, "kpi_data");
    for want in [&soon, &later] {
        assert!(
            got.contains(want),
            "row {want} written after {since} is missing: {legacy}"
        );
    }
    assert_eq!(legacy["has_more"], json!(false));
}

// ---------------------------------------------------------------------------------
// Tables filter
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn tables_filter_and_role_permissions() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "boss-phone").await;
    let form = id();
    manager
        .push(json!({
            "forms": [{"id": form, "title": "Audit"}],
            "form_templates": [{"id": id(), "name": "T"}],
            "kpi_data": [kpi(&id(), "s1", 1.0)],
        }))
        .await;
    settle(&app).await;

    let only = pull_ok(&manager, json!({"tables": ["forms"]})).await;
    assert_eq!(table_keys(&only), BTreeSet::from(["forms".to_string()]));
    assert_eq!(ids(&only, "forms"), vec![form.clone()]);

    let two = pull_ok(&manager, json!({"tables": ["kpi_data", "forms"]})).await;
    assert_eq!(
        table_keys(&two),
        BTreeSet::from(["forms".to_string(), "kpi_data".to_string()])
    );
    assert_eq!(row_count(&two), 2);

    for tables in [json!(["nope"]), json!(["forms", "no_such_table"])] {
        let (s, b) = pull(&manager, json!({ "tables": tables })).await;
        assert_error(s, &b, 400, "UNKNOWN_TABLE");
    }

    let store = app.store("clerk", "s1", "s1-phone").await;
    let (s, b) = pull(&store, json!({"tables": ["form_templates"]})).await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = pull(&store, json!({"tables": ["forms", "form_templates"]})).await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let all = pull_ok(&store, json!({})).await;
    assert!(
        all["changes"].get("form_templates").is_none(),
        "store got form_templates: {all}"
    );
    let mine = pull_ok(&store, json!({"tables": ["kpi_data"]})).await;
    assert_eq!(table_keys(&mine), BTreeSet::from(["kpi_data".to_string()]));
    assert_eq!(row_count(&mine), 1);
}

// ---------------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn tampered_and_foreign_cursors_are_invalid_sync_tokens() {
    let app = TestApp::spawn().await;
    let mut dev = app.manager("boss", "boss-phone").await;
    dev.push(json!({"kpi_data": [kpi(&id(), "s1", 1.0)]})).await;
    settle(&app).await;
    dev.sync_down().await;
    let cursor = dev.cursor.clone().unwrap();
    // The genuine cursor works.
    let ok = pull_ok(&dev, json!({ "cursor": cursor })).await;
    assert_eq!(row_count(&ok), 0);

    let n = cursor.chars().count();
    let mut bad: Vec<String> = vec![
        flip_char(&cursor, 0),
        flip_char(&cursor, n / 2),
        flip_char(&cursor, n - 1),
        cursor[..cursor.len() - 4].to_string(),
        format!("{cursor}AAAA"),
        "not-a-cursor".into(),
        "!!!!****".into(),
        "x".repeat(10_000),
        "eyJ4aWQiOjB9".into(),
    ];
    // A cursor signed by another server (another secret).
    let other =
        TestApp::spawn_with(|c| c.jwt_secret = Some("another-secret-0123456789-zyxwvu".into()))
            .await;
    let mut stranger = other.manager("boss", "boss-phone").await;
    stranger.sync_down().await;
    bad.push(stranger.cursor.clone().unwrap());

    for c in bad {
        let (s, b) = pull(&dev, json!({ "cursor": c })).await;
        assert_error(s, &b, 400, "INVALID_SYNC_TOKEN");
    }
    // A cursor of the wrong JSON type is a validation error.
    let (s, b) = pull(&dev, json!({ "cursor": 42 })).await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");
    assert_eq!(b["details"]["field"], json!("cursor"), "{b}");
}

#[tokio::test]
async fn cursor_for_another_table_set_requires_resync() {
    let app = TestApp::spawn().await;
    let dev = app.manager("boss", "boss-phone").await;
    dev.push(json!({"forms": [{"id": id(), "title": "A"}]}))
        .await;
    settle(&app).await;

    let forms = pull_ok(&dev, json!({"tables": ["forms"]})).await;
    let c = forms["cursor"].as_str().unwrap();
    // Same set: fine.
    let again = pull_ok(&dev, json!({"tables": ["forms"], "cursor": c})).await;
    assert_eq!(row_count(&again), 0);
    for tables in [
        Some(json!(["forms", "kpi_data"])),
        Some(json!(["kpi_data"])),
        None,
    ] {
        let mut body = json!({ "cursor": c });
        if let Some(t) = tables {
            body["tables"] = t;
        }
        let (s, b) = pull(&dev, body).await;
        assert_error(s, &b, 409, "RESYNC_REQUIRED");
    }
    // A cursor for every table, used for one.
    let all = pull_ok(&dev, json!({})).await;
    let (s, b) = pull(&dev, json!({"tables": ["forms"], "cursor": all["cursor"]})).await;
    assert_error(s, &b, 409, "RESYNC_REQUIRED");
}

#[tokio::test]
async fn restored_database_new_epoch_requires_resync() {
    let app = TestApp::spawn().await;
    let mut dev = app.manager("boss", "boss-phone").await;
    let row = id();
    dev.push(json!({"kpi_data": [kpi(&row, "s1", 1.0)]})).await;
    settle(&app).await;
    dev.sync_down().await;
    let old = dev.cursor.clone().unwrap();

    sqlx::query("UPDATE server_meta SET value = gen_random_uuid()::text WHERE key = 'epoch'")
        .execute(&app.pool)
        .await
        .unwrap();

    // This process may answer from memory until the epoch's note reaches it (a
    // millisecond or so): then only an empty page with the cursor it was sent, never
    // rows; then RESYNC_REQUIRED.
    let mut answered = None;
    for _ in 0..200 {
        let (s, b) = pull(&dev, json!({ "cursor": old })).await;
        if s != 200 {
            answered = Some((s, b));
            break;
        }
        assert_eq!(b["cursor"], json!(old), "{b}");
        assert_eq!(row_count(&b), 0, "{b}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, b) = answered.expect("the new epoch was never noticed");
    assert_error(s, &b, 409, "RESYNC_REQUIRED");

    // Starting over works, brings everything, and its cursor works.
    dev.cursor = None;
    dev.local.clear();
    let full = dev.pull_page(None).await;
    assert_eq!(ids(&full, "kpi_data"), vec![row]);
    assert_eq!(full["has_more"], json!(false));
    let next = dev.pull_page(None).await;
    assert_eq!(row_count(&next), 0);
}

#[tokio::test]
async fn cursor_is_bound_to_store_and_tenant() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "boss-phone").await;
    manager
        .push(json!({"kpi_data": [kpi(&id(), "s1", 1.0), kpi(&id(), "s2", 2.0)]}))
        .await;
    settle(&app).await;

    let mut s1 = app.store("clerk1", "s1", "s1-phone").await;
    s1.sync_down().await;
    let s1_cursor = s1.cursor.clone().unwrap();
    let s2 = app.store("clerk2", "s2", "s2-phone").await;
    let (s, b) = pull(&s2, json!({ "cursor": s1_cursor })).await;
    assert_error(s, &b, 409, "RESYNC_REQUIRED");
    // A manager of the same tenant with a store's cursor.
    let (s, b) = pull(&manager, json!({ "cursor": s1_cursor })).await;
    assert_error(s, &b, 409, "RESYNC_REQUIRED");

    // Another tenant.
    app.add_user("acme-boss", Role::Manager, None, "acme").await;
    let acme = app.login("acme-boss", "acme-phone").await;
    let mine = pull_ok(&manager, json!({})).await;
    let (s, b) = pull(&acme, json!({ "cursor": mine["cursor"] })).await;
    assert_error(s, &b, 409, "RESYNC_REQUIRED");
    // And the other tenant's full sync holds none of ours.
    let theirs = pull_ok(&acme, json!({})).await;
    assert_eq!(row_count(&theirs), 0, "{theirs}");
}

// ---------------------------------------------------------------------------------
// Device sync state and status
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn device_state_status_and_reset() {
    let app = TestApp::spawn().await;
    let mut dev = app.manager("boss", "boss-phone").await;
    dev.push(json!({"kpi_data": [kpi(&id(), "s1", 1.0)]})).await;
    settle(&app).await;
    let state_path = format!("/api/v1/sync/state?device_id={}", dev.device_id);

    let (s, before) = dev.get(&state_path).await;
    assert_eq!(s, StatusCode::OK, "{before}");
    assert_eq!(before["device_id"], json!(dev.device_id));
    assert_eq!(before["sync_count"], json!(0), "{before}");
    assert!(before["last_pull_at"].is_null(), "{before}");

    dev.pull_page(None).await;
    dev.pull_page(None).await;
    // Pull bookkeeping is written in batches, within about a second, without any
    // request asking for it (the operator's `devices list` reads the table).
    let mut written = (0, None);
    for _ in 0..50 {
        written = sqlx::query_as("SELECT sync_count, cursor FROM devices WHERE device_id = $1")
            .bind(&dev.device_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if written.0 == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(written, (2i64, dev.cursor.clone()));
    let (s, after) = dev.get(&state_path).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["sync_count"], json!(2), "{after}");
    assert!(is_rfc3339(&after["last_pull_at"]), "{after}");
    assert!(is_rfc3339(&after["last_push_at"]), "{after}");
    assert_eq!(after["cursor"], json!(dev.cursor), "{after}");

    // Another device's state is not the caller's to read.
    let (s, b) = dev.get("/api/v1/sync/state?device_id=someone-else").await;
    assert_error(s, &b, 403, "FORBIDDEN");

    let (s, status) = dev.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{status}");
    assert_eq!(status["status"], json!("online"));
    assert!(is_rfc3339(&status["timestamp"]), "{status}");
    assert!(status["version"].is_string(), "{status}");
    assert!(
        status["active_devices"].as_i64().is_some_and(|n| n >= 1),
        "{status}"
    );
    assert!(
        is_rfc3339(&status["last_sync"][&dev.device_id]),
        "last_sync lacks the device: {status}"
    );
    let tables: BTreeSet<String> = status["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(tables, readable_tables(&app, "manager").await);
    let store = app.store("clerk", "s1", "s1-phone").await;
    let (s, st) = store.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert!(
        !st["tables"]
            .as_array()
            .unwrap()
            .contains(&json!("form_templates")),
        "{st}"
    );

    let (s, reset) = dev
        .post(
            &format!("/api/v1/sync/reset?device_id={}", dev.device_id),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{reset}");
    let (s, cleared) = dev.get(&state_path).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cleared["sync_count"], json!(0), "{cleared}");
    assert!(cleared["last_pull_at"].is_null(), "{cleared}");
    assert!(cleared["cursor"].is_null(), "{cleared}");

    // The next pull without a cursor is a full sync.
    let full = pull_ok(&dev, json!({})).await;
    assert_eq!(rows(&full, "kpi_data").len(), 1);
}

// ---------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn bad_pull_bodies_are_validation_errors() {
    let app = TestApp::spawn().await;
    let dev = app.manager("boss", "boss-phone").await;

    for raw in [
        &b"{\"device_id\": "[..],
        b"{not json}",
        b"{\"tables\": [\"forms\"],}",
    ] {
        let (s, b) = post_raw(&dev, raw.to_vec(), &[]).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
    }

    let (s, b) = post_raw(&dev, Vec::new(), &[]).await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");
    let (s, b) = post_raw(&dev, b"  \n".to_vec(), &[]).await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");

    for (body, field) in [
        (json!({"tables": "forms"}), "tables"),
        (json!({"tables": [1, 2]}), "tables"),
        (json!({"limit": "ten"}), "limit"),
        (json!({"limit": 1.5}), "limit"),
    ] {
        let (s, b) = pull(&dev, body.clone()).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
        let named = b["details"]["field"].as_str().unwrap_or_default();
        assert!(
            named == field || named.starts_with(&format!("{field}[")),
            "details must name '{field}' for {body}: {b}"
        );
    }

    for body in [json!([]), json!("pull"), json!(null)] {
        let (s, b) = dev.post(PULL, &body).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
    }

    // Another device's id in the body; no token at all.
    let (s, b) = dev.post(PULL, &json!({"device_id": "not-me"})).await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = app.post_json(PULL, None, &json!({})).await;
    assert_error(s, &b, 401, "UNAUTHORIZED");
}

// ---------------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn responses_are_gzipped_when_accepted_and_gzipped_requests_are_read() {
    let app = TestApp::spawn().await;
    let writer = app.manager("boss", "boss-phone").await;
    push_kpis(&writer, "s1", 1250).await;
    settle(&app).await;
    let dev = app.manager("boss2", "boss-tablet").await;
    let raw = reqwest::Client::builder().gzip(false).build().unwrap();
    let body = json!({"device_id": dev.device_id, "limit": 1000});

    let resp = raw
        .post(format!("{}{PULL}", app.base))
        .bearer_auth(&dev.token)
        .header("accept-encoding", "gzip")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip"),
        "headers: {:?}",
        resp.headers()
    );
    let bytes = resp.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    let page: Value = serde_json::from_str(&text).expect("JSON inside the gzip");
    assert_eq!(row_count(&page), 1000);
    assert!(
        bytes.len() * 3 < text.len(),
        "gzip should shrink a large pull: {} -> {}",
        text.len(),
        bytes.len()
    );

    // Without Accept-Encoding: plain JSON.
    let resp = raw
        .post(format!("{}{PULL}", app.base))
        .bearer_auth(&dev.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-encoding").is_none());
    let page: Value = resp.json().await.unwrap();
    assert_eq!(row_count(&page), 1000);

    // A gzip-compressed request body is accepted.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(
        serde_json::to_vec(&json!({"device_id": dev.device_id, "tables": ["kpi_data"]}))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let (s, page) = post_raw(&dev, enc.finish().unwrap(), &[("content-encoding", "gzip")]).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(row_count(&page), 500);
    assert_eq!(page["has_more"], json!(true));
}

// ---------------------------------------------------------------------------------
// Scope changes
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn row_moved_to_another_store_in_sql_leaves_the_old_stores_devices() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "boss-phone").await;
    let mut s1 = app.store("clerk1", "s1", "s1-phone").await;
    let mut s2 = app.store("clerk2", "s2", "s2-phone").await;
    let moved = id();
    manager
        .push(json!({"kpi_data": [kpi(&moved, "s1", 1.0)]}))
        .await;
    settle(&app).await;
    s1.sync_down().await;
    s2.sync_down().await;
    assert!(s1.local_rows("kpi_data").contains_key(&moved));

    // An operator reassigns the row to store s2 in SQL. (Pushes refuse to change
    // `store_id`; refusing it in SQL too would be a fine answer.)
    let update = sqlx::query("UPDATE kpi_data SET store_id = 's2' WHERE id = $1::uuid")
        .bind(&moved)
        .execute(&app.pool)
        .await;
    if update.is_err() {
        return;
    }
    settle(&app).await;

    s2.sync_down().await;
    assert!(s2.local_rows("kpi_data").contains_key(&moved));
    // Store s1 may no longer read it: its devices must drop it (a tombstone).
    s1.sync_down().await;
    assert!(
        !s1.local_rows("kpi_data").contains_key(&moved),
        "store s1 still holds a row that now belongs to s2: {:?}",
        s1.local_rows("kpi_data").get(&moved)
    );
}
