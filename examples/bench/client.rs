//! The HTTP side: one reqwest client (HTTP/1.1 keep-alive, large pool, gzip accepted
//! like a Flutter app's client) and the contract's routes as a device uses them:
//! login, pull (cursor, legacy timestamp, full sync), push, `/health`, and BridgeCore's
//! v2 smart-sync pull.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

/// A logged-in device: its token is bound to `device_id`.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: String,
    pub username: String,
    pub token: String,
    /// `store_id` of a store user; `None` for a manager.
    pub store: Option<String>,
}

/// One pull answer, reduced to what the benchmark checks.
#[derive(Debug)]
pub struct Page {
    pub cursor: String,
    pub has_more: bool,
    /// Rows of every table in the page.
    pub rows: usize,
    /// Rows of `kpi_data` in the page.
    pub kpi_rows: usize,
}

/// The server's HTTP API.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base: base.to_string(),
        })
    }

    /// The same client without gzip (to see what compression costs).
    pub fn without_gzip(&self) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .http1_only()
            .no_gzip()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base: self.base.clone(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends and reads a JSON answer; a non-2xx status is an error naming the route,
    /// the status and the contract's error code.
    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("{what}: request"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into())
        });
        if !status.is_success() {
            anyhow::bail!(
                "{what}: HTTP {status}, code {}: {}",
                body["code"],
                body["message"].as_str().unwrap_or(&body.to_string())
            );
        }
        Ok(body)
    }

    /// `POST /api/v1/auth/login`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_id: &str,
    ) -> anyhow::Result<Device> {
        let body = self
            .send(
                "login",
                self.http.post(self.url("/api/v1/auth/login")).json(&json!({
                    "username": username, "password": password, "device_id": device_id,
                    "device_name": "nas-sync bench",
                })),
            )
            .await
            .with_context(|| format!("logging in {device_id} as {username}"))?;
        let token = body["access_token"]
            .as_str()
            .context("login answer without access_token")?
            .to_string();
        Ok(Device {
            device_id: device_id.to_string(),
            username: username.to_string(),
            token,
            store: body["user"]["store_id"].as_str().map(str::to_string),
        })
    }

    /// Logs in (user, device id) pairs, `concurrency` at a time; also returns each
    /// login's time in milliseconds.
    pub async fn login_many(
        &self,
        pairs: &[(String, String)],
        password: &str,
        concurrency: usize,
    ) -> anyhow::Result<(Vec<Device>, Vec<f64>)> {
        let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = Vec::with_capacity(pairs.len());
        for (user, device) in pairs {
            let (user, device) = (user.clone(), device.clone());
            let api = self.clone();
            let gate = gate.clone();
            let password = password.to_string();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let started = Instant::now();
                let d = api.login(&user, &password, &device).await?;
                anyhow::Ok((d, started.elapsed().as_secs_f64() * 1e3))
            }));
        }
        let mut devices = Vec::with_capacity(pairs.len());
        let mut times = Vec::with_capacity(pairs.len());
        for t in tasks {
            let (d, ms) = t.await.context("login task")??;
            devices.push(d);
            times.push(ms);
        }
        Ok((devices, times))
    }

    /// One pull page: with `cursor` a delta, without one a full sync.
    pub async fn pull(
        &self,
        dev: &Device,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> anyhow::Result<Page> {
        let mut body = json!({"device_id": dev.device_id});
        if let Some(c) = cursor {
            body["cursor"] = json!(c);
        }
        if let Some(l) = limit {
            body["limit"] = json!(l);
        }
        self.pull_body(dev, body).await
    }

    /// A pull naming its tables, as the Insight apps do (selective sync).
    pub async fn pull_tables(
        &self,
        dev: &Device,
        cursor: Option<&str>,
        tables: &[&str],
    ) -> anyhow::Result<Page> {
        let mut body = json!({"device_id": dev.device_id, "tables": tables});
        if let Some(c) = cursor {
            body["cursor"] = json!(c);
        }
        self.pull_body(dev, body).await
    }

    /// A legacy pull (`last_sync_timestamp`, no cursor): at-least-once from `since`.
    pub async fn pull_since(
        &self,
        dev: &Device,
        since: &str,
        limit: Option<i64>,
    ) -> anyhow::Result<Page> {
        let mut body = json!({"device_id": dev.device_id, "last_sync_timestamp": since});
        if let Some(l) = limit {
            body["limit"] = json!(l);
        }
        self.pull_body(dev, body).await
    }

    async fn pull_body(&self, dev: &Device, body: Value) -> anyhow::Result<Page> {
        let v = self
            .send(
                "pull",
                self.http
                    .post(self.url("/api/v1/sync/pull"))
                    .bearer_auth(&dev.token)
                    .json(&body),
            )
            .await
            .with_context(|| format!("pull by {}", dev.device_id))?;
        let changes = v["changes"]
            .as_object()
            .context("pull answer without changes")?;
        Ok(Page {
            cursor: v["cursor"]
                .as_str()
                .context("pull answer without cursor")?
                .to_string(),
            has_more: v["has_more"] == json!(true),
            rows: changes
                .values()
                .filter_map(Value::as_array)
                .map(Vec::len)
                .sum(),
            kpi_rows: changes
                .get("kpi_data")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
        })
    }

    /// Pulls from `cursor` until `has_more` is false: (cursor, rows, pages).
    pub async fn sync_down(
        &self,
        dev: &Device,
        cursor: Option<String>,
        limit: Option<i64>,
    ) -> anyhow::Result<(String, usize, usize)> {
        self.pull_until_done(dev, cursor, None, limit).await
    }

    /// As `sync_down`, naming `tables` in every pull.
    pub async fn sync_down_tables(
        &self,
        dev: &Device,
        cursor: Option<String>,
        tables: &[&str],
    ) -> anyhow::Result<(String, usize, usize)> {
        self.pull_until_done(dev, cursor, Some(tables), None).await
    }

    async fn pull_until_done(
        &self,
        dev: &Device,
        mut cursor: Option<String>,
        tables: Option<&[&str]>,
        limit: Option<i64>,
    ) -> anyhow::Result<(String, usize, usize)> {
        let (mut rows, mut pages) = (0, 0);
        loop {
            let mut body = json!({"device_id": dev.device_id});
            if let Some(t) = tables {
                body["tables"] = json!(t);
            }
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            if let Some(l) = limit {
                body["limit"] = json!(l);
            }
            let page = self.pull_body(dev, body).await?;
            rows += page.rows;
            pages += 1;
            cursor = Some(page.cursor);
            if !page.has_more {
                return Ok((cursor.unwrap_or_default(), rows, pages));
            }
        }
    }

    /// `POST /api/v1/sync/push` of kpi_data rows; checks every row was applied without
    /// conflict or error, and returns the answer.
    pub async fn push_kpi(&self, dev: &Device, rows: &[Value]) -> anyhow::Result<Value> {
        let body = json!({
            "device_id": dev.device_id,
            "push_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "changes": {"kpi_data": rows},
        });
        let v = self
            .send(
                "push",
                self.http
                    .post(self.url("/api/v1/sync/push"))
                    .bearer_auth(&dev.token)
                    .json(&body),
            )
            .await
            .with_context(|| format!("push of {} rows by {}", rows.len(), dev.device_id))?;
        let applied = v["applied"]["kpi_data"].as_array().map_or(0, Vec::len);
        let errors = v["errors"].as_array().map_or(0, Vec::len);
        let conflicts = v["conflicts"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            v["success"] == json!(true) && applied == rows.len() && errors == 0 && conflicts == 0,
            "push of {} rows: success {}, {applied} applied, {errors} errors, {conflicts} conflicts; first error: {}",
            rows.len(),
            v["success"],
            v["errors"][0]
        );
        Ok(v)
    }

    /// `POST /api/v2/sync/pull`, BridgeCore's smart sync: events after the position the
    /// server keeps for (user, device, app type), which the pull then advances. The
    /// answer as sent, once it says `success` and carries an `events` array.
    pub async fn pull_v2(
        &self,
        dev: &Device,
        app_type: &str,
        limit: Option<i64>,
    ) -> anyhow::Result<Value> {
        let mut body = json!({
            "user_id": dev.username, "device_id": dev.device_id, "app_type": app_type,
        });
        if let Some(l) = limit {
            body["limit"] = json!(l);
        }
        let v = self
            .send(
                "v2 pull",
                self.http
                    .post(self.url("/api/v2/sync/pull"))
                    .bearer_auth(&dev.token)
                    .json(&body),
            )
            .await
            .with_context(|| format!("v2 pull by {}", dev.device_id))?;
        anyhow::ensure!(
            v["status"] == json!("success") && v["events"].is_array(),
            "v2 pull by {}: unexpected answer {}",
            dev.device_id,
            v.to_string().chars().take(300).collect::<String>()
        );
        Ok(v)
    }

    /// `GET /health` (no database).
    pub async fn health(&self) -> anyhow::Result<()> {
        self.send("health", self.http.get(self.url("/health")))
            .await
            .map(|_| ())
    }
}

/// A kpi_data row as a device pushes it; `version` is the base version (0 = new).
pub fn kpi_row(id: uuid::Uuid, store: &str, n: usize, version: i64) -> Value {
    json!({
        "id": id, "store_id": store, "metric": format!("metric-{}", n % 50),
        "value": (n % 100_000) as f64 / 4.0, "period": "2026-11",
        "updated_at": chrono::Utc::now().to_rfc3339(), "version": version,
    })
}
