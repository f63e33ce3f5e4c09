//! `nas-sync backup` and `restore --replace` on one cluster: a backup file is private
//! to its owner (0600), and a restore is all or nothing. A truncated or corrupt dump
//! (whose table of contents still reads) fails with a clear message and leaves the
//! current data exactly as it was; a good dump still replaces it.
//! (tests/it/cli/operator.rs restores into a second cluster.)

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use serde_json::{Value, json};
use sqlx::PgPool;

fn bin(args: &[&str], database_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas-sync"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
        .env("NAS_SYNC_SECRET_KEY", SECRET_KEY)
        .env("NAS_SYNC_LOG", "warn")
        .output()
        .expect("run nas-sync")
}

fn temp_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "nas-sync-{what}-{}.dump",
        uuid::Uuid::new_v4().simple()
    ))
}

fn backup(url: &str, to: &Path) {
    let out = bin(&["backup", "--output", to.to_str().unwrap()], url);
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every row of every table of the public schema, as text, by table.
async fn snapshot(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT r::text FROM public.{t} r ORDER BY 1"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        out.insert(t, rows);
    }
    out
}

#[tokio::test]
async fn a_backup_is_readable_by_its_owner_only() {
    let app = TestApp::spawn().await;
    let fresh = temp_path("mode");
    backup(&app.db.url, &fresh);
    assert_eq!(mode(&fresh), 0o600, "a new backup file");
    // Over an existing, world-readable file (and its leftover partial) too.
    let old = temp_path("mode-old");
    std::fs::write(&old, b"an older backup").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let partial = PathBuf::from(format!("{}.partial", old.display()));
    std::fs::write(&partial, b"a crashed backup").unwrap();
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o666)).unwrap();
    backup(&app.db.url, &old);
    assert_eq!(mode(&old), 0o600, "a replaced backup file");
    assert!(!partial.exists());
    let _ = std::fs::remove_file(&fresh);
    let _ = std::fs::remove_file(&old);
}

#[tokio::test]
async fn a_truncated_or_corrupt_dump_leaves_the_data_as_it_was_and_a_good_one_restores() {
    let mut app = TestApp::spawn().await;
    let manager = app.manager("boss", "boss-phone").await;
    manager
        .push(json!({"forms": [{"id": id(), "title": "In the backup", "updated_at": now()}]}))
        .await;
    // Enough rows that the table data, after the table of contents, is most of the file.
    sqlx::query(
        "INSERT INTO kpi_data (id, tenant_id, store_id, metric, value)
         SELECT gen_random_uuid(), 'default', 's1', md5(g::text) || md5(random()::text), g
         FROM generate_series(1, 20000) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // Restores (and here backups) are run with the server stopped: nothing else
    // writes meanwhile.
    app.stop().await;
    let dump = temp_path("good");
    backup(&app.db.url, &dump);
    let backed_up = snapshot(&app.pool).await;
    sqlx::query("INSERT INTO forms (id, tenant_id, title) VALUES (gen_random_uuid(), 'default', 'After the backup')")
        .execute(&app.pool)
        .await
        .unwrap();
    let current = snapshot(&app.pool).await;
    assert_ne!(current, backed_up);

    let good = std::fs::read(&dump).unwrap();
    let truncated = temp_path("truncated");
    std::fs::write(&truncated, &good[..good.len() * 9 / 10]).unwrap();
    let corrupt = temp_path("corrupt");
    let mut bytes = good.clone();
    let middle = bytes.len() * 3 / 4;
    for b in &mut bytes[middle..middle + 256] {
        *b = !*b;
    }
    std::fs::write(&corrupt, &bytes).unwrap();
    for bad in [&truncated, &corrupt] {
        // The table of contents reads: only the data is damaged.
        let list = Command::new("pg_restore")
            .args(["--list", bad.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(list.status.success(), "{bad:?}: {list:?}");
        let out = bin(
            &["restore", "--replace", "--input", bad.to_str().unwrap()],
            &app.db.url,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} restored: {stderr}");
        assert!(
            stderr.contains("rolled back") && stderr.contains("still holds its previous data"),
            "{bad:?}: {stderr}"
        );
        assert_eq!(
            snapshot(&app.pool).await,
            current,
            "{bad:?} changed the data"
        );
    }
    let truncated_err = String::from_utf8_lossy(
        &bin(
            &[
                "restore",
                "--replace",
                "--input",
                truncated.to_str().unwrap(),
            ],
            &app.db.url,
        )
        .stderr,
    )
    .into_owned();
    assert!(
        truncated_err.contains("truncated or damaged"),
        "{truncated_err}"
    );

    let out = bin(
        &["restore", "--replace", "--input", dump.to_str().unwrap()],
        &app.db.url,
    );
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut restored = snapshot(&app.pool).await;
    let mut want = backed_up;
    // The restore draws a new epoch, by design.
    for s in [&mut restored, &mut want] {
        s.remove("server_meta");
    }
    assert_eq!(restored, want, "the restored data differs from the backup");
    let titles: Vec<Value> = sqlx::query_scalar("SELECT to_jsonb(title) FROM forms")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(titles, vec![json!("In the backup")]);
    for f in [&dump, &truncated, &corrupt] {
        let _ = std::fs::remove_file(f);
    }
}

/// The compose `backup` service as it runs: `nas-sync backup` refuses a database the
/// server has not migrated yet (a dump of it holds nothing); `backup-loop` started
/// beside a server that has not migrated waits, dumps once the schema is there, and
/// stops at once on SIGTERM; `backup-check` turns healthy on that dump.
#[tokio::test]
async fn scheduled_backups_wait_for_the_schema_and_stop_on_sigterm() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("nas-sync-loop-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_s = dir.to_str().unwrap().to_string();

    let early = temp_path("early");
    let out = bin(&["backup", "--output", early.to_str().unwrap()], &db.url);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no nas-sync schema yet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!early.exists(), "a refused backup left a file");

    let check = |dir: &str| {
        bin(
            &["backup-check", "--dir", dir],
            "postgres://unused@127.0.0.1:1/x",
        )
    };
    let unhealthy = check(&dir_s);
    assert!(!unhealthy.status.success());
    assert!(String::from_utf8_lossy(&unhealthy.stdout).contains("no backup yet"));

    let mut looping = Command::new(env!("CARGO_BIN_EXE_nas-sync"))
        .args([
            "backup-loop",
            "--dir",
            &dir_s,
            "--every-hours",
            "24",
            "--keep",
            "2",
        ])
        .env("DATABASE_URL", &db.url)
        .env("NAS_SYNC_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start backup-loop");
    let dumps = || -> Vec<PathBuf> {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "dump"))
            .collect()
    };
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert!(
        dumps().is_empty(),
        "dumped before the schema existed: {:?}",
        dumps()
    );

    let out = bin(&["migrate"], &db.url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut waited = 0;
    while dumps().is_empty() && waited < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let found = dumps();
    assert_eq!(found.len(), 1, "no dump after the migration: {found:?}");
    let mode = std::fs::metadata(&found[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let toc = Command::new("pg_restore")
        .args(["--list", found[0].to_str().unwrap()])
        .output()
        .expect("pg_restore --list");
    assert!(
        String::from_utf8_lossy(&toc.stdout).contains("TABLE public refinery_schema_history"),
        "the first dump lacks the schema"
    );
    let healthy = check(&dir_s);
    assert!(healthy.status.success(), "{healthy:?}");

    let t0 = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &looping.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(s) = looping.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "backup-loop ignored SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "backup-loop exited with {status}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut looping.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("waiting for nas-sync to migrate"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
