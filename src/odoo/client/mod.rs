//! The Odoo client: one connection's protocol (JSON-RPC `/jsonrpc` for Odoo 16 to 18,
//! JSON-2 `/json/2/<model>/<method>` with an API key for 19+), chosen by probing
//! `/web/version`; the handful of ORM methods the mirror uses; retries of retryable
//! faults with jittered exponential backoff; a polite delay between calls; and Odoo's
//! own clock, read from each answer's `Date` header. The HTTP side (redirects kept
//! within the connection's origin, bodies read with a size limit) is `transport`.

mod transport;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

use super::fault::OdooError;

/// How calls are paced and retried.
#[derive(Clone, Debug)]
pub struct CallPolicy {
    /// Time allowed for one HTTP call.
    pub timeout: Duration,
    /// Least time between two calls of one client.
    pub polite_delay: Duration,
    /// Extra attempts for a retryable fault.
    pub retries: u32,
    /// First backoff; doubled per attempt, with jitter, capped at 30 s.
    pub backoff: Duration,
    /// Largest answer read (`NAS_SYNC_ODOO_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout: Duration::from_secs(120),
            polite_delay: Duration::from_millis(200),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_body_bytes: 64 << 20,
        }
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Credentials {
    pub url: String,
    pub database: String,
    pub username: String,
    pub api_key: String,
}

/// Never prints the key.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

/// The wire protocol a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    JsonRpc,
    Json2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::JsonRpc => "jsonrpc",
            Protocol::Json2 => "json2",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "jsonrpc" => Some(Protocol::JsonRpc),
            "json2" => Some(Protocol::Json2),
            _ => None,
        }
    }
}

/// An authenticated client for one Odoo database.
pub struct OdooClient {
    http: reqwest::Client,
    creds: Credentials,
    base: String,
    pub protocol: Protocol,
    pub version: String,
    /// The user id (JSON-RPC); JSON-2 authenticates every call with the key.
    pub uid: Option<i64>,
    policy: CallPolicy,
    last_call: tokio::sync::Mutex<Option<Instant>>,
    clock: Mutex<Option<(DateTime<Utc>, Instant)>>,
    /// Set once the server refused `load: null` in `search_read`.
    no_load: AtomicBool,
}

/// What `search_read` and friends read with: archived records included.
fn read_context() -> Value {
    json!({ "active_test": false })
}

impl OdooClient {
    /// A client for a known protocol (after a restart), without probing again.
    pub fn resume(
        creds: Credentials,
        policy: CallPolicy,
        protocol: Protocol,
        version: String,
        uid: Option<i64>,
    ) -> Result<OdooClient, OdooError> {
        crate::install_tls_provider();
        let http = transport::http_client(policy.timeout)?;
        Ok(OdooClient {
            http,
            base: creds.url.trim_end_matches('/').to_string(),
            creds,
            protocol,
            version,
            uid,
            policy,
            last_call: tokio::sync::Mutex::new(None),
            clock: Mutex::new(None),
            no_load: AtomicBool::new(false),
        })
    }

    /// Probes the version, picks the protocol and authenticates. JSON-2 has no login
    /// call: the key is checked with a `search_count` on `check_model`.
    pub async fn connect(
        creds: Credentials,
        policy: CallPolicy,
        check_model: &str,
    ) -> Result<OdooClient, OdooError> {
        let mut client = OdooClient::resume(creds, policy, Protocol::JsonRpc, String::new(), None)?;
        // A server that tells no version is taken for JSON-RPC (Odoo 16 to 18); one
        // that does not answer at all is unreachable.
        let (major, version) = match client.probe_version().await {
            Ok(v) => v,
            Err(
                e @ (OdooError::Unreachable(_) | OdooError::Http { .. } | OdooError::Redirected(_)),
            ) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "Odoo did not tell its version; using JSON-RPC");
                (0, "unknown".to_string())
            }
        };
        client.version = version;
        if major >= 19 {
            client.protocol = Protocol::Json2;
            // The key is checked by a cheap call; 401 means a bad key.
            client
                .call(check_model, "search_count", vec![json!([])], Map::new())
                .await
                .map_err(|e| match e {
                    OdooError::Fault { ref name, .. }
                        if name.contains("Unauthorized") || name.contains("AccessDenied") =>
                    {
                        OdooError::AuthFailed("Odoo refused the API key".into())
                    }
                    other => other,
                })?;
        } else {
            let uid = client
                .rpc(
                    "common",
                    "authenticate",
                    json!([
                        client.creds.database,
                        client.creds.username,
                        client.creds.api_key,
                        {}
                    ]),
                )
                .await?;
            match uid.as_i64() {
                Some(uid) if uid > 0 => client.uid = Some(uid),
                _ => {
                    return Err(OdooError::AuthFailed(
                        "Odoo refused the database, username or API key".into(),
                    ));
                }
            }
        }
        Ok(client)
    }

    /// `GET /web/version`, falling back to the JSON-RPC `common.version` call.
    async fn probe_version(&self) -> Result<(u64, String), OdooError> {
        let url = format!("{}/web/version", self.base);
        let resp = self.send(self.http.get(&url)).await?;
        if resp.status().is_success()
            && let Ok(v) = transport::read_json(resp, self.policy.max_body_bytes, "JSON").await
            && let Some(major) = v.pointer("/version_info/0").and_then(Value::as_u64)
        {
            let version = v["version"].as_str().unwrap_or_default().to_string();
            return Ok((major, version));
        }
        let v = self.rpc("common", "version", json!([])).await?;
        let major = v
            .pointer("/server_version_info/0")
            .and_then(Value::as_u64)
            .ok_or_else(|| OdooError::Protocol("the server did not tell its version".into()))?;
        Ok((
            major,
            v["server_version"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// Odoo's clock now: the last `Date` header seen plus the time since.
    pub fn odoo_now(&self) -> DateTime<Utc> {
        let clock = self.clock.lock().map(|c| *c).unwrap_or(None);
        match clock {
            Some((at, seen)) => at + chrono::Duration::from_std(seen.elapsed()).unwrap_or_default(),
            None => Utc::now(),
        }
    }

    /// Sends a request, keeping the polite delay and reading Odoo's clock.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, OdooError> {
        {
            let mut last = self.last_call.lock().await;
            if let Some(at) = *last {
                let since = at.elapsed();
                if since < self.policy.polite_delay {
                    tokio::time::sleep(self.policy.polite_delay - since).await;
                }
            }
            *last = Some(Instant::now());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport::send_error(&e, self.policy.timeout))?;
        if let Some(date) = resp.headers().get(reqwest::header::DATE)
            && let Ok(text) = date.to_str()
            && let Ok(at) = DateTime::parse_from_rfc2822(text)
            && let Ok(mut clock) = self.clock.lock()
        {
            *clock = Some((at.with_timezone(&Utc), Instant::now()));
        }
        Ok(resp)
    }

    /// One JSON-RPC call (no retry).
    async fn rpc(&self, service: &str, method: &str, args: Value) -> Result<Value, OdooError> {
        let body = json!({
            "jsonrpc": "2.0", "method": "call", "id": 1,
            "params": { "service": service, "method": method, "args": args },
        });
        let url = format!("{}/jsonrpc", self.base);
        let resp = self.send(self.http.post(&url).json(&body)).await?;
        let status = resp.status();
        let limit = self.policy.max_body_bytes;
        if !status.is_success() {
            return Err(OdooError::http(
                status.as_u16(),
                &transport::text_of(resp, limit).await,
            ));
        }
        let v = transport::read_json(resp, limit, "JSON-RPC").await?;
        if let Some(err) = v.get("error") {
            return Err(OdooError::from_jsonrpc(err));
        }
        v.get("result")
            .cloned()
            .ok_or_else(|| OdooError::Protocol("a JSON-RPC answer without result".into()))
    }

    /// One JSON-2 call (no retry): named arguments, real HTTP statuses.
    async fn json2(&self, model: &str, method: &str, body: Value) -> Result<Value, OdooError> {
        let url = format!("{}/json/2/{model}/{method}", self.base);
        let req = self
            .http
            .post(&url)
            .bearer_auth(&self.creds.api_key)
            .header("X-Odoo-Database", &self.creds.database)
            .json(&body);
        let resp = self.send(req).await?;
        let status = resp.status();
        let limit = self.policy.max_body_bytes;
        if status.is_success() {
            return transport::read_json(resp, limit, "JSON (JSON-2)").await;
        }
        let text = transport::text_of(resp, limit).await;
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.get("name").is_some() => Err(OdooError::from_json2(status.as_u16(), &v)),
            _ => Err(OdooError::http(status.as_u16(), &text)),
        }
    }

    /// One call of `model.method` (no retry), in the server's protocol.
    async fn call_once(
        &self,
        model: &str,
        method: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> Result<Value, OdooError> {
        match self.protocol {
            Protocol::JsonRpc => {
                self.rpc(
                    "object",
                    "execute_kw",
                    json!([
                        self.creds.database,
                        self.uid.unwrap_or_default(),
                        self.creds.api_key,
                        model,
                        method,
                        args,
                        kwargs
                    ]),
                )
                .await
            }
            Protocol::Json2 => {
                self.json2(model, method, named_args(method, args, kwargs.clone()))
                    .await
            }
        }
    }

    /// Calls `model.method` with Odoo's positional `args` and keyword `kwargs`,
    /// retrying retryable faults with jittered exponential backoff.
    pub async fn call(
        &self,
        model: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, OdooError> {
        let mut attempt = 0;
        loop {
            match self.call_once(model, method, &args, &kwargs).await {
                Err(e) if e.is_retryable() && attempt < self.policy.retries => {
                    attempt += 1;
                    let wait = backoff(self.policy.backoff, attempt);
                    tracing::warn!(model, method, attempt, error = %e, ?wait, "Odoo call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// `search_count(domain)` with archived records.
    pub async fn search_count(&self, model: &str, domain: Value) -> Result<i64, OdooError> {
        let mut kw = Map::new();
        kw.insert("context".into(), read_context());
        let v = self.call(model, "search_count", vec![domain], kw).await?;
        v.as_i64()
            .ok_or_else(|| OdooError::Protocol(format!("search_count answered {v}")))
    }

    /// `search_read(domain, fields, order, limit)` with archived records and
    /// many2one fields as bare ids where the server honours `load: null`.
    pub async fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[String],
        order: &str,
        limit: Option<i64>,
    ) -> Result<Vec<Map<String, Value>>, OdooError> {
        let mut kw = Map::new();
        kw.insert("fields".into(), json!(fields));
        kw.insert("order".into(), json!(order));
        if let Some(limit) = limit {
            kw.insert("limit".into(), json!(limit));
        }
        kw.insert("context".into(), read_context());
        let with_load = !self.no_load.load(Ordering::Relaxed);
        if with_load {
            kw.insert("load".into(), Value::Null);
        }
        let v = match self
            .call(model, "search_read", vec![domain.clone()], kw.clone())
            .await
        {
            // A server that refuses `load` (a strict signature): ask without it, and
            // take many2one values as [id, name] pairs from now on.
            Err(e) if with_load && refuses_load(&e) => {
                tracing::info!(error = %e, "Odoo refused load: null; reading without it");
                self.no_load.store(true, Ordering::Relaxed);
                kw.remove("load");
                self.call(model, "search_read", vec![domain], kw).await?
            }
            other => other?,
        };
        match v {
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Object(m) => Ok(m),
                    other => Err(OdooError::Protocol(format!(
                        "search_read returned a non-record: {other}"
                    ))),
                })
                .collect(),
            other => Err(OdooError::Protocol(format!("search_read answered {other}"))),
        }
    }

    /// `fields_get` restricted to the attributes the mirror needs.
    pub async fn fields_get(&self, model: &str) -> Result<Map<String, Value>, OdooError> {
        let mut kw = Map::new();
        kw.insert(
            "attributes".into(),
            json!([
                "type", "string", "store", "relation", "required", "readonly"
            ]),
        );
        match self.call(model, "fields_get", vec![], kw).await? {
            Value::Object(m) => Ok(m),
            other => Err(OdooError::Protocol(format!("fields_get answered {other}"))),
        }
    }

    /// `create(vals)`: the new record's id. Never retried here: a create whose answer
    /// was lost may have happened (the outbox looks before trying again).
    pub async fn create(&self, model: &str, vals: Map<String, Value>) -> Result<i64, OdooError> {
        // JSON-RPC: the plain `create(vals)` every Odoo takes, answered with the id;
        // JSON-2 names the argument `vals_list` and answers `[id]`.
        let arg = match self.protocol {
            Protocol::JsonRpc => Value::Object(vals),
            Protocol::Json2 => json!([vals]),
        };
        let result = self.call_once(model, "create", &[arg], &Map::new()).await?;
        match &result {
            Value::Number(n) => n.as_i64(),
            Value::Array(ids) => ids.first().and_then(Value::as_i64),
            _ => None,
        }
        .ok_or_else(|| OdooError::Protocol(format!("create answered {result}")))
    }

    /// `write(ids, vals)`; safe to retry (it sets the same values again).
    pub async fn write(
        &self,
        model: &str,
        ids: &[i64],
        vals: Map<String, Value>,
    ) -> Result<(), OdooError> {
        self.call(
            model,
            "write",
            vec![json!(ids), Value::Object(vals)],
            Map::new(),
        )
        .await
        .map(|_| ())
    }
}

/// JSON-2 takes named arguments: map the positional ones the mirror uses.
fn named_args(method: &str, args: &[Value], mut kwargs: Map<String, Value>) -> Value {
    let names: &[&str] = match method {
        "search_count" | "search_read" | "search" => &["domain"],
        "read" | "unlink" => &["ids"],
        "write" => &["ids", "vals"],
        "create" => &["vals_list"],
        _ => &[],
    };
    for (name, value) in names.iter().zip(args) {
        kwargs.insert((*name).to_string(), value.clone());
    }
    Value::Object(kwargs)
}

/// Exponential backoff with full jitter: a random wait up to `base * 2^attempt`.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(30));
    let millis = cap.as_millis().max(1) as u64;
    let jittered = millis / 2 + rand::random_range(0..=millis / 2);
    Duration::from_millis(jittered)
}

/// Whether an error says the `load` argument was not accepted.
fn refuses_load(e: &OdooError) -> bool {
    match e {
        OdooError::Fault { name, message } => {
            message.contains("load")
                && (name.contains("TypeError")
                    || name.contains("ValueError")
                    || name.contains("UnprocessableEntity"))
        }
        OdooError::Http { status: 422, .. } => true,
        _ => false,
    }
}

/// Odoo's `"YYYY-MM-DD HH:MM:SS"` (UTC, no zone).
pub fn format_odoo_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..=20 {
            let w = backoff(base, attempt);
            let cap = base
                .saturating_mul(1u32 << attempt.min(16))
                .min(Duration::from_secs(30));
            assert!(
                w <= cap && w >= cap / 2,
                "attempt {attempt}: {w:?} vs {cap:?}"
            );
        }
    }

    #[test]
    fn json2_arguments_are_named() {
        let v = named_args("write", &[json!([1, 2]), json!({"name": "x"})], Map::new());
        assert_eq!(v, json!({"ids": [1, 2], "vals": {"name": "x"}}));
        let mut kw = Map::new();
        kw.insert("limit".into(), json!(5));
        let v = named_args("search_read", &[json!([["id", ">", 3]])], kw);
        assert_eq!(v, json!({"domain": [["id", ">", 3]], "limit": 5}));
    }
}
