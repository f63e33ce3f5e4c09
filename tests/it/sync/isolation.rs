//! Isolation (docs/architecture.md (invariants), docs/contract.md §4): a device sees
//! and touches only its tenant's rows, and within it only what its role and store
//! allow; nothing of another tenant leaks through errors.
use crate::common::*;

use std::collections::{BTreeMap, BTreeSet};

use nas_sync::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const STORE_SCOPED: [&str; 4] = ["team", "submissions", "submission_answers", "kpi_data"];
const SHARED_READ: [&str; 4] = ["forms", "form_sections", "fields", "settings"];
const TENANT_B: &str = "tenant-b";

/// Ids of the rows seeded for one tenant, with the marker every text value carries.
struct Seed {
    tag: String,
    form: String,
    section: String,
    field: String,
    template: String,
    setting: String,
    /// store -> id, for each store-scoped table
    team: BTreeMap<&'static str, String>,
    submissions: BTreeMap<&'static str, String>,
    answers: BTreeMap<&'static str, String>,
    kpi: BTreeMap<&'static str, String>,
}

/// Pushes one row of every table (and one per store of each store-scoped table) as
/// `manager`; every text value contains a unique marker.
async fn seed(manager: &Device, stores: &[&'static str]) -> Seed {
    let tag = format!("secret-{}", uuid::Uuid::new_v4().simple());
    let per_store =
        || -> BTreeMap<&'static str, String> { stores.iter().map(|s| (*s, id())).collect() };
    let s = Seed {
        tag: tag.clone(),
        form: id(),
        section: id(),
        field: id(),
        template: id(),
        setting: id(),
        team: per_store(),
        submissions: per_store(),
        answers: per_store(),
        kpi: per_store(),
    };
    let mut changes = json!({
        "forms": [{"id": s.form, "title": format!("form {tag}"), "description": format!("desc {tag}")}],
        "form_sections": [{"id": s.section, "form_id": s.form, "title": format!("section {tag}"), "position": 1}],
        "fields": [{"id": s.field, "form_id": s.form, "section_id": s.section,
                    "label": format!("label {tag}"), "field_type": "text", "required": true, "position": 1}],
        "form_templates": [{"id": s.template, "name": format!("template {tag}"), "definition": {"tag": tag}}],
        "settings": [{"id": s.setting, "key": format!("key {tag}"), "value": {"tag": tag}}],
        "team": [], "submissions": [], "submission_answers": [], "kpi_data": [],
    });
    for store in stores {
        changes["team"].as_array_mut().unwrap().push(json!({
            "id": s.team[store], "store_id": store, "name": format!("member {tag}"), "role": "clerk"}));
        changes["submissions"].as_array_mut().unwrap().push(json!({
            "id": s.submissions[store], "form_id": s.form, "store_id": store,
            "status": "in_progress", "submitted_by": format!("by {tag}")}));
        changes["submission_answers"]
            .as_array_mut()
            .unwrap()
            .push(json!({
            "id": s.answers[store], "submission_id": s.submissions[store], "field_id": s.field,
            "store_id": store, "value": {"answer": tag}}));
        changes["kpi_data"].as_array_mut().unwrap().push(json!({
            "id": s.kpi[store], "store_id": store, "metric": format!("metric {tag}"),
            "value": 12.5, "period": "2024-05"}));
    }
    let body = manager.push(changes).await;
    assert_eq!(body["success"], true, "seed push failed: {body}");
    let stored: usize = body["applied"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().unwrap().len())
        .sum();
    assert_eq!(stored, 5 + 4 * stores.len(), "seed push: {body}");
    s
}

/// Tenant `default` with a manager and stores s1 and s2; tenant-b with a manager and
/// a store also called s1.
struct World {
    app: TestApp,
    ann: Device,
    s1: Device,
    s2: Device,
    bob: Device,
    b_s1: Device,
    a: Seed,
    b: Seed,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let ann = app.manager("ann", "ann-tablet").await;
    let s1 = app.store("store-one", "s1", "s1-phone").await;
    let s2 = app.store("store-two", "s2", "s2-phone").await;
    app.add_user("bob", Role::Manager, None, TENANT_B).await;
    app.add_user("b-store-one", Role::Store, Some("s1"), TENANT_B)
        .await;
    let bob = app.login("bob", "bob-tablet").await;
    let b_s1 = app.login("b-store-one", "b-s1-phone").await;
    let a = seed(&ann, &["s1", "s2"]).await;
    let b = seed(&bob, &["s1", "s2"]).await;
    World {
        app,
        ann,
        s1,
        s2,
        bob,
        b_s1,
        a,
        b,
    }
}

/// Pulls until caught up, returning every page's body as text too.
async fn sync_down_text(dev: &mut Device) -> String {
    let mut text = String::new();
    loop {
        let page = dev.pull_page(None).await;
        text.push_str(&page.to_string());
        if page["has_more"] == json!(false) {
            return text;
        }
    }
}

/// Pushes and returns the status and the raw body text.
async fn push_text(dev: &Device, changes: Value) -> (StatusCode, String) {
    let resp = dev
        .http
        .post(format!("{}/api/v1/sync/push", dev.base))
        .bearer_auth(&dev.token)
        .json(&json!({"device_id": dev.device_id, "timestamp": now(), "changes": changes}))
        .send()
        .await
        .expect("push request");
    let status = resp.status();
    (status, resp.text().await.expect("push body"))
}

fn ids(rows: &BTreeMap<String, Value>) -> BTreeSet<String> {
    rows.keys().cloned().collect()
}

/// Server rows of `table` in `tenant` whose store is `store`.
async fn store_rows(
    app: &TestApp,
    table: &str,
    tenant: &str,
    store: &str,
) -> BTreeMap<String, Value> {
    app.server_rows(table, tenant)
        .await
        .into_iter()
        .filter(|(_, r)| r["store_id"] == store)
        .collect()
}

/// The stored row with this id in any tenant, with its tenant.
async fn raw_row(app: &TestApp, table: &str, id: &str) -> Option<Value> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(t) FROM {table} t WHERE id = $1::uuid"
    )))
    .bind(id)
    .fetch_optional(&app.pool)
    .await
    .expect("read row")
}

/// Asserts a push answered 200 with exactly one row error of `code` for `record`, and
/// applied nothing.
fn assert_row_error(body: &Value, table: &str, record: &str, code: &str) {
    assert_eq!(body["success"], false, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["code"], code, "{body}");
    assert_eq!(errors[0]["table"], table, "{body}");
    assert_eq!(errors[0]["record_id"], record, "{body}");
    let applied: usize = body["applied"]
        .as_object()
        .map_or(0, |m| m.values().map(|v| v.as_array().unwrap().len()).sum());
    assert_eq!(applied, 0, "a failed row was reported applied: {body}");
}

const ALL_TABLES: [&str; 9] = [
    "forms",
    "form_sections",
    "fields",
    "form_templates",
    "settings",
    "team",
    "submissions",
    "submission_answers",
    "kpi_data",
];

#[tokio::test]
async fn managers_never_see_another_tenant() {
    let mut w = world().await;
    let text_a = sync_down_text(&mut w.ann).await;
    let text_b = sync_down_text(&mut w.bob).await;

    for table in ALL_TABLES {
        let server_a = w.app.server_rows(table, "default").await;
        let server_b = w.app.server_rows(table, TENANT_B).await;
        assert!(!server_a.is_empty() && !server_b.is_empty(), "{table}");
        assert_eq!(
            w.ann.local_rows(table),
            server_a,
            "manager A's copy of {table}"
        );
        assert_eq!(
            w.bob.local_rows(table),
            server_b,
            "manager B's copy of {table}"
        );
    }
    assert!(
        !text_a.contains(&w.b.tag),
        "tenant A's pull carried tenant B data"
    );
    assert!(
        !text_b.contains(&w.a.tag),
        "tenant B's pull carried tenant A data"
    );
    assert!(text_a.contains(&w.a.tag));

    // New writes in tenant B never reach tenant A's delta pulls.
    let late = id();
    let body = w
        .bob
        .push(json!({"kpi_data": [{"id": late, "store_id": "s1", "metric": format!("late {}", w.b.tag)}]}))
        .await;
    assert_eq!(body["success"], true, "{body}");
    let mut rows = 0;
    let mut text = String::new();
    loop {
        let page = w.ann.pull_page(None).await;
        text.push_str(&page.to_string());
        rows += page["changes"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_array().unwrap().len())
            .sum::<usize>();
        if page["has_more"] == json!(false) {
            break;
        }
    }
    assert_eq!(rows, 0, "tenant A received tenant B's change: {text}");
    w.bob.sync_down().await;
    assert!(w.bob.local_rows("kpi_data").contains_key(&late));

    // Status covers the caller's tenant only.
    let (s, st) = w.ann.get("/api/v1/sync/status").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    let last = st["last_sync"].as_object().expect("last_sync");
    assert!(last.contains_key("ann-tablet"), "{st}");
    assert!(
        !last.contains_key("bob-tablet") && !last.contains_key("b-s1-phone"),
        "status lists another tenant's devices: {st}"
    );
}

#[tokio::test]
async fn store_devices_read_only_their_store() {
    let mut w = world().await;
    let mut texts = Vec::new();
    for dev in [&mut w.s1, &mut w.s2, &mut w.b_s1] {
        texts.push(sync_down_text(dev).await);
    }
    for (dev, tenant, store) in [
        (&w.s1, "default", "s1"),
        (&w.s2, "default", "s2"),
        (&w.b_s1, TENANT_B, "s1"),
    ] {
        for table in STORE_SCOPED {
            let want = store_rows(&w.app, table, tenant, store).await;
            assert_eq!(want.len(), 1, "{table} of {tenant}/{store}");
            assert_eq!(
                dev.local_rows(table),
                want,
                "{} ({tenant}/{store}) copy of {table}",
                dev.device_id
            );
        }
        for table in SHARED_READ {
            let want = w.app.server_rows(table, tenant).await;
            assert!(!want.is_empty());
            assert_eq!(
                dev.local_rows(table),
                want,
                "{} copy of {table}",
                dev.device_id
            );
        }
        assert!(
            dev.local_rows("form_templates").is_empty(),
            "a store device received form_templates"
        );
    }
    // Store s1 of tenant-b shares a store id with s1 of default, and still sees none
    // of it.
    assert!(
        !texts[2].contains(&w.a.tag),
        "tenant B's store saw tenant A"
    );
    assert!(
        !texts[0].contains(&w.b.tag),
        "tenant A's store saw tenant B"
    );
    assert!(
        !texts[0].contains(&w.a.kpi["s2"]),
        "store s1 saw store s2's kpi row"
    );

    // Delta pulls stay scoped too.
    let (k1, k2) = (id(), id());
    let body = w
        .ann
        .push(json!({"kpi_data": [
            {"id": k1, "store_id": "s1", "metric": "sales"},
            {"id": k2, "store_id": "s2", "metric": "sales"}]}))
        .await;
    assert_eq!(body["success"], true, "{body}");
    w.s1.sync_down().await;
    let kpi = w.s1.local_rows("kpi_data");
    assert!(kpi.contains_key(&k1));
    assert!(!kpi.contains_key(&k2), "store s1 pulled store s2's new row");

    // Naming the tables explicitly changes nothing.
    settle(&w.app.pool).await;
    let (s, b) =
        w.s2.post(
            "/api/v1/sync/pull",
            &json!({"device_id": "s2-phone", "tables": ["kpi_data", "team"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for table in ["kpi_data", "team"] {
        for row in b["changes"][table].as_array().unwrap() {
            assert_eq!(row["store_id"], "s2", "{table}: {row}");
        }
    }
    let got: BTreeSet<String> = b["changes"]["kpi_data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        ids(&store_rows(&w.app, "kpi_data", "default", "s2").await)
    );
}

#[tokio::test]
async fn store_device_may_not_pull_form_templates() {
    let app = TestApp::spawn().await;
    let ann = app.manager("ann", "ann-tablet").await;
    let s1 = app.store("store-one", "s1", "s1-phone").await;
    let _ = ann
        .push(json!({"form_templates": [{"id": id(), "name": "tpl"}]}))
        .await;
    for tables in [
        json!(["form_templates"]),
        json!(["kpi_data", "form_templates"]),
    ] {
        let (s, b) = s1
            .post(
                "/api/v1/sync/pull",
                &json!({"device_id": "s1-phone", "tables": tables}),
            )
            .await;
        assert_error(s, &b, 403, "FORBIDDEN");
        assert!(b.get("changes").is_none(), "{b}");
    }
    // A manager may.
    settle(&app.pool).await;
    let (s, b) = ann
        .post(
            "/api/v1/sync/pull",
            &json!({"device_id": "ann-tablet", "tables": ["form_templates"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["changes"]["form_templates"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn store_device_may_not_write_manager_tables() {
    let w = world().await;
    let rows = [
        ("forms", json!({"id": id(), "title": "store form"})),
        ("form_templates", json!({"id": id(), "name": "store tpl"})),
        ("settings", json!({"id": id(), "key": "k", "value": 1})),
        (
            "form_sections",
            json!({"id": id(), "form_id": w.a.form, "title": "x"}),
        ),
        (
            "fields",
            json!({"id": id(), "form_id": w.a.form, "label": "x"}),
        ),
        (
            "team",
            json!({"id": id(), "store_id": "s1", "name": "new member"}),
        ),
    ];
    for (table, row) in rows {
        let record = row["id"].as_str().unwrap().to_string();
        let before = w.app.server_rows(table, "default").await;
        let body = w.s1.push(json!({ table: [row] })).await;
        assert_row_error(&body, table, &record, "FORBIDDEN");
        assert!(raw_row(&w.app, table, &record).await.is_none(), "{table}");
        assert_eq!(w.app.server_rows(table, "default").await, before);
    }
    // Nor edit an existing form (with the version it saw).
    let body =
        w.s1.push(json!({"forms": [{"id": w.a.form, "title": "edited by a store", "version": 1}]}))
            .await;
    assert_row_error(&body, "forms", &w.a.form, "FORBIDDEN");
    let form = raw_row(&w.app, "forms", &w.a.form).await.unwrap();
    assert_eq!(form["title"], format!("form {}", w.a.tag));
    assert_eq!(form["version"], 1);
}

#[tokio::test]
async fn store_device_writes_only_its_store() {
    let w = world().await;

    // New rows naming another store.
    let k = id();
    let body = w
        .s1
        .push(json!({"kpi_data": [{"id": k, "store_id": "s2", "metric": "sales", "value": 3}]}))
        .await;
    assert_row_error(&body, "kpi_data", &k, "FORBIDDEN");
    assert!(raw_row(&w.app, "kpi_data", &k).await.is_none());
    let sub = id();
    let body =
        w.s1.push(json!({"submissions": [{"id": sub, "form_id": w.a.form, "store_id": "s2"}]}))
            .await;
    assert_row_error(&body, "submissions", &sub, "FORBIDDEN");
    assert!(raw_row(&w.app, "submissions", &sub).await.is_none());

    // Existing rows of another store: update, move to my store, delete.
    let theirs = w.a.kpi["s2"].clone();
    let before = raw_row(&w.app, "kpi_data", &theirs).await.unwrap();
    for row in [
        json!({"id": theirs, "metric": "hacked", "version": 1}),
        json!({"id": theirs, "metric": "hacked", "store_id": "s1", "version": 1}),
        json!({"id": theirs, "metric": "hacked", "store_id": "s2", "version": 1}),
        json!({"id": theirs, "deleted": true, "version": 1}),
        json!({"id": theirs, "metric": "hacked"}),
    ] {
        let body = w.s1.push(json!({ "kpi_data": [row] })).await;
        assert_row_error(&body, "kpi_data", &theirs, "FORBIDDEN");
        assert_eq!(
            raw_row(&w.app, "kpi_data", &theirs).await.unwrap(),
            before,
            "store s1 changed store s2's row with {row}"
        );
    }
    let their_sub = w.a.submissions["s2"].clone();
    let body =
        w.s1.push(json!({"submissions": [{"id": their_sub, "status": "completed", "version": 1}]}))
            .await;
    assert_row_error(&body, "submissions", &their_sub, "FORBIDDEN");
    assert_eq!(
        raw_row(&w.app, "submissions", &their_sub).await.unwrap()["status"],
        "in_progress"
    );

    // An answer hanging under another store's submission is not stored either.
    let ans = id();
    let body = w
        .s1
        .push(json!({"submission_answers": [{"id": ans, "submission_id": their_sub, "value": 1}]}))
        .await;
    assert_eq!(body["success"], false, "{body}");
    let code = body["errors"][0]["code"].as_str().unwrap_or_default();
    assert!(code == "FORBIDDEN" || code == "REFERENCE_MISSING", "{body}");
    assert!(raw_row(&w.app, "submission_answers", &ans).await.is_none());

    // Its own rows it may update.
    let mine = w.a.kpi["s1"].clone();
    let body =
        w.s1.push(json!({"kpi_data": [{"id": mine, "metric": "updated", "version": 1}]}))
            .await;
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(
        raw_row(&w.app, "kpi_data", &mine).await.unwrap()["metric"],
        "updated"
    );
}

#[tokio::test]
async fn store_push_without_store_id_gets_its_own_store() {
    let mut w = world().await;
    let (k, sub, ans) = (id(), id(), id());
    let body = w
        .s1
        .push(json!({
            "kpi_data": [{"id": k, "metric": "visitors", "value": 40}],
            "submissions": [{"id": sub, "form_id": w.a.form, "status": "completed"}],
            "submission_answers": [{"id": ans, "submission_id": sub, "field_id": w.a.field, "value": "yes"}],
        }))
        .await;
    assert_eq!(body["success"], true, "{body}");
    for (table, rid) in [
        ("kpi_data", &k),
        ("submissions", &sub),
        ("submission_answers", &ans),
    ] {
        let applied = body["applied"][table].as_array().expect(table);
        assert_eq!(applied.len(), 1, "{body}");
        assert_eq!(applied[0]["id"], rid.as_str());
        assert_eq!(applied[0]["store_id"], "s1", "{body}");
        let stored = raw_row(&w.app, table, rid).await.expect(table);
        assert_eq!(stored["store_id"], "s1");
        assert_eq!(stored["tenant_id"], "default");
    }
    // Store s1 pulls it back; store s2 never sees it.
    w.s1.sync_down().await;
    w.s2.sync_down().await;
    assert!(w.s1.local_rows("kpi_data").contains_key(&k));
    assert!(!w.s2.local_rows("kpi_data").contains_key(&k));
    assert!(!w.s2.local_rows("submissions").contains_key(&sub));
}

#[tokio::test]
async fn another_tenants_id_is_refused_without_leaking() {
    let w = world().await;
    let a_form = raw_row(&w.app, "forms", &w.a.form).await.unwrap();
    let a_kpi = raw_row(&w.app, "kpi_data", &w.a.kpi["s1"]).await.unwrap();
    let secrets = [
        w.a.tag.clone(),
        a_form["title"].as_str().unwrap().to_string(),
        a_form["description"].as_str().unwrap().to_string(),
        "default".to_string(),
    ];
    let check = |status: StatusCode, text: &str, table: &str, record: &str| {
        assert_eq!(status, StatusCode::OK, "{text}");
        let body: Value = serde_json::from_str(text).expect("JSON body");
        assert_row_error(&body, table, record, "FORBIDDEN");
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "the answer reveals '{s}' of another tenant: {text}"
            );
        }
    };

    let attempts = [
        // A new row (version 0) under a taken id.
        json!({"id": w.a.form, "title": "bob's form"}),
        // Claiming to have seen it.
        json!({"id": w.a.form, "title": "bob's form", "version": 1}),
        // Values equal to the other tenant's row.
        json!({"id": w.a.form, "title": a_form["title"], "description": a_form["description"], "version": 1}),
        // Deleting it.
        json!({"id": w.a.form, "deleted": true, "version": 1}),
    ];
    for row in attempts {
        let (s, text) = push_text(&w.bob, json!({ "forms": [row] })).await;
        check(s, &text, "forms", &w.a.form);
    }
    assert_eq!(
        raw_row(&w.app, "forms", &w.a.form).await.unwrap(),
        a_form,
        "tenant B changed tenant A's form"
    );

    // A store device of tenant B, on a store-scoped table, same store name.
    let k = w.a.kpi["s1"].clone();
    for row in [
        json!({"id": k, "metric": "bob metric", "value": 1}),
        json!({"id": k, "store_id": "s1", "metric": a_kpi["metric"], "value": 12.5, "version": 1}),
    ] {
        let (s, text) = push_text(&w.b_s1, json!({ "kpi_data": [row] })).await;
        check(s, &text, "kpi_data", &k);
    }
    assert_eq!(raw_row(&w.app, "kpi_data", &k).await.unwrap(), a_kpi);

    // A good row in the same push is still applied; the bad one is refused.
    let good = id();
    let (s, text) = push_text(
        &w.bob,
        json!({"forms": [{"id": good, "title": "fine"}, {"id": w.a.form, "title": "taken"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["errors"][0]["record_id"], w.a.form.as_str());
    assert_eq!(body["errors"][0]["code"], "FORBIDDEN");
    assert_eq!(body["applied"]["forms"][0]["id"], good.as_str(), "{body}");
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "leaked '{s}': {text}");
    }
    assert_eq!(
        raw_row(&w.app, "forms", &good).await.unwrap()["tenant_id"],
        TENANT_B
    );
    assert_eq!(raw_row(&w.app, "forms", &w.a.form).await.unwrap(), a_form);
}

#[tokio::test]
async fn references_to_another_tenant_are_missing() {
    let w = world().await;

    // A submission on tenant A's form, from tenant B's manager and store device.
    for dev in [&w.bob, &w.b_s1] {
        let sub = id();
        let body = dev
            .push(json!({"submissions": [{"id": sub, "form_id": w.a.form, "store_id": "s1"}]}))
            .await;
        assert_row_error(&body, "submissions", &sub, "REFERENCE_MISSING");
        assert!(raw_row(&w.app, "submissions", &sub).await.is_none());
        assert!(!body.to_string().contains(&w.a.tag), "{body}");
    }

    // Fields on another tenant's form, answers under another tenant's submission.
    let f = id();
    let body = w
        .bob
        .push(json!({"fields": [{"id": f, "form_id": w.a.form, "label": "x"}]}))
        .await;
    assert_row_error(&body, "fields", &f, "REFERENCE_MISSING");
    let ans = id();
    let body = w
        .bob
        .push(
            json!({"submission_answers": [{"id": ans, "submission_id": w.a.submissions["s1"],
                                              "field_id": w.b.field, "store_id": "s1"}]}),
        )
        .await;
    assert_row_error(&body, "submission_answers", &ans, "REFERENCE_MISSING");
    let ans2 = id();
    let body = w
        .bob
        .push(
            json!({"submission_answers": [{"id": ans2, "submission_id": w.b.submissions["s1"],
                                              "field_id": w.a.field, "store_id": "s1"}]}),
        )
        .await;
    assert_row_error(&body, "submission_answers", &ans2, "REFERENCE_MISSING");

    // Control: the same submission on tenant B's own form is stored.
    let sub = id();
    let body = w
        .b_s1
        .push(json!({"submissions": [{"id": sub, "form_id": w.b.form}]}))
        .await;
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(
        raw_row(&w.app, "submissions", &sub).await.unwrap()["tenant_id"],
        TENANT_B
    );
    // And tenant A's rows still belong to tenant A only.
    assert_eq!(w.app.server_rows("submissions", "default").await.len(), 2);
}
