//! A connection's API key at rest: sealed with the server's secret key
//! (`crate::secrets`, from `NAS_SYNC_SECRET_KEY`) and bound to the connection's id;
//! opened by the workers when they build their client. Keys stored in plain text by
//! earlier versions are sealed in place when a server with the secret key starts;
//! without it, the server says at start what is exposed and what will not work.

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::odoo::OdooCtx;
use crate::secrets::{SecretBox, SecretError};

/// Why a stored key cannot be used; the sentence goes to the connection's
/// `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the Odoo API key is stored encrypted and this server has no NAS_SYNC_SECRET_KEY to \
         open it: start it with the secret key the API key was sealed with"
    )]
    NoSecretKey,
    #[error(
        "the Odoo API key cannot be opened with this server's NAS_SYNC_SECRET_KEY ({0}): set \
         the secret key it was sealed with again, or send the API key anew (PATCH the \
         connection's api_key)"
    )]
    Unreadable(SecretError),
    #[error("the connection has no API key stored")]
    Absent,
}

/// What a sealed key of connection `id` is bound to.
fn context(id: Uuid) -> String {
    format!("odoo_connections.api_key:{id}")
}

/// The server's secret key, or `SECRET_KEY_MISSING` (creating a connection or
/// renewing its key needs it).
pub(super) fn require(ctx: &OdooCtx) -> AppResult<&SecretBox> {
    ctx.secrets.as_deref().ok_or(AppError::SecretKeyMissing)
}

/// `key` sealed for connection `id`.
pub(super) fn seal(secrets: &SecretBox, id: Uuid, key: &str) -> AppResult<Vec<u8>> {
    secrets
        .seal(key.as_bytes(), context(id).as_bytes())
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("sealing an API key")))
}

/// The key of connection `id` in clear, for its client, from what is stored: sealed,
/// or in plain text (before sealing existed).
pub(super) fn open(
    id: Uuid,
    sealed: Option<&[u8]>,
    plain: Option<&str>,
    secrets: Option<&SecretBox>,
) -> Result<String, KeyError> {
    match (sealed, plain) {
        (Some(sealed), _) => {
            let secrets = secrets.ok_or(KeyError::NoSecretKey)?;
            secrets
                .open_text(sealed, context(id).as_bytes())
                .map_err(KeyError::Unreadable)
        }
        (None, Some(plain)) => Ok(plain.to_string()),
        (None, None) => Err(KeyError::Absent),
    }
}

/// How the stored API keys stand against a secret key (`nas-sync doctor`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub connections: usize,
    /// Stored in plain text (before this version, or by a server without the key).
    pub plain: usize,
    /// Sealed, but not opened by `secrets` (or there is no secret key).
    pub unreadable: usize,
}

/// Counts the connections' keys: in plain text, and sealed but not opened by `secrets`.
pub async fn key_counts(pool: &PgPool, secrets: Option<&SecretBox>) -> sqlx::Result<KeyCounts> {
    let rows: Vec<(Uuid, bool, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT id, api_key IS NOT NULL, api_key_sealed FROM odoo_connections ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let mut counts = KeyCounts {
        connections: rows.len(),
        ..KeyCounts::default()
    };
    for (id, plain, sealed) in &rows {
        counts.plain += usize::from(*plain);
        if let Some(value) = sealed {
            let opens = secrets.is_some_and(|s| s.open(value, context(*id).as_bytes()).is_ok());
            counts.unreadable += usize::from(!opens);
        }
    }
    Ok(counts)
}

/// At start: with a secret key, seals every key still in plain text and reports
/// (logs) the sealed keys it cannot open; without one, says what that means when
/// connections exist. Returns how many keys it sealed.
pub async fn seal_stored_keys(pool: &PgPool, secrets: Option<&SecretBox>) -> anyhow::Result<u64> {
    let rows: Vec<(Uuid, Option<String>, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT id, api_key, api_key_sealed FROM odoo_connections ORDER BY id")
            .fetch_all(pool)
            .await?;
    let plain = rows.iter().filter(|r| r.1.is_some()).count();
    let Some(secrets) = secrets else {
        if !rows.is_empty() {
            tracing::warn!(
                connections = rows.len(),
                plain_text_keys = plain,
                sealed_keys = rows.len() - plain,
                "NAS_SYNC_SECRET_KEY is not set: Odoo API keys stored in plain text stay so (in \
                 the database and in every backup), keys stored encrypted cannot be opened, and \
                 creating Odoo connections or renewing their keys is refused \
                 (SECRET_KEY_MISSING); set it (docs/operations.md, Security)"
            );
        }
        return Ok(0);
    };
    let mut sealed = 0;
    for (id, key, stored) in &rows {
        match (key, stored) {
            (Some(key), _) => {
                let value = seal(secrets, *id, key).map_err(|e| anyhow::anyhow!("{e:#}"))?;
                // Only if no other process sealed or renewed it meanwhile.
                sealed += sqlx::query(
                    "UPDATE odoo_connections SET api_key = NULL, api_key_sealed = $2
                     WHERE id = $1 AND api_key = $3",
                )
                .bind(id)
                .bind(value)
                .bind(key)
                .execute(pool)
                .await?
                .rows_affected();
            }
            (None, Some(value)) => {
                if let Err(e) = secrets.open(value, context(*id).as_bytes()) {
                    tracing::warn!(connection = %id, error = %e,
                        "this Odoo connection's API key cannot be opened with NAS_SYNC_SECRET_KEY; \
                         its worker waits, showing why in the connection's last_error, until the \
                         right secret key is set or the API key is sent anew");
                }
            }
            (None, None) => {}
        }
    }
    if sealed > 0 {
        tracing::info!(
            keys = sealed,
            "sealed Odoo API keys that were stored in plain text"
        );
    }
    Ok(sealed)
}
