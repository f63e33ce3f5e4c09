//! Test harness: a fresh PostgreSQL database per test, the real server on port 0,
//! and `Device`, an HTTP client that syncs like a Flutter app (keeps a cursor and a
//! local copy of every table).
//!
//! The database server comes from `TEST_DATABASE_URL` or `DATABASE_URL`; without
//! either, a testcontainers PostgreSQL is started; if that fails too, the test fails
//! with instructions. Tests never skip silently.

pub mod nas_cli;
pub mod pg_private;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use nas_sync::auth::{Role, users};
use nas_sync::{AppState, Config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::OnceCell;

pub const JWT_SECRET: &str = "test-secret-0123456789-abcdefghij";
/// `NAS_SYNC_SECRET_KEY` of every test server (seals Odoo API keys).
pub const SECRET_KEY: &str = "test-sealing-key-0123456789-abcdefghijklmnop";

/// The server URL tests create their databases on (database part ignored).
async fn server_url() -> String {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_init(|| async {
        for var in ["TEST_DATABASE_URL", "DATABASE_URL"] {
            if let Ok(url) = std::env::var(var)
                && !url.is_empty()
            {
                return url;
            }
        }
        match start_container().await {
            Ok(url) => url,
            Err(e) => panic!(
                "No PostgreSQL for the tests: set TEST_DATABASE_URL (e.g. \
                 postgres://postgres:postgres@127.0.0.1:5432/postgres) to a server where the \
                 user may create databases, or run a Docker engine for testcontainers ({e})"
            ),
        }
    })
    .await
    .clone()
}

async fn start_container() -> anyhow::Result<String> {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    let container = Postgres::default().start().await?;
    let port = container.get_host_port_ipv4(5432).await?;
    // Keep the container for the life of the test process.
    Box::leak(Box::new(container));
    Ok(format!(
        "postgres://postgres:postgres@127.0.0.1:{port}/postgres"
    ))
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::on(&server_url().await).await
    }

    /// A fresh database on the PostgreSQL server of `base` (its database part ignored).
    pub async fn on(base: &str) -> TestDb {
        nas_sync::install_tls_provider();
        let admin = PgConnectOptions::from_str(base).expect("valid TEST_DATABASE_URL");
        let name = format!("nas_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin
            .connect()
            .await
            .expect("connect to the test PostgreSQL server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(base, &name);
        TestDb { url, name, admin }
    }
}

/// `url` with its database name replaced by `name` (query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = main.find("://").map_or(0, |i| i + 3);
    let host_part = match main[scheme_end..].find('/') {
        Some(i) => &main[..scheme_end + i],
        None => main,
    };
    format!("{host_part}/{name}{query}")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop from a thread of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(mut conn) = admin.connect().await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}

/// nas-sync launched in this process on 127.0.0.1:0 with `nas_sync::launch`; dropping
/// it stops the server. Every in-process server of the tests starts here.
pub struct Server {
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub base: String,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Builds the state over `pool`, a prepared database (`AppState::from_pool`, so the
    /// registry is loaded now), binds 127.0.0.1:0 and launches the server there.
    pub async fn spawn(config: Config, pool: PgPool) -> Server {
        let state = AppState::from_pool(config, pool)
            .await
            .expect("build the app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_state = state.clone();
        let task = tokio::spawn(async move {
            nas_sync::launch(listener, server_state, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        Server {
            base,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Prepares the database `config` names as `nas-sync serve` does before it listens
/// (`AppState::prepare`: migrations and the start-up checks); returns its pool.
pub async fn prepare_db(config: &Config) -> PgPool {
    AppState::prepare(config.clone())
        .await
        .expect("prepare app")
        .pool
        .clone()
}

pub fn test_config(url: &str, rate_limit: bool) -> Config {
    let url = url.to_string();
    Config::from_lookup(move |name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "NAS_SYNC_JWT_SECRET" => Some(JWT_SECRET.into()),
        "NAS_SYNC_SECRET_KEY" => Some(SECRET_KEY.into()),
        "NAS_SYNC_RATE_LIMIT" => Some(if rate_limit { "on" } else { "off" }.into()),
        "NAS_SYNC_BODY_LIMIT_BYTES" => std::env::var("TEST_BODY_LIMIT").ok(),
        _ => None,
    })
    .expect("test config")
}

/// The real server (a [`Server`]) over a database of its own, with an HTTP client.
pub struct TestApp {
    pub base: String,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub state: AppState,
    server: Server,
    /// Last: the database is dropped after the server has stopped.
    pub db: TestDb,
}

/// A change to the test config.
type Tweak<'a> = Box<dyn FnOnce(&mut Config) + 'a>;

/// How to start a [`TestApp`]: `TestApp::builder().rules(..).config(..).spawn()`.
#[derive(Default)]
pub struct TestAppBuilder<'a> {
    db: Option<TestDb>,
    rules: Vec<(String, String)>,
    tweaks: Vec<Tweak<'a>>,
}

impl<'a> TestAppBuilder<'a> {
    /// Adjusts the test config (`test_config`); tweaks apply in the order given.
    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + 'a) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Sets each `(table, rule)` in `sync_tables` (in SQL) before the server starts, so
    /// its registry loads these conflict rules.
    pub fn rules(mut self, rules: &[(&str, &str)]) -> Self {
        self.rules
            .extend(rules.iter().map(|(t, r)| (t.to_string(), r.to_string())));
        self
    }

    /// Over an existing database instead of a fresh one.
    pub fn db(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }

    pub async fn spawn(self) -> TestApp {
        nas_sync::install_tls_provider();
        init_logs();
        let db = match self.db {
            Some(db) => db,
            None => TestDb::new().await,
        };
        let mut config = test_config(&db.url, false);
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        let pool = prepare_db(&config).await;
        for (table, rule) in &self.rules {
            let n = sqlx::query("UPDATE sync_tables SET rule = $2 WHERE table_name = $1")
                .bind(table)
                .bind(rule)
                .execute(&pool)
                .await
                .expect("set rule")
                .rows_affected();
            assert_eq!(n, 1, "no synced table {table}");
        }
        let server = Server::spawn(config, pool.clone()).await;
        for (table, rule) in &self.rules {
            assert_eq!(
                server
                    .state
                    .sync
                    .registry
                    .current()
                    .get(table)
                    .unwrap()
                    .rule
                    .as_str(),
                rule,
                "registry did not load the rule"
            );
        }
        TestApp {
            base: server.base.clone(),
            pool,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            state: server.state.clone(),
            server,
            db,
        }
    }
}

impl TestApp {
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder::default()
    }

    /// With the test config, over a fresh database.
    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    /// With a config adjusted by `tweak`, over a fresh database.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::builder().config(tweak).spawn().await
    }

    /// Stops this server and starts a new one over the same database (a restart).
    pub async fn restart_with(self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let TestApp {
            pool,
            mut server,
            db,
            ..
        } = self;
        server.stop().await;
        pool.close().await;
        Self::builder().db(db).config(tweak).spawn().await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    pub async fn add_user(&self, username: &str, role: Role, store: Option<&str>, tenant: &str) {
        users::add(&self.pool, tenant, username, role, store, "password")
            .await
            .expect("add user");
    }

    /// Creates a manager of tenant `default` and logs in a device for it.
    pub async fn manager(&self, username: &str, device_id: &str) -> Device {
        self.add_user(username, Role::Manager, None, "default")
            .await;
        self.login(username, device_id).await
    }

    /// Creates a store user of tenant `default` and logs in a device for it.
    pub async fn store(&self, username: &str, store: &str, device_id: &str) -> Device {
        self.add_user(username, Role::Store, Some(store), "default")
            .await;
        self.login(username, device_id).await
    }

    /// A login attempt, its status and body as the server answered.
    pub async fn login_raw(
        &self,
        username: &str,
        password: &str,
        device_id: &str,
    ) -> (StatusCode, Value) {
        self.post_json(
            "/api/v1/auth/login",
            None,
            &json!({"username": username, "password": password, "device_id": device_id}),
        )
        .await
    }

    pub async fn login(&self, username: &str, device_id: &str) -> Device {
        let (status, body) = self
            .post_json(
                "/api/v1/auth/login",
                None,
                &json!({"username": username, "password": "password", "device_id": device_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        Device {
            http: self.http.clone(),
            base: self.base.clone(),
            device_id: device_id.to_string(),
            token: body["access_token"].as_str().unwrap().to_string(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_string(),
            cursor: None,
            local: BTreeMap::new(),
            pool: self.pool.clone(),
            settle: true,
        }
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }

    /// Live rows of `table` for `tenant`, as the server stores them, by id.
    pub async fn server_rows(&self, table: &str, tenant: &str) -> BTreeMap<String, Value> {
        let rows: Vec<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id::text, to_jsonb(t) - 'tenant_id' FROM {table} t WHERE tenant_id = $1 AND NOT deleted"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .expect("read server rows");
        rows.into_iter().collect()
    }
}

/// Status and JSON body (or the text as a JSON string when not JSON).
pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Asserts the contract's error shape and code.
pub fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(
        status.as_u16(),
        want_status,
        "unexpected status; body: {body}"
    );
    assert_eq!(body["code"], want_code, "unexpected code; body: {body}");
    assert!(
        body["error"].is_string() && body["message"].is_string() && body["details"].is_object(),
        "error shape: {body}"
    );
}

/// A device, syncing like the Flutter apps: a cursor and a local copy of each table.
pub struct Device {
    pub http: reqwest::Client,
    pub base: String,
    pub device_id: String,
    pub token: String,
    pub refresh_token: String,
    pub cursor: Option<String>,
    /// table -> id -> row (live rows only; tombstones remove)
    pub local: BTreeMap<String, BTreeMap<String, Value>>,
    pub pool: PgPool,
    /// Wait for the horizon before each pull (see `settle`).
    pub settle: bool,
}

impl Device {
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body);
        read(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        read(req.send().await.expect("request")).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let req = self
            .http
            .patch(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body);
        read(req.send().await.expect("request")).await
    }

    /// Pushes `changes`; asserts a 200 and returns the body.
    pub async fn push(&self, changes: Value) -> Value {
        let (status, body) = self
            .push_raw(json!({"device_id": self.device_id, "timestamp": now(), "changes": changes}))
            .await;
        assert_eq!(status, StatusCode::OK, "push failed: {body}");
        body
    }

    pub async fn push_raw(&self, body: Value) -> (StatusCode, Value) {
        self.post("/api/v1/sync/push", &body).await
    }

    /// One pull page with the current cursor; applies it locally.
    pub async fn pull_page(&mut self, limit: Option<i64>) -> Value {
        if self.settle {
            settle(&self.pool).await;
        }
        let mut body = json!({"device_id": self.device_id});
        if let Some(c) = &self.cursor {
            body["cursor"] = json!(c);
        }
        if let Some(l) = limit {
            body["limit"] = json!(l);
        }
        let (status, resp) = self.post("/api/v1/sync/pull", &body).await;
        assert_eq!(status, StatusCode::OK, "pull failed: {resp}");
        self.apply(&resp);
        self.cursor = Some(resp["cursor"].as_str().expect("cursor").to_string());
        resp
    }

    /// Applies a pull answer to the local copy.
    pub fn apply(&mut self, resp: &Value) {
        for (table, rows) in resp["changes"].as_object().expect("changes") {
            let local = self.local.entry(table.clone()).or_default();
            for row in rows.as_array().expect("rows") {
                let id = row["id"].as_str().expect("id").to_string();
                if row["deleted"] == json!(true) {
                    local.remove(&id);
                } else {
                    local.insert(id, row.clone());
                }
            }
        }
    }

    /// Pulls until `has_more` is false; returns the number of rows received.
    pub async fn sync_down(&mut self) -> usize {
        let mut rows = 0;
        loop {
            let resp = self.pull_page(None).await;
            rows += resp["changes"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_array().unwrap().len())
                .sum::<usize>();
            if resp["has_more"] == json!(false) {
                return rows;
            }
        }
    }

    pub fn local_rows(&self, table: &str) -> BTreeMap<String, Value> {
        self.local.get(table).cloned().unwrap_or_default()
    }
}

/// Waits until every change already in this database's log is below the pull horizon
/// (`sync_horizon()`, which only this database's transactions hold back: another
/// test's database no longer can). Tests that assert exact pull results call this
/// first; it never makes a missed row appear, since a correct server returns nothing
/// past the horizon.
pub async fn settle(pool: &PgPool) {
    let last: Option<i64> = sqlx::query_scalar("SELECT max(xid::text::bigint) FROM sync_changes")
        .fetch_one(pool)
        .await
        .expect("read change log");
    let Some(last) = last else { return };
    for _ in 0..600 {
        let horizon: i64 = sqlx::query_scalar("SELECT sync_horizon()::text::bigint")
            .fetch_one(pool)
            .await
            .expect("read horizon");
        if horizon > last {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pull horizon did not pass xid {last} within 30 s (a stuck transaction?)");
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

pub fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_default())
            .with_test_writer()
            .try_init();
    }
}

/// The real `nas-sync serve` binary as a child process, over an existing database,
/// ready to answer (what a second container or a deployment runs).
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts it on a free port with the test secrets and `env` on top; waits for
    /// `/ready`.
    pub async fn start(
        db_url: &str,
        env: &[(&str, &str)],
        stderr: std::process::Stdio,
    ) -> ServerProcess {
        Self::start_limited(db_url, env, stderr, None).await
    }

    /// As `start`, with the process's open-files limit (soft and hard) set to
    /// `open_files` first, as `ulimit -n` does.
    pub async fn start_limited(
        db_url: &str,
        env: &[(&str, &str)],
        stderr: std::process::Stdio,
        open_files: Option<u32>,
    ) -> ServerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = match open_files {
            None => std::process::Command::new(env!("CARGO_BIN_EXE_nas-sync")),
            Some(n) => {
                let mut sh = std::process::Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(env!("CARGO_BIN_EXE_nas-sync"));
                sh
            }
        };
        cmd.arg("serve")
            .env("DATABASE_URL", db_url)
            .env("NAS_SYNC_BIND", format!("127.0.0.1:{port}"))
            .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
            .env("NAS_SYNC_SECRET_KEY", SECRET_KEY)
            .env("NAS_SYNC_RATE_LIMIT", "off")
            .env("NAS_SYNC_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start nas-sync serve");
        let base = format!("http://127.0.0.1:{port}");
        let start = std::time::Instant::now();
        while reqwest::get(format!("{base}/ready"))
            .await
            .map(|r| r.status() != StatusCode::OK)
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "nas-sync serve did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ServerProcess { child, base }
    }

    /// Sends SIGTERM (a graceful stop) and waits for the process.
    pub fn terminate(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
