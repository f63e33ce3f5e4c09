//! Bounded history (src/sync/retention.rs): old tombstones and row versions are
//! pruned, what live rows and recent cursors need stays, and a cursor older than the
//! pruned history answers RESYNC_REQUIRED instead of silently missing a deletion.
use crate::common::*;

use std::time::Duration;

use nas_sync::sync::retention::{self, Pruned};
use serde_json::{Value, json};

const DAYS_90: Duration = Duration::from_secs(90 * 86_400);

async fn pull_with(dev: &Device, cursor: Option<&str>) -> (reqwest::StatusCode, Value) {
    let mut body = json!({"device_id": dev.device_id});
    if let Some(c) = cursor {
        body["cursor"] = json!(c);
    }
    dev.post("/api/v1/sync/pull", &body).await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// One run of the job with a 90-day period. The server's own job also runs at start
/// and holds the job's lock meanwhile (`None`): wait for it.
async fn prune(app: &TestApp) -> Pruned {
    // History is pruned only once the audit trail sealed what follows it.
    nas_sync::audit::seal::seal_all(&app.pool, &app.state.audit)
        .await
        .unwrap();
    for _ in 0..100 {
        let policy = retention::Policy {
            keep: DAYS_90,
            wait_for_audit: true,
        };
        if let Some(p) = retention::run_once(&app.pool, policy, &nas_sync::app::aged_rows())
            .await
            .unwrap()
        {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the retention job stayed locked for 5 s");
}

/// A server whose own retention job is off, so only the test's runs prune (the job
/// runs at start, and on a busy machine it may start after the test aged its rows).
async fn quiet_app() -> TestApp {
    TestApp::spawn_with(|c| c.retention = Duration::ZERO).await
}

/// Makes everything written so far look 100 days old.
async fn age_everything(app: &TestApp) {
    for sql in [
        "UPDATE sync_changes SET changed_at = now() - interval '100 days'",
        "UPDATE sync_row_history SET changed_at = now() - interval '100 days'",
        "UPDATE push_log SET created_at = now() - interval '100 days'",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
}

#[tokio::test]
async fn old_tombstones_and_versions_go_and_older_cursors_must_resync() {
    let app = quiet_app().await;
    let mut writer = app.manager("boss", "boss-phone").await;
    let mut reader = app.login("boss", "boss-tablet").await;
    let (kept, soft, hard) = (id(), id(), id());
    for (row, title) in [(&kept, "kept"), (&soft, "soft"), (&hard, "hard")] {
        writer
            .push(json!({"forms": [{"id": row, "title": title, "updated_at": now()}]}))
            .await;
    }
    writer
        .push(json!({"forms": [{"id": kept, "title": "kept, edited", "updated_at": now()}]}))
        .await;
    reader.sync_down().await;
    let before_deletes = reader.cursor.clone().expect("cursor");
    let time_before_deletes = now();

    // One soft delete through the API, one hard delete by an administrator.
    writer
        .push(
            json!({"forms": [{"id": soft, "title": "soft", "deleted": true, "updated_at": now()}]}),
        )
        .await;
    sqlx::query("DELETE FROM forms WHERE id = $1::uuid")
        .bind(&hard)
        .execute(&app.pool)
        .await
        .unwrap();
    reader.sync_down().await;
    assert_eq!(
        reader.local_rows("forms").keys().collect::<Vec<_>>(),
        vec![&kept],
        "the reader saw both deletions"
    );
    let after_deletes = reader.cursor.clone().expect("cursor");
    writer.sync_down().await;

    age_everything(&app).await;
    let pruned = prune(&app).await;
    // kept: versions 1 and 2, latest kept; soft: 1 and 2 (the delete), latest kept;
    // hard: insert and delete, both gone.
    assert_eq!(pruned.tombstones, 2, "{pruned:?}");
    assert_eq!(pruned.history, 4, "{pruned:?}");
    assert!(
        pruned.push_answers == 0 && pruned.other("odoo_batches") == 0,
        "{pruned:?}"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM sync_changes WHERE deleted").await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sync_row_history h JOIN forms f ON f.id = h.row_id
             WHERE h.version = f.version"
        )
        .await,
        2,
        "each remaining row keeps its latest version"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM sync_row_history").await,
        2
    );

    // Nothing left to prune: a second run removes nothing.
    let again = prune(&app).await;
    assert_eq!(again.total(), 0, "{again:?}");

    // A cursor from before the deletions could have missed them: resync.
    // So is an older client's timestamp from before them.
    let (s, b) = reader
        .post(
            "/api/v1/sync/pull",
            &json!({"device_id": reader.device_id, "last_sync_timestamp": time_before_deletes}),
        )
        .await;
    assert_error(s, &b, 409, "RESYNC_REQUIRED");
    let (s, b) = pull_with(&reader, Some(&before_deletes)).await;
    assert_error(s, &b, 409, "RESYNC_REQUIRED");
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("retained history")),
        "{b}"
    );
    // A cursor that saw them goes on as before, and sees new work.
    let (s, b) = pull_with(&reader, Some(&after_deletes)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["changes"]["forms"], json!([]));
    let fresh = id();
    writer
        .push(json!({"forms": [{"id": fresh, "title": "after the prune", "updated_at": now()}]}))
        .await;
    settle(&app.pool).await;
    let (s, b) = pull_with(&reader, Some(&after_deletes)).await;
    assert_eq!(s, 200, "{b}");
    let got: Vec<&str> = b["changes"]["forms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![fresh.as_str()]);

    // A device that resyncs from scratch gets exactly the live rows.
    let mut newcomer = app.login("boss", "boss-laptop").await;
    newcomer.sync_down().await;
    let mut want = vec![kept.clone(), fresh.clone()];
    want.sort();
    assert_eq!(
        newcomer
            .local_rows("forms")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        want
    );
    // The soft-deleted row coming back is an ordinary change again.
    writer
        .push(json!({"forms": [{"id": soft, "title": "soft, restored", "deleted": false, "updated_at": now()}]}))
        .await;
    newcomer.sync_down().await;
    assert_eq!(
        newcomer.local_rows("forms")[&soft]["title"],
        json!("soft, restored")
    );

    // The restore superseded the soft row's old version: only that goes now.
    let third = prune(&app).await;
    assert_eq!((third.history, third.total()), (1, 1), "{third:?}");
}

#[tokio::test]
async fn recent_history_and_live_rows_are_never_pruned() {
    let app = quiet_app().await;
    let mut dev = app.manager("boss", "boss-phone").await;
    let (a, b) = (id(), id());
    dev.push(
        json!({"forms": [{"id": a, "title": "a", "updated_at": now()},
                             {"id": b, "title": "b", "updated_at": now()}]}),
    )
    .await;
    dev.push(json!({"forms": [{"id": b, "title": "b", "deleted": true, "updated_at": now()}]}))
        .await;
    dev.sync_down().await;
    let cursor = dev.cursor.clone().unwrap();
    let history = count(&app, "SELECT count(*) FROM sync_row_history").await;

    // Nothing is 90 days old yet.
    let pruned = prune(&app).await;
    assert_eq!(pruned.total(), 0, "{pruned:?}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM sync_row_history").await,
        history
    );

    // Everything is old, but a live row's entry is what new devices sync from: only
    // the tombstone goes.
    age_everything(&app).await;
    let pruned = prune(&app).await;
    assert_eq!(pruned.tombstones, 1, "{pruned:?}");
    assert_eq!(
        pruned.push_answers, 0,
        "pushes without push_id leave no answer"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM sync_changes WHERE NOT deleted").await,
        1
    );
    let (s, body) = pull_with(&dev, Some(&cursor)).await;
    assert_eq!(
        s, 200,
        "a cursor that saw the tombstone is still good: {body}"
    );
}

#[tokio::test]
async fn the_server_prunes_by_itself_with_the_configured_period() {
    // The first server keeps everything too: its start-up job, late on a loaded
    // machine, must not prune what the test ages before the restarts.
    let app = quiet_app().await;
    let dev = app.manager("boss", "boss-phone").await;
    let gone = id();
    dev.push_raw(
        json!({"device_id": dev.device_id, "push_id": "p-1", "timestamp": now(),
                        "changes": {"forms": [{"id": gone, "title": "x", "updated_at": now()}]}}),
    )
    .await;
    sqlx::query("DELETE FROM forms WHERE id = $1::uuid")
        .bind(&gone)
        .execute(&app.pool)
        .await
        .unwrap();
    age_everything(&app).await;
    // NAS_SYNC_RETENTION_DAYS=0 keeps everything, however old.
    let app = app.restart_with(|c| c.retention = Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&app, "SELECT count(*) FROM sync_changes").await, 1);
    // 90 days: the job that runs at start removes the tombstone, the history and the
    // recorded push answer (history once the audit trail has sealed it, which the
    // background sealer does within seconds; here before the restart).
    nas_sync::audit::seal::seal_all(&app.pool, &app.state.audit)
        .await
        .unwrap();
    let app = app.restart_with(|c| c.retention = DAYS_90).await;
    let mut left = (1, 1, 1);
    for _ in 0..100 {
        left = (
            count(&app, "SELECT count(*) FROM sync_changes").await,
            count(&app, "SELECT count(*) FROM sync_row_history").await,
            count(&app, "SELECT count(*) FROM push_log").await,
        );
        if left == (0, 0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, (0, 0, 0), "(tombstones, history, push answers) left");
}

/// With the audit trail off (`NAS_SYNC_AUDIT=off`) nothing is sealed, and history
/// retention no longer waits for sealing: old versions still go.
#[tokio::test]
async fn with_the_audit_trail_off_nothing_is_sealed_and_history_still_ages_out() {
    let app = TestApp::spawn_with(|c| {
        c.retention = Duration::ZERO;
        c.audit = false;
    })
    .await;
    let dev = app.manager("boss", "boss-phone").await;
    let gone = id();
    dev.push(json!({"forms": [{"id": gone, "title": "x", "updated_at": now()}]}))
        .await;
    sqlx::query("DELETE FROM forms WHERE id = $1::uuid")
        .bind(&gone)
        .execute(&app.pool)
        .await
        .unwrap();
    age_everything(&app).await;
    // No sealing here: the server's job at start prunes the history anyway.
    let app = app
        .restart_with(|c| {
            c.retention = DAYS_90;
            c.audit = false;
        })
        .await;
    let mut history = 1;
    for _ in 0..100 {
        history = count(&app, "SELECT count(*) FROM sync_row_history").await;
        if history == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(history, 0, "history left with the audit trail off");
    // A running sealer marks on its first tick and seals on the next, 2 s later.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(count(&app, "SELECT count(*) FROM audit_log").await, 0);
}

/// BridgeCore: a position below a pruned tombstone's event id must resync; old local
/// ids and resolved conflicts go, open conflicts stay.
#[tokio::test]
async fn event_positions_below_pruned_tombstones_resync_and_bridge_records_age_out() {
    let app = quiet_app().await;
    let dev = app.manager("boss", "boss-phone").await;
    let gone = id();
    dev.push(json!({"forms": [{"id": gone, "title": "gone", "updated_at": now()}]}))
        .await;
    settle(&app.pool).await;
    let pull = |after: i64| json!({"app_type": "store_manager_app", "last_event_id": after, "models_filter": ["forms"]});
    let (_, first) = dev.post("/api/v1/offline-sync/pull", &pull(0)).await;
    let early = first["last_event_id"].as_i64().expect("position");
    dev.push(json!({"forms": [{"id": gone, "deleted": true, "version": 1, "updated_at": now()}]}))
        .await;
    settle(&app.pool).await;
    let (_, second) = dev.post("/api/v1/offline-sync/pull", &pull(early)).await;
    assert_eq!(second["events"][0]["action"], "unlink", "{second}");
    let late = second["last_event_id"].as_i64().unwrap();

    sqlx::query(
        "INSERT INTO offline_local_ids (tenant_id, device_id, local_id, table_name, row_id, created_at)
         VALUES ('default', 'boss-phone', 'old', 'forms', gen_random_uuid(), now() - interval '100 days')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    for status in ["open", "resolved"] {
        sqlx::query(
            "INSERT INTO sync_conflicts (tenant_id, table_name, row_id, device_id, user_id,
                 base_version, server_data, client_data, strategy, status, resolved_at)
             VALUES ('default', 'forms', gen_random_uuid(), 'boss-phone', gen_random_uuid(),
                 1, '{}', '{}', 'manual', $1, now() - interval '100 days')",
        )
        .bind(status)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    age_everything(&app).await;
    let pruned = prune(&app).await;
    assert_eq!(
        (
            pruned.tombstones,
            pruned.other("local_ids"),
            pruned.conflicts
        ),
        (1, 1, 1)
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM sync_conflicts WHERE status = 'open'"
        )
        .await,
        1
    );

    // Before the pruned tombstone: resync. After it, or from 0: served.
    let (status, body) = dev.post("/api/v1/offline-sync/pull", &pull(early)).await;
    assert_error(status, &body, 409, "RESYNC_REQUIRED");
    let (status, _) = dev.post("/api/v1/offline-sync/pull", &pull(late)).await;
    assert_eq!(status.as_u16(), 200);
    let (status, full) = dev.post("/api/v1/offline-sync/pull", &pull(0)).await;
    assert_eq!(status.as_u16(), 200, "{full}");
}
