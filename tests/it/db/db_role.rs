//! nas-sync needs no more than a role that owns its database (compose's
//! `db-init/10-app-role.sh` makes such a role; docs/operations.md#security): the
//! migrations, a push and a pull, and a backup restored with `--replace` all work
//! as a role that is not a superuser, cannot create databases or roles, and owns
//! nothing but its database.

use std::process::Command;
use std::str::FromStr;

use crate::common::*;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// A login role of the test's own on the shared cluster, dropped at the end (after
/// the database it owns).
struct AppRole {
    name: String,
    admin: PgConnectOptions,
}

impl Drop for AppRole {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(mut conn) = admin.connect().await {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {name}")))
                                .execute(&mut conn)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// `url` with `user:password` as its credentials.
fn with_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}")
}

#[tokio::test]
async fn migrations_sync_and_restore_work_as_a_role_that_owns_only_its_database() {
    let db = TestDb::new().await;
    let admin = PgConnectOptions::from_str(&db.url).expect("URL");
    let role = AppRole {
        name: format!("nas_role_{}", uuid::Uuid::new_v4().simple()),
        // Not the test's database: it is gone by the time the role is dropped.
        admin: admin.clone().database("postgres"),
    };
    let password = "role-password-0123";
    let mut conn = admin.connect().await.expect("connect as the superuser");
    for sql in [
        format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             NOBYPASSRLS PASSWORD '{password}'",
            role.name
        ),
        format!("ALTER DATABASE {} OWNER TO {}", db.name, role.name),
        format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", db.name),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("make the role");
    }
    conn.close().await.ok();
    let url = with_user(&db.url, &role.name, password);

    let app = TestApp::builder()
        .db(db)
        .config(|c| c.database_url = url.clone())
        .spawn()
        .await;
    let (superuser, create_db, create_role): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        !superuser && !create_db && !create_role,
        "the server does not run as the restricted role"
    );

    let boss = app.manager("boss", "boss-tablet").await;
    let mut clerk = app.store("clerk", "s1", "clerk-phone").await;
    let r = boss
        .push(
            json!({"kpi_data": [{"id": id(), "store_id": "s1", "metric": "sales", "value": 3}],
                     "forms": [{"id": id(), "title": "Opening checklist"}]}),
        )
        .await;
    assert_eq!(r["success"], json!(true), "{r}");
    assert_eq!(clerk.sync_down().await, 2);

    let dump = std::env::temp_dir().join(format!("nas-sync-role-{}.dump", id()));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nas-sync"))
            .args(args)
            .env("DATABASE_URL", &url)
            .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
            .env("NAS_SYNC_SECRET_KEY", SECRET_KEY)
            .env("NAS_SYNC_LOG", "warn")
            .output()
            .expect("run nas-sync")
    };
    // `doctor` tells a restricted role from a superuser.
    let out = run(&["doctor"]);
    let text = nas_cli::text(&out);
    assert!(text.contains("ok   database role"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_nas-sync"))
        .arg("doctor")
        .env("DATABASE_URL", &app.db.url)
        .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
        .env("NAS_SYNC_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("run nas-sync doctor");
    let text = nas_cli::text(&out);
    assert!(
        text.contains("WARN database role") && text.contains("a superuser"),
        "{text}"
    );

    // A backup and a restore with --replace, as the same role.
    let path = dump.to_str().unwrap();
    let out = run(&["backup", "--output", path]);
    assert!(out.status.success(), "backup: {}", nas_cli::text(&out));
    let out = run(&["restore", "--replace", "--input", path]);
    let _ = std::fs::remove_file(&dump);
    assert!(out.status.success(), "restore: {}", nas_cli::text(&out));
    let forms: i64 = sqlx::query_scalar("SELECT count(*) FROM forms")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(forms, 1, "the restore lost the data");
    drop(app);
    drop(role);
}
