//! Odoo connections (CONTRACT section 7): created only after Odoo accepted the
//! credentials, listed, described with their progress, retried and deleted. The API
//! key is stored for the workers and never returned.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::client::{CallPolicy, Credentials, OdooClient, Protocol};
use super::fault::OdooError;
use super::models::DEFAULT_MODELS;
use super::schema::{self, FieldSpec, TableAccess};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::config::OdooSettings;
use crate::error::{AppError, AppResult};

/// `POST /api/v1/odoo/connections` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Odoo's base URL, e.g. `https://erp.example.com`.
    pub url: String,
    pub database: String,
    pub username: String,
    /// An API key (or password) of that user; stored, never returned.
    pub api_key: String,
    /// Models to mirror; the six defaults when absent.
    pub models: Option<Vec<String>>,
    /// Days of history to mirror first (90); 0 mirrors everything.
    pub initial_range_days: Option<i32>,
    /// Records per batch (200).
    pub batch_size: Option<i32>,
    /// Seconds re-read behind Odoo's clock at each poll, for transactions that commit
    /// late with an older write_date (120).
    pub safety_lag_seconds: Option<i32>,
    /// Seconds between incremental polls (10).
    pub poll_interval_seconds: Option<i32>,
}

/// `PATCH /api/v1/odoo/connections/{id}` body: a new key (checked with Odoo first)
/// and pacing settings.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    /// A new API key for the same user (Odoo keys expire).
    pub api_key: Option<String>,
    pub batch_size: Option<i32>,
    pub safety_lag_seconds: Option<i32>,
    pub poll_interval_seconds: Option<i32>,
}

/// A connection as routes show it (no key).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: Uuid,
    pub url: String,
    pub database: String,
    pub username: String,
    pub protocol: String,
    pub server_version: String,
    pub models: Vec<String>,
    pub initial_range_days: i32,
    pub batch_size: i32,
    pub safety_lag_seconds: i32,
    pub poll_interval_seconds: i32,
    /// Same as `sync_status`.
    pub status: String,
    pub sync_status: String,
    pub first_mirror_done_at: Option<DateTime<Utc>>,
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Default models this Odoo does not serve, with the reason (creation only).
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub skipped_models: Map<String, Value>,
}

/// A stored connection, key included (for the workers; `Debug` hides it).
#[derive(Clone, sqlx::FromRow)]
pub struct Connection {
    pub id: Uuid,
    pub tenant_id: String,
    pub url: String,
    pub database: String,
    pub username: String,
    pub api_key: String,
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

    pub fn credentials(&self) -> Credentials {
        Credentials {
            url: self.url.clone(),
            database: self.database.clone(),
            username: self.username.clone(),
            api_key: self.api_key.clone(),
        }
    }

    /// A client over the stored protocol, without probing again.
    pub fn client(&self, settings: &OdooSettings) -> Result<OdooClient, OdooError> {
        let protocol = Protocol::parse(&self.protocol).unwrap_or(Protocol::JsonRpc);
        OdooClient::resume(
            self.credentials(),
            policy(settings),
            protocol,
            self.server_version.clone(),
            self.uid,
        )
    }
}

/// The call policy from the settings.
pub fn policy(settings: &OdooSettings) -> CallPolicy {
    CallPolicy {
        timeout: settings.call_timeout,
        polite_delay: settings.call_delay,
        retries: settings.call_retries,
        ..CallPolicy::default()
    }
}

const SELECT: &str = "SELECT id, tenant_id, url, database, username, api_key, protocol,
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

fn require_manager(who: &Principal) -> AppResult<()> {
    if who.role != Role::Manager {
        return Err(AppError::Forbidden(
            "Only managers may manage Odoo connections.".into(),
        ));
    }
    Ok(())
}

/// The caller's connection `id`; another tenant's is reported as absent.
pub async fn get(state: &AppState, who: &Principal, id: Uuid) -> AppResult<Connection> {
    require_manager(who)?;
    let conn: Option<Connection> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE id = $1 AND tenant_id = $2"
    )))
    .bind(id)
    .bind(&who.tenant)
    .fetch_optional(&state.pool)
    .await?;
    conn.ok_or_else(|| AppError::NotFound("No such Odoo connection.".into()))
}

/// The caller's tenant's connections.
pub async fn list(state: &AppState, who: &Principal) -> AppResult<Vec<ConnectionView>> {
    require_manager(who)?;
    let rows: Vec<Connection> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE tenant_id = $1 ORDER BY created_at"
    )))
    .bind(&who.tenant)
    .fetch_all(&state.pool)
    .await?;
    Ok(rows.iter().map(Connection::view).collect())
}

fn bounded(field: &str, value: Option<i32>, default: i32, min: i32, max: i32) -> AppResult<i32> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(AppError::validation(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(v)
}

fn text(field: &str, value: &str, max: usize) -> AppResult<String> {
    let v = value.trim();
    if v.is_empty() || v.len() > max || v.contains('\0') {
        return Err(AppError::validation(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    Ok(v.to_string())
}

/// Checks the body, authenticates against Odoo, prepares every model's table and
/// stores the connection (`not_started`; the scheduler takes it from there).
pub async fn create(
    state: &AppState,
    who: &Principal,
    req: CreateConnection,
) -> AppResult<ConnectionView> {
    require_manager(who)?;
    let url = text("url", &req.url, 2000)?;
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || reqwest::Url::parse(&url).is_err()
    {
        return Err(AppError::validation(
            "url",
            "must be an http:// or https:// URL",
        ));
    }
    let creds = Credentials {
        url,
        database: text("database", &req.database, 200)?,
        username: text("username", &req.username, 200)?,
        api_key: text("api_key", &req.api_key, 500)?,
    };
    let named_models = req.models.is_some();
    let models: Vec<String> = match req.models {
        None => DEFAULT_MODELS.iter().map(|m| m.to_string()).collect(),
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for m in list {
                if !schema::valid_model(&m) {
                    return Err(AppError::validation(
                        "models",
                        format!("'{m}' is not an Odoo model name"),
                    ));
                }
                if let Some(twin) = out
                    .iter()
                    .find(|o| **o != m && schema::table_name(o) == schema::table_name(&m))
                {
                    return Err(AppError::validation(
                        "models",
                        format!("'{m}' and '{twin}' would share one table"),
                    ));
                }
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            if out.is_empty() || out.len() > 50 {
                return Err(AppError::validation("models", "name 1 to 50 models"));
            }
            out
        }
    };
    let initial_range_days = bounded("initial_range_days", req.initial_range_days, 90, 0, 36_500)?;
    let batch_size = bounded("batch_size", req.batch_size, 200, 1, 5000)?;
    let safety_lag = bounded("safety_lag_seconds", req.safety_lag_seconds, 120, 0, 86_400)?;
    let poll = bounded(
        "poll_interval_seconds",
        req.poll_interval_seconds,
        10,
        1,
        86_400,
    )?;

    let settings = &state.config.odoo;
    let client = OdooClient::connect(creds.clone(), policy(settings), &models[0])
        .await
        .map_err(connect_error)?;

    // Fields of every model, from fields_get where the server answers it. A default
    // model this Odoo lacks (no HR app, say) is skipped; a named one is an error.
    let mut specs: Vec<(String, Vec<FieldSpec>, Option<String>)> = Vec::new();
    let mut skipped = Map::new();
    for model in &models {
        let fg = match client.fields_get(model).await {
            Ok(fg) => Some(fg),
            Err(e) if e.is_retryable() => return Err(connect_error(e)),
            Err(e) if super::models::curated(model).is_some() => {
                // Some servers refuse fields_get but serve the model: then the fixed
                // field list is used.
                match client.search_count(model, json!([])).await {
                    Ok(_) => {
                        tracing::warn!(model, error = %e, "fields_get failed; using the default field list");
                        None
                    }
                    Err(e2) if named_models => {
                        return Err(AppError::validation(
                            "models",
                            format!("Odoo cannot serve '{model}': {}", e2.summary()),
                        ));
                    }
                    Err(e2) => {
                        tracing::warn!(model, error = %e2, "this Odoo does not serve a default model; skipped");
                        skipped.insert(model.clone(), json!(e2.summary()));
                        continue;
                    }
                }
            }
            Err(e) => {
                return Err(AppError::validation(
                    "models",
                    format!("Odoo cannot describe '{model}': {}", e.summary()),
                ));
            }
        };
        let fields = schema::choose_fields(model, fg.as_ref());
        if fields.is_empty() {
            return Err(AppError::validation(
                "models",
                format!("'{model}' has no field to mirror"),
            ));
        }
        let tag = fg
            .as_ref()
            .filter(|m| {
                m.get("x_nas_sync_uuid")
                    .and_then(|f| f.get("type"))
                    .and_then(Value::as_str)
                    == Some("char")
            })
            .map(|_| "x_nas_sync_uuid".to_string());
        specs.push((model.clone(), fields, tag));
    }
    if specs.is_empty() {
        return Err(AppError::validation(
            "models",
            "this Odoo serves none of the models to mirror",
        ));
    }
    let models: Vec<String> = specs.iter().map(|(m, _, _)| m.clone()).collect();
    for model in &models {
        let other: Option<String> = sqlx::query_scalar(
            "SELECT model FROM odoo_model_state WHERE table_name = $1 AND model <> $2 LIMIT 1",
        )
        .bind(schema::table_name(model))
        .bind(model)
        .fetch_optional(&state.pool)
        .await?;
        if let Some(other) = other {
            return Err(AppError::validation(
                "models",
                format!("'{model}' would share the table of '{other}'"),
            ));
        }
    }
    // Twice: companion columns need their target's table to exist.
    for _ in 0..2 {
        for (model, fields, _) in &specs {
            let write_roles = settings.write_roles_for(model);
            schema::ensure_table(
                &state.pool,
                model,
                fields,
                &TableAccess {
                    read_roles: &settings.read_roles,
                    write_roles: &write_roles,
                },
                &models,
            )
            .await?;
        }
    }
    state.reload_registry().await?;

    let mut tx = state.pool.begin().await?;
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO odoo_connections (tenant_id, url, database, username, api_key, protocol,
            server_version, uid, models, initial_range_days, batch_size, safety_lag_seconds,
            poll_interval_seconds, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
    )
    .bind(&who.tenant)
    .bind(&creds.url)
    .bind(&creds.database)
    .bind(&creds.username)
    .bind(&creds.api_key)
    .bind(client.protocol.as_str())
    .bind(&client.version)
    .bind(client.uid)
    .bind(&models)
    .bind(initial_range_days)
    .bind(batch_size)
    .bind(safety_lag)
    .bind(poll)
    .bind(&who.username)
    .fetch_one(&mut *tx)
    .await?;
    for (model, fields, tag) in &specs {
        sqlx::query(
            "INSERT INTO odoo_model_state (connection_id, model, table_name, fields, tag_field)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(model)
        .bind(schema::table_name(model))
        .bind(json!(fields))
        .bind(tag)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(connection = %id, tenant = %who.tenant, url = %creds.url, protocol = client.protocol.as_str(),
        version = %client.version, models = ?models, "Odoo connection created");
    let conn = get(state, who, id).await?;
    state.odoo_wakeup.notify_waiters();
    let mut view = conn.view();
    view.skipped_models = skipped;
    Ok(view)
}

/// Maps a failed first contact to the contract's codes.
fn connect_error(e: OdooError) -> AppError {
    match e {
        OdooError::AuthFailed(m) => AppError::OdooAuthFailed(m),
        OdooError::Fault { ref name, .. }
            if name.contains("AccessDenied") || name.contains("AccessError") =>
        {
            AppError::OdooAuthFailed(format!("Odoo refused this user: {}", e.summary()))
        }
        // A proxy's or another server's page is not echoed back.
        OdooError::Http { status, .. } => AppError::OdooUnreachable(format!(
            "Could not talk to Odoo: it answered HTTP {status}."
        )),
        other => AppError::OdooUnreachable(format!("Could not talk to Odoo: {}", other.summary())),
    }
}

/// Renews the key (after Odoo accepted it) or changes pacing settings.
pub async fn update(
    state: &AppState,
    who: &Principal,
    id: Uuid,
    req: UpdateConnection,
) -> AppResult<ConnectionView> {
    let conn = get(state, who, id).await?;
    let batch_size = bounded("batch_size", req.batch_size, conn.batch_size, 1, 5000)?;
    let lag = bounded(
        "safety_lag_seconds",
        req.safety_lag_seconds,
        conn.safety_lag_seconds,
        0,
        86_400,
    )?;
    let poll = bounded(
        "poll_interval_seconds",
        req.poll_interval_seconds,
        conn.poll_interval_seconds,
        1,
        86_400,
    )?;
    let mut protocol = conn.protocol.clone();
    let mut version = conn.server_version.clone();
    let mut uid = conn.uid;
    let mut key = conn.api_key.clone();
    if let Some(new_key) = &req.api_key {
        let mut creds = conn.credentials();
        creds.api_key = text("api_key", new_key, 500)?;
        let check_model = conn
            .models
            .first()
            .map(String::as_str)
            .unwrap_or("res.partner");
        let client = OdooClient::connect(creds.clone(), policy(&state.config.odoo), check_model)
            .await
            .map_err(connect_error)?;
        protocol = client.protocol.as_str().to_string();
        version = client.version.clone();
        uid = client.uid;
        key = creds.api_key;
    }
    sqlx::query(
        "UPDATE odoo_connections SET api_key = $2, protocol = $3, server_version = $4, uid = $5,
                batch_size = $6, safety_lag_seconds = $7, poll_interval_seconds = $8
         WHERE id = $1",
    )
    .bind(id)
    .bind(&key)
    .bind(&protocol)
    .bind(&version)
    .bind(uid)
    .bind(batch_size)
    .bind(lag)
    .bind(poll)
    .execute(&state.pool)
    .await?;
    tracing::info!(connection = %id, key_renewed = req.api_key.is_some(), "Odoo connection updated");
    state.odoo_wakeup.notify_waiters();
    Ok(get(state, who, id).await?.view())
}

/// Removes a connection: its batches and outbox go with it, and its mirrored rows
/// become tombstones so devices drop them.
pub async fn delete(state: &AppState, who: &Principal, id: Uuid) -> AppResult<()> {
    let conn = get(state, who, id).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name FROM odoo_model_state WHERE connection_id = $1")
            .bind(id)
            .fetch_all(&state.pool)
            .await?;
    let mut tx = state.pool.begin().await?;
    // Waits for a worker's transaction writing rows for it; later ones see it gone.
    sqlx::query("SELECT 1 FROM odoo_connections WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {} SET deleted = true, odoo_connection_id = NULL
             WHERE odoo_connection_id = $1 AND tenant_id = $2",
            crate::sync::registry::quote_ident(&table)
        )))
        .bind(id)
        .bind(&conn.tenant_id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM odoo_connections WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(connection = %id, tenant = %conn.tenant_id, "Odoo connection deleted");
    Ok(())
}

/// Puts permanently failed batches and refused write-backs back in the queue.
pub async fn retry(state: &AppState, who: &Principal, id: Uuid) -> AppResult<Value> {
    get(state, who, id).await?;
    let mut tx = state.pool.begin().await?;
    let batches = sqlx::query(
        "UPDATE odoo_batches SET status = 'pending', attempts = 0, next_attempt_at = now()
         WHERE connection_id = $1 AND status IN ('failed', 'permanently_failed')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let writes = sqlx::query(
        "UPDATE odoo_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), done_at = NULL
         WHERE connection_id = $1 AND status = 'failed'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE odoo_connections SET sync_status = 'in_progress', last_error = NULL
         WHERE id = $1 AND sync_status = 'failed'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state.odoo_wakeup.notify_waiters();
    Ok(json!({ "batches_requeued": batches, "write_backs_requeued": writes }))
}

/// Progress of a connection's first full mirror (its `initial` batches), as
/// `progress`; later incremental batches are counted apart, in `incremental`.
pub async fn progress(pool: &PgPool, id: Uuid) -> sqlx::Result<Value> {
    let (total, completed, failed, permanently, pending): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT count(*),
                count(*) FILTER (WHERE status = 'done'),
                count(*) FILTER (WHERE status IN ('failed', 'permanently_failed')),
                count(*) FILTER (WHERE status = 'permanently_failed'),
                count(*) FILTER (WHERE status IN ('pending', 'running'))
         FROM odoo_batches WHERE connection_id = $1 AND initial",
        )
        .bind(id)
        .fetch_one(pool)
        .await?;
    let percentage = if total == 0 {
        0
    } else {
        (completed + permanently) * 100 / total
    };
    Ok(json!({
        "total_batches": total,
        "completed_batches": completed,
        "failed_batches": failed,
        "permanently_failed_batches": permanently,
        "pending_batches": pending,
        "progress_percentage": percentage,
    }))
}

/// Counts of the incremental batches (after the first mirror).
async fn incremental(pool: &PgPool, id: Uuid) -> sqlx::Result<Value> {
    let (done, failed, permanently, pending): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'done'),
                count(*) FILTER (WHERE status = 'failed'),
                count(*) FILTER (WHERE status = 'permanently_failed'),
                count(*) FILTER (WHERE status IN ('pending', 'running'))
         FROM odoo_batches WHERE connection_id = $1 AND NOT initial",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(json!({
        "completed_batches": done,
        "failed_batches": failed,
        "permanently_failed_batches": permanently,
        "pending_batches": pending,
    }))
}

/// id, model, window start and end, status, attempts, last error.
type FailedBatch = (
    i64,
    String,
    NaiveDateTime,
    NaiveDateTime,
    String,
    i32,
    Option<String>,
);

fn odoo_time(t: Option<NaiveDateTime>) -> Value {
    t.map_or(Value::Null, |t| json!(t.and_utc()))
}

/// `GET .../status`: progress, per-model counts, failures and the write-back queue.
pub async fn status(state: &AppState, who: &Principal, id: Uuid) -> AppResult<Value> {
    let conn = get(state, who, id).await?;
    let mut progress = progress(&state.pool, id).await?;
    if conn.first_mirror_done_at.is_some() {
        progress["progress_percentage"] = json!(100);
    }
    let incremental = incremental(&state.pool, id).await?;
    let model_rows: Vec<(String, String, Option<NaiveDateTime>, Option<NaiveDateTime>)> =
        sqlx::query_as(
            "SELECT model, table_name, last_write_date, planned_until FROM odoo_model_state
         WHERE connection_id = $1 ORDER BY model",
        )
        .bind(id)
        .fetch_all(&state.pool)
        .await?;
    let mut models = Map::new();
    for (model, table, last_write_date, planned_until) in model_rows {
        let (records, archived): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE NOT deleted),
                    count(*) FILTER (WHERE NOT deleted AND odoo_raw->'active' = 'false'::jsonb)
             FROM {} WHERE odoo_connection_id = $1 AND tenant_id = $2",
            crate::sync::registry::quote_ident(&table)
        )))
        .bind(id)
        .bind(&conn.tenant_id)
        .fetch_one(&state.pool)
        .await?;
        models.insert(
            model,
            json!({
                "table": table,
                "records": records,
                "archived": archived,
                "last_write_date": odoo_time(last_write_date),
                "mirrored_until": odoo_time(planned_until),
            }),
        );
    }
    let failed_batches: Vec<FailedBatch> = sqlx::query_as(
        "SELECT id, model, window_start, window_end, status, attempts, last_error
         FROM odoo_batches WHERE connection_id = $1 AND status IN ('failed', 'permanently_failed')
         ORDER BY id DESC LIMIT 20",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    let (out_pending, out_failed, out_done): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed'),
                count(*) FILTER (WHERE status = 'done')
         FROM odoo_outbox WHERE connection_id = $1",
    )
    .bind(id)
    .fetch_one(&state.pool)
    .await?;
    let write_errors: Vec<(String, Uuid, String, Option<String>, i32)> = sqlx::query_as(
        "SELECT table_name, row_id, status, last_error, attempts FROM odoo_outbox
         WHERE connection_id = $1 AND last_error IS NOT NULL ORDER BY queued_at DESC LIMIT 20",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    Ok(json!({
        "id": conn.id,
        "sync_status": conn.sync_status,
        "ready": conn.first_mirror_done_at.is_some(),
        "first_mirror_done_at": conn.first_mirror_done_at,
        "last_poll_at": conn.last_poll_at,
        "last_error": conn.last_error,
        "progress": progress,
        "incremental": incremental,
        "models": models,
        "failed_batches": failed_batches.into_iter().map(|(id, model, lo, hi, status, attempts, error)| json!({
            "id": id, "model": model, "window_start": lo.and_utc(), "window_end": hi.and_utc(),
            "status": status, "attempts": attempts, "last_error": error,
        })).collect::<Vec<_>>(),
        "write_back": {
            "pending": out_pending,
            "failed": out_failed,
            "done": out_done,
            "errors": write_errors.into_iter().map(|(table, row, status, error, attempts)| json!({
                "table": table, "record_id": row, "status": status, "error": error, "attempts": attempts,
            })).collect::<Vec<_>>(),
        },
    }))
}

/// `SYNC_NOT_READY` when one of `tables` is mirrored by a connection of the tenant
/// whose first full mirror has not finished.
pub async fn check_ready(pool: &PgPool, tenant: &str, tables: &[&str]) -> AppResult<()> {
    if !tables.iter().any(|t| t.starts_with("odoo_")) {
        return Ok(());
    }
    let waiting: Option<(Uuid, String, String)> = sqlx::query_as(
        "SELECT c.id, c.sync_status, s.table_name FROM odoo_connections c
         JOIN odoo_model_state s ON s.connection_id = c.id
         WHERE c.tenant_id = $1 AND s.table_name = ANY($2) AND c.first_mirror_done_at IS NULL
         ORDER BY c.created_at LIMIT 1",
    )
    .bind(tenant)
    .bind(tables)
    .fetch_optional(pool)
    .await?;
    if let Some((id, sync_status, table)) = waiting {
        let progress = progress(pool, id).await?;
        return Err(AppError::SyncNotReady(json!({
            "table": table,
            "connection_id": id,
            "sync_status": sync_status,
            "progress": progress,
        })));
    }
    Ok(())
}
