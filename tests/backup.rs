//! `nas-sync backup` and `restore --replace` on one cluster: a backup file is private
//! to its owner (0600), and a restore is all or nothing. A truncated or corrupt dump
//! (whose table of contents still reads) fails with a clear message and leaves the
//! current data exactly as it was; a good dump still replaces it.
//! (tests/operator.rs restores into a second cluster.)

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
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
