//! The restore drill, as an operator would run it: data pushed through the server,
//! `nas-sync backup`, more changes, `nas-sync restore` into a *different* PostgreSQL
//! cluster, the server started there. Devices' old cursors answer `RESYNC_REQUIRED`,
//! a full resync equals the backup row for row, and changes a device made offline can
//! still be pushed. Also `nas-sync doctor` on a healthy and on a broken setup, and
//! `nas-sync healthcheck` (the container's HEALTHCHECK).
//!
//! The second cluster comes from `DRILL_DATABASE_URL` (scripts/test.sh makes one with
//! scripts/drill-cluster.sh); without it the drill fails with instructions.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::{Value, json};
use sqlx::PgPool;

const TABLES: [&str; 4] = ["forms", "fields", "submissions", "kpi_data"];

fn bin(args: &[&str], database_url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nas-sync"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
        .env("NAS_SYNC_SECRET_KEY", SECRET_KEY)
        .env("NAS_SYNC_LOG", "warn")
        .output()
        .expect("run nas-sync")
}

/// Every row of the drill's tables, by table and id (tenant_id dropped, as pulls do).
async fn snapshot(pool: &PgPool) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for t in TABLES {
        let rows: Vec<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id::text, to_jsonb(t) - 'tenant_id' FROM {t} t"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        out.insert(t.to_string(), rows.into_iter().collect());
    }
    out
}

#[tokio::test]
async fn a_backup_restored_into_another_cluster_serves_exactly_its_data() {
    let drill = std::env::var("DRILL_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "The restore drill needs a second PostgreSQL cluster: set DRILL_DATABASE_URL \
             (e.g. postgres://postgres@127.0.0.1:5499/postgres), or run ./scripts/test.sh as \
             root so scripts/drill-cluster.sh can create one with pg_createcluster"
        )
    });
    assert!(
        drill.starts_with("postgres://") || drill.starts_with("postgresql://"),
        "DRILL_DATABASE_URL is not a PostgreSQL URL: {drill:?}"
    );
    let app = TestApp::spawn().await;
    let mut manager = app.manager("boss", "boss-phone").await;
    let store = app.store("clerk", "s1", "clerk-phone").await;
    let form = id();
    manager
        .push(json!({"forms": [{"id": form, "title": "Daily check", "updated_at": now()}],
                     "fields": [{"id": id(), "form_id": form, "label": "Clean?", "updated_at": now()}]}))
        .await;
    store
        .push(json!({"submissions": [{"id": id(), "form_id": form, "store_id": "s1", "status": "completed", "updated_at": now()}],
                     "kpi_data": [{"id": id(), "store_id": "s1", "metric": "sales", "value": 12.5, "updated_at": now()}]}))
        .await;
    manager.sync_down().await;

    // Back up, then keep working: these changes are not in the backup.
    let dump = std::env::temp_dir().join(format!(
        "nas-sync-drill-{}.dump",
        uuid::Uuid::new_v4().simple()
    ));
    let out = bin(&["backup", "--output", dump.to_str().unwrap()], &app.db.url);
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backed_up = snapshot(&app.pool).await;
    manager
        .push(json!({"forms": [{"id": id(), "title": "After the backup", "updated_at": now()}]}))
        .await;
    manager.sync_down().await;
    let cursor_after_backup = manager.cursor.clone().expect("cursor");

    // Restore into a database of the other cluster and serve it.
    let name = format!("nas_drill_{}", uuid::Uuid::new_v4().simple());
    let target = with_database(&drill, &name);
    let out = bin(&["restore", "--input", dump.to_str().unwrap()], &target);
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second restore over live data needs --replace.
    let out = bin(&["restore", "--input", dump.to_str().unwrap()], &target);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--replace"),
        "{out:?}"
    );
    let mut server = ServerProcess::start(&target, &[], Stdio::null()).await;
    let restored_pool = PgPool::connect(&target).await.unwrap();
    assert_eq!(
        snapshot(&restored_pool).await,
        backed_up,
        "the restored database differs from the backup"
    );

    // The device's cursor is from after the backup: it must not be trusted.
    manager.base = server.base.clone();
    let (s, b) = manager
        .post(
            "/api/v1/sync/pull",
            &json!({"device_id": "boss-phone", "cursor": cursor_after_backup}),
        )
        .await;
    assert_error(s, &b, 409, "RESYNC_REQUIRED");
    // A full resync gives exactly the backup.
    manager.cursor = None;
    manager.local.clear();
    manager.pool = restored_pool.clone();
    manager.sync_down().await;
    for t in TABLES {
        let local: BTreeMap<String, Value> = manager.local_rows(t);
        let want: BTreeMap<String, Value> = backed_up[t]
            .iter()
            .filter(|(_, r)| r["deleted"] != json!(true))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(local.len(), want.len(), "{t}");
        for (id, row) in &want {
            assert_eq!(local.get(id), Some(row), "{t} {id}");
        }
    }
    // What the device made offline can still be pushed.
    let resp = manager
        .push(json!({"forms": [{"id": id(), "title": "Made offline", "updated_at": now()}]}))
        .await;
    assert_eq!(resp["success"], true, "{resp}");

    // A replace restore works once the server is stopped.
    server.terminate();
    let out = bin(
        &["restore", "--replace", "--input", dump.to_str().unwrap()],
        &target,
    );
    assert!(
        out.status.success(),
        "replace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&restored_pool).await, backed_up);

    restored_pool.close().await;
    let _ = std::fs::remove_file(&dump);
    let admin = PgPool::connect(&drill).await.unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
}

#[tokio::test]
async fn doctor_says_healthy_on_a_good_setup_and_what_to_fix_on_a_broken_one() {
    let app = TestApp::spawn().await;
    let out = bin(&["doctor"], &app.db.url);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "database",
        "migrations",
        "open files",
        "clock",
        "change feed",
        "disk",
    ] {
        assert!(text.contains(line), "doctor output lacks {line}: {text}");
    }
    // The test server's own PostgreSQL may trust local connections (this machine's
    // does): then doctor must say so, name the role, and fail on that alone.
    let opts: sqlx::postgres::PgConnectOptions = app.db.url.parse().unwrap();
    let bare = opts.clone().password("").database("postgres");
    let trusted = <sqlx::PgConnection as sqlx::Connection>::connect_with(&bare)
        .await
        .is_ok();
    let fails: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    if trusted {
        let user = opts.get_username();
        assert_eq!(fails.len(), 1, "{text}");
        assert!(
            fails[0].starts_with("FAIL passwords")
                && fails[0].contains(&format!("{user} over TCP")),
            "{text}"
        );
        assert!(
            !out.status.success() && text.contains("pg_hba.conf"),
            "{text}"
        );
    } else {
        assert!(fails.is_empty(), "{text}");
        assert!(
            text.contains("ok   passwords") && text.contains("healthy"),
            "{text}"
        );
        assert!(out.status.success(), "{text}");
    }

    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bin(
        &["doctor"],
        &format!("postgres://postgres:postgres@127.0.0.1:{port}/nas_sync"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("FAIL database") && text.contains("fix:"),
        "{text}"
    );

    // A database that was never migrated.
    let db = TestDb::new().await;
    let out = bin(&["doctor"], &db.url);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("FAIL migrations") && text.contains("nas-sync migrate"),
        "{text}"
    );
}

#[tokio::test]
async fn healthcheck_exits_zero_only_when_the_server_is_ready() {
    let db = TestDb::new().await;
    let mut server = ServerProcess::start(&db.url, &[], Stdio::null()).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let run = |bind: &str| {
        Command::new(env!("CARGO_BIN_EXE_nas-sync"))
            .arg("healthcheck")
            .env("DATABASE_URL", &db.url)
            .env("NAS_SYNC_BIND", bind)
            .output()
            .expect("run healthcheck")
    };
    let ok = run(&addr);
    assert!(ok.status.success(), "{ok:?}");
    // 0.0.0.0 (a container's bind) is checked on loopback.
    let port = addr.rsplit(':').next().unwrap();
    assert!(run(&format!("0.0.0.0:{port}")).status.success());
    server.terminate();
    let down = run(&addr);
    assert!(!down.status.success(), "{down:?}");
}
