//! The command line (docs/contract.md §1), driven through the real binary:
//! `migrate`, `user add`, `device list`, `device revoke`.
use crate::common::nas_cli::*;
use crate::common::*;

use std::str::FromStr;
use std::time::Duration;

use nas_sync::auth::users;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

async fn connect(url: &str) -> PgPool {
    PgPool::connect(url)
        .await
        .expect("connect to test database")
}

/// The server in process (`crate::common::Server`), over a database the CLI prepared, and a
/// client for it.
struct App {
    server: Server,
    http: reqwest::Client,
}

async fn serve(url: &str) -> App {
    let config = test_config(url, false);
    let pool = prepare_db(&config).await;
    App {
        server: Server::spawn(config, pool).await,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

impl App {
    async fn login(&self, username: &str, password: &str, device_id: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/auth/login", self.server.base))
            .json(&json!({"username": username, "password": password, "device_id": device_id}))
            .send()
            .await
            .expect("login request");
        read(resp).await
    }

    /// Logs in and returns the access token.
    async fn token(&self, username: &str, password: &str, device_id: &str) -> String {
        let (s, b) = self.login(username, password, device_id).await;
        assert_eq!(s, StatusCode::OK, "login failed: {b}");
        b["access_token"].as_str().unwrap().to_string()
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.server.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        read(resp).await
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.server.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        read(resp).await
    }
}

/// A database name nobody created yet, dropped when the guard goes (the `TestDb` it
/// is made from must outlive it).
struct MissingDb {
    url: String,
    name: String,
    admin_url: String,
}

impl MissingDb {
    fn new(db: &TestDb) -> MissingDb {
        let name = format!("nas_cli_{}", uuid::Uuid::new_v4().simple());
        MissingDb {
            url: with_database(&db.url, &name),
            name,
            admin_url: db.url.clone(),
        }
    }
}

impl Drop for MissingDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let opts = PgConnectOptions::from_str(&admin_url).ok()?;
                let mut conn = opts.connect().await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

#[tokio::test]
async fn migrate_creates_and_migrates_the_database() {
    let db = TestDb::new().await;
    let missing = MissingDb::new(&db);

    let out = cli(&missing.url, &["migrate"], None).await;
    assert_ok(&out);
    let pool = connect(&missing.url).await;
    for table in ["users", "devices", "forms", "submissions", "kpi_data"] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(exists, "migrate did not create {table}");
    }
    pool.close().await;

    // Again: nothing to do, still 0. And over an existing empty database.
    assert_ok(&cli(&missing.url, &["migrate"], None).await);
    assert_ok(&cli(&db.url, &["migrate"], None).await);
    let pool = connect(&db.url).await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .expect("users table after migrate");
    assert_eq!(users, 0);
}

#[tokio::test]
async fn user_add_creates_a_user_who_can_log_in() {
    let db = TestDb::new().await;
    let add = [
        "user",
        "add",
        "alice",
        "--role",
        "manager",
        "--password-stdin",
    ];
    let out = cli(&db.url, &add, Some("correct horse battery\n")).await;
    assert_ok(&out);

    let pool = connect(&db.url).await;
    let alice = users::find_by_username(&pool, "alice")
        .await
        .unwrap()
        .expect("alice created");
    assert_eq!(alice.role, "manager");
    assert_eq!(alice.tenant_id, "default");
    assert_eq!(alice.store_id, None);
    assert!(
        !alice.password_hash.contains("correct horse"),
        "password stored in clear"
    );

    let server = serve(&db.url).await;
    let (s, b) = server
        .login("alice", "correct horse battery", "alice-phone")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["username"], "alice");
    assert_eq!(b["user"]["role"], "manager");
    assert_eq!(b["user"]["tenant"], "default");
    assert_eq!(b["user"]["id"], alice.id.to_string());
    let (s, b) = server
        .login("alice", "correct horse battery\n", "alice-phone")
        .await;
    assert_error(s, &b, 401, "INVALID_CREDENTIALS");

    // The same user again: refused, clearly, and the first password still holds.
    let out = cli(&db.url, &add, Some("another password\n")).await;
    assert_fails(&out);
    assert!(
        text(&out).to_lowercase().contains("exists"),
        "unclear message: {}",
        text(&out)
    );
    let (s, _) = server
        .login("alice", "another password", "alice-phone")
        .await;
    assert_eq!(s.as_u16(), 401, "a refused user add changed the password");
    let (s, _) = server
        .login("alice", "correct horse battery", "alice-phone")
        .await;
    assert_eq!(s, StatusCode::OK);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE username = 'alice'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);

    // Only the first line of standard input is the password.
    let out = cli(
        &db.url,
        &[
            "user",
            "add",
            "dave",
            "--role",
            "manager",
            "--password-stdin",
        ],
        Some("first-line\nsecond line\n"),
    )
    .await;
    assert_ok(&out);
    let (s, b) = server.login("dave", "first-line", "dave-phone").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn user_add_store_roles_and_tenants() {
    let db = TestDb::new().await;

    // Unknown role: refused, saying so, nothing created.
    let out = cli(
        &db.url,
        &["user", "add", "bob", "--role", "admin", "--password-stdin"],
        Some("pw-bob-123\n"),
    )
    .await;
    assert_fails(&out);
    assert!(
        text(&out).to_lowercase().contains("role"),
        "unclear message: {}",
        text(&out)
    );

    // A store user without --store: refused.
    let out = cli(
        &db.url,
        &[
            "user",
            "add",
            "carol",
            "--role",
            "store",
            "--password-stdin",
        ],
        Some("pw-carol-123\n"),
    )
    .await;
    assert_fails(&out);
    assert!(
        text(&out).to_lowercase().contains("store"),
        "unclear message: {}",
        text(&out)
    );

    let pool = connect(&db.url).await;
    for name in ["bob", "carol"] {
        assert!(
            users::find_by_username(&pool, name)
                .await
                .unwrap()
                .is_none(),
            "{name} was created by a refused command"
        );
    }

    // A store user of another tenant.
    let out = cli(
        &db.url,
        &[
            "user",
            "add",
            "erin",
            "--role",
            "store",
            "--store",
            "s9",
            "--tenant",
            "acme",
            "--password-stdin",
        ],
        Some("pw-erin-123\n"),
    )
    .await;
    assert_ok(&out);
    let erin = users::find_by_username(&pool, "erin")
        .await
        .unwrap()
        .expect("erin created");
    assert_eq!(
        (
            erin.role.as_str(),
            erin.store_id.as_deref(),
            erin.tenant_id.as_str()
        ),
        ("store", Some("s9"), "acme")
    );
    let server = serve(&db.url).await;
    let (s, b) = server.login("erin", "pw-erin-123", "erin-phone").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["user"],
        json!({"id": erin.id.to_string(), "username": "erin", "role": "store",
               "store_id": "s9", "tenant": "acme"})
    );
}

/// The `device list` line of `device_id`.
fn line_of<'a>(list: &'a str, device_id: &str) -> Option<&'a str> {
    list.lines()
        .find(|l| l.split_whitespace().any(|w| w == device_id))
}

#[tokio::test]
async fn device_list_and_revoke() {
    let db = TestDb::new().await;
    for args in [
        vec![
            "user",
            "add",
            "alice",
            "--role",
            "manager",
            "--password-stdin",
        ],
        vec![
            "user",
            "add",
            "erin",
            "--role",
            "store",
            "--store",
            "s9",
            "--tenant",
            "acme",
            "--password-stdin",
        ],
    ] {
        assert_ok(&cli(&db.url, &args, Some("pw-0123456789\n")).await);
    }
    let server = serve(&db.url).await;
    let phone = server.token("alice", "pw-0123456789", "alice-phone").await;
    let tablet = server.token("alice", "pw-0123456789", "alice-tablet").await;
    let erin = server.token("erin", "pw-0123456789", "erin-phone").await;

    // Every device, with its user; no sync yet.
    let out = cli(&db.url, &["device", "list"], None).await;
    assert_ok(&out);
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for (device, user) in [
        ("alice-phone", "alice"),
        ("alice-tablet", "alice"),
        ("erin-phone", "erin"),
    ] {
        let line = line_of(&list, device).unwrap_or_else(|| panic!("{device} not listed: {list}"));
        assert!(line.contains(user), "{line}");
        assert!(
            !line.contains(&today),
            "a sync time before any sync: {line}"
        );
    }

    // After a pull, the device's last sync time shows.
    let before = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (s, b) = server
        .post(
            "/api/v1/sync/pull",
            &phone,
            &json!({"device_id": "alice-phone"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The server writes pull bookkeeping once a second (docs/operations.md), and the
    // CLI reads the database: the time shows within a few seconds at most.
    let mut line = String::new();
    for _ in 0..30 {
        let out = cli(&db.url, &["device", "list"], None).await;
        assert_ok(&out);
        let after = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let list = String::from_utf8_lossy(&out.stdout).to_string();
        line = line_of(&list, "alice-phone")
            .expect("alice-phone listed")
            .to_string();
        if line.contains(&before) || line.contains(&after) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        line.contains(&before) || line.contains(&chrono::Utc::now().format("%Y-%m-%d").to_string()),
        "no last sync time after a pull: {line}"
    );

    // One tenant's devices.
    let out = cli(&db.url, &["device", "list", "--tenant", "acme"], None).await;
    assert_ok(&out);
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(line_of(&list, "erin-phone").is_some(), "{list}");
    assert!(line_of(&list, "alice-phone").is_none(), "{list}");

    // Revoking: the device's token fails at once; the others keep working.
    let out = cli(&db.url, &["device", "revoke", "alice-phone"], None).await;
    assert_ok(&out);
    let (s, b) = server.get("/api/v1/sync/status", &phone).await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
    let (s, b) = server
        .post(
            "/api/v1/sync/pull",
            &phone,
            &json!({"device_id": "alice-phone"}),
        )
        .await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
    let (s, b) = server.login("alice", "pw-0123456789", "alice-phone").await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
    let (s, b) = server.get("/api/v1/sync/status", &tablet).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Unknown devices: non-zero.
    let out = cli(&db.url, &["device", "revoke", "no-such-device"], None).await;
    assert_fails(&out);
    // Tenants share nothing: the default tenant has no erin-phone.
    let out = cli(&db.url, &["device", "revoke", "erin-phone"], None).await;
    assert_fails(&out);
    let (s, b) = server.get("/api/v1/sync/status", &erin).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let out = cli(
        &db.url,
        &["device", "revoke", "erin-phone", "--tenant", "acme"],
        None,
    )
    .await;
    assert_ok(&out);
    let (s, b) = server.get("/api/v1/sync/status", &erin).await;
    assert_error(s, &b, 401, "DEVICE_REVOKED");
}

/// `user add --email --odoo-user-id`, `user list` showing them, `user set` changing
/// and clearing them, and a taken email refused with the reason.
#[tokio::test]
async fn user_email_and_odoo_user_id_from_the_command_line() {
    let db = TestDb::new().await;
    let out = cli(
        &db.url,
        &[
            "user",
            "add",
            "ana",
            "--role",
            "store",
            "--store",
            "s1",
            "--email",
            "ana@example.org",
            "--odoo-user-id",
            "12",
            "--password-stdin",
        ],
        Some("a long password\n"),
    )
    .await;
    assert_ok(&out);
    let out = cli(&db.url, &["user", "list"], None).await;
    assert_ok(&out);
    let line = text(&out)
        .lines()
        .find(|l| l.starts_with("ana "))
        .map(str::to_string)
        .expect("ana listed");
    assert!(
        line.contains("ana@example.org") && line.trim_end().ends_with("12"),
        "{line}"
    );

    let out = cli(
        &db.url,
        &["user", "set", "ana", "--no-email", "--odoo-user-id", "13"],
        None,
    )
    .await;
    assert_ok(&out);
    let pool = connect(&db.url).await;
    let ana = users::find_by_username(&pool, "ana")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ana.email, ana.odoo_user_id), (None, Some(13)));

    let out = cli(
        &db.url,
        &[
            "user",
            "add",
            "bo",
            "--role",
            "manager",
            "--email",
            "ANA@example.org",
            "--password-stdin",
        ],
        Some("a long password\n"),
    )
    .await;
    assert_ok(&out);
    let out = cli(
        &db.url,
        &["user", "set", "ana", "--email", "ana@EXAMPLE.org"],
        None,
    )
    .await;
    assert_fails(&out);
    assert!(
        text(&out).contains("already another user's"),
        "{}",
        text(&out)
    );
    let out = cli(
        &db.url,
        &["user", "set", "nobody", "--odoo-user-id", "1"],
        None,
    )
    .await;
    assert_fails(&out);
}
