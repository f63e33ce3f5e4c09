//! Conflict rules (CONTRACT section 5, DESIGN "Conflict rules"), each from both
//! sides, over HTTP. Default Insight rules: forms and the other form tables
//! manager_wins, team server_wins, submissions/submission_answers/kpi_data
//! latest_wins. Rules no default table uses (manager_wins on a table both roles
//! write, client_wins) run on a server whose `sync_tables` was changed in SQL before
//! it started (`TestApp::builder().rules(..)`).
mod common;
use common::*;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The device clock `secs` seconds ago, as RFC 3339 with microseconds (as Dart's
/// `DateTime.toIso8601String` and PostgreSQL both have).
fn ago(secs: i64) -> String {
    micros(Utc::now() - chrono::Duration::seconds(secs))
}

fn micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse(ts: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(ts.as_str().expect("timestamp string"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The stored row (without tenant_id), as the server's conflict reports show it.
async fn row(pool: &PgPool, table: &str, id: &str) -> Value {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(t) - 'tenant_id' FROM {table} t WHERE id = $1::uuid"
    )))
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("stored row")
}

async fn history(pool: &PgPool, table: &str, id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM sync_row_history WHERE table_name = $1 AND row_id = $2::uuid",
    )
    .bind(table)
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("history count")
}

/// Pushes and asserts a clean answer: success, no errors, `success` consistent.
async fn push_ok(dev: &Device, changes: Value) -> Value {
    let r = dev.push(changes).await;
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(r["success"], json!(true), "{r}");
    r
}

/// Pushes and asserts no conflict was reported; returns the answer.
async fn push_no_conflict(dev: &Device, changes: Value) -> Value {
    let r = push_ok(dev, changes).await;
    assert_eq!(r["conflicts"], json!([]), "no conflict expected: {r}");
    r
}

fn applied<'a>(body: &'a Value, table: &str, id: &str) -> &'a Value {
    body["applied"][table]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == json!(id)))
        .unwrap_or_else(|| panic!("{table}/{id} not in applied: {body}"))
}

/// Asserts the answer carries exactly one conflict, with every field as expected.
fn assert_conflict(
    body: &Value,
    table: &str,
    id: &str,
    client_row: &Value,
    server_before: &Value,
    resolution: &str,
    winner: &str,
) {
    let conflicts = body["conflicts"].as_array().expect("conflicts list");
    assert_eq!(conflicts.len(), 1, "one conflict expected: {body}");
    let c = &conflicts[0];
    assert_eq!(c["table"], table, "{c}");
    assert_eq!(c["record_id"], json!(id), "{c}");
    assert_eq!(&c["client_data"], client_row, "client_data: {c}");
    assert_eq!(
        &c["server_data"], server_before,
        "server_data must be the server row before the push: {c}"
    );
    assert_eq!(c["resolution"], resolution, "{c}");
    assert_eq!(c["winner"], winner, "{c}");
}

/// The data columns of a stored row that a test compares (drops sync columns).
fn values(row: &Value, cols: &[&str]) -> BTreeMap<String, Value> {
    cols.iter()
        .map(|c| (c.to_string(), row[*c].clone()))
        .collect()
}

// ---------------------------------------------------------------------------
// latest_wins (submissions, default)

/// A form (by a manager) and a submission of store s1 at version 1; two store
/// devices of s1. Returns (ann, bob, submission id); the manager is "boss".
async fn submission_setup(app: &TestApp) -> (Device, Device, String) {
    let boss = app.manager("boss", "boss-phone").await;
    let ann = app.store("ann", "s1", "ann-phone").await;
    let bob = app.store("bob", "s1", "bob-phone").await;
    let form = id();
    push_no_conflict(&boss, json!({"forms": [{"id": form, "title": "Daily"}]})).await;
    let sub = id();
    let r = push_no_conflict(
        &ann,
        json!({"submissions": [{"id": sub, "form_id": form, "store_id": "s1",
            "status": "in_progress", "submitted_by": null, "updated_at": ago(300)}]}),
    )
    .await;
    assert_eq!(applied(&r, "submissions", &sub)["version"], 1);
    (ann, bob, sub)
}

fn sub_edit(sub: &str, status: &str, by: &str, version: i64, at: &str) -> Value {
    json!({"id": sub, "status": status, "submitted_by": by, "version": version, "updated_at": at})
}

const SUB_COLS: [&str; 2] = ["status", "submitted_by"];

#[tokio::test]
async fn latest_wins_newer_device_time_wins_when_pushed_second() {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;
    let (older, newer) = (ago(60), ago(30));

    // Ann (older edit) pushes first: version current, no conflict.
    let r = push_no_conflict(
        &ann,
        json!({"submissions": [sub_edit(&sub, "completed", "ann", 1, &older)]}),
    )
    .await;
    assert_eq!(applied(&r, "submissions", &sub)["version"], 2);
    let before = row(&app.pool, "submissions", &sub).await;

    // Bob saw version 1 too; his edit is newer: he wins.
    let bob_row = sub_edit(&sub, "in_progress", "bob", 1, &newer);
    let r = push_ok(&bob, json!({"submissions": [bob_row.clone()]})).await;
    assert_conflict(
        &r,
        "submissions",
        &sub,
        &bob_row,
        &before,
        "latest_wins",
        "client",
    );
    let won = applied(&r, "submissions", &sub);
    assert_eq!(won["version"], 3, "{r}");
    assert_eq!(won["submitted_by"], "bob");
    let stored = row(&app.pool, "submissions", &sub).await;
    assert_eq!(&stored, won, "applied must be the stored row");
    assert_eq!(
        values(&stored, &SUB_COLS),
        values(
            &json!({"status": "in_progress", "submitted_by": "bob"}),
            &SUB_COLS
        )
    );
    assert_eq!(parse(&stored["updated_at"]), parse(&json!(newer)));
}

#[tokio::test]
async fn latest_wins_newer_device_time_wins_when_pushed_first() {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;
    let (older, newer) = (ago(60), ago(30));

    // Bob (newer edit) pushes first.
    push_no_conflict(
        &bob,
        json!({"submissions": [sub_edit(&sub, "in_progress", "bob", 1, &newer)]}),
    )
    .await;
    let before = row(&app.pool, "submissions", &sub).await;
    assert_eq!(before["version"], 2);

    // Ann's older edit from version 1 arrives late: the server keeps Bob's.
    let ann_row = sub_edit(&sub, "completed", "ann", 1, &older);
    let r = push_ok(&ann, json!({"submissions": [ann_row.clone()]})).await;
    assert_conflict(
        &r,
        "submissions",
        &sub,
        &ann_row,
        &before,
        "latest_wins",
        "server",
    );
    // applied holds the winning server row, unchanged.
    assert_eq!(applied(&r, "submissions", &sub), &before, "{r}");
    assert_eq!(row(&app.pool, "submissions", &sub).await, before);
    assert_eq!(history(&app.pool, "submissions", &sub).await, 2);
}

#[tokio::test]
async fn latest_wins_on_answers_and_kpis_too() {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;
    let (answer, kpi) = (id(), id());
    push_no_conflict(
        &ann,
        json!({
            "submission_answers": [{"id": answer, "submission_id": sub, "value": "a", "updated_at": ago(200)}],
            "kpi_data": [{"id": kpi, "metric": "sales", "value": 1, "updated_at": ago(200)}],
        }),
    )
    .await;
    // Bob pushes the newer edits first; Ann's older ones from version 1 arrive late.
    push_no_conflict(
        &bob,
        json!({
            "submission_answers": [{"id": answer, "value": "bob", "version": 1, "updated_at": ago(20)}],
            "kpi_data": [{"id": kpi, "value": 2, "version": 1, "updated_at": ago(20)}],
        }),
    )
    .await;
    let r = push_ok(
        &ann,
        json!({
            "submission_answers": [{"id": answer, "value": "ann", "version": 1, "updated_at": ago(40)}],
            "kpi_data": [{"id": kpi, "value": 3, "version": 1, "updated_at": ago(40)}],
        }),
    )
    .await;
    let conflicts = r["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 2, "{r}");
    for c in conflicts {
        assert_eq!(
            (c["resolution"].clone(), c["winner"].clone()),
            (json!("latest_wins"), json!("server")),
            "{c}"
        );
    }
    assert_eq!(
        row(&app.pool, "submission_answers", &answer).await["value"],
        "bob"
    );
    assert_eq!(row(&app.pool, "kpi_data", &kpi).await["value"], 2);
}

/// Two edits from version 1 with the same device time `at`: the second one loses.
async fn assert_tie_goes_to_the_server(at: &str) {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;
    push_no_conflict(
        &ann,
        json!({"submissions": [sub_edit(&sub, "completed", "ann", 1, at)]}),
    )
    .await;
    let before = row(&app.pool, "submissions", &sub).await;
    let bob_row = sub_edit(&sub, "in_progress", "bob", 1, at);
    let r = push_ok(&bob, json!({"submissions": [bob_row.clone()]})).await;
    assert_conflict(
        &r,
        "submissions",
        &sub,
        &bob_row,
        &before,
        "latest_wins",
        "server",
    );
    assert_eq!(row(&app.pool, "submissions", &sub).await, before);
}

#[tokio::test]
async fn latest_wins_tie_goes_to_the_server() {
    assert_tie_goes_to_the_server(&ago(30)).await;
}

/// RFC 3339 allows any fraction; PostgreSQL keeps microseconds. Two devices
/// reporting the same nanosecond time still tie.
#[tokio::test]
async fn latest_wins_tie_with_nanosecond_device_times_goes_to_the_server() {
    let at = (Utc::now() - chrono::Duration::seconds(30))
        .with_nanosecond(123_456_001)
        .unwrap();
    assert_tie_goes_to_the_server(&at.to_rfc3339_opts(SecondsFormat::Nanos, true)).await;
}

#[tokio::test]
async fn a_device_clock_in_the_future_counts_as_the_server_clock_at_receipt() {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;

    // Ann's phone thinks it is 2099.
    let sent = Utc::now();
    let r = push_no_conflict(
        &ann,
        json!({"submissions": [sub_edit(&sub, "completed", "ann", 1, "2099-01-01T00:00:00Z")]}),
    )
    .await;
    let receipt = parse(&r["timestamp"]);
    let stored = row(&app.pool, "submissions", &sub).await;
    let stored_at = parse(&stored["updated_at"]);
    assert!(
        stored_at.year() < 2099,
        "a future device time must be capped at receipt, stored {stored_at}"
    );
    // The server's clock at receipt (PostgreSQL keeps microseconds).
    let us = chrono::Duration::microseconds(1);
    assert!(
        stored_at >= sent - us && stored_at <= Utc::now() + us,
        "stored updated_at {stored_at} is not the time of receipt"
    );
    assert_eq!(
        parse(&applied(&r, "submissions", &sub)["updated_at"]),
        stored_at
    );

    // Bob saw version 1 and edits after Ann's push was received, with a right clock.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bob_at = Utc::now();
    assert!(bob_at > receipt && bob_at > stored_at);
    let bob_row = sub_edit(&sub, "in_progress", "bob", 1, &micros(bob_at));
    let r = push_ok(&bob, json!({"submissions": [bob_row.clone()]})).await;
    assert_conflict(
        &r,
        "submissions",
        &sub,
        &bob_row,
        &stored,
        "latest_wins",
        "client",
    );
    let after = row(&app.pool, "submissions", &sub).await;
    assert_eq!(
        values(&after, &SUB_COLS),
        values(
            &json!({"status": "in_progress", "submitted_by": "bob"}),
            &SUB_COLS
        )
    );
    assert_eq!(after["version"], 3);

    // The 2099 phone edits again from a stale version. Received after Bob's edit,
    // it wins, but its time is stored as the receipt, not 2099...
    let before = after;
    let ann_row = sub_edit(&sub, "completed", "ann", 2, "2099-06-01T00:00:00Z");
    let r = push_ok(&ann, json!({"submissions": [ann_row.clone()]})).await;
    assert_conflict(
        &r,
        "submissions",
        &sub,
        &ann_row,
        &before,
        "latest_wins",
        "client",
    );
    let stored = row(&app.pool, "submissions", &sub).await;
    let stored_at = parse(&stored["updated_at"]);
    assert!(stored_at.year() < 2099, "stored {stored_at}");
    assert!(
        stored_at <= Utc::now() + us,
        "stored {stored_at} after receipt"
    );

    // ...so the next genuine edit, made after it, beats it again: no phone wins forever.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bob_row = sub_edit(&sub, "in_progress", "bob", 3, &micros(Utc::now()));
    let r = push_ok(&bob, json!({"submissions": [bob_row.clone()]})).await;
    assert_conflict(
        &r,
        "submissions",
        &sub,
        &bob_row,
        &stored,
        "latest_wins",
        "client",
    );
    assert_eq!(
        row(&app.pool, "submissions", &sub).await["submitted_by"],
        "bob"
    );
}

// ---------------------------------------------------------------------------
// manager_wins

#[tokio::test]
async fn manager_wins_between_two_managers_is_latest_wins_on_forms() {
    let app = TestApp::spawn().await;
    let m1 = app.manager("boss", "boss-phone").await;
    let m2 = app.manager("chief", "chief-phone").await;
    let (f1, f2) = (id(), id());
    push_no_conflict(
        &m1,
        json!({"forms": [{"id": f1, "title": "A"}, {"id": f2, "title": "B"}]}),
    )
    .await;

    // f1: chief writes an older edit first; boss's stale but newer edit wins.
    push_no_conflict(
        &m2,
        json!({"forms": [{"id": f1, "title": "chief", "version": 1, "updated_at": ago(60)}]}),
    )
    .await;
    let before = row(&app.pool, "forms", &f1).await;
    let boss_row = json!({"id": f1, "title": "boss", "version": 1, "updated_at": ago(30)});
    let r = push_ok(&m1, json!({"forms": [boss_row.clone()]})).await;
    assert_conflict(
        &r,
        "forms",
        &f1,
        &boss_row,
        &before,
        "manager_wins",
        "client",
    );
    assert_eq!(row(&app.pool, "forms", &f1).await["title"], "boss");

    // f2: chief writes the newer edit first; boss's stale older edit loses.
    push_no_conflict(
        &m2,
        json!({"forms": [{"id": f2, "title": "chief", "version": 1, "updated_at": ago(30)}]}),
    )
    .await;
    let before = row(&app.pool, "forms", &f2).await;
    let boss_row = json!({"id": f2, "title": "boss", "version": 1, "updated_at": ago(60)});
    let r = push_ok(&m1, json!({"forms": [boss_row.clone()]})).await;
    assert_conflict(
        &r,
        "forms",
        &f2,
        &boss_row,
        &before,
        "manager_wins",
        "server",
    );
    assert_eq!(applied(&r, "forms", &f2), &before);
    assert_eq!(row(&app.pool, "forms", &f2).await, before);
}

/// kpi_data under manager_wins: a manager, two store devices of s1, and a kpi row
/// created by the store at version 1.
async fn manager_wins_setup() -> (TestApp, Device, Device, Device) {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "manager_wins")])
        .spawn()
        .await;
    let boss = app.manager("boss", "boss-phone").await;
    let ann = app.store("ann", "s1", "ann-phone").await;
    let ann2 = app.login("ann", "ann-tablet").await;
    (app, boss, ann, ann2)
}

async fn new_kpi(dev: &Device) -> String {
    let kpi = id();
    let r = push_no_conflict(
        dev,
        json!({"kpi_data": [{"id": kpi, "store_id": "s1", "metric": "sales", "value": 10,
            "updated_at": ago(600)}]}),
    )
    .await;
    assert_eq!(applied(&r, "kpi_data", &kpi)["version"], 1);
    kpi
}

fn kpi_edit(kpi: &str, value: i64, version: i64, at: &str) -> Value {
    json!({"id": kpi, "value": value, "version": version, "updated_at": at})
}

#[tokio::test]
async fn manager_wins_a_managers_write_beats_a_stale_store_write_with_a_newer_clock() {
    let (app, boss, ann, _) = manager_wins_setup().await;
    let kpi = new_kpi(&ann).await;
    push_no_conflict(
        &boss,
        json!({"kpi_data": [kpi_edit(&kpi, 20, 1, &ago(120))]}),
    )
    .await;
    let before = row(&app.pool, "kpi_data", &kpi).await;

    let store_row = kpi_edit(&kpi, 30, 1, &ago(5));
    let r = push_ok(&ann, json!({"kpi_data": [store_row.clone()]})).await;
    assert_conflict(
        &r,
        "kpi_data",
        &kpi,
        &store_row,
        &before,
        "manager_wins",
        "server",
    );
    assert_eq!(applied(&r, "kpi_data", &kpi), &before);
    let after = row(&app.pool, "kpi_data", &kpi).await;
    assert_eq!(after, before);
    assert_eq!(after["value"], 20);
}

#[tokio::test]
async fn manager_wins_a_stale_managers_write_beats_the_stores_write_with_an_older_clock() {
    let (app, boss, ann, _) = manager_wins_setup().await;
    let kpi = new_kpi(&ann).await;
    push_no_conflict(&ann, json!({"kpi_data": [kpi_edit(&kpi, 30, 1, &ago(5))]})).await;
    let before = row(&app.pool, "kpi_data", &kpi).await;

    let boss_row = kpi_edit(&kpi, 20, 1, &ago(120));
    let r = push_ok(&boss, json!({"kpi_data": [boss_row.clone()]})).await;
    assert_conflict(
        &r,
        "kpi_data",
        &kpi,
        &boss_row,
        &before,
        "manager_wins",
        "client",
    );
    let won = applied(&r, "kpi_data", &kpi);
    assert_eq!(won["value"], 20, "{r}");
    assert_eq!(won["version"], 3, "{r}");
    assert_eq!(&row(&app.pool, "kpi_data", &kpi).await, won);
}

#[tokio::test]
async fn manager_wins_between_equals_latest_wins() {
    let (app, boss, ann, ann2) = manager_wins_setup().await;
    let chief = app.manager("chief", "chief-phone").await;

    // Two managers, the stale one newer: client.
    let kpi = new_kpi(&ann).await;
    push_no_conflict(
        &chief,
        json!({"kpi_data": [kpi_edit(&kpi, 1, 1, &ago(60))]}),
    )
    .await;
    let before = row(&app.pool, "kpi_data", &kpi).await;
    let boss_row = kpi_edit(&kpi, 2, 1, &ago(30));
    let r = push_ok(&boss, json!({"kpi_data": [boss_row.clone()]})).await;
    assert_conflict(
        &r,
        "kpi_data",
        &kpi,
        &boss_row,
        &before,
        "manager_wins",
        "client",
    );
    assert_eq!(row(&app.pool, "kpi_data", &kpi).await["value"], 2);

    // Two managers, the stale one older: server.
    let kpi = new_kpi(&ann).await;
    push_no_conflict(
        &chief,
        json!({"kpi_data": [kpi_edit(&kpi, 1, 1, &ago(30))]}),
    )
    .await;
    let before = row(&app.pool, "kpi_data", &kpi).await;
    let boss_row = kpi_edit(&kpi, 2, 1, &ago(60));
    let r = push_ok(&boss, json!({"kpi_data": [boss_row.clone()]})).await;
    assert_conflict(
        &r,
        "kpi_data",
        &kpi,
        &boss_row,
        &before,
        "manager_wins",
        "server",
    );
    assert_eq!(row(&app.pool, "kpi_data", &kpi).await, before);

    // Two store devices, both orders.
    let kpi = new_kpi(&ann).await;
    push_no_conflict(&ann2, json!({"kpi_data": [kpi_edit(&kpi, 1, 1, &ago(60))]})).await;
    let before = row(&app.pool, "kpi_data", &kpi).await;
    let ann_row = kpi_edit(&kpi, 2, 1, &ago(30));
    let r = push_ok(&ann, json!({"kpi_data": [ann_row.clone()]})).await;
    assert_conflict(
        &r,
        "kpi_data",
        &kpi,
        &ann_row,
        &before,
        "manager_wins",
        "client",
    );
    assert_eq!(row(&app.pool, "kpi_data", &kpi).await["value"], 2);

    let kpi = new_kpi(&ann).await;
    push_no_conflict(&ann2, json!({"kpi_data": [kpi_edit(&kpi, 1, 1, &ago(30))]})).await;
    let before = row(&app.pool, "kpi_data", &kpi).await;
    let ann_row = kpi_edit(&kpi, 2, 1, &ago(60));
    let r = push_ok(&ann, json!({"kpi_data": [ann_row.clone()]})).await;
    assert_conflict(
        &r,
        "kpi_data",
        &kpi,
        &ann_row,
        &before,
        "manager_wins",
        "server",
    );
    assert_eq!(row(&app.pool, "kpi_data", &kpi).await, before);
}

// ---------------------------------------------------------------------------
// server_wins (team, default) and client_wins

#[tokio::test]
async fn server_wins_keeps_the_server_row_against_a_stale_manager_write() {
    let app = TestApp::spawn().await;
    let m1 = app.manager("boss", "boss-phone").await;
    let m2 = app.manager("chief", "chief-phone").await;
    let member = id();
    push_no_conflict(
        &m1,
        json!({"team": [{"id": member, "store_id": "s1", "name": "Ann", "role": "cashier"}]}),
    )
    .await;
    push_no_conflict(
        &m2,
        json!({"team": [{"id": member, "name": "Ann B.", "version": 1, "updated_at": ago(120)}]}),
    )
    .await;
    let before = row(&app.pool, "team", &member).await;

    // Stale, and with a newer clock: still loses.
    let stale =
        json!({"id": member, "name": "Ann", "role": "lead", "version": 1, "updated_at": ago(1)});
    let r = push_ok(&m1, json!({"team": [stale.clone()]})).await;
    assert_conflict(
        &r,
        "team",
        &member,
        &stale,
        &before,
        "server_wins",
        "server",
    );
    assert_eq!(applied(&r, "team", &member), &before, "{r}");
    assert_eq!(row(&app.pool, "team", &member).await, before);
    assert_eq!(history(&app.pool, "team", &member).await, 2);

    // With the current version the same write applies.
    let current =
        json!({"id": member, "name": "Ann", "role": "lead", "version": 2, "updated_at": ago(1)});
    let r = push_no_conflict(&m1, json!({"team": [current]})).await;
    let stored = applied(&r, "team", &member);
    assert_eq!(
        (stored["role"].clone(), stored["version"].clone()),
        (json!("lead"), json!(3))
    );
}

#[tokio::test]
async fn client_wins_applies_a_stale_write_even_with_an_older_clock() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "client_wins"), ("team", "client_wins")])
        .spawn()
        .await;
    let boss = app.manager("boss", "boss-phone").await;
    let ann = app.store("ann", "s1", "ann-phone").await;
    let ann2 = app.login("ann", "ann-tablet").await;

    // Between two store devices.
    let kpi = new_kpi(&ann).await;
    push_no_conflict(&ann2, json!({"kpi_data": [kpi_edit(&kpi, 50, 1, &ago(5))]})).await;
    let before = row(&app.pool, "kpi_data", &kpi).await;
    let stale = kpi_edit(&kpi, 40, 1, &ago(300));
    let r = push_ok(&ann, json!({"kpi_data": [stale.clone()]})).await;
    assert_conflict(
        &r,
        "kpi_data",
        &kpi,
        &stale,
        &before,
        "client_wins",
        "client",
    );
    let won = applied(&r, "kpi_data", &kpi);
    assert_eq!(
        (won["value"].clone(), won["version"].clone()),
        (json!(40), json!(3))
    );
    assert_eq!(&row(&app.pool, "kpi_data", &kpi).await, won);

    // A store's stale write beats even a manager's (no role preference).
    push_no_conflict(&boss, json!({"kpi_data": [kpi_edit(&kpi, 60, 3, &ago(5))]})).await;
    let before = row(&app.pool, "kpi_data", &kpi).await;
    let stale = kpi_edit(&kpi, 70, 3, &ago(300));
    let r = push_ok(&ann2, json!({"kpi_data": [stale.clone()]})).await;
    assert_conflict(
        &r,
        "kpi_data",
        &kpi,
        &stale,
        &before,
        "client_wins",
        "client",
    );
    assert_eq!(row(&app.pool, "kpi_data", &kpi).await["value"], 70);

    // On team, between managers.
    let chief = app.manager("chief", "chief-phone").await;
    let member = id();
    push_no_conflict(
        &boss,
        json!({"team": [{"id": member, "store_id": "s1", "name": "Ann"}]}),
    )
    .await;
    push_no_conflict(
        &chief,
        json!({"team": [{"id": member, "name": "Chief's", "version": 1, "updated_at": ago(1)}]}),
    )
    .await;
    let before = row(&app.pool, "team", &member).await;
    let stale = json!({"id": member, "name": "Boss's", "version": 1, "updated_at": ago(100)});
    let r = push_ok(&boss, json!({"team": [stale.clone()]})).await;
    assert_conflict(
        &r,
        "team",
        &member,
        &stale,
        &before,
        "client_wins",
        "client",
    );
    assert_eq!(row(&app.pool, "team", &member).await["name"], "Boss's");
}

// ---------------------------------------------------------------------------
// No conflict

#[tokio::test]
async fn equal_values_are_not_a_conflict() {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;
    push_no_conflict(
        &ann,
        json!({"submissions": [sub_edit(&sub, "completed", "ann", 1, &ago(30))]}),
    )
    .await;
    let before = row(&app.pool, "submissions", &sub).await;

    // Bob, from version 1, makes the very same change (older or newer clock).
    for at in [ago(60), ago(1)] {
        let r = push_no_conflict(
            &bob,
            json!({"submissions": [sub_edit(&sub, "completed", "ann", 1, &at)]}),
        )
        .await;
        assert_eq!(applied(&r, "submissions", &sub)["version"], 2, "{r}");
        assert_eq!(row(&app.pool, "submissions", &sub).await, before);
    }
    assert_eq!(history(&app.pool, "submissions", &sub).await, 2);

    // Same under server_wins: a stale manager write equal to the server row.
    let m = app.login("boss", "boss-tablet").await;
    let member = id();
    push_no_conflict(
        &m,
        json!({"team": [{"id": member, "store_id": "s1", "name": "Ann"}]}),
    )
    .await;
    push_no_conflict(
        &m,
        json!({"team": [{"id": member, "name": "Ann B.", "version": 1}]}),
    )
    .await;
    let r = push_no_conflict(
        &m,
        json!({"team": [{"id": member, "name": "Ann B.", "version": 1, "updated_at": ago(1)}]}),
    )
    .await;
    assert_eq!(applied(&r, "team", &member)["version"], 2, "{r}");
}

#[tokio::test]
async fn no_conflict_when_the_devices_version_is_current() {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;
    push_no_conflict(
        &ann,
        json!({"submissions": [sub_edit(&sub, "completed", "ann", 1, &ago(10))]}),
    )
    .await;

    // Bob pulled version 2; his edit applies even with an older clock.
    let r = push_no_conflict(
        &bob,
        json!({"submissions": [sub_edit(&sub, "in_progress", "bob", 2, &ago(100))]}),
    )
    .await;
    let stored = applied(&r, "submissions", &sub);
    assert_eq!(stored["version"], 3, "{r}");
    assert_eq!(stored["submitted_by"], "bob");
    assert_eq!(&row(&app.pool, "submissions", &sub).await, stored);

    // Same on a server_wins table.
    let m = app.login("boss", "boss-tablet").await;
    let member = id();
    push_no_conflict(
        &m,
        json!({"team": [{"id": member, "store_id": "s1", "name": "Ann"}]}),
    )
    .await;
    let r = push_no_conflict(
        &m,
        json!({"team": [{"id": member, "name": "Ann B.", "version": 1, "updated_at": ago(100)}]}),
    )
    .await;
    assert_eq!(applied(&r, "team", &member)["name"], "Ann B.");
    assert_eq!(row(&app.pool, "team", &member).await["version"], 2);
}
