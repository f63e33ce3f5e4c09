//! Conflict rules (docs/contract.md §5, docs/conflicts.md), each from both sides,
//! over HTTP. Default Insight rules: forms and the other form tables manager_wins,
//! team server_wins, submissions/submission_answers/kpi_data latest_wins. Rules no
//! default table uses (manager_wins on a table both roles write, client_wins) run on
//! a server whose `sync_tables` was changed in SQL before it started
//! (`TestApp::builder().rules(..)`).
//!
//! Most tests are one [`Clash`]: a fresh write by one device, then a stale write by
//! another from the version both saw, with the conflict report and the stored row
//! checked.
use crate::common::*;

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

// ---------------------------------------------------------------------------
// The scenario: a fresh write, then a stale one from the version both devices saw.

/// A write: the device that pushes it and the row it sends.
type Write<'a> = (&'a Device, Value);

/// `fresh` is pushed first (no conflict), then `stale`, from the same old version,
/// onto the same row of `table` (the rows' `id`).
struct Clash<'a> {
    table: &'a str,
    fresh: Write<'a>,
    stale: Write<'a>,
}

/// What the stale push left.
struct Outcome {
    /// The stale push's answer.
    answer: Value,
    /// The row in its `applied`.
    applied: Value,
    /// The stored row before the stale push (the conflict's `server_data`).
    before: Value,
    /// The stored row after it.
    after: Value,
}

impl Clash<'_> {
    /// Pushes the fresh write (no conflict; its `applied` row is the stored row), then
    /// the stale one, asserting what [`push_stale`] asserts.
    async fn resolves(self, app: &TestApp, rule: &str, winner: &str) -> Outcome {
        let (dev, fresh) = self.fresh;
        let id = fresh["id"].as_str().expect("row id").to_string();
        let r = push_no_conflict(dev, json!({ self.table: [fresh] })).await;
        assert_eq!(
            applied(&r, self.table, &id),
            &row(&app.pool, self.table, &id).await,
            "applied must be the stored row"
        );
        push_stale(app, self.table, self.stale, rule, winner).await
    }
}

/// Pushes `stale`, a write from a version older than the stored row's, and asserts
/// the one conflict reported (`client_data` is the row sent, `server_data` the stored
/// row before the push, `resolution` is `rule`, and `winner`) and the outcome: when
/// the server wins the stored row is unchanged and `applied` shows it; when the client
/// wins the row sent is stored (its values; `version` and `updated_at` are the
/// server's) and `applied` is the stored row.
async fn push_stale(
    app: &TestApp,
    table: &str,
    (dev, stale): Write<'_>,
    rule: &str,
    winner: &str,
) -> Outcome {
    let id = stale["id"].as_str().expect("row id").to_string();
    let before = row(&app.pool, table, &id).await;
    let answer = push_ok(dev, json!({ table: [stale.clone()] })).await;
    assert_conflict(&answer, table, &id, &stale, &before, rule, winner);
    let applied = applied(&answer, table, &id).clone();
    let after = row(&app.pool, table, &id).await;
    match winner {
        "server" => {
            assert_eq!(applied, before, "applied must be the server row: {answer}");
            assert_eq!(after, before, "the server row must not change");
        }
        "client" => {
            assert_eq!(applied, after, "applied must be the stored row: {answer}");
            for (col, sent) in stale.as_object().expect("row object") {
                if col != "version" && col != "updated_at" {
                    assert_eq!(&after[col], sent, "stored {col}: {after}");
                }
            }
        }
        other => panic!("no winner {other}"),
    }
    Outcome {
        answer,
        applied,
        before,
        after,
    }
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

#[tokio::test]
async fn latest_wins_newer_device_time_wins_when_pushed_second() {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;
    let (older, newer) = (ago(60), ago(30));

    // Ann (older edit) pushes first: version current, no conflict. Bob saw version 1
    // too; his edit is newer: he wins.
    let c = Clash {
        table: "submissions",
        fresh: (&ann, sub_edit(&sub, "completed", "ann", 1, &older)),
        stale: (&bob, sub_edit(&sub, "in_progress", "bob", 1, &newer)),
    }
    .resolves(&app, "latest_wins", "client")
    .await;
    assert_eq!(c.before["version"], 2);
    assert_eq!(c.applied["version"], 3, "{}", c.answer);
    assert_eq!(parse(&c.after["updated_at"]), parse(&json!(newer)));
}

#[tokio::test]
async fn latest_wins_newer_device_time_wins_when_pushed_first() {
    let app = TestApp::spawn().await;
    let (ann, bob, sub) = submission_setup(&app).await;
    let (older, newer) = (ago(60), ago(30));

    // Bob (newer edit) pushes first; Ann's older edit from version 1 arrives late:
    // the server keeps Bob's.
    let c = Clash {
        table: "submissions",
        fresh: (&bob, sub_edit(&sub, "in_progress", "bob", 1, &newer)),
        stale: (&ann, sub_edit(&sub, "completed", "ann", 1, &older)),
    }
    .resolves(&app, "latest_wins", "server")
    .await;
    assert_eq!(c.before["version"], 2);
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
    Clash {
        table: "submissions",
        fresh: (&ann, sub_edit(&sub, "completed", "ann", 1, at)),
        stale: (&bob, sub_edit(&sub, "in_progress", "bob", 1, at)),
    }
    .resolves(&app, "latest_wins", "server")
    .await;
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
    let bobs = push_stale(
        &app,
        "submissions",
        (&bob, bob_row),
        "latest_wins",
        "client",
    )
    .await;
    assert_eq!(bobs.before, stored);
    assert_eq!(bobs.after["version"], 3);

    // The 2099 phone edits again from a stale version. Received after Bob's edit,
    // it wins, but its time is stored as the receipt, not 2099...
    let ann_row = sub_edit(&sub, "completed", "ann", 2, "2099-06-01T00:00:00Z");
    let anns = push_stale(
        &app,
        "submissions",
        (&ann, ann_row),
        "latest_wins",
        "client",
    )
    .await;
    assert_eq!(anns.before, bobs.after);
    let stored_at = parse(&anns.after["updated_at"]);
    assert!(stored_at.year() < 2099, "stored {stored_at}");
    assert!(
        stored_at <= Utc::now() + us,
        "stored {stored_at} after receipt"
    );

    // ...so the next genuine edit, made after it, beats it again: no phone wins forever.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bob_row = sub_edit(&sub, "in_progress", "bob", 3, &micros(Utc::now()));
    let c = push_stale(
        &app,
        "submissions",
        (&bob, bob_row),
        "latest_wins",
        "client",
    )
    .await;
    assert_eq!(c.before, anns.after);
    assert_eq!(c.after["submitted_by"], "bob");
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
    let form = |id: &str, title: &str, at: String| json!({"id": id, "title": title, "version": 1, "updated_at": at});

    // f1: chief writes an older edit first; boss's stale but newer edit wins.
    Clash {
        table: "forms",
        fresh: (&m2, form(&f1, "chief", ago(60))),
        stale: (&m1, form(&f1, "boss", ago(30))),
    }
    .resolves(&app, "manager_wins", "client")
    .await;

    // f2: chief writes the newer edit first; boss's stale older edit loses.
    Clash {
        table: "forms",
        fresh: (&m2, form(&f2, "chief", ago(30))),
        stale: (&m1, form(&f2, "boss", ago(60))),
    }
    .resolves(&app, "manager_wins", "server")
    .await;
}

/// kpi_data under manager_wins: a manager and two store devices of s1 (ann's phone
/// and tablet).
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

/// A kpi row of store s1 created by `dev`, at version 1.
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
    let c = Clash {
        table: "kpi_data",
        fresh: (&boss, kpi_edit(&kpi, 20, 1, &ago(120))),
        stale: (&ann, kpi_edit(&kpi, 30, 1, &ago(5))),
    }
    .resolves(&app, "manager_wins", "server")
    .await;
    assert_eq!(c.after["value"], 20);
}

#[tokio::test]
async fn manager_wins_a_stale_managers_write_beats_the_stores_write_with_an_older_clock() {
    let (app, boss, ann, _) = manager_wins_setup().await;
    let kpi = new_kpi(&ann).await;
    let c = Clash {
        table: "kpi_data",
        fresh: (&ann, kpi_edit(&kpi, 30, 1, &ago(5))),
        stale: (&boss, kpi_edit(&kpi, 20, 1, &ago(120))),
    }
    .resolves(&app, "manager_wins", "client")
    .await;
    assert_eq!(c.applied["version"], 3, "{}", c.answer);
}

#[tokio::test]
async fn manager_wins_between_equals_latest_wins() {
    let (app, boss, ann, ann2) = manager_wins_setup().await;
    let chief = app.manager("chief", "chief-phone").await;

    // (fresh writer, stale writer, device times of the fresh and the stale write,
    // winner): two managers, then two store devices, the stale one newer or older.
    for (fresh_by, stale_by, fresh_at, stale_at, winner) in [
        (&chief, &boss, 60, 30, "client"),
        (&chief, &boss, 30, 60, "server"),
        (&ann2, &ann, 60, 30, "client"),
        (&ann2, &ann, 30, 60, "server"),
    ] {
        let kpi = new_kpi(&ann).await;
        Clash {
            table: "kpi_data",
            fresh: (fresh_by, kpi_edit(&kpi, 1, 1, &ago(fresh_at))),
            stale: (stale_by, kpi_edit(&kpi, 2, 1, &ago(stale_at))),
        }
        .resolves(&app, "manager_wins", winner)
        .await;
    }
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

    // Stale, and with a newer clock: still loses.
    Clash {
        table: "team",
        fresh: (
            &m2,
            json!({"id": member, "name": "Ann B.", "version": 1, "updated_at": ago(120)}),
        ),
        stale: (
            &m1,
            json!({"id": member, "name": "Ann", "role": "lead", "version": 1, "updated_at": ago(1)}),
        ),
    }
    .resolves(&app, "server_wins", "server")
    .await;
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
    let c = Clash {
        table: "kpi_data",
        fresh: (&ann2, kpi_edit(&kpi, 50, 1, &ago(5))),
        stale: (&ann, kpi_edit(&kpi, 40, 1, &ago(300))),
    }
    .resolves(&app, "client_wins", "client")
    .await;
    assert_eq!(c.applied["version"], 3);

    // A store's stale write beats even a manager's (no role preference).
    Clash {
        table: "kpi_data",
        fresh: (&boss, kpi_edit(&kpi, 60, 3, &ago(5))),
        stale: (&ann2, kpi_edit(&kpi, 70, 3, &ago(300))),
    }
    .resolves(&app, "client_wins", "client")
    .await;

    // On team, between managers.
    let chief = app.manager("chief", "chief-phone").await;
    let member = id();
    push_no_conflict(
        &boss,
        json!({"team": [{"id": member, "store_id": "s1", "name": "Ann"}]}),
    )
    .await;
    Clash {
        table: "team",
        fresh: (
            &chief,
            json!({"id": member, "name": "Chief's", "version": 1, "updated_at": ago(1)}),
        ),
        stale: (
            &boss,
            json!({"id": member, "name": "Boss's", "version": 1, "updated_at": ago(100)}),
        ),
    }
    .resolves(&app, "client_wins", "client")
    .await;
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
