//! BridgeCore's offline push and conflict resolution (docs/contract.md §8,
//! docs/bridgecore.md): local ids and references in dependency order, retries that
//! create nothing twice, each of the five strategies on a real race between two
//! devices, strategies bounded by the table's rule, resolve-conflicts, isolation and
//! clear errors.
use crate::common::*;

use reqwest::StatusCode;
use serde_json::{Value, json};

async fn offline_push(dev: &Device, changes: Value, strategy: Option<&str>) -> Value {
    let mut body = json!({"device_id": dev.device_id, "changes": changes});
    if let Some(s) = strategy {
        body["conflict_strategy"] = json!(s);
    }
    let (status, resp) = dev.post("/api/v1/offline-sync/push", &body).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    resp
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn kpi_row(app: &TestApp, id: &str) -> Value {
    sqlx::query_scalar("SELECT to_jsonb(k) - 'tenant_id' FROM kpi_data k WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn result<'a>(resp: &'a Value, local_id: &str) -> &'a Value {
    resp["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["local_id"] == json!(local_id))
        .unwrap_or_else(|| panic!("no result for {local_id}: {resp}"))
}

#[tokio::test]
async fn creates_with_local_references_apply_parents_first_and_retries_create_nothing() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    // Children first in the queue: the server orders them after their parents.
    let changes = json!([
        {"local_id": "fld-1", "action": "create", "model": "fields",
         "data": {"form_id": {"local_id": "form-1"}, "section_id": {"local_id": "sec-1"},
                  "label": "Temperature"}, "local_timestamp": now()},
        {"local_id": "sec-1", "action": "create", "model": "form_sections",
         "data": {"form_id": {"local_id": "form-1"}, "title": "Fridge", "position": 1}},
        {"local_id": "form-1", "action": "create", "model": "forms",
         "data": {"title": "Daily check"}, "local_timestamp": now(), "version": 1}
    ]);
    let first = offline_push(&manager, changes.clone(), None).await;
    assert_eq!(first["success"], json!(true), "{first}");
    assert_eq!(
        (first["total"].clone(), first["succeeded"].clone()),
        (json!(3), json!(3))
    );
    let form = first["id_mapping"]["form-1"]
        .as_str()
        .expect("form id")
        .to_string();
    let section = first["id_mapping"]["sec-1"]
        .as_str()
        .expect("section id")
        .to_string();
    let field = first["id_mapping"]["fld-1"]
        .as_str()
        .expect("field id")
        .to_string();
    // Results come in the order sent.
    assert_eq!(first["results"][0]["local_id"], "fld-1");
    assert!(first["results"][0]["processing_time_ms"].is_number());
    let stored: (String, Option<String>) =
        sqlx::query_as("SELECT form_id::text, section_id::text FROM fields WHERE id = $1::uuid")
            .bind(&field)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, (form.clone(), Some(section.clone())));
    // The audit trail names BridgeCore as the path, and the user and device.
    let origin: (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT origin, origin_user, origin_device FROM sync_row_history WHERE row_id = $1::uuid",
    )
    .bind(&form)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        origin,
        (
            Some("bridgecore".into()),
            Some("boss".into()),
            Some("mgr-1".into())
        )
    );

    // The same queue again (a retry after a lost answer): same ids, nothing new.
    let again = offline_push(&manager, changes, None).await;
    assert_eq!(again["success"], json!(true), "{again}");
    assert_eq!(again["id_mapping"], first["id_mapping"]);
    assert_eq!(count(&app, "forms").await, 1);
    assert_eq!(count(&app, "form_sections").await, 1);
    assert_eq!(count(&app, "fields").await, 1);

    // A later push refers to the row a local id created before; an update may name it
    // by local id too.
    let later = offline_push(
        &manager,
        json!([
            {"local_id": "fld-2", "action": "create", "model": "fields",
             "data": {"form_id": {"local_id": "form-1"}, "label": "Humidity"}},
            {"local_id": "upd-1", "action": "update", "model": "forms",
             "record_id": {"local_id": "form-1"}, "version": 1, "data": {"title": "Morning check"}}
        ]),
        None,
    )
    .await;
    assert_eq!(later["success"], json!(true), "{later}");
    let title: String = sqlx::query_scalar("SELECT title FROM forms WHERE id = $1::uuid")
        .bind(&form)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(title, "Morning check");
    assert_eq!(result(&later, "upd-1")["version"], json!(2));

    // Another device's local ids are its own.
    let other = app.login("boss", "mgr-2").await;
    let foreign = offline_push(
        &other,
        json!([{"local_id": "x", "action": "create", "model": "form_sections",
                "data": {"form_id": {"local_id": "form-1"}, "title": "t"}}]),
        None,
    )
    .await;
    assert_eq!(
        result(&foreign, "x")["code"],
        "REFERENCE_MISSING",
        "{foreign}"
    );
}

/// A kpi row both devices saw at version 1 (`second` pulls it: a change sent with
/// `version: 1` is based on what its device last saw), then edited by `first`
/// (version 2).
async fn race(app: &TestApp, first: &Device, second: &Device) -> String {
    let kpi = id();
    let r = offline_push(
        first,
        json!([{"local_id": format!("c-{kpi}"), "action": "create", "model": "kpi_data",
                "data": {"id": kpi, "store_id": "s1", "metric": "sales", "value": 10, "period": "p1"}}]),
        None,
    )
    .await;
    assert_eq!(r["success"], json!(true), "{r}");
    settle(&app.pool).await;
    let (status, page) = second
        .post(
            "/api/v1/offline-sync/pull",
            &json!({"device_id": second.device_id, "app_type": "store_manager_app"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let r = offline_push(
        first,
        json!([{"local_id": format!("e-{kpi}"), "action": "update", "model": "kpi_data",
                "record_id": kpi, "version": 1, "data": {"value": 11},
                "local_timestamp": now()}]),
        None,
    )
    .await;
    assert_eq!(r["results"][0]["status"], "success", "{r}");
    kpi
}

fn stale_edit(kpi: &str, local: &str, data: Value, at: &str) -> Value {
    json!([{"local_id": local, "action": "update", "model": "kpi_data", "record_id": kpi,
            "version": 1, "data": data, "local_timestamp": at}])
}

#[tokio::test]
async fn each_strategy_settles_a_race_between_two_devices() {
    let app = TestApp::spawn().await; // kpi_data: latest_wins
    let a = app.store("a", "s1", "store-a").await;
    let b = app.store("b", "s1", "store-b").await;
    let old = "2020-01-01T00:00:00Z";

    // server_wins: B's stale edit loses, whatever its clock.
    let kpi = race(&app, &a, &b).await;
    let r = offline_push(
        &b,
        stale_edit(&kpi, "l1", json!({"value": 20}), &now()),
        Some("server_wins"),
    )
    .await;
    let res = result(&r, "l1");
    assert_eq!(res["status"], "conflict", "{r}");
    assert_eq!(res["conflict"]["server_data"]["value"], json!(11));
    assert_eq!(res["conflict"]["local_data"]["value"], json!(20));
    assert_eq!(res["conflict"]["strategy"], "server_wins");
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(11));
    assert_eq!(
        (r["conflicts"].clone(), r["succeeded"].clone()),
        (json!(1), json!(0))
    );

    // client_wins (within latest_wins: B's change is newer): B's value.
    let kpi = race(&app, &a, &b).await;
    let r = offline_push(
        &b,
        stale_edit(&kpi, "l2", json!({"value": 21}), &now()),
        Some("client_wins"),
    )
    .await;
    assert_eq!(result(&r, "l2")["status"], "success", "{r}");
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(21));

    // newest_wins: an older device change loses, a newer one wins.
    let kpi = race(&app, &a, &b).await;
    let r = offline_push(
        &b,
        stale_edit(&kpi, "l3", json!({"value": 22}), old),
        Some("newest_wins"),
    )
    .await;
    assert_eq!(result(&r, "l3")["status"], "conflict", "{r}");
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(11));
    let r = offline_push(
        &b,
        stale_edit(&kpi, "l3b", json!({"value": 23}), &now()),
        Some("newest_wins"),
    )
    .await;
    assert_eq!(result(&r, "l3b")["status"], "success", "{r}");
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(23));
    // A device clock in the future counts as the server's clock at receipt: it wins
    // against an older row, but is stored at receipt time, not in the future.
    let kpi = race(&app, &a, &b).await;
    let r = offline_push(
        &b,
        stale_edit(&kpi, "l3c", json!({"value": 24}), "2999-01-01T00:00:00Z"),
        Some("newest_wins"),
    )
    .await;
    assert_eq!(result(&r, "l3c")["status"], "success", "{r}");
    let stored = kpi_row(&app, &kpi).await;
    assert!(stored["updated_at"].as_str().unwrap() < "2999", "{stored}");

    // merge: A changed value, B changed period: both stay; the same field goes to the
    // table's rule (latest_wins: B's older change loses it).
    let kpi = race(&app, &a, &b).await;
    let r = offline_push(
        &b,
        stale_edit(&kpi, "l4", json!({"value": 30, "period": "p2"}), old),
        Some("merge"),
    )
    .await;
    let res = result(&r, "l4");
    assert_eq!(res["status"], "conflict", "{r}");
    assert_eq!(res["conflict"]["resolution"], "merged");
    let row = kpi_row(&app, &kpi).await;
    assert_eq!(
        (row["value"].clone(), row["period"].clone()),
        (json!(11), json!("p2"))
    );

    // manual: nothing applied, the conflict stays open until resolved.
    let kpi = race(&app, &a, &b).await;
    let r = offline_push(
        &b,
        stale_edit(&kpi, "l5", json!({"value": 40}), &now()),
        Some("manual"),
    )
    .await;
    let res = result(&r, "l5");
    assert_eq!(res["status"], "conflict", "{r}");
    assert!(res["conflict"]["conflict_id"].is_string(), "{r}");
    assert_eq!(res["conflict"]["resolution"], "pending");
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(11));
    let (_, open) = b.get("/api/v1/sync/conflicts").await;
    assert_eq!(open[0]["local_id"], "l5", "{open}");
    // The device's next event pull shows it too.
    let (_, page) = b
        .post(
            "/api/v1/offline-sync/pull",
            &json!({"app_type": "store_app", "limit": 1}),
        )
        .await;
    assert_eq!(page["conflicts"][0]["local_id"], "l5", "{page}");

    // Not by another device, by conflict id or by local id.
    let cid = res["conflict"]["conflict_id"].as_str().unwrap();
    let theft = json!({"resolutions": [{"conflict_id": cid, "strategy": "client_wins"},
                                       {"local_id": "l5", "strategy": "client_wins"}]});
    let (_, stolen) = a
        .post("/api/v1/offline-sync/resolve-conflicts", &theft)
        .await;
    assert_eq!(stolen["results"][0]["code"], "NOT_FOUND", "{stolen}");
    assert_eq!(stolen["results"][1]["code"], "NOT_FOUND", "{stolen}");
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(11));

    // BridgeCore's schema (with `conflicts`): counts (the package's lists are in
    // package_cycle.rs).
    let resolve = json!({"device_id": "store-b", "conflicts": [],
                         "resolutions": [{"local_id": "l5", "strategy": "client_wins"}]});
    let (status, done) = b
        .post("/api/v1/offline-sync/resolve-conflicts", &resolve)
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        (done["resolved"].clone(), done["failed"].clone()),
        (json!(1), json!(0)),
        "{done}"
    );
    assert_eq!(done["results"][0]["server_id"], json!(kpi));
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(40));
    // Resolved once.
    let (_, twice) = b
        .post("/api/v1/offline-sync/resolve-conflicts", &resolve)
        .await;
    assert_eq!(twice["results"][0]["status"], "failed", "{twice}");
    assert_eq!(twice["success"], json!(false));
}

#[tokio::test]
async fn a_store_device_never_beats_a_managers_edit_on_a_manager_wins_table() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "manager_wins")])
        .spawn()
        .await;
    let manager = app.manager("boss", "mgr-1").await;
    let store = app.store("s1user", "s1", "store-1").await;
    let kpi = race(&app, &manager, &store).await;
    let r = offline_push(
        &store,
        stale_edit(&kpi, "mine", json!({"value": 99}), &now()),
        Some("client_wins"),
    )
    .await;
    let res = result(&r, "mine");
    assert_eq!(res["status"], "conflict", "{r}");
    assert_eq!(res["conflict"]["resolution"], "server", "{r}");
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(11));
    // And a store device cannot write a manager-only table at all.
    let r = offline_push(
        &store,
        json!([{"local_id": "f", "action": "create", "model": "forms", "data": {"title": "x"}}]),
        Some("client_wins"),
    )
    .await;
    assert_eq!(result(&r, "f")["code"], "FORBIDDEN", "{r}");
}

#[tokio::test]
async fn other_stores_and_tenants_are_out_of_reach() {
    let app = TestApp::spawn().await;
    let s1 = app.store("s1user", "s1", "store-1").await;
    let s2 = app.store("s2user", "s2", "store-2").await;
    app.add_user("acme", nas_sync::auth::Role::Manager, None, "acme")
        .await;
    let outsider = app.login("acme", "acme-1").await;
    let kpi = race(&app, &s1, &s2).await;
    for (dev, label) in [(&s2, "another store"), (&outsider, "another tenant")] {
        let r = offline_push(
            dev,
            json!([{"local_id": "steal", "action": "update", "model": "kpi_data",
                    "record_id": kpi, "version": 2, "data": {"value": 0}},
                   {"local_id": "kill", "action": "delete", "model": "kpi_data",
                    "record_id": kpi, "version": 2}]),
            Some("client_wins"),
        )
        .await;
        for l in ["steal", "kill"] {
            assert_eq!(result(&r, l)["code"], "FORBIDDEN", "{label}: {r}");
        }
    }
    assert_eq!(kpi_row(&app, &kpi).await["value"], json!(11));
    assert_eq!(kpi_row(&app, &kpi).await["deleted"], json!(false));
}

/// A re-pushed create answers only the row its local id created, of that model and
/// the caller's tenant: a device that created a row of one model under a UUID it
/// knows from another tenant, then re-pushes the local id as another model, sees
/// nothing of the other tenant's row.
#[tokio::test]
async fn a_re_pushed_create_never_shows_another_tenants_row() {
    let app = TestApp::spawn().await;
    let victim = app.manager("boss", "mgr-1").await;
    let first = offline_push(
        &victim,
        json!([{"local_id": "secret-form", "action": "create", "model": "forms",
                "data": {"title": "Acme salaries"}}]),
        None,
    )
    .await;
    let known = first["id_mapping"]["secret-form"]
        .as_str()
        .unwrap()
        .to_string();

    app.add_user("mallory", nas_sync::auth::Role::Manager, None, "evil")
        .await;
    let attacker = app.login("mallory", "evil-1").await;
    // A row of another model under the victim's form id (any UUID is the client's).
    let planted = offline_push(
        &attacker,
        json!([{"local_id": "probe", "action": "create", "model": "kpi_data",
                "data": {"id": known, "store_id": "s1", "metric": "x", "value": 1}}]),
        None,
    )
    .await;
    assert_eq!(planted["success"], json!(true), "{planted}");
    let probe = offline_push(
        &attacker,
        json!([{"local_id": "probe", "action": "create", "model": "forms",
                "data": {"title": "anything"}}]),
        None,
    )
    .await;
    let text = probe.to_string();
    assert!(
        !text.contains("Acme salaries"),
        "another tenant's row leaked: {text}"
    );
    assert_eq!(result(&probe, "probe")["status"], "failed", "{probe}");
    // The same model again is still the idempotent retry it always was.
    let retry = offline_push(
        &attacker,
        json!([{"local_id": "probe", "action": "create", "model": "kpi_data",
                "data": {"id": known, "store_id": "s1", "metric": "x", "value": 1}}]),
        None,
    )
    .await;
    assert_eq!(retry["id_mapping"]["probe"], json!(known), "{retry}");
    assert_eq!(count(&app, "kpi_data").await, 1);
}

#[tokio::test]
async fn bad_changes_get_their_own_errors_and_stop_on_error_applies_nothing() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    let r = offline_push(
        &manager,
        json!([
            {"local_id": "ok", "action": "create", "model": "forms", "data": {"title": "fine"}},
            {"local_id": "verb", "action": "upsert", "model": "forms", "data": {}},
            {"local_id": "model", "action": "create", "model": "no.such.model", "data": {}},
            {"local_id": "ref", "action": "create", "model": "form_sections",
             "data": {"form_id": {"local_id": "nowhere"}, "title": "t"}},
            {"local_id": "col", "action": "create", "model": "forms", "data": {"title": "t", "nope": 1}},
            {"local_id": "gone", "action": "update", "model": "forms", "record_id": id(), "version": 1, "data": {"title": "t"}},
            {"action": "create", "model": "forms", "data": {"title": "no local id"}},
            "not an object"
        ]),
        None,
    )
    .await;
    assert_eq!(r["success"], json!(false));
    assert_eq!(result(&r, "ok")["status"], "success");
    assert_eq!(result(&r, "verb")["code"], "VALIDATION_FAILED");
    assert_eq!(result(&r, "model")["code"], "UNKNOWN_TABLE");
    assert_eq!(result(&r, "ref")["code"], "REFERENCE_MISSING");
    assert_eq!(result(&r, "col")["code"], "UNKNOWN_FIELD");
    assert_eq!(result(&r, "gone")["code"], "NOT_FOUND");
    assert_eq!(r["results"][6]["code"], "VALIDATION_FAILED", "{r}");
    assert_eq!(r["results"][7]["code"], "VALIDATION_FAILED", "{r}");
    assert_eq!(
        (r["total"].clone(), r["failed"].clone()),
        (json!(8), json!(7))
    );

    let before = count(&app, "forms").await;
    let mut body = json!({"changes": [
        {"local_id": "a", "action": "create", "model": "forms", "data": {"title": "a"}},
        {"local_id": "b", "action": "create", "model": "forms", "data": {}}
    ], "stop_on_error": true});
    let (_, r) = manager.post("/api/v1/offline-sync/push", &body).await;
    assert_eq!(result(&r, "a")["code"], "NOT_APPLIED", "{r}");
    assert_eq!(result(&r, "b")["code"], "VALIDATION_FAILED", "{r}");
    assert_eq!(r["id_mapping"], json!({}));
    assert_eq!(count(&app, "forms").await, before, "nothing applied");

    body["conflict_strategy"] = json!("last_one_wins");
    let (status, r) = manager.post("/api/v1/offline-sync/push", &body).await;
    assert_error(status, &r, 400, "VALIDATION_FAILED");
    let (status, r) = manager
        .post(
            "/api/v1/offline-sync/push",
            &json!({"changes": "neither a list nor a map"}),
        )
        .await;
    assert_error(status, &r, 400, "VALIDATION_FAILED");
    // The package's map of model → records: a value that is not a list is that
    // model's failed change.
    let (status, r) = manager
        .post(
            "/api/v1/offline-sync/push",
            &json!({"changes": {"not": "a list"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["failed"][0]["model"], "not", "{r}");
    assert_eq!(r["failed"][0]["code"], "VALIDATION_FAILED", "{r}");
    let (status, r) = manager
        .post(
            "/api/v1/offline-sync/push",
            &json!({"device_id": "someone-else", "changes": []}),
        )
        .await;
    assert_error(status, &r, 403, "FORBIDDEN");
    let (status, r) = manager
        .post(
            "/api/v1/offline-sync/resolve-conflicts",
            &json!({"resolutions": [{"strategy": "server_wins"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["results"][0]["code"], "VALIDATION_FAILED", "{r}");
}
