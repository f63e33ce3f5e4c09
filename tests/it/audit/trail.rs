//! Changes become sealed audit entries, with who and by which path, and `audit
//! verify` names an edited, a deleted and an inserted entry (raw SQL on the table).

use crate::common::nas_cli::cli_with;
use crate::common::*;

use nas_sync::audit::seal;
use nas_sync::audit::verify::verify;
use serde_json::{Value, json};

/// Runs the sealer (as the server's background task does) until the tenant has `n`
/// entries; bounded.
async fn sealed(app: &TestApp, n: i64) {
    let mut mark = None;
    for _ in 0..500 {
        let (_, next) = seal::tick(&app.pool, &app.state.audit, mark).await.unwrap();
        mark = Some(next);
        let have: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE tenant_id = 'default'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if have >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the audit trail never reached {n} entries");
}

/// A row's entries, oldest first: (origin, user, device, role, changed, device_time set).
async fn entries_of(
    app: &TestApp,
    row: &str,
) -> Vec<(
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Value,
    bool,
)> {
    sqlx::query_as(
        "SELECT origin, user_name, device_id, role, changed, device_time IS NOT NULL
         FROM audit_log WHERE row_id = $1::uuid ORDER BY seq",
    )
    .bind(row)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

fn kpi_edit(row: &str, version: i64, value: i64) -> Value {
    json!({"kpi_data": [{"id": row, "store_id": "s1", "metric": "sales", "value": value,
                         "period": "2026-12", "version": version, "updated_at": now()}]})
}

#[tokio::test]
async fn devices_the_inbox_and_plain_sql_are_recorded_with_what_changed() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "manual")])
        .spawn()
        .await;
    let manager = app.manager("boss", "mgr-1").await;
    let store = app.store("clerk", "s1", "store-1").await;
    let row = id();
    manager.push(kpi_edit(&row, 0, 10)).await;
    manager.push(kpi_edit(&row, 1, 11)).await;
    // A stale write from the store opens a conflict; the manager takes the device's value.
    let r = store.push(kpi_edit(&row, 1, 12)).await;
    let conflict = r["conflicts"][0]["conflict_id"]
        .as_str()
        .expect("a conflict")
        .to_string();
    let (s, b) = manager
        .post(
            &format!("/api/v1/sync/conflicts/{conflict}/resolve"),
            &json!({"strategy": "client_wins"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    // An operator's fix in psql.
    sqlx::query("UPDATE kpi_data SET period = '2026-11' WHERE id = $1::uuid")
        .bind(&row)
        .execute(&app.pool)
        .await
        .unwrap();
    sealed(&app, 4).await;

    let got = entries_of(&app, &row).await;
    assert_eq!(got.len(), 4, "{got:?}");
    let (origin, user, device, role, changed, device_time) = &got[0];
    assert_eq!(
        (
            origin.as_str(),
            user.as_deref(),
            device.as_deref(),
            role.as_deref()
        ),
        ("push", Some("boss"), Some("mgr-1"), Some("manager"))
    );
    assert_eq!(
        changed["value"],
        json!([null, 10]),
        "a new row: every field, from nothing"
    );
    assert!(*device_time);
    assert_eq!(
        got[1].4,
        json!({"value": [10, 11]}),
        "an update: only what changed"
    );
    assert_eq!(
        (got[2].0.as_str(), got[2].1.as_deref()),
        ("inbox", Some("boss"))
    );
    assert_eq!(got[2].4, json!({"value": [11, 12]}));
    assert_eq!(
        (got[3].0.as_str(), got[3].1.as_deref(), got[3].2.as_deref()),
        ("sql", None, None)
    );
    assert_eq!(got[3].4, json!({"period": ["2026-12", "2026-11"]}));

    let reports = verify(&app.pool, &app.state.audit, None).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].held(), "{reports:?}");
}

/// Runs `nas-sync audit verify` and returns (success, what it printed).
async fn cli_verify(app: &TestApp) -> (bool, String) {
    let secret = [("NAS_SYNC_JWT_SECRET", JWT_SECRET)];
    let out = cli_with(&app.db.url, &["audit", "verify"], None, &secret).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

async fn run(app: &TestApp, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&app.pool)
        .await
        .unwrap();
}

/// Puts the trail back as it was sealed.
async fn pristine(app: &TestApp) {
    run(app, "DELETE FROM audit_log").await;
    run(app, "INSERT INTO audit_log SELECT * FROM pristine").await;
}

/// The first problem `verify` finds: (entry, what).
async fn first_problem(app: &TestApp) -> Option<(i64, String)> {
    let reports = verify(&app.pool, &app.state.audit, Some("default"))
        .await
        .unwrap();
    reports[0].problem.clone()
}

#[tokio::test]
async fn verify_names_an_edited_a_deleted_and_an_inserted_entry() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    for i in 0..6 {
        manager.push(kpi_edit(&id(), 0, i)).await;
    }
    sealed(&app, 6).await;
    run(&app, "CREATE TABLE pristine AS SELECT * FROM audit_log").await;
    let (ok, printed) = cli_verify(&app).await;
    assert!(ok, "{printed}");
    assert!(printed.contains("6 entries, the chain holds"), "{printed}");

    // Edited: a value changed in place.
    run(
        &app,
        "UPDATE audit_log SET changed = '{\"value\": [null, 99]}' WHERE seq = 3",
    )
    .await;
    let (ok, printed) = cli_verify(&app).await;
    assert!(!ok, "{printed}");
    assert!(printed.contains("entry 3 was edited"), "{printed}");
    let (held, first_bad): (bool, Option<i64>) = sqlx::query_as(
        "SELECT held, first_bad FROM audit_verifications WHERE tenant_id = 'default'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (held, first_bad),
        (false, Some(3)),
        "the verdict is kept for the console"
    );

    // Deleted: an entry taken out of the middle.
    pristine(&app).await;
    run(&app, "DELETE FROM audit_log WHERE seq = 3").await;
    let (_, what) = first_problem(&app).await.expect("a deletion");
    assert!(what.contains("entry 3 was deleted"), "{what}");

    // Deleted, and the gap closed by renumbering the rest.
    run(&app, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3").await;
    let (at, what) = first_problem(&app).await.expect("a renumbered deletion");
    assert_eq!(at, 3, "{what}");
    assert!(what.contains("does not follow entry 2"), "{what}");

    // Inserted: an older entry copied to the end of the chain.
    pristine(&app).await;
    run(
        &app,
        "INSERT INTO audit_log SELECT tenant_id, 7, history_id, table_name, row_id, version,
                store_id, op, changed, server_time, device_time, user_name, device_id, role, origin,
                prev_seal, seal FROM audit_log WHERE seq = 2",
    )
    .await;
    let (_, what) = first_problem(&app).await.expect("an insertion");
    assert!(what.contains("entry 7 was inserted out of order"), "{what}");

    // Inserted in the middle, the rest renumbered to make room, with a made-up seal.
    pristine(&app).await;
    run(&app, "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3").await;
    run(&app, "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 103").await;
    run(
        &app,
        "INSERT INTO audit_log SELECT tenant_id, 3, history_id + 1, table_name, row_id,
                version, store_id, op, '{\"value\": [null, 1000]}', server_time, device_time, user_name,
                device_id, role, origin, seal, sha256(seal) FROM audit_log WHERE seq = 2",
    )
    .await;
    let (at, what) = first_problem(&app)
        .await
        .expect("an insertion in the middle");
    assert_eq!(at, 3, "{what}");
    assert!(what.contains("entry 3 was"), "{what}");

    // As sealed, the chain holds again.
    pristine(&app).await;
    assert_eq!(first_problem(&app).await, None);
}

#[tokio::test]
async fn the_audits_own_retention_leaves_a_signed_start_that_verify_checks() {
    let app = TestApp::spawn().await;
    let manager = app.manager("boss", "mgr-1").await;
    for i in 0..5 {
        manager.push(kpi_edit(&id(), 0, i)).await;
    }
    sealed(&app, 5).await;
    run(
        &app,
        "UPDATE audit_log SET server_time = now() - interval '400 days' WHERE seq <= 3",
    )
    .await;
    let year = std::time::Duration::from_secs(365 * 86_400);
    let gone = nas_sync::audit::prune::prune(&app.pool, &app.state.audit, year)
        .await
        .unwrap();
    assert_eq!(gone, 3);
    let left: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_log ORDER BY seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, vec![4, 5]);
    let reports = verify(&app.pool, &app.state.audit, None).await.unwrap();
    assert!(reports[0].held(), "{reports:?}");
    assert_eq!(reports[0].entries, 2);

    // The chain goes on from where it was.
    manager.push(kpi_edit(&id(), 0, 9)).await;
    sealed(&app, 3).await;
    let reports = verify(&app.pool, &app.state.audit, None).await.unwrap();
    assert!(reports[0].held() && reports[0].entries == 3, "{reports:?}");

    // Zero keeps everything.
    assert_eq!(
        nas_sync::audit::prune::prune(&app.pool, &app.state.audit, std::time::Duration::ZERO)
            .await
            .unwrap(),
        0
    );
    // A checkpoint moved to hide a deleted entry does not verify.
    run(&app, "DELETE FROM audit_log WHERE seq = 4").await;
    run(&app, "UPDATE audit_checkpoints SET seq = 5, prev_seal = (SELECT prev_seal FROM audit_log WHERE seq = 5)").await;
    let (at, what) = first_problem(&app).await.expect("a forged start");
    assert_eq!(at, 5);
    assert!(what.contains("checkpoint"), "{what}");
}
