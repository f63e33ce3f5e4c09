//! The Odoo mirror end to end: a real server on port 0 and a fake Odoo over HTTP
//! (the `fake-odoo` crate, faithful to docs/odoo-api.md). Connections are
//! created through the API as a manager would, progress is read from the status
//! route, and mirrored rows are checked both in PostgreSQL and through a device's
//! normal pull.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{Device, TestApp, assert_error};
use fake_odoo::{FakeOdoo, FakeOptions, Fault};
use nas_sync::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Fast scheduling for tests: a 1 s tick and poll, no polite delay, quick retries.
pub(super) fn fast(c: &mut Config) {
    c.odoo.tick = Duration::from_secs(1);
    c.odoo.call_delay = Duration::ZERO;
    c.odoo.retry_delay = Duration::ZERO;
    c.odoo.reconcile_interval = Duration::from_secs(1);
    c.odoo.call_timeout = Duration::from_secs(5);
    c.odoo.call_retries = 2;
}

async fn app() -> TestApp {
    TestApp::spawn_with(fast).await
}

fn body(fake: &FakeOdoo, extra: Value) -> Value {
    let mut b = json!({
        "url": fake.url, "database": "odoo", "username": "bot", "api_key": "bot-api-key",
        "safety_lag_seconds": 2, "poll_interval_seconds": 1, "initial_range_days": 0,
    });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

pub(super) async fn connect(manager: &Device, fake: &FakeOdoo, extra: Value) -> String {
    let (status, resp) = manager
        .post("/api/v1/odoo/connections", &body(fake, extra))
        .await;
    assert_eq!(status, StatusCode::CREATED, "create connection: {resp}");
    assert_eq!(resp["status"], "not_started", "{resp}");
    resp["id"].as_str().unwrap().to_string()
}

async fn status(manager: &Device, id: &str) -> Value {
    let (code, resp) = manager
        .get(&format!("/api/v1/odoo/connections/{id}/status"))
        .await;
    assert_eq!(code, StatusCode::OK, "status: {resp}");
    resp
}

/// Polls the status until `done` holds, failing after `secs`.
async fn wait_status(
    manager: &Device,
    id: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let s = status(manager, id).await;
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "status never reached the expected state: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(super) async fn wait_done(manager: &Device, id: &str) -> Value {
    wait_status(manager, id, 60, |s| s["sync_status"] == "done").await
}

/// Live mirror rows of a table, by Odoo id.
async fn mirror(app: &TestApp, table: &str) -> BTreeMap<i64, Value> {
    let rows: Vec<(i64, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT odoo_id, to_jsonb(t) FROM {table} t WHERE NOT deleted AND odoo_id IS NOT NULL"
    )))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Differences between the fake's records of `model` and the mirror (empty: equal).
/// Every field the mirror read (its `odoo_raw`) must equal Odoo's value, and the
/// typed columns must hold the converted values.
async fn differences(app: &TestApp, fake: &FakeOdoo, model: &str) -> Vec<String> {
    let table = format!("odoo_{}", model.replace('.', "_"));
    let rows = mirror(app, &table).await;
    let mut out = Vec::new();
    let records: BTreeMap<i64, Value> = fake
        .records(model)
        .into_iter()
        .map(|r| (r["id"].as_i64().unwrap(), r))
        .collect();
    for id in records.keys().filter(|id| !rows.contains_key(id)) {
        out.push(format!("{model} {id} missing from the mirror"));
    }
    for id in rows.keys().filter(|id| !records.contains_key(id)) {
        out.push(format!("{model} {id} in the mirror but not in Odoo"));
    }
    for (id, rec) in &records {
        let Some(row) = rows.get(id) else { continue };
        let raw = row["odoo_raw"].as_object().expect("odoo_raw");
        if raw.len() < 3 {
            out.push(format!(
                "{model} {id}: raw record has too few fields: {raw:?}"
            ));
        }
        for (k, v) in raw {
            // One2many fields are not stored columns in Odoo; `records` omits them
            // (they are checked against the children's many2one where it matters).
            if rec.get(k).is_none() && v.is_array() {
                continue;
            }
            if rec.get(k) != Some(v) {
                out.push(format!(
                    "{model} {id}.{k}: mirror {v} vs odoo {:?}",
                    rec.get(k)
                ));
            }
        }
        if let Some(name) = rec.get("name") {
            let want = if *name == json!(false) {
                Value::Null
            } else {
                name.clone()
            };
            if row["name"] != want {
                out.push(format!(
                    "{model} {id}: column name {} vs {want}",
                    row["name"]
                ));
            }
        }
        if let Some(active) = rec.get("active")
            && row["active"] != *active
        {
            out.push(format!(
                "{model} {id}: column active {} vs {active}",
                row["active"]
            ));
        }
    }
    out
}

/// Waits until the mirror of `model` equals the fake.
async fn wait_equal(app: &TestApp, fake: &FakeOdoo, model: &str, secs: u64) {
    let start = Instant::now();
    loop {
        let diff = differences(app, fake, model).await;
        if diff.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{model} mirror differs from Odoo after {secs} s: {:?}",
            &diff[..diff.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Partners spread over the last 30 days (so windows must be split), plus a bulk
/// import of `bulk` partners written in one transaction (one write_date).
fn seed_partners(fake: &FakeOdoo, spread: usize, bulk: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..spread {
        let age = Duration::from_secs(((i * 2591) % (30 * 86_400)) as u64 + 600);
        ids.push(fake.late_commit(
            "res.partner",
            json!({"name": format!("Partner {i}"), "email": format!("p{i}@example.com"),
                   "is_company": i % 3 == 0, "customer_rank": i % 5}),
            age,
        ));
    }
    let vals: Vec<Value> = (0..bulk)
        .map(|i| json!({"name": format!("Imported {i}"), "city": "Lyon"}))
        .collect();
    ids.extend(fake.bulk_insert("res.partner", vals));
    ids
}

#[tokio::test]
async fn initial_mirror_equals_odoo_and_reaches_devices_through_the_normal_pull() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partners = seed_partners(&fake, 1200, 600);
    for i in 0..300 {
        fake.insert("product.product", json!({"name": format!("Product {i}"), "list_price": 1.5 + i as f64, "default_code": format!("P{i}")}));
    }
    let products: Vec<i64> = fake
        .records("product.product")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    for i in 0..150 {
        let order = fake.insert(
            "sale.order",
            json!({"partner_id": partners[i], "client_order_ref": format!("R{i}")}),
        );
        for j in 0..2 {
            fake.insert(
                "sale.order.line",
                json!({"order_id": order, "product_id": products[(i + j) % products.len()],
                "product_uom_qty": 1.0 + j as f64, "price_unit": 10.0}),
            );
        }
    }
    for (i, partner) in partners.iter().take(40).enumerate() {
        fake.insert(
            "hr.employee",
            json!({"name": format!("Employee {i}"), "job_title": "Clerk"}),
        );
        fake.insert("account.move", json!({"name": format!("INV/{i}"), "partner_id": partner, "move_type": "out_invoice", "state": "posted"}));
    }
    // One archived partner: the mirror keeps it, with active false.
    fake.archive("res.partner", partners[5]);

    let app = app().await;
    let mut manager = app.manager("boss", "boss-phone").await;
    let id = connect(&manager, &fake, json!({})).await;
    let s = wait_done(&manager, &id).await;

    for model in [
        "res.partner",
        "product.product",
        "sale.order",
        "sale.order.line",
        "account.move",
        "hr.employee",
    ] {
        let diff = differences(&app, &fake, model).await;
        assert!(
            diff.is_empty(),
            "{model}: {:?}",
            &diff[..diff.len().min(10)]
        );
    }
    let partner_count = fake.count("res.partner") as i64;
    assert_eq!(
        s["models"]["res.partner"]["records"],
        json!(partner_count),
        "{s}"
    );
    assert_eq!(s["progress"]["progress_percentage"], 100, "{s}");
    assert_eq!(s["progress"]["failed_batches"], 0, "{s}");
    // 1,800 partners in batches of at most 200 (the bulk import shares one second
    // and is paged by id inside its window).
    let batches = s["progress"]["total_batches"].as_i64().unwrap();
    assert!(batches >= 10, "windows were not split: {s}");

    // A device pulls the mirror like any table.
    manager.sync_down().await;
    let pulled = manager.local_rows("odoo_res_partner");
    assert_eq!(pulled.len() as i64, partner_count);
    let archived = pulled
        .values()
        .find(|r| r["odoo_id"] == json!(partners[5]))
        .expect("archived partner");
    assert_eq!(archived["active"], json!(false));
    let lines = manager.local_rows("odoo_sale_order_line");
    assert_eq!(lines.len(), 300);
    assert!(
        lines.values().all(|l| l["order_id"].is_i64()),
        "many2one as the id"
    );
    let orders = manager.local_rows("odoo_sale_order");
    let mut lines_of: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for l in fake.records("sale.order.line") {
        lines_of
            .entry(l["order_id"].as_i64().unwrap())
            .or_default()
            .push(l["id"].as_i64().unwrap());
    }
    for o in orders.values() {
        let mut got: Vec<i64> = o["order_line"]
            .as_array()
            .expect("x2many as id arrays")
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        got.sort();
        assert_eq!(
            got,
            lines_of[&o["odoo_id"].as_i64().unwrap()],
            "order_line of {o}"
        );
    }
    // A store device reads the mirror too.
    let mut store = app.store("clerk", "s1", "clerk-phone").await;
    store.sync_down().await;
    assert_eq!(store.local_rows("odoo_product_product").len(), 300);
    // The audit trail names the mirror as the writer.
    let origins: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT DISTINCT origin FROM sync_row_history WHERE table_name = 'odoo_product_product'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(origins, vec![Some("odoo_mirror".to_string())]);
}

#[tokio::test]
async fn incremental_changes_include_same_second_bulk_writes_and_late_commits() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partners = seed_partners(&fake, 50, 0);
    let app = app().await;
    let mut manager = app.manager("boss", "boss-phone").await;
    let id = connect(&manager, &fake, json!({"batch_size": 100})).await;
    wait_done(&manager, &id).await;
    manager.sync_down().await;
    let versions_before: BTreeMap<i64, Value> = mirror(&app, "odoo_res_partner")
        .await
        .into_iter()
        .map(|(k, v)| (k, v["version"].clone()))
        .collect();

    // 450 records in one transaction: one write_date, more than two batches' worth.
    let bulk: Vec<Value> = (0..450)
        .map(|i| json!({"name": format!("Bulk {i}")}))
        .collect();
    fake.bulk_insert("res.partner", bulk);
    // Updates to existing records, several in the same second.
    fake.bulk_update("res.partner", &partners[..10], json!({"city": "Nantes"}));
    // A transaction that started a second ago and commits only now (older write_date,
    // within the safety lag).
    let late = fake.late_commit(
        "res.partner",
        json!({"name": "Late"}),
        Duration::from_secs(1),
    );
    wait_equal(&app, &fake, "res.partner", 30).await;

    // Re-reading the overlap does not rewrite unchanged rows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = mirror(&app, "odoo_res_partner").await;
    for (id, v) in &versions_before {
        if !partners[..10].contains(id) {
            assert_eq!(
                &after[id]["version"], v,
                "partner {id} rewritten though unchanged"
            );
        }
    }
    manager.sync_down().await;
    let rows = manager.local_rows("odoo_res_partner");
    assert_eq!(rows.len(), 50 + 450 + 1);
    assert!(rows.values().any(|r| r["odoo_id"] == json!(late)));
    assert_eq!(rows.values().filter(|r| r["city"] == "Nantes").count(), 10);
}

#[tokio::test]
async fn a_commit_later_than_the_safety_lag_is_found_by_reconciliation() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    seed_partners(&fake, 20, 0);
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    let id = connect(&manager, &fake, json!({})).await;
    wait_done(&manager, &id).await;
    // Written "an hour ago", visible only now: no window will read it again.
    fake.late_commit(
        "res.partner",
        json!({"name": "Very late"}),
        Duration::from_secs(3600),
    );
    wait_equal(&app, &fake, "res.partner", 30).await;
}

#[tokio::test]
async fn archiving_and_deleting_in_odoo_reach_devices() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partners = seed_partners(&fake, 30, 0);
    let products: Vec<i64> = (0..3)
        .map(|i| fake.insert("product.product", json!({"name": format!("P{i}")})))
        .collect();
    let order = fake.insert("sale.order", json!({"partner_id": partners[0]}));
    let lines: Vec<i64> = (0..3)
        .map(|i| {
            fake.insert(
                "sale.order.line",
                json!({"order_id": order, "product_id": products[i], "price_unit": 2.0}),
            )
        })
        .collect();
    let app = app().await;
    let mut manager = app.manager("boss", "boss-phone").await;
    let id = connect(&manager, &fake, json!({})).await;
    wait_done(&manager, &id).await;
    manager.sync_down().await;
    assert_eq!(manager.local_rows("odoo_sale_order_line").len(), 3);

    fake.archive("res.partner", partners[1]);
    fake.delete("res.partner", partners[2]);
    // Deleting the order deletes its lines too, in the database, without trace.
    fake.delete("sale.order", order);
    for model in ["res.partner", "sale.order", "sale.order.line"] {
        wait_equal(&app, &fake, model, 30).await;
    }
    manager.sync_down().await;
    let partners_local = manager.local_rows("odoo_res_partner");
    let find = |odoo_id: i64| {
        partners_local
            .values()
            .find(|r| r["odoo_id"] == json!(odoo_id))
            .cloned()
    };
    assert_eq!(
        find(partners[1]).expect("archived partner kept")["active"],
        json!(false)
    );
    assert!(
        find(partners[2]).is_none(),
        "deleted partner must be a tombstone"
    );
    assert!(manager.local_rows("odoo_sale_order").is_empty());
    assert!(manager.local_rows("odoo_sale_order_line").is_empty());
    let tombstones: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM odoo_sale_order_line WHERE deleted AND odoo_id = ANY($1)",
    )
    .bind(&lines)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(tombstones, 3);
}

#[tokio::test]
async fn transient_faults_are_retried_and_final_ones_end_permanently_failed() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    seed_partners(&fake, 40, 0);
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    // A proxy hiccup and a serialization failure: retried inside the call, unseen.
    fake.fail_next("search_read", 1, Fault::Proxy502);
    fake.fail_next("search_count", 1, Fault::SerializationFailure);
    let id = connect(&manager, &fake, json!({"models": ["res.partner"]})).await;
    let s = wait_done(&manager, &id).await;
    assert_eq!(s["progress"]["failed_batches"], 0, "{s}");
    wait_equal(&app, &fake, "res.partner", 10).await;

    // Access errors are final: once the first mirror is planned, every attempt of the
    // remaining batches fails; after four attempts a batch is permanently failed.
    let fake2 = FakeOdoo::start(FakeOptions::default()).await;
    seed_partners(&fake2, 40, 0);
    fake2.set_call_delay(Duration::from_millis(100));
    let id2 = connect(
        &manager,
        &fake2,
        json!({"models": ["res.partner"], "batch_size": 5}),
    )
    .await;
    wait_status(&manager, &id2, 30, |s| s["sync_status"] == "in_progress").await;
    fake2.fail_next("search_read", 1000, Fault::AccessError);
    fake2.set_call_delay(Duration::ZERO);
    let s = wait_status(&manager, &id2, 60, |s| s["sync_status"] == "failed").await;
    assert!(
        s["progress"]["failed_batches"].as_i64().unwrap() >= 1,
        "{s}"
    );
    let failed = &s["failed_batches"][0];
    assert_eq!(failed["status"], "permanently_failed", "{s}");
    assert_eq!(failed["attempts"], 4, "{s}");
    // Four attempts each, no more: the client did not retry a final fault.
    let reads = fake2
        .calls()
        .iter()
        .filter(|(_, m)| m == "search_read")
        .count();
    let permanently = s["progress"]["permanently_failed_batches"]
        .as_i64()
        .unwrap() as usize;
    assert!(
        reads <= 1 + 8 + permanently * 4,
        "{reads} search_read calls for {permanently} failed batches"
    );
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("AccessError"),
        "{s}"
    );
    // Failed for good: the pull is allowed (the first mirror is over) but the rows
    // are missing, and the status says so. After the operator fixes Odoo, retry.
    fake2.clear_faults();
    let (code, resp) = manager
        .post(&format!("/api/v1/odoo/connections/{id2}/retry"), &json!({}))
        .await;
    assert_eq!(code, StatusCode::OK, "{resp}");
    assert!(resp["batches_requeued"].as_i64().unwrap() >= 1);
    wait_done(&manager, &id2).await;
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_mirror_resumes_without_loss_or_duplicates() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    seed_partners(&fake, 600, 0);
    fake.set_call_delay(Duration::from_millis(40));
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    let id = connect(
        &manager,
        &fake,
        json!({"models": ["res.partner"], "batch_size": 20}),
    )
    .await;
    wait_status(&manager, &id, 60, |s| {
        s["progress"]["completed_batches"].as_i64().unwrap_or(0) >= 3
    })
    .await;

    let app = app.restart_with(fast).await;
    // Graceful shutdown released the lease and left no batch running.
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM odoo_batches WHERE status = 'running'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(running <= 1, "at most the new worker's batch runs");
    let planned_before: i64 = sqlx::query_scalar("SELECT count(*) FROM odoo_batches WHERE initial")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM odoo_batches WHERE status = 'done'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM odoo_batches")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        before < total,
        "the mirror finished before the restart; nothing to resume"
    );
    let manager = app.login("boss", "boss-phone").await;
    wait_done(&manager, &id).await;
    wait_equal(&app, &fake, "res.partner", 10).await;
    let dupes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT odoo_id FROM odoo_res_partner GROUP BY odoo_id HAVING count(*) > 1) d",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(dupes, 0);
    // Batches were planned once: the restart did not plan the first mirror again.
    let planned: i64 = sqlx::query_scalar("SELECT count(*) FROM odoo_batches WHERE initial")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        planned, planned_before,
        "the first mirror was planned again"
    );
}

#[tokio::test]
async fn a_crashed_worker_leaves_a_running_batch_that_the_next_one_redoes() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    seed_partners(&fake, 100, 0);
    fake.set_call_delay(Duration::from_millis(30));
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    let id = connect(
        &manager,
        &fake,
        json!({"models": ["res.partner"], "batch_size": 10}),
    )
    .await;
    wait_status(&manager, &id, 60, |s| {
        s["progress"]["completed_batches"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    let mut app = app;
    app.stop().await;
    // What a killed process leaves behind: a batch marked running and a live lease.
    sqlx::query("UPDATE odoo_batches SET status = 'running' WHERE id = (SELECT min(id) FROM odoo_batches WHERE status = 'pending')")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE odoo_connections SET lease_owner = 'dead-process', lease_until = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let app = app.restart_with(fast).await;
    let manager = app.login("boss", "boss-phone").await;
    wait_done(&manager, &id).await;
    wait_equal(&app, &fake, "res.partner", 10).await;
}

/// A manager's order with two lines, the lines pointing at the order by uuid.
fn order_with_lines(partner: i64, products: &[i64]) -> (String, Value) {
    let order_id = crate::common::id();
    let now = crate::common::now();
    let changes = json!({
        "odoo_sale_order": [{"id": order_id, "partner_id": partner, "client_order_ref": "TABLET-1", "updated_at": now}],
        "odoo_sale_order_line": [
            {"id": crate::common::id(), "order_uuid": order_id, "product_id": products[0], "product_uom_qty": 2, "price_unit": 5.5, "updated_at": now},
            {"id": crate::common::id(), "order_uuid": order_id, "product_id": products[1], "product_uom_qty": 1, "price_unit": 3, "updated_at": now},
        ],
    });
    (order_id, changes)
}

#[tokio::test]
async fn an_order_with_lines_is_written_back_once_even_when_the_answer_is_lost() {
    for tag in [false, true] {
        let fake = FakeOdoo::start(FakeOptions {
            with_tag_field: tag,
            ..FakeOptions::default()
        })
        .await;
        let partner = fake.insert("res.partner", json!({"name": "Customer"}));
        let products: Vec<i64> = (0..2)
            .map(|i| fake.insert("product.product", json!({"name": format!("P{i}")})))
            .collect();
        let app = app().await;
        let mut manager = app.manager("boss", "boss-phone").await;
        let id = connect(&manager, &fake, json!({})).await;
        wait_done(&manager, &id).await;

        // Odoo creates the order, but the answer never arrives.
        fake.fail_next("create", 1, Fault::DropAfterApply);
        let (order_uuid, changes) = order_with_lines(partner, &products);
        let resp = manager.push(changes).await;
        assert_eq!(resp["success"], true, "{resp}");
        assert_eq!(
            resp["applied"]["odoo_sale_order"][0]["odoo_sync_status"], "pending",
            "{resp}"
        );

        let start = Instant::now();
        loop {
            let orders = fake.records("sale.order");
            let lines = fake.records("sale.order.line");
            if orders.len() == 1 && lines.len() == 2 {
                break;
            }
            assert!(
                orders.len() <= 1,
                "order created twice (tag field: {tag}): {orders:?}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "write-back did not finish: {orders:?} {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let order = &fake.records("sale.order")[0];
        assert_eq!(order["client_order_ref"], "TABLET-1");
        assert_eq!(order["partner_id"], json!(partner));
        let order_odoo_id = order["id"].as_i64().unwrap();
        for line in fake.records("sale.order.line") {
            assert_eq!(
                line["order_id"],
                json!(order_odoo_id),
                "line attached to the new order"
            );
        }
        // The device's next pulls carry the Odoo ids, and nothing is duplicated.
        let start = Instant::now();
        loop {
            manager.sync_down().await;
            let orders = manager.local_rows("odoo_sale_order");
            let lines = manager.local_rows("odoo_sale_order_line");
            let done = orders.len() == 1
                && orders[&order_uuid]["odoo_id"] == json!(order_odoo_id)
                && orders[&order_uuid]["odoo_sync_status"] == "synced"
                && lines.len() == 2
                && lines
                    .values()
                    .all(|l| l["odoo_id"].is_i64() && l["order_id"] == json!(order_odoo_id));
            if done {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tag {tag}: orders {orders:?} lines {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(fake.count("sale.order"), 1);
        let s = status(&manager, &id).await;
        assert_eq!(s["write_back"]["pending"], 0, "{s}");
        // The audit trail: the device's create, then write-back giving it its Odoo id.
        let origins: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT origin FROM sync_row_history WHERE row_id = $1::uuid ORDER BY id",
        )
        .bind(&order_uuid)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert_eq!(
            origins.first(),
            Some(&Some("push".to_string())),
            "{origins:?}"
        );
        assert!(
            origins.contains(&Some("odoo_write_back".to_string())),
            "{origins:?}"
        );
    }
}

#[tokio::test]
async fn odoo_refusing_a_write_is_shown_on_the_row_and_in_status() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partner = fake.insert("res.partner", json!({"name": "Customer"}));
    let order = fake.insert("sale.order", json!({"partner_id": partner}));
    let app = app().await;
    let mut manager = app.manager("boss", "boss-phone").await;
    let id = connect(&manager, &fake, json!({})).await;
    wait_done(&manager, &id).await;
    manager.sync_down().await;
    let order_row = manager
        .local_rows("odoo_sale_order")
        .into_values()
        .next()
        .unwrap();

    // A line for a product Odoo does not have.
    let line_id = crate::common::id();
    let resp = manager
        .push(json!({"odoo_sale_order_line": [{"id": line_id, "order_id": order, "product_id": 999_999,
            "product_uom_qty": 1, "price_unit": 1, "updated_at": crate::common::now()}]}))
        .await;
    assert_eq!(resp["success"], true, "{resp}");
    // An update Odoo refuses: the row gets Odoo's value back, with the reason.
    fake.fail_next(
        "write",
        1,
        Fault::ValidationError("The customer is blocked".into()),
    );
    let mut edited = order_row.clone();
    edited["client_order_ref"] = json!("NEW-REF");
    edited["updated_at"] = json!(crate::common::now());
    let resp = manager.push(json!({"odoo_sale_order": [edited]})).await;
    assert_eq!(resp["success"], true, "{resp}");

    let start = Instant::now();
    loop {
        manager.sync_down().await;
        let line = manager
            .local_rows("odoo_sale_order_line")
            .get(&line_id)
            .cloned();
        let order_now =
            manager.local_rows("odoo_sale_order")[order_row["id"].as_str().unwrap()].clone();
        if let Some(line) = &line
            && line["odoo_sync_status"] == "failed"
            && order_now["odoo_sync_status"] == "failed"
        {
            assert!(
                line["odoo_sync_error"]
                    .as_str()
                    .unwrap()
                    .contains("ValidationError"),
                "{line}"
            );
            assert!(line["odoo_id"].is_null());
            assert!(
                order_now["odoo_sync_error"]
                    .as_str()
                    .unwrap()
                    .contains("blocked"),
                "{order_now}"
            );
            assert_eq!(
                order_now["client_order_ref"], order_row["client_order_ref"],
                "Odoo's value is back"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "line {line:?} order {order_now}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(fake.count("sale.order.line"), 0);
    let s = status(&manager, &id).await;
    assert_eq!(s["write_back"]["failed"], 2, "{s}");
    assert_eq!(
        s["write_back"]["errors"].as_array().unwrap().len(),
        2,
        "{s}"
    );
}

#[tokio::test]
async fn pulling_a_mirror_table_before_the_first_mirror_is_done_is_sync_not_ready() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    seed_partners(&fake, 300, 0);
    fake.set_call_delay(Duration::from_millis(50));
    let app = app().await;
    let mut manager = app.manager("boss", "boss-phone").await;
    let id = connect(
        &manager,
        &fake,
        json!({"models": ["res.partner"], "batch_size": 20}),
    )
    .await;
    let pull = json!({"device_id": "boss-phone", "tables": ["odoo_res_partner"]});
    let (code, resp) = manager.post("/api/v1/sync/pull", &pull).await;
    assert_error(code, &resp, 403, "SYNC_NOT_READY");
    assert_eq!(resp["details"]["connection_id"], json!(id), "{resp}");
    assert!(
        resp["details"]["progress"]["progress_percentage"]
            .as_i64()
            .unwrap()
            < 100,
        "{resp}"
    );
    // Insight tables still sync meanwhile, and a full pull is not blocked.
    let (code, resp) = manager
        .post(
            "/api/v1/sync/pull",
            &json!({"device_id": "boss-phone", "tables": ["forms"]}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{resp}");
    manager.sync_down().await;

    fake.set_call_delay(Duration::ZERO);
    wait_done(&manager, &id).await;
    crate::common::settle(&app.pool).await;
    let (code, resp) = manager.post("/api/v1/sync/pull", &pull).await;
    assert_eq!(code, StatusCode::OK, "{resp}");
    assert_eq!(
        resp["changes"]["odoo_res_partner"]
            .as_array()
            .unwrap()
            .len(),
        300
    );

    // Caught up, pulls naming the ready mirror table are answered from memory too.
    let mut cursor = resp["cursor"].clone();
    let served = app.state.sync.quiet.served();
    let mut from_memory = false;
    for _ in 0..500 {
        let body =
            json!({"device_id": "boss-phone", "tables": ["odoo_res_partner"], "cursor": cursor});
        let (code, page) = manager.post("/api/v1/sync/pull", &body).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        cursor = page["cursor"].clone();
        if app.state.sync.quiet.served() > served {
            from_memory = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        from_memory,
        "no pull naming a mirror table came from memory"
    );

    // The mirror starts over (as when its first copy is redone): the change notifies
    // every process (migration V17), and pulls say SYNC_NOT_READY again.
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    listener.listen("nas_sync_state").await.unwrap();
    sqlx::query("UPDATE odoo_connections SET first_mirror_done_at = NULL")
        .execute(&app.pool)
        .await
        .unwrap();
    let note = tokio::time::timeout(Duration::from_secs(30), listener.recv())
        .await
        .expect("no readiness note")
        .unwrap();
    assert!(note.payload().contains("readiness"), "{}", note.payload());
    let body = json!({"device_id": "boss-phone", "tables": ["odoo_res_partner"], "cursor": cursor});
    let mut not_ready = false;
    for _ in 0..500 {
        let (code, page) = manager.post("/api/v1/sync/pull", &body).await;
        if code == StatusCode::FORBIDDEN {
            assert_error(code, &page, 403, "SYNC_NOT_READY");
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(not_ready, "memory kept answering a table that is not ready");
}

#[tokio::test]
async fn connection_routes_check_credentials_roles_tenants_and_never_show_the_key() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    let (code, resp) = manager
        .post(
            "/api/v1/odoo/connections",
            &body(&fake, json!({"api_key": "wrong-key"})),
        )
        .await;
    assert_error(code, &resp, 400, "ODOO_AUTH_FAILED");
    let (code, resp) = manager
        .post(
            "/api/v1/odoo/connections",
            &body(&fake, json!({"database": "other"})),
        )
        .await;
    assert_error(code, &resp, 400, "ODOO_AUTH_FAILED");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, resp) = manager
        .post(
            "/api/v1/odoo/connections",
            &body(&fake, json!({"url": dead_url})),
        )
        .await;
    assert_error(code, &resp, 502, "ODOO_UNREACHABLE");
    let (code, resp) = manager
        .post(
            "/api/v1/odoo/connections",
            &body(&fake, json!({"url": "ftp://x"})),
        )
        .await;
    assert_error(code, &resp, 400, "VALIDATION_FAILED");
    let (code, resp) = manager
        .post(
            "/api/v1/odoo/connections",
            &body(&fake, json!({"models": ["res.partner; drop table users"]})),
        )
        .await;
    assert_error(code, &resp, 400, "VALIDATION_FAILED");

    let store = app.store("clerk", "s1", "clerk-phone").await;
    let (code, resp) = store
        .post("/api/v1/odoo/connections", &body(&fake, json!({})))
        .await;
    assert_error(code, &resp, 403, "FORBIDDEN");

    let id = connect(&manager, &fake, json!({"models": ["res.partner"]})).await;
    let (code, list) = manager.get("/api/v1/odoo/connections").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["connections"].as_array().unwrap().len(), 1);
    assert_eq!(list["connections"][0]["protocol"], "jsonrpc");
    let (_, one) = manager.get(&format!("/api/v1/odoo/connections/{id}")).await;
    let s = status(&manager, &id).await;
    for text in [list.to_string(), one.to_string(), s.to_string()] {
        assert!(!text.contains("bot-api-key"), "the key leaked: {text}");
    }
    let (code, resp) = store
        .get(&format!("/api/v1/odoo/connections/{id}/status"))
        .await;
    assert_error(code, &resp, 403, "FORBIDDEN");
    // Another tenant's manager cannot see it.
    app.add_user("rival", nas_sync::auth::Role::Manager, None, "other")
        .await;
    let rival = app.login("rival", "rival-phone").await;
    let (code, resp) = rival
        .get(&format!("/api/v1/odoo/connections/{id}/status"))
        .await;
    assert_error(code, &resp, 404, "NOT_FOUND");
    let (code, resp) = manager
        .get("/api/v1/odoo/connections/not-a-uuid/status")
        .await;
    assert_error(code, &resp, 404, "NOT_FOUND");
    wait_done(&manager, &id).await;

    // Deleting it turns its rows into tombstones.
    fake.insert("res.partner", json!({"name": "x"}));
    let (code, _) = manager
        .http
        .delete(format!("{}/api/v1/odoo/connections/{id}", manager.base))
        .bearer_auth(&manager.token)
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(code, StatusCode::NO_CONTENT);
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM odoo_res_partner WHERE NOT deleted")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(live, 0);
    let (code, resp) = manager
        .get(&format!("/api/v1/odoo/connections/{id}/status"))
        .await;
    assert_error(code, &resp, 404, "NOT_FOUND");
}

#[tokio::test]
async fn odoo_19_is_mirrored_over_json_2() {
    let fake = FakeOdoo::start(FakeOptions {
        version: 19,
        jsonrpc_disabled: true,
        ..FakeOptions::default()
    })
    .await;
    seed_partners(&fake, 120, 50);
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    let (code, resp) = manager
        .post(
            "/api/v1/odoo/connections",
            &body(&fake, json!({"api_key": "bad"})),
        )
        .await;
    assert_error(code, &resp, 400, "ODOO_AUTH_FAILED");
    let id = connect(
        &manager,
        &fake,
        json!({"models": ["res.partner", "sale.order"], "batch_size": 40}),
    )
    .await;
    let (_, one) = manager.get(&format!("/api/v1/odoo/connections/{id}")).await;
    assert_eq!(one["protocol"], "json2", "{one}");
    wait_done(&manager, &id).await;
    wait_equal(&app, &fake, "res.partner", 10).await;
    fake.update(
        "res.partner",
        fake.records("res.partner")[0]["id"].as_i64().unwrap(),
        json!({"name": "Renamed"}),
    );
    wait_equal(&app, &fake, "res.partner", 30).await;
}

#[tokio::test]
async fn a_model_odoo_refuses_to_count_is_read_as_one_window() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    seed_partners(&fake, 70, 0);
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    // Planning counts records per window; a final error there must not leave the
    // connection waiting forever.
    fake.fail_next("search_count", 1, Fault::AccessError);
    let id = connect(
        &manager,
        &fake,
        json!({"models": ["res.partner"], "batch_size": 30}),
    )
    .await;
    let s = wait_done(&manager, &id).await;
    assert_eq!(s["progress"]["total_batches"], 1, "{s}");
    wait_equal(&app, &fake, "res.partner", 10).await;
    // Paged by id inside the window: 70 records, 30 per call.
    let reads = fake
        .calls()
        .iter()
        .filter(|(m, method)| m == "res.partner" && method == "search_read")
        .count();
    assert!(reads >= 3, "{reads} reads");
}

#[tokio::test]
async fn an_outage_longer_than_the_retries_loses_no_update() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partners = seed_partners(&fake, 20, 0);
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    let id = connect(&manager, &fake, json!({"models": ["res.partner"]})).await;
    wait_done(&manager, &id).await;
    // Odoo's proxy fails every read long enough for an incremental batch to use up
    // its attempts while a record changes.
    fake.fail_next("search_read", 100_000, Fault::Proxy502);
    fake.update(
        "res.partner",
        partners[3],
        json!({"name": "Renamed during the outage"}),
    );
    let written = fake.write_date_exact("res.partner", partners[3]).unwrap();
    // Wait until a window holding that write has failed for good and the plan has
    // moved past it, then keep Odoo down a while longer so the other windows holding it
    // use up their attempts too: only a re-plan of the failed window can recover it.
    let start = Instant::now();
    loop {
        let (lost, past): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM odoo_batches WHERE NOT initial AND status = 'permanently_failed'
                             AND window_start <= $1 AND window_end > $1),
                    (SELECT max(planned_until) FROM odoo_model_state) - interval '10 seconds' > $1",
        )
        .bind(written)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if lost && past {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the outage never failed the window for good"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = status(&manager, &id).await;
    assert!(
        s["incremental"]["permanently_failed_batches"]
            .as_i64()
            .unwrap()
            >= 1,
        "{s}"
    );
    fake.clear_faults();
    // The failed window is planned again once Odoo is back.
    wait_equal(&app, &fake, "res.partner", 30).await;
}

#[tokio::test]
async fn devices_write_only_the_writable_fields_of_mirror_tables() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partner = fake.insert("res.partner", json!({"name": "Customer"}));
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    let id = connect(
        &manager,
        &fake,
        json!({"models": ["res.partner", "sale.order"]}),
    )
    .await;
    wait_done(&manager, &id).await;
    let row_id = crate::common::id();
    let resp = manager
        .push(json!({"odoo_sale_order": [{"id": row_id, "partner_id": partner, "client_order_ref": "OK",
            "amount_total": 999, "state": "sale", "odoo_id": 4242, "write_date": "2999-01-01T00:00:00Z",
            "odoo_raw": {"forged": true}, "odoo_sync_status": "synced", "updated_at": crate::common::now()}]}))
        .await;
    assert_eq!(resp["success"], true, "{resp}");
    let stored = &resp["applied"]["odoo_sale_order"][0];
    assert_eq!(stored["client_order_ref"], "OK");
    assert_eq!(stored["partner_id"], json!(partner));
    for forged in ["amount_total", "state", "odoo_id", "write_date", "odoo_raw"] {
        assert!(
            stored[forged].is_null(),
            "{forged} taken from the device: {stored}"
        );
    }
    assert_eq!(stored["odoo_sync_status"], "pending");
    // Store devices may read mirror tables but not write them.
    let store = app.store("clerk", "s1", "clerk-phone").await;
    let resp = store
        .push(json!({"odoo_sale_order": [{"id": crate::common::id(), "partner_id": partner, "updated_at": crate::common::now()}]}))
        .await;
    assert_eq!(resp["errors"][0]["code"], "FORBIDDEN", "{resp}");
    // Nor may anyone delete them from a device.
    let start = Instant::now();
    let order = loop {
        let row: Value =
            sqlx::query_scalar("SELECT to_jsonb(t) FROM odoo_sale_order t WHERE id = $1::uuid")
                .bind(&row_id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        // Written back and read back from Odoo: no later mirror write races the delete.
        if row["odoo_id"].is_i64() && row["odoo_raw"].is_object() {
            break row;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never written back: {row}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut delete = order.clone();
    delete["deleted"] = json!(true);
    delete["updated_at"] = json!(crate::common::now());
    let resp = manager.push(json!({"odoo_sale_order": [delete]})).await;
    assert_eq!(resp["errors"][0]["code"], "VALIDATION_FAILED", "{resp}");
}

#[tokio::test]
async fn a_renewed_key_is_checked_with_odoo_before_it_is_stored() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    let id = connect(&manager, &fake, json!({"models": ["res.partner"]})).await;
    let patch = |body: Value| {
        let req = manager
            .http
            .patch(format!("{}/api/v1/odoo/connections/{id}", manager.base))
            .bearer_auth(&manager.token)
            .json(&body);
        async move { crate::common::read(req.send().await.unwrap()).await }
    };
    let (code, resp) = patch(json!({"api_key": "expired-key"})).await;
    assert_error(code, &resp, 400, "ODOO_AUTH_FAILED");
    let (code, resp) = patch(json!({"api_key": "bot-api-key", "batch_size": 77})).await;
    assert_eq!(code, StatusCode::OK, "{resp}");
    assert_eq!(resp["batch_size"], 77);
    assert!(!resp.to_string().contains("bot-api-key"));
    let (code, resp) = patch(json!({"batch_size": 0})).await;
    assert_error(code, &resp, 400, "VALIDATION_FAILED");
    let (code, resp) = patch(json!({"url": "http://elsewhere"})).await;
    assert_error(code, &resp, 400, "VALIDATION_FAILED");
    // Model names that would reach the mirror's own tables are refused.
    for model in ["model.state", "connections", "sale.order_line"] {
        let mut b = body(&fake, json!({"models": ["sale.order.line", model]}));
        b["models"] = json!(["sale.order.line", model]);
        let (code, resp) = manager.post("/api/v1/odoo/connections", &b).await;
        assert_error(code, &resp, 400, "VALIDATION_FAILED");
    }
}

#[tokio::test]
async fn a_second_server_process_learns_mirror_tables_added_by_the_first() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partner = fake.insert("res.partner", json!({"name": "Customer"}));
    let app = app().await;
    // Process B starts before any mirror table exists.
    let mut config_b = crate::common::test_config(&app.db.url, false);
    fast(&mut config_b);
    let pool_b = crate::common::prepare_db(&config_b).await;
    let mut server_b = crate::common::Server::spawn(config_b, pool_b).await;
    assert!(
        server_b
            .state
            .sync
            .registry
            .current()
            .get("odoo_res_partner")
            .is_none()
    );

    let manager = app.manager("boss", "boss-phone").await;
    let id = connect(
        &manager,
        &fake,
        json!({"models": ["res.partner", "sale.order"]}),
    )
    .await;
    wait_done(&manager, &id).await;
    crate::common::settle(&app.pool).await;
    let mut on_b = app.login("boss", "boss-tablet").await;
    on_b.base = server_b.base.clone();
    let (code, resp) = on_b
        .post(
            "/api/v1/sync/pull",
            &json!({"device_id": "boss-tablet", "tables": ["odoo_res_partner"]}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{resp}");
    assert_eq!(
        resp["changes"]["odoo_res_partner"][0]["odoo_id"],
        json!(partner)
    );
    let resp = on_b
        .push(json!({"odoo_sale_order": [{"id": crate::common::id(), "partner_id": partner, "updated_at": crate::common::now()}]}))
        .await;
    assert_eq!(resp["success"], true, "{resp}");
    server_b.stop().await;
}

#[tokio::test]
async fn a_redirect_to_another_origin_shows_on_the_connection_and_sends_nothing_there() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    seed_partners(&fake, 3, 0);
    let app = app().await;
    let manager = app.manager("boss", "boss-phone").await;
    // Another origin that counts the connections it gets.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", elsewhere.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while elsewhere.accept().await.is_ok() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let redirect = Fault::Redirect {
        status: 307,
        location: format!("{other}/jsonrpc"),
    };
    let wanted = format!(
        "Odoo answered with a redirect to {other}; set the connection's URL to the final address"
    );
    // At creation: refused with the reason.
    fake.fail_next("authenticate", 1, redirect.clone());
    let (s, resp) = manager
        .post(
            "/api/v1/odoo/connections",
            &body(&fake, json!({"models": ["res.partner"]})),
        )
        .await;
    assert_error(s, &resp, 502, "ODOO_UNREACHABLE");
    assert!(
        resp["message"].as_str().unwrap().contains(&wanted),
        "{resp}"
    );
    // A working connection whose Odoo starts redirecting: its last_error says so.
    let id = connect(&manager, &fake, json!({"models": ["res.partner"]})).await;
    wait_done(&manager, &id).await;
    fake.fail_next("*", 100_000, redirect);
    fake.insert("res.partner", json!({"name": "After the move"}));
    let s = wait_status(&manager, &id, 60, |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&wanted))
    })
    .await;
    assert!(s["last_error"].as_str().unwrap().contains(&wanted), "{s}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// BridgeCore's clients read ids of Odoo models as integers (the example client's
/// `Map<String, int>.from(id_mapping)`, `server_id as int?`, and `record_id as int` in
/// every pulled event: geniustep/BridgeCore examples/flutter/offline_sync_service.dart).
/// A create on a mirrored model answers the Odoo id when write-back has it within
/// the push's wait (`NAS_SYNC_BRIDGE_CREATE_WAIT_MS`, 4 s here), else `pending` (no
/// `server_id`, nothing in `id_mapping`); sent again with the same local id, it
/// answers `success` with that id. Pulls hold the row back until then, and every
/// `record_id` they carry is an integer.
#[tokio::test]
async fn bridgecore_creates_on_odoo_models_answer_integer_ids_or_pending() {
    let fake = FakeOdoo::start(FakeOptions::default()).await;
    let partner = fake.insert("res.partner", json!({"name": "Customer"}));
    fake.insert(
        "sale.order",
        json!({"name": "S0001", "partner_id": partner}),
    );
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.odoo.call_timeout = Duration::from_secs(10);
        c.bridge_create_wait = Duration::from_secs(4);
    })
    .await;
    let manager = app.manager("boss", "example-phone").await;
    let id = connect(&manager, &fake, json!({})).await;
    wait_done(&manager, &id).await;

    let push = || async {
        let (status, resp) = manager
            .post(
                "/api/v1/offline-sync/push",
                &json!({"device_id": "example-phone", "conflict_strategy": "serverWins",
                        "changes": [{"local_id": "order-1", "action": "create",
                                     "model": "sale.order",
                                     "data": {"partner_id": partner, "client_order_ref": "TABLET-1"},
                                     "version": 1}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        // `Map<String, int>.from(json['id_mapping'])` checks every value.
        let mapping = resp["id_mapping"].as_object().expect("id_mapping");
        assert!(mapping.values().all(Value::is_i64), "{resp}");
        resp
    };
    let pulled_ids = || async {
        let (status, page) = manager
            .post(
                "/api/v1/offline-sync/pull",
                &json!({"device_id": "example-phone", "app_type": "sales_app", "last_event_id": 0}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let events = page["events"].as_array().expect("events").clone();
        events
            .iter()
            .filter(|e| e["model"] == "sale.order")
            .map(|e| {
                e["record_id"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("`record_id as int` throws: {e}"))
            })
            .collect::<Vec<i64>>()
    };

    // Odoo is slower than the push waits: the first answer is pending, and the pull
    // holds it back.
    fake.set_call_delay(Duration::from_secs(6));
    let first = push().await;
    let result = &first["results"][0];
    assert_eq!(result["status"], "pending", "{first}");
    assert!(result.get("server_id").is_none(), "{first}");
    assert!(first["id_mapping"].get("partner-1").is_none(), "{first}");
    assert_eq!(
        pulled_ids().await.len(),
        1,
        "only the partner Odoo gave an id"
    );
    fake.set_call_delay(Duration::ZERO);

    // Once written back: the same local id answers success with the Odoo id, and the
    // pull carries it as an integer.
    let start = Instant::now();
    let odoo_id = loop {
        let again = push().await;
        if again["results"][0]["status"] == "success" {
            let id = again["results"][0]["server_id"]
                .as_i64()
                .expect("an integer server_id");
            assert_eq!(again["id_mapping"]["order-1"], json!(id), "{again}");
            break id;
        }
        assert_eq!(again["results"][0]["status"], "pending", "{again}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never written back: {again}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(fake.count("sale.order"), 2, "created once in Odoo");

    // Odoo answers quickly: the push wakes the write-back and answers with the id.
    let (status, quick) = manager
        .post(
            "/api/v1/offline-sync/push",
            &json!({"device_id": "example-phone",
                    "changes": [{"local_id": "order-2", "action": "create", "model": "sale.order",
                                 "data": {"partner_id": partner}, "version": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{quick}");
    assert_eq!(quick["results"][0]["status"], "success", "{quick}");
    let quick_id = quick["results"][0]["server_id"]
        .as_i64()
        .expect("an integer server_id");
    assert_eq!(quick["id_mapping"]["order-2"], json!(quick_id), "{quick}");
    assert_eq!(fake.count("sale.order"), 3);
    let start = Instant::now();
    loop {
        crate::common::settle(&app.pool).await;
        let ids = pulled_ids().await;
        if ids.contains(&odoo_id) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{ids:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
