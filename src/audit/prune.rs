//! The audit trail's own retention (`NAS_SYNC_AUDIT_RETENTION_DAYS`, 0: kept for
//! good), apart from the history sync keeps for cursors and merges. Pruning a tenant's
//! oldest entries leaves a checkpoint signed by the server: the place the chain now
//! starts at and the seal it follows, so `verify` still checks every entry kept, and
//! a forged starting point shows.

use std::time::Duration;

use sqlx::PgPool;

use super::mac::SealKey;

/// Deletes each tenant's entries older than `keep` (by server time), leaving a
/// signed checkpoint; returns how many entries went. Runs under the sealer's lock, so
/// no entry is being appended meanwhile.
pub async fn prune(pool: &PgPool, key: &SealKey, keep: Duration) -> sqlx::Result<u64> {
    if keep.is_zero() {
        return Ok(0);
    }
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(super::LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    // Per tenant, the newest entry older than the cutoff: everything up to it goes.
    let last_old: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT DISTINCT ON (tenant_id) tenant_id, seq, seal FROM audit_log
         WHERE server_time < $1 ORDER BY tenant_id, seq DESC",
    )
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    let mut removed = 0;
    for (tenant, seq, seal) in last_old {
        let signature = key.sign_checkpoint(&tenant, seq + 1, &seal);
        sqlx::query(
            "INSERT INTO audit_checkpoints (tenant_id, seq, prev_seal, pruned_at, signature)
             VALUES ($1, $2, $3, now(), $4)
             ON CONFLICT (tenant_id) DO UPDATE SET seq = $2, prev_seal = $3, pruned_at = now(),
                 signature = $4",
        )
        .bind(&tenant)
        .bind(seq + 1)
        .bind(&seal)
        .bind(&signature)
        .execute(&mut *tx)
        .await?;
        removed += sqlx::query("DELETE FROM audit_log WHERE tenant_id = $1 AND seq <= $2")
            .bind(&tenant)
            .bind(seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(removed)
}
