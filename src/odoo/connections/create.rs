//! Creating a connection, in the order that keeps a bad one out: check the body,
//! authenticate against Odoo, describe every model (`fields_get`, or the curated field
//! list where the server refuses it), refuse models whose table another model owns,
//! create or widen the mirror tables, then store the connection `not_started`, its key
//! sealed, and wake the scheduler. Without the server's secret key nothing is tried.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::wire::{ConnectionView, CreateConnection, bounded, text};
use super::{connect_error, get, policy};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::odoo::OdooCtx;
use crate::odoo::client::{Credentials, OdooClient};
use crate::odoo::models::{DEFAULT_MODELS, curated};
use crate::odoo::schema::{self, FieldSpec, TableAccess};

/// A model to mirror: its name, the fields its table holds, and the char field that
/// tags records created from devices (`x_nas_sync_uuid`) when Odoo has it.
struct ModelSpec {
    model: String,
    fields: Vec<FieldSpec>,
    tag: Option<String>,
}

/// The pacing of a connection, checked.
struct Pacing {
    initial_range_days: i32,
    batch_size: i32,
    safety_lag: i32,
    poll: i32,
}

/// Checks the body, authenticates against Odoo, prepares every model's table and
/// stores the connection (`not_started`; the scheduler takes it from there).
pub async fn create(
    ctx: &OdooCtx,
    who: &Principal,
    req: CreateConnection,
) -> AppResult<ConnectionView> {
    super::require_manager(who)?;
    let secrets = super::keys::require(ctx)?;
    let creds = credentials(&req)?;
    let named_models = req.models.is_some();
    let models = model_names(req.models.as_deref())?;
    let pacing = Pacing {
        initial_range_days: bounded("initial_range_days", req.initial_range_days, 90, 0, 36_500)?,
        batch_size: bounded("batch_size", req.batch_size, 200, 1, 5000)?,
        safety_lag: bounded("safety_lag_seconds", req.safety_lag_seconds, 120, 0, 86_400)?,
        poll: bounded(
            "poll_interval_seconds",
            req.poll_interval_seconds,
            10,
            1,
            86_400,
        )?,
    };

    let client = OdooClient::connect(creds.clone(), policy(&ctx.settings), &models[0])
        .await
        .map_err(connect_error)?;
    let (specs, skipped) = describe(&client, &models, named_models).await?;
    let models: Vec<String> = specs.iter().map(|s| s.model.clone()).collect();
    check_table_owners(ctx, &models).await?;
    prepare_tables(ctx, &specs, &models).await?;

    let id = Uuid::new_v4();
    let sealed = super::keys::seal(secrets, id, &creds.api_key)?;
    store(ctx, who, id, (&creds, &sealed), &client, &specs, &pacing).await?;
    tracing::info!(connection = %id, tenant = %who.tenant, url = %creds.url, protocol = client.protocol.as_str(),
        version = %client.version, models = ?models, "Odoo connection created");
    let conn = get(ctx, who, id).await?;
    ctx.wakeup.notify_waiters();
    let mut view = conn.view();
    view.skipped_models = skipped;
    Ok(view)
}

/// The URL (http or https), database, user and key, checked.
fn credentials(req: &CreateConnection) -> AppResult<Credentials> {
    let url = text("url", &req.url, 2000)?;
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || reqwest::Url::parse(&url).is_err()
    {
        return Err(AppError::validation(
            "url",
            "must be an http:// or https:// URL",
        ));
    }
    Ok(Credentials {
        url,
        database: text("database", &req.database, 200)?,
        username: text("username", &req.username, 200)?,
        api_key: text("api_key", &req.api_key, 500)?,
    })
}

/// The models named (1 to 50 Odoo model names, no two sharing a table), or the
/// defaults.
fn model_names(named: Option<&[String]>) -> AppResult<Vec<String>> {
    let Some(list) = named else {
        return Ok(DEFAULT_MODELS.iter().map(ToString::to_string).collect());
    };
    let mut out: Vec<String> = Vec::new();
    for m in list {
        if !schema::valid_model(m) {
            return Err(AppError::validation(
                "models",
                format!("'{m}' is not an Odoo model name"),
            ));
        }
        if let Some(twin) = out
            .iter()
            .find(|o| *o != m && schema::table_name(o) == schema::table_name(m))
        {
            return Err(AppError::validation(
                "models",
                format!("'{m}' and '{twin}' would share one table"),
            ));
        }
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    if out.is_empty() || out.len() > 50 {
        return Err(AppError::validation("models", "name 1 to 50 models"));
    }
    Ok(out)
}

/// Fields of every model, from `fields_get` where the server answers it. A default
/// model this Odoo lacks (no HR app, say) is skipped, with the reason; a named one is
/// an error.
async fn describe(
    client: &OdooClient,
    models: &[String],
    named_models: bool,
) -> AppResult<(Vec<ModelSpec>, Map<String, Value>)> {
    let mut specs = Vec::new();
    let mut skipped = Map::new();
    for model in models {
        let fg = match client.fields_get(model).await {
            Ok(fg) => Some(fg),
            Err(e) if e.is_retryable() => return Err(connect_error(e)),
            Err(e) if curated(model).is_some() => {
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
        specs.push(ModelSpec {
            model: model.clone(),
            fields,
            tag,
        });
    }
    if specs.is_empty() {
        return Err(AppError::validation(
            "models",
            "this Odoo serves none of the models to mirror",
        ));
    }
    Ok((specs, skipped))
}

/// A mirror table belongs to one model: another model mapping to the same table name
/// (from another connection) is refused.
async fn check_table_owners(ctx: &OdooCtx, models: &[String]) -> AppResult<()> {
    for model in models {
        let other: Option<String> = sqlx::query_scalar(
            "SELECT model FROM odoo_model_state WHERE table_name = $1 AND model <> $2 LIMIT 1",
        )
        .bind(schema::table_name(model))
        .bind(model)
        .fetch_optional(&ctx.pool)
        .await?;
        if let Some(other) = other {
            return Err(AppError::validation(
                "models",
                format!("'{model}' would share the table of '{other}'"),
            ));
        }
    }
    Ok(())
}

/// Creates or widens every model's table, then reloads the registry so pulls and
/// pushes know them.
async fn prepare_tables(ctx: &OdooCtx, specs: &[ModelSpec], models: &[String]) -> AppResult<()> {
    let settings = &ctx.settings;
    // Twice: companion columns need their target's table to exist.
    for _ in 0..2 {
        for spec in specs {
            let write_roles = settings.write_roles_for(&spec.model);
            schema::ensure_table(
                &ctx.pool,
                &spec.model,
                &spec.fields,
                &TableAccess {
                    read_roles: &settings.read_roles,
                    write_roles: &write_roles,
                },
                models,
            )
            .await?;
        }
    }
    ctx.registry.reload(&ctx.pool).await?;
    Ok(())
}

/// Stores the connection (its key only sealed) and its models' state in one
/// transaction.
async fn store(
    ctx: &OdooCtx,
    who: &Principal,
    id: Uuid,
    (creds, sealed_key): (&Credentials, &[u8]),
    client: &OdooClient,
    specs: &[ModelSpec],
    pacing: &Pacing,
) -> AppResult<()> {
    let models: Vec<&str> = specs.iter().map(|s| s.model.as_str()).collect();
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "INSERT INTO odoo_connections (id, tenant_id, url, database, username, api_key_sealed,
            protocol, server_version, uid, models, initial_range_days, batch_size,
            safety_lag_seconds, poll_interval_seconds, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(id)
    .bind(&who.tenant)
    .bind(&creds.url)
    .bind(&creds.database)
    .bind(&creds.username)
    .bind(sealed_key)
    .bind(client.protocol.as_str())
    .bind(&client.version)
    .bind(client.uid)
    .bind(&models)
    .bind(pacing.initial_range_days)
    .bind(pacing.batch_size)
    .bind(pacing.safety_lag)
    .bind(pacing.poll)
    .bind(&who.username)
    .execute(&mut *tx)
    .await?;
    for spec in specs {
        sqlx::query(
            "INSERT INTO odoo_model_state (connection_id, model, table_name, fields, tag_field)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(&spec.model)
        .bind(schema::table_name(&spec.model))
        .bind(json!(spec.fields))
        .bind(&spec.tag)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
