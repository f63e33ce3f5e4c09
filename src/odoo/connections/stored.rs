//! A connection as stored, its API key sealed (for the workers; `Debug` hides it),
//! its client and call policy, and the queries that load connections for the
//! scheduler.

use chrono::{DateTime, Utc};
use serde_json::Map;
use sqlx::PgPool;
use uuid::Uuid;

use super::wire::ConnectionView;
use crate::odoo::client::{CallPolicy, Credentials, OdooClient, Protocol};
use crate::odoo::settings::OdooSettings;
use crate::secrets::SecretBox;

use super::keys::{self, KeyError};

/// A stored connection, key included (for the workers; `Debug` hides it).
#[derive(Clone, sqlx::FromRow)]
pub struct Connection {
    pub id: Uuid,
    pub tenant_id: String,
    pub url: String,
    pub database: String,
    pub username: String,
    /// A key stored in plain text by an earlier version, until a server with
    /// `NAS_SYNC_SECRET_KEY` seals it at start.
    pub api_key: Option<String>,
    /// The key sealed with the secret key, bound to `id` (`keys`).
    pub api_key_sealed: Option<Vec<u8>>,
    pub protocol: String,
    pub server_version: String,
    pub uid: Option<i64>,
    pub models: Vec<String>,
    pub initial_range_days: i32,
    pub batch_size: i32,
    pub safety_lag_seconds: i32,
    pub poll_interval_seconds: i32,
    pub sync_status: String,
    pub first_mirror_done_at: Option<DateTime<Utc>>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("url", &self.url)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("api_key", &"<redacted>")
            .field("api_key_sealed", &self.api_key_sealed.is_some())
            .field("sync_status", &self.sync_status)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub fn view(&self) -> ConnectionView {
        ConnectionView {
            id: self.id,
            url: self.url.clone(),
            database: self.database.clone(),
            username: self.username.clone(),
            protocol: self.protocol.clone(),
            server_version: self.server_version.clone(),
            models: self.models.clone(),
            initial_range_days: self.initial_range_days,
            batch_size: self.batch_size,
            safety_lag_seconds: self.safety_lag_seconds,
            poll_interval_seconds: self.poll_interval_seconds,
            status: self.sync_status.clone(),
            sync_status: self.sync_status.clone(),
            first_mirror_done_at: self.first_mirror_done_at,
            last_poll_at: self.last_poll_at,
            last_error: self.last_error.clone(),
            created_at: self.created_at,
            skipped_models: Map::new(),
        }
    }

    /// The connection's URL, database and user with `api_key`.
    pub fn credentials(&self, api_key: String) -> Credentials {
        Credentials {
            url: self.url.clone(),
            database: self.database.clone(),
            username: self.username.clone(),
            api_key,
        }
    }

    /// The stored key, opened with the server's secret key when it is sealed.
    pub fn api_key(&self, secrets: Option<&SecretBox>) -> Result<String, KeyError> {
        keys::open(
            self.id,
            self.api_key_sealed.as_deref(),
            self.api_key.as_deref(),
            secrets,
        )
    }

    /// Whether `other` holds another key than this (a renewal, or a key sealed at
    /// start).
    pub fn key_differs(&self, other: &Connection) -> bool {
        self.api_key != other.api_key || self.api_key_sealed != other.api_key_sealed
    }

    /// A client over the stored protocol, without probing again. Fails with a
    /// sentence for the connection's `last_error` when the key cannot be opened.
    pub fn client(
        &self,
        settings: &OdooSettings,
        secrets: Option<&SecretBox>,
    ) -> anyhow::Result<OdooClient> {
        let protocol = Protocol::parse(&self.protocol).unwrap_or(Protocol::JsonRpc);
        let key = self.api_key(secrets)?;
        Ok(OdooClient::resume(
            self.credentials(key),
            policy(settings),
            protocol,
            self.server_version.clone(),
            self.uid,
        )?)
    }
}

/// The call policy from the settings.
pub fn policy(settings: &OdooSettings) -> CallPolicy {
    CallPolicy {
        timeout: settings.call_timeout,
        polite_delay: settings.call_delay,
        retries: settings.call_retries,
        max_body_bytes: settings.max_body_bytes,
        ..CallPolicy::default()
    }
}

/// Every column of `odoo_connections`, for `FromRow`.
pub(super) const SELECT: &str =
    "SELECT id, tenant_id, url, database, username, api_key, api_key_sealed, protocol,
    server_version, uid, models, initial_range_days, batch_size, safety_lag_seconds,
    poll_interval_seconds, sync_status, first_mirror_done_at, last_poll_at, last_error,
    created_at FROM odoo_connections";

/// One connection by id, any tenant (workers).
pub async fn load(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Connection>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Every connection (the scheduler).
pub async fn all(pool: &PgPool) -> sqlx::Result<Vec<Connection>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY created_at")))
        .fetch_all(pool)
        .await
}
