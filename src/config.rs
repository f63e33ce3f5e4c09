//! Settings from environment variables, each also readable from a file named by
//! `NAME_FILE` (Docker secrets). Defaults follow docs/contract.md §1;
//! docs/operations.md lists every setting (a test keeps the two in step).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::odoo::OdooSettings;

/// Everything the server can be told from outside. `Debug` hides the database
/// password, the JWT secret and the secret key, so a logged config leaks none.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: SocketAddr,
    /// `None`: generated on first start and kept in the database.
    pub jwt_secret: Option<String>,
    /// `NAS_SYNC_SECRET_KEY`: seals Odoo API keys at rest (`crate::secrets`). Its
    /// length is checked where it is used, so `doctor` can report a short one.
    pub secret_key: Option<String>,
    pub log: String,
    /// `NAS_SYNC_LOG_FORMAT=json`: one JSON object per log line.
    pub log_json: bool,
    /// `NAS_SYNC_METRICS_BIND`: serve `/metrics` on this address instead (e.g. a
    /// loopback port), apart from the API.
    pub metrics_bind: Option<SocketAddr>,
    pub rate_limit: bool,
    /// Per-device, per-route-family and login limits (`NAS_SYNC_RATE_LIMITS`).
    pub rate_limits: crate::guard::limits::LimitSettings,
    /// Largest accepted request body, after gzip decompression.
    pub body_limit: usize,
    /// Bytes per second a request body must keep up with once the header timeout has
    /// passed (`NAS_SYNC_BODY_MIN_RATE_BYTES`, 4096; `guard::arrival`).
    pub body_min_rate: u64,
    /// Memory all request bodies being read or handled may hold together
    /// (`NAS_SYNC_BODY_BUFFER_BYTES`, 256 MiB, at least the body limit).
    pub body_buffer_bytes: usize,
    pub request_timeout: Duration,
    /// Time allowed for a request's head (`NAS_SYNC_HEADER_TIMEOUT_SECS`, 10).
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection is kept (`NAS_SYNC_IDLE_TIMEOUT_SECS`, 75).
    pub idle_timeout: Duration,
    /// Connections open at most (`NAS_SYNC_MAX_CONNECTIONS`; `None`: from the open-files
    /// limit at start).
    pub max_connections: Option<usize>,
    /// Connections from one client address (`NAS_SYNC_MAX_CONNECTIONS_PER_ADDRESS`;
    /// `None`: 256, or a quarter of the connections if that is less).
    pub max_connections_per_address: Option<usize>,
    /// Peers whose `X-Forwarded-For` is believed (`NAS_SYNC_TRUSTED_PROXIES`).
    pub trusted_proxies: crate::guard::proxies::TrustedProxies,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long the first database connection is retried (compose start order).
    pub db_connect_timeout: Duration,
    pub db_max_connections: u32,
    /// `NAS_SYNC_DB_TCP_RELAY`: reach a TCP database through the in-process relay that
    /// sets `TCP_NODELAY` (`crate::db::relay`).
    pub db_tcp_relay: bool,
    /// Requests running and waiting per route family (`NAS_SYNC_LOAD_LIMITS`).
    pub load_limits: crate::guard::shed::LoadLimits,
    /// How long a request waits for a pooled connection (`NAS_SYNC_DB_ACQUIRE_TIMEOUT_SECS`)
    /// before it answers 503 `UNAVAILABLE` (PostgreSQL down or every connection busy).
    pub db_acquire_timeout: Duration,
    /// How long tombstones, row history and push answers are kept
    /// (`NAS_SYNC_RETENTION_DAYS`, 90); zero keeps everything.
    pub retention: Duration,
    pub odoo: OdooSettings,
    /// Largest text or JSON value in a pushed row (`NAS_SYNC_MAX_VALUE_BYTES`).
    pub max_value_bytes: usize,
    /// Bytes of rows after which a pull page stops (`NAS_SYNC_MAX_PAGE_BYTES`).
    pub max_page_bytes: usize,
    /// BridgeCore `app_type`s and their models (`NAS_SYNC_APP_TYPES`).
    pub app_types: crate::bridge::AppTypes,
    /// How long a BridgeCore push waits for the Odoo ids of the rows it created on
    /// mirrored models before answering `pending` (`NAS_SYNC_BRIDGE_CREATE_WAIT_MS`,
    /// 2000; 0 answers at once).
    pub bridge_create_wait: Duration,
    /// The admin console's session cookie is always `Secure`
    /// (`NAS_SYNC_ADMIN_SECURE_COOKIE`, off: then only behind `X-Forwarded-Proto: https`).
    pub admin_secure_cookie: bool,
    /// How long an admin console session lasts (`NAS_SYNC_ADMIN_SESSION_HOURS`, 12).
    pub admin_session_ttl: Duration,
    /// Store users may read their own store's audit trail
    /// (`NAS_SYNC_AUDIT_STORE_READS`, off: only managers read it).
    pub audit_store_reads: bool,
    /// How long audit entries are kept (`NAS_SYNC_AUDIT_RETENTION_DAYS`, 0: for good).
    pub audit_retention: Duration,
    /// The audit trail is sealed (`NAS_SYNC_AUDIT`, on). Off: no entries are written and
    /// history retention no longer waits for them.
    pub audit: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redacted_url(&self.database_url))
            .field("bind", &self.bind)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("log", &self.log)
            .field("log_json", &self.log_json)
            .field("metrics_bind", &self.metrics_bind)
            .field("rate_limit", &self.rate_limit)
            .field("rate_limits", &self.rate_limits)
            .field("body_limit", &self.body_limit)
            .field("body_min_rate", &self.body_min_rate)
            .field("body_buffer_bytes", &self.body_buffer_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_address",
                &self.max_connections_per_address,
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("db_connect_timeout", &self.db_connect_timeout)
            .field("db_max_connections", &self.db_max_connections)
            .field("db_tcp_relay", &self.db_tcp_relay)
            .field("load_limits", &self.load_limits)
            .field("db_acquire_timeout", &self.db_acquire_timeout)
            .field("retention", &self.retention)
            .field("odoo", &self.odoo)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_page_bytes", &self.max_page_bytes)
            .field("app_types", &self.app_types)
            .field("bridge_create_wait", &self.bridge_create_wait)
            .field("audit", &self.audit)
            .field("audit_retention", &self.audit_retention)
            .field("audit_store_reads", &self.audit_store_reads)
            .finish()
    }
}

/// `url` with its password (in the authority or a `password=` parameter) replaced.
pub fn redacted_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "<not a URL>".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("redacted"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "redacted".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

impl Config {
    /// What the database layer needs.
    pub fn db(&self) -> crate::db::DbSettings {
        crate::db::DbSettings {
            url: self.database_url.clone(),
            connect_timeout: self.db_connect_timeout,
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            tcp_relay: self.db_tcp_relay,
        }
    }

    /// The accept loop's timeouts: header, idle, and idle plus the request timeout.
    pub fn timeouts(&self) -> crate::serve::Timeouts {
        crate::serve::Timeouts {
            header: self.header_timeout,
            idle: self.idle_timeout,
            stall: self.idle_timeout + self.request_timeout,
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can pass their own values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| setting(&lookup, name);
        let db_max_connections = parse(&get, "NAS_SYNC_DB_MAX_CONNECTIONS", "16")?;
        let body_limit: usize = parse(&get, "NAS_SYNC_BODY_LIMIT_BYTES", "33554432")?;
        Ok(Config {
            database_url: get("DATABASE_URL")?
                .unwrap_or_else(|| "postgres://postgres:postgres@127.0.0.1:5432/nas_sync".into()),
            bind: parse(&get, "NAS_SYNC_BIND", "127.0.0.1:8080")?,
            jwt_secret: match get("NAS_SYNC_JWT_SECRET")? {
                Some(s) if s.len() < 16 => {
                    bail!("NAS_SYNC_JWT_SECRET must be at least 16 characters")
                }
                other => other,
            },
            secret_key: get("NAS_SYNC_SECRET_KEY")?,
            log: get("NAS_SYNC_LOG")?.unwrap_or_else(|| "info".into()),
            log_json: match get("NAS_SYNC_LOG_FORMAT")?.as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => bail!("NAS_SYNC_LOG_FORMAT must be 'text' or 'json', not '{other}'"),
            },
            metrics_bind: get("NAS_SYNC_METRICS_BIND")?
                .map(|v| {
                    v.parse().map_err(|e| {
                        anyhow::anyhow!("NAS_SYNC_METRICS_BIND={v:?} is not valid: {e}")
                    })
                })
                .transpose()?,
            rate_limit: flag(&get, "NAS_SYNC_RATE_LIMIT")?,
            rate_limits: crate::guard::limits::LimitSettings::parse(
                &get("NAS_SYNC_RATE_LIMITS")?.unwrap_or_default(),
            )?,
            body_limit,
            body_min_rate: positive(
                parse(&get, "NAS_SYNC_BODY_MIN_RATE_BYTES", "4096")?,
                "NAS_SYNC_BODY_MIN_RATE_BYTES",
            )? as u64,
            body_buffer_bytes: {
                let n: usize = parse(&get, "NAS_SYNC_BODY_BUFFER_BYTES", "268435456")?;
                if n < body_limit {
                    bail!(
                        "NAS_SYNC_BODY_BUFFER_BYTES ({n}) must be at least NAS_SYNC_BODY_LIMIT_BYTES ({body_limit}): one whole body has to fit"
                    );
                }
                n
            },
            request_timeout: Duration::from_secs(parse(
                &get,
                "NAS_SYNC_REQUEST_TIMEOUT_SECS",
                "60",
            )?),
            header_timeout: Duration::from_secs(positive(
                parse(&get, "NAS_SYNC_HEADER_TIMEOUT_SECS", "10")?,
                "NAS_SYNC_HEADER_TIMEOUT_SECS",
            )? as u64),
            idle_timeout: Duration::from_secs(positive(
                parse(&get, "NAS_SYNC_IDLE_TIMEOUT_SECS", "75")?,
                "NAS_SYNC_IDLE_TIMEOUT_SECS",
            )? as u64),
            max_connections: match parse::<usize>(&get, "NAS_SYNC_MAX_CONNECTIONS", "0")? {
                0 => None,
                n => Some(n),
            },
            max_connections_per_address: match parse::<usize>(
                &get,
                "NAS_SYNC_MAX_CONNECTIONS_PER_ADDRESS",
                "0",
            )? {
                0 => None,
                n => Some(n),
            },
            trusted_proxies: crate::guard::proxies::TrustedProxies::parse(
                &get("NAS_SYNC_TRUSTED_PROXIES")?.unwrap_or_default(),
            )?,
            access_token_ttl: Duration::from_secs(parse(
                &get,
                "NAS_SYNC_ACCESS_TOKEN_TTL_SECS",
                "3600",
            )?),
            refresh_token_ttl: Duration::from_secs(
                86_400 * parse::<u64>(&get, "NAS_SYNC_REFRESH_TOKEN_TTL_DAYS", "30")?,
            ),
            db_connect_timeout: Duration::from_secs(parse(
                &get,
                "NAS_SYNC_DB_CONNECT_TIMEOUT_SECS",
                "60",
            )?),
            db_max_connections,
            load_limits: crate::guard::shed::LoadLimits::parse(
                &get("NAS_SYNC_LOAD_LIMITS")?.unwrap_or_default(),
                db_max_connections,
            )?,
            db_tcp_relay: flag(&get, "NAS_SYNC_DB_TCP_RELAY")?,
            db_acquire_timeout: Duration::from_secs(positive(
                parse(&get, "NAS_SYNC_DB_ACQUIRE_TIMEOUT_SECS", "5")?,
                "NAS_SYNC_DB_ACQUIRE_TIMEOUT_SECS",
            )? as u64),
            retention: Duration::from_secs(
                86_400 * parse::<u64>(&get, "NAS_SYNC_RETENTION_DAYS", "90")?,
            ),
            max_value_bytes: positive(
                parse(&get, "NAS_SYNC_MAX_VALUE_BYTES", "1048576")?,
                "NAS_SYNC_MAX_VALUE_BYTES",
            )?,
            max_page_bytes: positive(
                parse(&get, "NAS_SYNC_MAX_PAGE_BYTES", "4194304")?,
                "NAS_SYNC_MAX_PAGE_BYTES",
            )?,
            app_types: crate::bridge::AppTypes::parse(
                &get("NAS_SYNC_APP_TYPES")?.unwrap_or_default(),
            )?,
            bridge_create_wait: Duration::from_millis(
                parse::<u64>(&get, "NAS_SYNC_BRIDGE_CREATE_WAIT_MS", "2000")?.min(30_000),
            ),
            admin_secure_cookie: match get("NAS_SYNC_ADMIN_SECURE_COOKIE")?.as_deref() {
                None | Some("off" | "false" | "0") => false,
                Some("on" | "true" | "1") => true,
                Some(other) => {
                    bail!("NAS_SYNC_ADMIN_SECURE_COOKIE must be 'on' or 'off', not '{other}'")
                }
            },
            admin_session_ttl: Duration::from_secs(
                3_600
                    * positive(
                        parse::<usize>(&get, "NAS_SYNC_ADMIN_SESSION_HOURS", "12")?,
                        "NAS_SYNC_ADMIN_SESSION_HOURS",
                    )? as u64,
            ),
            audit_retention: Duration::from_secs(
                86_400 * parse::<u64>(&get, "NAS_SYNC_AUDIT_RETENTION_DAYS", "0")?.min(365_000),
            ),
            audit: match get("NAS_SYNC_AUDIT")?.as_deref() {
                None | Some("on" | "true" | "1") => true,
                Some("off" | "false" | "0") => false,
                Some(other) => bail!("NAS_SYNC_AUDIT must be 'on' or 'off', not '{other}'"),
            },
            audit_store_reads: match get("NAS_SYNC_AUDIT_STORE_READS")?.as_deref() {
                None | Some("off" | "false" | "0") => false,
                Some("on" | "true" | "1") => true,
                Some(other) => {
                    bail!("NAS_SYNC_AUDIT_STORE_READS must be 'on' or 'off', not '{other}'")
                }
            },
            odoo: OdooSettings {
                worker: flag(&get, "NAS_SYNC_ODOO_WORKER")?,
                tick: secs(&get, "NAS_SYNC_ODOO_TICK_SECS", "10")?,
                call_timeout: secs(&get, "NAS_SYNC_ODOO_CALL_TIMEOUT_SECS", "120")?,
                call_delay: Duration::from_millis(parse(
                    &get,
                    "NAS_SYNC_ODOO_CALL_DELAY_MS",
                    "200",
                )?),
                call_retries: parse(&get, "NAS_SYNC_ODOO_CALL_RETRIES", "3")?,
                max_body_bytes: positive(
                    parse(&get, "NAS_SYNC_ODOO_MAX_BODY_BYTES", "67108864")?,
                    "NAS_SYNC_ODOO_MAX_BODY_BYTES",
                )?,
                max_attempts: parse(&get, "NAS_SYNC_ODOO_MAX_ATTEMPTS", "4")?,
                retry_delay: secs(&get, "NAS_SYNC_ODOO_RETRY_DELAY_SECS", "10")?,
                min_window: secs(&get, "NAS_SYNC_ODOO_MIN_WINDOW_SECS", "1")?,
                reconcile_interval: secs(&get, "NAS_SYNC_ODOO_RECONCILE_SECS", "15")?,
                read_roles: roles(
                    &get("NAS_SYNC_ODOO_READ_ROLES")?.unwrap_or_else(|| "manager,store".into()),
                )?,
                write_roles: write_roles(
                    &get("NAS_SYNC_ODOO_WRITE_ROLES")?
                        .unwrap_or_else(|| "sale.order=manager;sale.order.line=manager".into()),
                )?,
            },
        })
    }
}

fn flag(get: &impl Fn(&str) -> anyhow::Result<Option<String>>, name: &str) -> anyhow::Result<bool> {
    match get(name)?.as_deref() {
        None | Some("on") | Some("true") | Some("1") => Ok(true),
        Some("off") | Some("false") | Some("0") => Ok(false),
        Some(other) => bail!("{name} must be 'on' or 'off', not '{other}'"),
    }
}

fn secs(
    get: &impl Fn(&str) -> anyhow::Result<Option<String>>,
    name: &str,
    default: &str,
) -> anyhow::Result<Duration> {
    Ok(Duration::from_secs(parse(get, name, default)?))
}

/// `manager,store` → the role names, checked.
fn roles(list: &str) -> anyhow::Result<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| match r {
            "manager" | "store" => Ok(r.to_string()),
            other => bail!("unknown role '{other}' (use manager or store)"),
        })
        .collect()
}

/// `sale.order=manager;sale.order.line=manager,store` → per model, its writer roles.
fn write_roles(spec: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    spec.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (model, list) = part.split_once('=').with_context(|| {
                format!("NAS_SYNC_ODOO_WRITE_ROLES: '{part}' is not model=role,role")
            })?;
            Ok((
                model.trim().to_string(),
                roles(list).context("NAS_SYNC_ODOO_WRITE_ROLES")?,
            ))
        })
        .collect()
}

/// `NAME` wins over `NAME_FILE`; a file's content is trimmed of its trailing newline.
fn setting(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> anyhow::Result<Option<String>> {
    if let Some(v) = lookup(name).filter(|v| !v.is_empty()) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    match lookup(&file_var).filter(|v| !v.is_empty()) {
        Some(path) => {
            let content = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {file_var}={path}"))?;
            Ok(Some(content.trim_end_matches(['\r', '\n']).to_string()))
        }
        None => Ok(None),
    }
}

/// A size that must be at least 1.
fn positive(n: usize, name: &str) -> anyhow::Result<usize> {
    if n == 0 {
        bail!("{name} must be at least 1");
    }
    Ok(n)
}

fn parse<T: FromStr>(
    get: &impl Fn(&str) -> anyhow::Result<Option<String>>,
    name: &str,
    default: &str,
) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    let raw = get(name)?.unwrap_or_else(|| default.to_string());
    raw.parse::<T>()
        .map_err(|e| anyhow::anyhow!("{name}={raw:?} is not valid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn debug_hides_the_database_password_and_the_secrets() {
        let c = cfg(&[
            (
                "DATABASE_URL",
                "postgres://app:s3cret-pw@db:5432/nas_sync?sslmode=require&password=other-pw",
            ),
            ("NAS_SYNC_JWT_SECRET", "jwt-secret-0123456789"),
            (
                "NAS_SYNC_SECRET_KEY",
                "sealing-key-0123456789abcdefghijklmn",
            ),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        for secret in [
            "s3cret-pw",
            "other-pw",
            "jwt-secret-0123456789",
            "sealing-key-0123456789abcdefghijklmn",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("app:redacted@db:5432/nas_sync"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
    }

    /// Every setting the server reads (found by reading them all through a recording
    /// lookup) is named in the operator's reference.
    #[test]
    fn operations_doc_names_every_setting() {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        Config::from_lookup(|name| {
            read.borrow_mut()
                .insert(name.trim_end_matches("_FILE").to_string());
            None
        })
        .unwrap();
        let read = read.into_inner();
        assert!(read.contains("DATABASE_URL") && read.contains("NAS_SYNC_ODOO_WORKER"));
        let doc = include_str!("../docs/operations.md");
        let missing: Vec<&String> = read
            .iter()
            .filter(|name| !doc.contains(&format!("`{name}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/operations.md does not name these settings: {missing:?}"
        );
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(
            c.database_url,
            "postgres://postgres:postgres@127.0.0.1:5432/nas_sync"
        );
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(c.rate_limit);
        assert!(c.jwt_secret.is_none());
        assert_eq!(c.log, "info");
        assert_eq!(c.request_timeout, Duration::from_secs(60));
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(75));
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.odoo.max_body_bytes, 64 << 20);
        assert_eq!(c.retention, Duration::from_secs(90 * 86_400));
        let off = cfg(&[("NAS_SYNC_RETENTION_DAYS", "0")]).unwrap();
        assert!(off.retention.is_zero());
        assert!(cfg(&[("NAS_SYNC_RETENTION_DAYS", "-1")]).is_err());
    }

    #[test]
    fn file_variant_is_read_and_plain_variable_wins() {
        let dir = std::env::temp_dir().join(format!("nas-sync-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "a-very-long-secret-value\n").unwrap();
        let p = path.to_str().unwrap();
        let c = cfg(&[("NAS_SYNC_JWT_SECRET_FILE", p)]).unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some("a-very-long-secret-value"));
        let c = cfg(&[
            ("NAS_SYNC_JWT_SECRET_FILE", p),
            ("NAS_SYNC_JWT_SECRET", "another-long-secret!"),
        ])
        .unwrap();
        assert_eq!(c.jwt_secret.as_deref(), Some("another-long-secret!"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = cfg(&[("NAS_SYNC_BIND", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NAS_SYNC_BIND"), "{e}");
        let e = cfg(&[("NAS_SYNC_RATE_LIMIT", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NAS_SYNC_RATE_LIMIT"), "{e}");
        let e = cfg(&[("DATABASE_URL_FILE", "/nonexistent/file")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DATABASE_URL_FILE"), "{e}");
        let e = cfg(&[("NAS_SYNC_HEADER_TIMEOUT_SECS", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NAS_SYNC_HEADER_TIMEOUT_SECS"), "{e}");
    }
}
