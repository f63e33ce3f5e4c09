//! Push (docs/contract.md §5): versions, exactly-once replays, row errors and
//! `stop_on_error`, parents before children, request-level errors (unknown table,
//! bad shape, too many rows, oversized or malformed bodies), gzip bodies and soft
//! deletes. Every push answer goes through `check_answer`, which asserts that
//! `success` is false exactly when `errors` is non-empty.
use crate::common::*;

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

/// Shape checks every push answer must pass, whatever it carries.
fn check_answer(body: &Value) {
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors must be a list: {body}"));
    assert_eq!(
        body["success"],
        json!(errors.is_empty()),
        "success must be false exactly when errors is non-empty: {body}"
    );
    assert!(body["applied"].is_object(), "applied: {body}");
    assert!(body["conflicts"].is_array(), "conflicts: {body}");
    assert!(body["timestamp"].is_string(), "timestamp: {body}");
    for e in errors {
        for key in ["table", "code", "message"] {
            assert!(e[key].is_string(), "row error lacks {key}: {e}");
        }
        assert!(
            e.get("record_id").is_some(),
            "row error lacks record_id: {e}"
        );
    }
}

/// Pushes `changes` (optionally with more top-level keys); asserts 200 and the answer shape.
async fn push(dev: &Device, changes: Value) -> Value {
    let body = dev.push(changes).await;
    check_answer(&body);
    body
}

async fn push_body(dev: &Device, extra: Value, changes: Value) -> (StatusCode, Value) {
    let mut body = json!({"device_id": dev.device_id, "timestamp": now(), "changes": changes});
    for (k, v) in extra.as_object().expect("extra is an object") {
        body[k] = v.clone();
    }
    let (status, resp) = dev.push_raw(body).await;
    if status == StatusCode::OK {
        check_answer(&resp);
    }
    (status, resp)
}

/// Sends raw bytes to the push route, gzip-compressed when `gzip`.
async fn push_bytes(dev: &Device, bytes: Vec<u8>, gzip: bool) -> (StatusCode, Value) {
    let mut req = dev
        .http
        .post(format!("{}/api/v1/sync/push", dev.base))
        .bearer_auth(&dev.token)
        .header("content-type", "application/json");
    let body = if gzip {
        req = req.header("content-encoding", "gzip");
        gz(&bytes)
    } else {
        bytes
    };
    read(req.body(body).send().await.expect("request")).await
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The row `id` of `table` in the answer's `applied`, if there.
fn applied<'a>(body: &'a Value, table: &str, id: &str) -> Option<&'a Value> {
    body["applied"][table]
        .as_array()?
        .iter()
        .find(|r| r["id"] == json!(id))
}

fn applied_count(body: &Value) -> usize {
    body["applied"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum()
}

/// (table, record_id, code) of every row error.
fn errors(body: &Value) -> Vec<(String, Value, String)> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["table"].as_str().unwrap().to_string(),
                e["record_id"].clone(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Asserts exactly one row error, for `id` of `table`, with `code`.
fn assert_one_error(body: &Value, table: &str, id: &str, code: &str) {
    assert_eq!(
        errors(body),
        vec![(table.to_string(), json!(id), code.to_string())],
        "{body}"
    );
    assert_eq!(body["success"], json!(false), "{body}");
}

/// The stored row (deleted or not), without tenant_id.
async fn db_row(app: &TestApp, table: &str, id: &str) -> Option<Value> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(t) - 'tenant_id' FROM {table} t WHERE id = $1::uuid"
    )))
    .bind(id)
    .fetch_optional(&app.pool)
    .await
    .expect("read row")
}

async fn db_version(app: &TestApp, table: &str, id: &str) -> Option<i64> {
    db_row(app, table, id)
        .await
        .map(|r| r["version"].as_i64().unwrap())
}

async fn history_count(app: &TestApp, table: &str, id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM sync_row_history WHERE table_name = $1 AND row_id = $2::uuid",
    )
    .bind(table)
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .expect("count history")
}

async fn count_rows(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&app.pool)
        .await
        .expect("count rows")
}

/// A manager device with one form already stored (version 1); returns the form id.
async fn with_form(dev: &Device, title: &str) -> String {
    let form = id();
    let r = push(dev, json!({"forms": [{"id": form, "title": title}]})).await;
    assert_eq!(applied(&r, "forms", &form).unwrap()["version"], 1, "{r}");
    form
}

#[tokio::test]
async fn new_rows_get_version_1_and_come_back_in_applied() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let (form, setting) = (id(), id());
    let r = push(
        &m,
        json!({
            "forms": [{"id": form, "title": "Daily check", "description": "opening", "version": 0,
                       "updated_at": now()}],
            "settings": [{"id": setting, "key": "theme", "value": {"dark": true}}],
        }),
    )
    .await;
    assert_eq!(r["success"], json!(true), "{r}");
    assert_eq!(r["conflicts"], json!([]), "{r}");
    assert_eq!(applied_count(&r), 2, "{r}");

    let f = applied(&r, "forms", &form).expect("form in applied");
    assert_eq!(f["version"], 1, "{f}");
    assert_eq!(f["title"], "Daily check");
    assert_eq!(f["description"], "opening");
    assert_eq!(f["deleted"], json!(false));
    assert!(f["updated_at"].is_string(), "{f}");
    assert!(f.get("tenant_id").is_none(), "tenant_id leaks: {f}");
    let s = applied(&r, "settings", &setting).expect("setting in applied");
    assert_eq!(s["version"], 1);
    assert_eq!(s["value"], json!({"dark": true}));

    // Applied rows are the stored rows.
    assert_eq!(db_row(&app, "forms", &form).await.as_ref(), Some(f));
    assert_eq!(db_row(&app, "settings", &setting).await.as_ref(), Some(s));
}

#[tokio::test]
async fn an_update_with_the_current_version_bumps_the_version() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = with_form(&m, "v1").await;

    let r = push(
        &m,
        json!({"forms": [{"id": form, "title": "v2", "version": 1, "updated_at": now()}]}),
    )
    .await;
    assert_eq!(r["conflicts"], json!([]), "{r}");
    let row = applied(&r, "forms", &form).expect("applied");
    assert_eq!(
        (row["version"].clone(), row["title"].clone()),
        (json!(2), json!("v2"))
    );

    let r = push(
        &m,
        json!({"forms": [{"id": form, "description": "more", "version": 2, "updated_at": now()}]}),
    )
    .await;
    let row = applied(&r, "forms", &form).expect("applied");
    assert_eq!(row["version"], 3, "{r}");
    // A partial row changes only the columns it names.
    assert_eq!(row["title"], "v2");
    assert_eq!(row["description"], "more");
    let stored = db_row(&app, "forms", &form).await.unwrap();
    assert_eq!(stored["version"], 3);
    assert_eq!(history_count(&app, "forms", &form).await, 3);
}

#[tokio::test]
async fn a_replayed_push_id_gets_the_same_answer_and_applies_once() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let other = app.login("boss", "boss-tablet").await;
    let existing = with_form(&m, "before").await;
    let new = id();
    let body = json!({
        "device_id": m.device_id,
        "push_id": "push-0001",
        "timestamp": now(),
        "changes": {"forms": [
            {"id": existing, "title": "after", "version": 1, "updated_at": now()},
            {"id": new, "title": "created"},
        ]},
    });

    let (s1, first) = m.push_raw(body.clone()).await;
    assert_eq!(s1, StatusCode::OK, "{first}");
    check_answer(&first);
    assert_eq!(first["success"], json!(true), "{first}");
    assert_eq!(applied(&first, "forms", &existing).unwrap()["version"], 2);
    assert_eq!(applied(&first, "forms", &new).unwrap()["version"], 1);

    // The response was lost; the device sends the very same push again.
    let (s2, second) = m.push_raw(body.clone()).await;
    assert_eq!(s2, StatusCode::OK, "{second}");
    assert_eq!(second, first, "a replay must get the same answer");
    assert_eq!(db_version(&app, "forms", &existing).await, Some(2));
    assert_eq!(history_count(&app, "forms", &existing).await, 2);
    assert_eq!(db_version(&app, "forms", &new).await, Some(1));
    assert_eq!(history_count(&app, "forms", &new).await, 1);

    // Even after someone else changed the row, a replay applies nothing.
    push(
        &other,
        json!({"forms": [{"id": existing, "title": "third", "version": 2}]}),
    )
    .await;
    let (s3, third) = m.push_raw(body).await;
    assert_eq!(s3, StatusCode::OK, "{third}");
    assert_eq!(
        third, first,
        "a later replay must still get the first answer"
    );
    let stored = db_row(&app, "forms", &existing).await.unwrap();
    assert_eq!(
        (stored["version"].clone(), stored["title"].clone()),
        (json!(3), json!("third"))
    );
    assert_eq!(history_count(&app, "forms", &existing).await, 3);

    // push_id is per device: another device may use the same id for its own push.
    let mine = id();
    let (s, r) = push_body(
        &other,
        json!({"push_id": "push-0001"}),
        json!({"forms": [{"id": mine, "title": "tablet"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(applied(&r, "forms", &mine).unwrap()["version"], 1, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_push_apply_once() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let existing = with_form(&m, "before").await;
    let new = id();
    let body = json!({
        "device_id": m.device_id,
        "push_id": "retry-while-in-flight",
        "timestamp": now(),
        "changes": {"forms": [
            {"id": existing, "title": "after", "version": 1},
            {"id": new, "title": "created"},
        ]},
    });
    // The device retries while the first attempt is still being processed.
    let (a, b, c) = tokio::join!(
        m.push_raw(body.clone()),
        m.push_raw(body.clone()),
        m.push_raw(body.clone())
    );
    for (s, r) in [&a, &b, &c] {
        assert_eq!(*s, StatusCode::OK, "{r}");
        check_answer(r);
    }
    assert_eq!(a.1, b.1, "every attempt gets the same answer");
    assert_eq!(a.1, c.1, "every attempt gets the same answer");
    assert_eq!(a.1["conflicts"], json!([]), "{}", a.1);
    assert_eq!(applied(&a.1, "forms", &existing).unwrap()["version"], 2);
    assert_eq!(db_version(&app, "forms", &existing).await, Some(2));
    assert_eq!(history_count(&app, "forms", &existing).await, 2);
    assert_eq!(history_count(&app, "forms", &new).await, 1);
}

#[tokio::test]
async fn a_reused_push_id_with_a_different_body_is_rejected() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let (a, b) = (id(), id());
    let (s, r) = push_body(
        &m,
        json!({"push_id": "p-42"}),
        json!({"forms": [{"id": a, "title": "A"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");

    let (s, r) = push_body(
        &m,
        json!({"push_id": "p-42"}),
        json!({"forms": [{"id": b, "title": "B"}]}),
    )
    .await;
    assert_error(s, &r, 409, "PUSH_ID_REUSED");
    assert_eq!(
        db_row(&app, "forms", &b).await,
        None,
        "the second body must not apply"
    );
    assert_eq!(db_version(&app, "forms", &a).await, Some(1));
}

/// A stored form, a new form and a bad row, in that order.
fn mixed_batch(existing: &str, new: &str, bad: &str) -> Value {
    json!({"forms": [
        {"id": existing, "title": "changed", "version": 1, "updated_at": now()},
        {"id": new, "title": "new"},
        {"id": bad, "title": "bad", "colour": "red"},
    ]})
}

#[tokio::test]
async fn stop_on_error_applies_nothing_when_one_row_fails() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let existing = with_form(&m, "original").await;
    let before = db_row(&app, "forms", &existing).await.unwrap();
    let (new, bad) = (id(), id());

    let (s, r) = push_body(
        &m,
        json!({"stop_on_error": true}),
        mixed_batch(&existing, &new, &bad),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_one_error(&r, "forms", &bad, "UNKNOWN_FIELD");
    assert_eq!(applied_count(&r), 0, "nothing may be reported applied: {r}");

    assert_eq!(db_row(&app, "forms", &existing).await, Some(before));
    assert_eq!(history_count(&app, "forms", &existing).await, 1);
    assert_eq!(db_row(&app, "forms", &new).await, None);
    assert_eq!(db_row(&app, "forms", &bad).await, None);
    assert_eq!(count_rows(&app, "forms").await, 1);
}

#[tokio::test]
async fn without_stop_on_error_good_rows_apply_and_only_the_bad_one_is_reported() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    for extra in [json!({}), json!({"stop_on_error": false})] {
        let existing = with_form(&m, "original").await;
        let (new, bad) = (id(), id());
        let (s, r) = push_body(&m, extra.clone(), mixed_batch(&existing, &new, &bad)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_one_error(&r, "forms", &bad, "UNKNOWN_FIELD");
        assert_eq!(applied_count(&r), 2, "{r}");
        assert_eq!(applied(&r, "forms", &existing).unwrap()["version"], 2);
        assert_eq!(applied(&r, "forms", &new).unwrap()["version"], 1);

        let stored = db_row(&app, "forms", &existing).await.unwrap();
        assert_eq!(
            (stored["title"].clone(), stored["version"].clone()),
            (json!("changed"), json!(2))
        );
        assert_eq!(db_version(&app, "forms", &new).await, Some(1));
        assert_eq!(db_row(&app, "forms", &bad).await, None, "{extra}");
    }
}

#[tokio::test]
async fn children_listed_before_their_parents_in_one_push_succeed() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let (form, section, field, sub, answer) = (id(), id(), id(), id(), id());
    // Raw text, so the order on the wire is exactly children first.
    let text = format!(
        r#"{{"device_id":"{dev}","timestamp":"{ts}","changes":{{
            "submission_answers":[{{"id":"{answer}","submission_id":"{sub}","field_id":"{field}","store_id":"s1","value":"yes"}}],
            "submissions":[{{"id":"{sub}","form_id":"{form}","store_id":"s1","status":"in_progress"}}],
            "fields":[{{"id":"{field}","form_id":"{form}","section_id":"{section}","label":"Clean?","field_type":"bool","required":true,"position":1}}],
            "form_sections":[{{"id":"{section}","form_id":"{form}","title":"Main","position":1}}],
            "forms":[{{"id":"{form}","title":"Daily"}}]
        }}}}"#,
        dev = m.device_id,
        ts = now(),
    );
    let (s, r) = push_bytes(&m, text.into_bytes(), false).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    check_answer(&r);
    assert_eq!(r["success"], json!(true), "{r}");
    for (table, row) in [
        ("forms", &form),
        ("form_sections", &section),
        ("fields", &field),
        ("submissions", &sub),
        ("submission_answers", &answer),
    ] {
        assert_eq!(
            applied(&r, table, row).unwrap()["version"],
            1,
            "{table}: {r}"
        );
        assert_eq!(db_version(&app, table, row).await, Some(1), "{table}");
    }

    // A store device, answers before their submission, under an existing form.
    let store = app.store("clerk", "s1", "clerk-phone").await;
    let (sub2, answer2) = (id(), id());
    let text = format!(
        r#"{{"device_id":"clerk-phone","timestamp":"{ts}","changes":{{
            "submission_answers":[{{"id":"{answer2}","submission_id":"{sub2}","field_id":"{field}","value":42}}],
            "submissions":[{{"id":"{sub2}","form_id":"{form}","status":"completed","submitted_by":"clerk"}}]
        }}}}"#,
        ts = now(),
    );
    let (s, r) = push_bytes(&store, text.into_bytes(), false).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    check_answer(&r);
    assert_eq!(r["success"], json!(true), "{r}");
    assert_eq!(applied(&r, "submissions", &sub2).unwrap()["store_id"], "s1");
    assert_eq!(
        applied(&r, "submission_answers", &answer2).unwrap()["value"],
        42
    );
}

#[tokio::test]
async fn a_child_whose_parent_is_missing_is_reference_missing() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = with_form(&m, "Daily").await;

    let (sub, answer) = (id(), id());
    let r = push(
        &m,
        json!({"submissions": [{"id": sub, "form_id": id(), "store_id": "s1"}]}),
    )
    .await;
    assert_one_error(&r, "submissions", &sub, "REFERENCE_MISSING");
    assert_eq!(db_row(&app, "submissions", &sub).await, None);

    let r = push(
        &m,
        json!({"submission_answers": [{"id": answer, "submission_id": id(), "store_id": "s1", "value": 1}]}),
    )
    .await;
    assert_one_error(&r, "submission_answers", &answer, "REFERENCE_MISSING");
    assert_eq!(db_row(&app, "submission_answers", &answer).await, None);

    // A nullable reference too: a field in a section that does not exist.
    let field = id();
    let r = push(
        &m,
        json!({"fields": [{"id": field, "form_id": form, "section_id": id(), "label": "x"}]}),
    )
    .await;
    assert_one_error(&r, "fields", &field, "REFERENCE_MISSING");
    assert_eq!(db_row(&app, "fields", &field).await, None);

    // A parent in the same push that fails itself does not count as present.
    let (bad_form, sub2) = (id(), id());
    let r = push(
        &m,
        json!({
            "forms": [{"id": bad_form, "title": "x", "colour": "red"}],
            "submissions": [{"id": sub2, "form_id": bad_form, "store_id": "s1"}],
        }),
    )
    .await;
    let errs = errors(&r);
    assert_eq!(errs.len(), 2, "{r}");
    assert!(
        errs.contains(&("forms".into(), json!(bad_form), "UNKNOWN_FIELD".into())),
        "{r}"
    );
    assert!(
        errs.contains(&(
            "submissions".into(),
            json!(sub2),
            "REFERENCE_MISSING".into()
        )),
        "{r}"
    );
    assert_eq!(db_row(&app, "submissions", &sub2).await, None);
}

#[tokio::test]
async fn an_unknown_column_is_an_error_and_the_row_is_not_stored() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = id();
    let r = push(
        &m,
        json!({"forms": [{"id": form, "title": "Daily", "colour": "red"}]}),
    )
    .await;
    assert_one_error(&r, "forms", &form, "UNKNOWN_FIELD");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "the message should name the column: {r}"
    );
    assert_eq!(applied_count(&r), 0, "{r}");
    assert_eq!(db_row(&app, "forms", &form).await, None);

    // On an update too: the known columns are not applied without the unknown one.
    let existing = with_form(&m, "kept").await;
    let r = push(
        &m,
        json!({"forms": [{"id": existing, "title": "lost?", "version": 1, "colour": "red"}]}),
    )
    .await;
    assert_one_error(&r, "forms", &existing, "UNKNOWN_FIELD");
    let stored = db_row(&app, "forms", &existing).await.unwrap();
    assert_eq!(
        (stored["title"].clone(), stored["version"].clone()),
        (json!("kept"), json!(1))
    );
}

#[tokio::test]
async fn wrong_types_are_validation_failed() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = with_form(&m, "Daily").await;
    let cases = [
        ("forms", json!({"title": 5})),
        ("forms", json!({"title": "t", "description": ["a"]})),
        (
            "form_sections",
            json!({"form_id": form, "title": "s", "position": "abc"}),
        ),
        ("form_sections", json!({"form_id": form, "position": 1.5})),
        ("form_sections", json!({"form_id": "not-a-uuid"})),
        (
            "fields",
            json!({"form_id": form, "label": "l", "required": "yes"}),
        ),
        (
            "kpi_data",
            json!({"store_id": "s1", "metric": "m", "value": "abc"}),
        ),
        ("kpi_data", json!({"store_id": 7, "metric": "m"})),
    ];
    for (table, mut row) in cases {
        let rid = id();
        row["id"] = json!(rid);
        let r = push(&m, json!({ table: [row.clone()] })).await;
        assert_one_error(&r, table, &rid, "VALIDATION_FAILED");
        assert_eq!(db_row(&app, table, &rid).await, None, "{table} {row}");
    }
    // An id that is not a UUID.
    let r = push(&m, json!({"forms": [{"id": "not-a-uuid", "title": "t"}]})).await;
    assert_one_error(&r, "forms", "not-a-uuid", "VALIDATION_FAILED");
}

#[tokio::test]
async fn a_missing_required_column_is_validation_failed() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    for (table, row) in [
        ("forms", json!({"description": "no title"})),
        ("forms", json!({"title": null})),
        ("kpi_data", json!({"store_id": "s1", "value": 3})),
        ("team", json!({"store_id": "s1"})),
        ("settings", json!({"value": 1})),
    ] {
        let rid = id();
        let mut row = row;
        row["id"] = json!(rid);
        let r = push(&m, json!({ table: [row.clone()] })).await;
        assert_one_error(&r, table, &rid, "VALIDATION_FAILED");
        assert_eq!(db_row(&app, table, &rid).await, None, "{table} {row}");
    }
}

#[tokio::test]
async fn a_status_outside_the_allowed_set_is_validation_failed() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = with_form(&m, "Daily").await;
    let (bad, good) = (id(), id());
    let r = push(
        &m,
        json!({"submissions": [
            {"id": bad, "form_id": form, "store_id": "s1", "status": "done"},
            {"id": good, "form_id": form, "store_id": "s1", "status": "completed"},
        ]}),
    )
    .await;
    assert_one_error(&r, "submissions", &bad, "VALIDATION_FAILED");
    assert_eq!(db_row(&app, "submissions", &bad).await, None);
    assert_eq!(
        applied(&r, "submissions", &good).unwrap()["status"],
        "completed"
    );

    // And on an update of an existing row.
    let r = push(
        &m,
        json!({"submissions": [{"id": good, "status": "archived", "version": 1}]}),
    )
    .await;
    assert_one_error(&r, "submissions", &good, "VALIDATION_FAILED");
    let stored = db_row(&app, "submissions", &good).await.unwrap();
    assert_eq!(
        (stored["status"].clone(), stored["version"].clone()),
        (json!("completed"), json!(1))
    );
}

#[tokio::test]
async fn an_unknown_table_fails_the_whole_push() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = id();
    let (s, r) = m
        .push_raw(
            json!({"device_id": m.device_id, "timestamp": now(), "changes": {
                "forms": [{"id": form, "title": "t"}],
                "nope": [{"id": id()}],
            }}),
        )
        .await;
    assert_error(s, &r, 400, "UNKNOWN_TABLE");
    assert_eq!(db_row(&app, "forms", &form).await, None);
    // Internal tables are not synced tables either.
    let (s, r) = m
        .push_raw(json!({"device_id": m.device_id, "timestamp": now(), "changes": {"users": []}}))
        .await;
    assert_error(s, &r, 400, "UNKNOWN_TABLE");
}

#[tokio::test]
async fn changes_that_are_not_an_object_of_lists_are_validation_failed() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = id();
    for changes in [
        json!([]),
        json!("forms"),
        json!(null),
        json!(5),
        json!({"forms": {"id": form, "title": "t"}}),
        json!({"forms": 5}),
        json!({"forms": "rows"}),
    ] {
        let (s, r) = m
            .push_raw(json!({"device_id": m.device_id, "timestamp": now(), "changes": changes}))
            .await;
        assert_error(s, &r, 400, "VALIDATION_FAILED");
    }
    // A good table next to a malformed one is not applied.
    let (s, r) = m
        .push_raw(
            json!({"device_id": m.device_id, "timestamp": now(), "changes": {
            "forms": [{"id": form, "title": "t"}], "settings": {"oops": true}}}),
        )
        .await;
    assert_error(s, &r, 400, "VALIDATION_FAILED");
    // No changes at all.
    let (s, r) = m
        .push_raw(json!({"device_id": m.device_id, "timestamp": now()}))
        .await;
    assert_error(s, &r, 400, "VALIDATION_FAILED");
    assert_eq!(db_row(&app, "forms", &form).await, None);
}

#[tokio::test]
async fn at_most_10000_rows_per_push() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let rows = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": id(), "key": format!("k{i}")}))
            .collect()
    };
    // Split across tables, the total counts.
    let (s, r) = m
        .push_raw(json!({"device_id": m.device_id, "timestamp": now(), "changes": {
            "settings": rows(6_000), "forms": (0..4_001).map(|_| json!({"id": id(), "title": "t"})).collect::<Vec<_>>(),
        }}))
        .await;
    assert_error(s, &r, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(count_rows(&app, "settings").await, 0);
    assert_eq!(count_rows(&app, "forms").await, 0);

    // Exactly 10,000 is allowed.
    let r = push(&m, json!({"settings": rows(10_000)})).await;
    assert_eq!(r["success"], json!(true));
    assert_eq!(applied_count(&r), 10_000);
    assert_eq!(count_rows(&app, "settings").await, 10_000);
}

#[tokio::test]
async fn a_body_over_the_limit_is_payload_too_large() {
    let app = TestApp::spawn_with(|c| c.body_limit = 64 * 1024).await;
    let m = app.manager("boss", "boss-phone").await;
    let form = id();
    let big = json!({"device_id": m.device_id, "timestamp": now(), "changes": {
        "forms": [{"id": form, "title": "big", "description": "x".repeat(100 * 1024)}]}});
    let (s, r) = m.push_raw(big.clone()).await;
    assert_error(s, &r, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(db_row(&app, "forms", &form).await, None);

    // The limit applies to the decompressed body: a small gzip that inflates past it.
    let (s, r) = push_bytes(&m, serde_json::to_vec(&big).unwrap(), true).await;
    assert_error(s, &r, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(db_row(&app, "forms", &form).await, None);

    // Under the limit on the same server: accepted.
    let r = push(
        &m,
        json!({"forms": [{"id": form, "title": "small", "description": "x".repeat(10 * 1024)}]}),
    )
    .await;
    assert_eq!(applied(&r, "forms", &form).unwrap()["version"], 1, "{r}");
}

#[tokio::test]
async fn malformed_json_is_validation_failed() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    for text in [
        "{",
        "not json",
        r#"{"device_id": "boss-phone", "changes": {"forms": [}"#,
        "",
    ] {
        let (s, r) = push_bytes(&m, text.as_bytes().to_vec(), false).await;
        assert_error(s, &r, 400, "VALIDATION_FAILED");
    }
    // Malformed JSON inside a gzip body, and a body that is not gzip at all.
    let (s, r) = push_bytes(&m, b"{\"changes\": [".to_vec(), true).await;
    assert_error(s, &r, 400, "VALIDATION_FAILED");
    let (s, r) = read(
        m.http
            .post(format!("{}/api/v1/sync/push", m.base))
            .bearer_auth(&m.token)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body("{\"changes\": {}}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(s.is_client_error(), "not gzip: {s} {r}");
    assert!(r["code"].is_string(), "error shape: {r}");
}

#[tokio::test]
async fn data_after_the_json_body_is_validation_failed() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = id();
    // A second document after the first would otherwise be dropped silently.
    let second = format!(
        r#"{{"device_id": "boss-phone", "changes": {{}}}}{{"device_id": "boss-phone", "changes": {{"forms": [{{"id": "{form}", "title": "t"}}]}}}}"#
    );
    for text in [
        r#"{"device_id": "boss-phone", "changes": {}} trailing"#.to_string(),
        second,
    ] {
        let (s, r) = push_bytes(&m, text.clone().into_bytes(), false).await;
        assert_error(s, &r, 400, "VALIDATION_FAILED");
    }
    assert_eq!(db_row(&app, "forms", &form).await, None);
}

#[tokio::test]
async fn a_gzip_request_body_is_accepted() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let form = id();
    let body = json!({"device_id": m.device_id, "timestamp": now(), "changes": {
        "forms": [{"id": form, "title": "zipped", "description": "d".repeat(4096)}]}});
    let (s, r) = push_bytes(&m, serde_json::to_vec(&body).unwrap(), true).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    check_answer(&r);
    assert_eq!(r["success"], json!(true), "{r}");
    assert_eq!(applied(&r, "forms", &form).unwrap()["title"], "zipped");
    let stored = db_row(&app, "forms", &form).await.unwrap();
    assert_eq!(stored["description"].as_str().unwrap().len(), 4096);
}

/// Pulls with `dev`'s cursor until `pred` holds for the received rows (the pull
/// horizon may lag a just-committed push by a moment); returns the rows of `table`.
async fn pull_until(dev: &mut Device, table: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let resp = dev.pull_page(None).await;
        if let Some(rows) = resp["changes"][table].as_array() {
            seen.extend(rows.iter().cloned());
        }
        if pred(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "not pulled in time; got {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_soft_delete_is_stored_and_pulled_by_another_device_as_a_tombstone() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let mut store = app.store("clerk", "s1", "clerk-phone").await;
    let form = with_form(&m, "to delete").await;
    let kept = with_form(&m, "kept").await;
    pull_until(&mut store, "forms", |rows| {
        [&form, &kept]
            .iter()
            .all(|f| rows.iter().any(|r| r["id"] == json!(f)))
    })
    .await;
    assert!(store.local_rows("forms").contains_key(&form));

    let r = push(
        &m,
        json!({"forms": [{"id": form, "deleted": true, "version": 1, "updated_at": now()}]}),
    )
    .await;
    assert_eq!(r["success"], json!(true), "{r}");
    let row = applied(&r, "forms", &form).expect("tombstone in applied");
    assert_eq!(
        (row["deleted"].clone(), row["version"].clone()),
        (json!(true), json!(2))
    );
    let stored = db_row(&app, "forms", &form)
        .await
        .expect("soft delete keeps the row");
    assert_eq!(
        (stored["deleted"].clone(), stored["version"].clone()),
        (json!(true), json!(2))
    );

    let rows = pull_until(&mut store, "forms", |rows| {
        rows.iter().any(|r| r["id"] == json!(form))
    })
    .await;
    let tomb = rows.iter().find(|r| r["id"] == json!(form)).unwrap();
    assert_eq!(tomb["deleted"], json!(true), "{tomb}");
    assert_eq!(tomb["version"], 2, "{tomb}");
    assert!(tomb["updated_at"].is_string(), "{tomb}");
    assert!(!store.local_rows("forms").contains_key(&form));
    assert!(store.local_rows("forms").contains_key(&kept));
}

#[tokio::test]
async fn deleting_a_row_the_server_never_had_is_not_an_error() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let store = app.store("clerk", "s1", "clerk-phone").await;
    let ghost = id();
    let r = push(
        &m,
        json!({"forms": [{"id": ghost, "deleted": true, "version": 3, "updated_at": now()}]}),
    )
    .await;
    assert_eq!(r["success"], json!(true), "{r}");
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(r["conflicts"], json!([]), "{r}");
    if let Some(row) = db_row(&app, "forms", &ghost).await {
        assert_eq!(
            row["deleted"],
            json!(true),
            "a ghost delete must not create a live row"
        );
    }
    let ghost2 = id();
    let r = push(
        &store,
        json!({"kpi_data": [{"id": ghost2, "deleted": true, "version": 1}]}),
    )
    .await;
    assert_eq!(r["success"], json!(true), "{r}");
    assert!(app.server_rows("kpi_data", "default").await.is_empty());
}

#[tokio::test]
async fn several_queued_edits_of_one_row_in_one_push_are_not_conflicts() {
    // An offline device queues a new team row and then an edit of it; both carry the
    // version it last saw (0). team is server_wins: were the second edit judged
    // against the first, the device's own edit would be lost.
    let app = TestApp::spawn().await;
    let boss = app.manager("boss", "boss-tablet").await;
    let member = id();
    let body = push(
        &boss,
        json!({"team": [
            {"id": member, "store_id": "s1", "name": "Ann", "role": "clerk", "version": 0},
            {"id": member, "name": "Ann Lee", "version": 0},
            {"id": member, "role": "lead", "version": 0},
        ]}),
    )
    .await;
    assert_eq!(body["conflicts"], json!([]), "{body}");
    let row = db_row(&app, "team", &member).await.expect("stored");
    assert_eq!(
        (row["name"].clone(), row["role"].clone()),
        (json!("Ann Lee"), json!("lead"))
    );
    assert_eq!(db_version(&app, "team", &member).await, Some(3));
}

/// Large pushes go through the set-based path in chunks of 1,000 rows; every row must
/// still get the answer it would get alone: new, updated, conflicting both ways,
/// edited twice, malformed, and (forcing the row-by-row fallback) refused by a
/// constraint or pointing at a missing parent.
#[tokio::test]
async fn a_large_mixed_push_gives_every_row_its_own_answer() {
    let app = TestApp::spawn().await;
    let m = app.manager("boss", "boss-phone").await;
    let s = app.store("clerk", "s1", "clerk-phone").await;
    let kpi = |id: &str, value: i64| json!({"id": id, "store_id": "s1", "metric": "sales", "value": value});
    let existing: Vec<String> = (0..300).map(|_| id()).collect();
    let rows: Vec<Value> = existing.iter().map(|i| kpi(i, 0)).collect();
    push(&m, json!({"kpi_data": rows})).await;
    // The store changes the first 100 after the manager's copy was taken.
    let rows: Vec<Value> = existing[..100]
        .iter()
        .map(|i| json!({"id": i, "value": 1, "version": 1}))
        .collect();
    push(&s, json!({"kpi_data": rows})).await;

    let fresh: Vec<String> = (0..1_197).map(|_| id()).collect();
    let (unknown, mistyped) = (id(), id());
    let mut rows: Vec<Value> = fresh.iter().map(|i| kpi(i, 5)).collect();
    // Stale edits: 50 newer than the store's (client wins), 50 older (server wins).
    for (n, i) in existing[..100].iter().enumerate() {
        let when = if n < 50 {
            now()
        } else {
            "2020-01-01T00:00:00Z".into()
        };
        rows.push(json!({"id": i, "value": 2, "version": 1, "updated_at": when}));
    }
    rows.extend(
        existing[100..]
            .iter()
            .map(|i| json!({"id": i, "value": 3, "version": 1})),
    );
    rows.push(json!({"id": unknown, "store_id": "s1", "metric": "m", "colour": "red"}));
    rows.push(json!({"id": mistyped, "store_id": "s1", "metric": "m", "value": "lots"}));
    // The first new row again, edited on top of its own version 1 from this push.
    rows.push(json!({"id": fresh[0], "value": 6, "version": 1}));
    assert_eq!(rows.len(), 1_500);

    let history_before = count_rows(&app, "sync_row_history").await;
    let r = push(&m, json!({"kpi_data": rows})).await;
    let mut errs = errors(&r);
    errs.sort_by_key(|e| e.2.clone());
    assert_eq!(
        errs,
        vec![
            ("kpi_data".into(), json!(unknown), "UNKNOWN_FIELD".into()),
            (
                "kpi_data".into(),
                json!(mistyped),
                "VALIDATION_FAILED".into()
            ),
        ],
        "{r}"
    );
    let conflicts = r["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 100);
    let client_wins = conflicts.iter().filter(|c| c["winner"] == "client").count();
    assert_eq!(client_wins, 50, "{conflicts:?}");
    // 1,197 new + 1 second edit + 100 stale edits (kept or written) + 200 updates.
    assert_eq!(applied_count(&r), 1_498);

    assert_eq!(db_version(&app, "kpi_data", &fresh[0]).await, Some(2));
    assert_eq!(db_version(&app, "kpi_data", &fresh[1_196]).await, Some(1));
    assert_eq!(
        db_version(&app, "kpi_data", &existing[0]).await,
        Some(3),
        "client won"
    );
    assert_eq!(
        db_version(&app, "kpi_data", &existing[99]).await,
        Some(2),
        "server won"
    );
    assert_eq!(db_version(&app, "kpi_data", &existing[299]).await, Some(2));
    assert_eq!(
        db_row(&app, "kpi_data", &existing[99]).await.unwrap()["value"],
        json!(1),
        "the server's value stays"
    );
    assert_eq!(db_row(&app, "kpi_data", &unknown).await, None);
    // One history entry per written version: 1,197 + 1 + 50 + 200.
    assert_eq!(
        count_rows(&app, "sync_row_history").await - history_before,
        1_448
    );

    // A constraint PostgreSQL enforces, and a missing parent, among 500 children.
    let form = with_form(&m, "Daily").await;
    let subs: Vec<String> = (0..500).map(|_| id()).collect();
    let mut rows: Vec<Value> = subs
        .iter()
        .map(|i| json!({"id": i, "form_id": form, "store_id": "s1", "status": "completed"}))
        .collect();
    rows[200]["status"] = json!("done");
    rows[300]["form_id"] = json!(id());
    let r = push(&m, json!({"submissions": rows})).await;
    let mut errs = errors(&r);
    errs.sort_by_key(|e| e.2.clone());
    assert_eq!(
        errs,
        vec![
            (
                "submissions".into(),
                json!(subs[300]),
                "REFERENCE_MISSING".into()
            ),
            (
                "submissions".into(),
                json!(subs[200]),
                "VALIDATION_FAILED".into()
            ),
        ],
        "{r}"
    );
    assert_eq!(applied_count(&r), 498);
    assert_eq!(count_rows(&app, "submissions").await, 498);
}
