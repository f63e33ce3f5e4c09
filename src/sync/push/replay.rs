//! Exactly-once pushes: the `push_log` row (keyed by tenant, device and `push_id`) is
//! inserted first in the push's transaction, so a concurrent retry waits for the first
//! attempt, then replays its recorded answer. The same `push_id` with other changes is
//! refused rather than answered with the old result. The answer is stored as the JSON
//! text it is sent as (V12), never parsed by PostgreSQL.

use sqlx::PgConnection;

use super::wire::PushResponse;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};

/// Claims `push_id` for this push; `Some(answer)` when it was done before.
pub(super) async fn claim(
    conn: &mut PgConnection,
    who: &Principal,
    push_id: &str,
    request_hash: &[u8],
) -> AppResult<Option<PushResponse>> {
    let fresh = sqlx::query(
        "INSERT INTO push_log (tenant_id, device_id, push_id, request_hash) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(&who.tenant)
    .bind(&who.device_id)
    .bind(push_id)
    .bind(request_hash)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if fresh {
        return Ok(None);
    }
    let (hash, response): (Vec<u8>, Option<String>) = sqlx::query_as(
        "SELECT request_hash, response FROM push_log WHERE tenant_id = $1 AND device_id = $2 AND push_id = $3",
    )
    .bind(&who.tenant)
    .bind(&who.device_id)
    .bind(push_id)
    .fetch_one(&mut *conn)
    .await?;
    if hash != request_hash {
        return Err(AppError::Conflict {
            code: "PUSH_ID_REUSED",
            message: "This push_id was already used for different changes; use a new push_id."
                .into(),
        });
    }
    let response = response.ok_or_else(|| anyhow::anyhow!("push_log row without a response"))?;
    tracing::info!(device_id = %who.device_id, push_id, "push replayed");
    Ok(Some(
        serde_json::from_str(&response).map_err(anyhow::Error::from)?,
    ))
}

/// Records the answer of `push_id`, in the push's transaction.
pub(super) async fn record(
    conn: &mut PgConnection,
    who: &Principal,
    push_id: &str,
    response: &PushResponse,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE push_log SET response = $4 WHERE tenant_id = $1 AND device_id = $2 AND push_id = $3",
    )
    .bind(&who.tenant)
    .bind(&who.device_id)
    .bind(push_id)
    .bind(serde_json::to_string(response).map_err(anyhow::Error::from)?)
    .execute(conn)
    .await?;
    Ok(())
}
