//! `nas-sync audit verify`: walks each tenant's chain from its start (or its signed
//! checkpoint, after retention pruned the head) and names the first entry that was
//! edited, deleted or inserted. The result is kept per tenant for the console.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::mac::{Entry, GENESIS, SealKey};

/// Entries read per statement.
const PAGE: i64 = 5000;

/// One tenant's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub tenant: String,
    /// Entries checked.
    pub entries: i64,
    /// The first entry found wrong, and what is wrong with it.
    pub problem: Option<(i64, String)>,
    /// The seal of the newest entry: kept elsewhere, it shows the tail was not cut.
    pub head: Vec<u8>,
}

impl Report {
    pub fn held(&self) -> bool {
        self.problem.is_none()
    }
}

/// An entry as stored, with its seals.
#[derive(sqlx::FromRow)]
struct Stored {
    #[sqlx(flatten)]
    entry: Entry,
    prev_seal: Vec<u8>,
    seal: Vec<u8>,
}

/// Verifies every tenant's chain, or `only` that tenant's, and records the results.
pub async fn verify(pool: &PgPool, key: &SealKey, only: Option<&str>) -> sqlx::Result<Vec<Report>> {
    let tenants: Vec<String> = sqlx::query_scalar(
        "SELECT tenant_id FROM (SELECT DISTINCT tenant_id FROM audit_log
                               UNION SELECT tenant_id FROM audit_checkpoints) t
         WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY 1",
    )
    .bind(only)
    .fetch_all(pool)
    .await?;
    let mut reports = Vec::new();
    for tenant in tenants {
        let report = verify_tenant(pool, key, &tenant).await?;
        sqlx::query(
            "INSERT INTO audit_verifications (tenant_id, verified_at, held, entries, first_bad, problem)
             VALUES ($1, now(), $2, $3, $4, $5)
             ON CONFLICT (tenant_id) DO UPDATE SET verified_at = now(), held = $2, entries = $3,
                 first_bad = $4, problem = $5",
        )
        .bind(&report.tenant)
        .bind(report.held())
        .bind(report.entries)
        .bind(report.problem.as_ref().map(|p| p.0))
        .bind(report.problem.as_ref().map(|p| p.1.clone()))
        .execute(pool)
        .await?;
        reports.push(report);
    }
    Ok(reports)
}

async fn verify_tenant(pool: &PgPool, key: &SealKey, tenant: &str) -> sqlx::Result<Report> {
    let checkpoint: Option<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, prev_seal, signature FROM audit_checkpoints WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    let mut report = Report {
        tenant: tenant.to_string(),
        entries: 0,
        problem: None,
        head: GENESIS.to_vec(),
    };
    let (mut expect, mut prev) = match checkpoint {
        Some((seq, prev_seal, signature)) => {
            if key.sign_checkpoint(tenant, seq, &prev_seal) != signature {
                report.problem = Some((
                    seq,
                    "the checkpoint where the chain starts after pruning \
                    is not signed by this server's key (it was edited or forged)"
                        .into(),
                ));
                return Ok(report);
            }
            (seq, prev_seal)
        }
        None => (1, GENESIS.to_vec()),
    };
    let mut prev_history = 0i64;
    loop {
        let rows: Vec<Stored> = sqlx::query_as(
            "SELECT tenant_id, seq, history_id, table_name, row_id, version, store_id, op, changed, server_time,
                    device_time, user_name, device_id, role, origin, prev_seal, seal
             FROM audit_log WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(tenant)
        .bind(expect)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            report.head = prev;
            return Ok(report);
        }
        for Stored {
            entry,
            prev_seal,
            seal,
        } in rows
        {
            let (seq, history_id) = (entry.seq, entry.history_id);
            let problem = if seq != expect {
                Some((
                    expect,
                    format!(
                        "entry {expect} was deleted (the chain goes from {} to {seq})",
                        expect - 1
                    ),
                ))
            } else if history_id <= prev_history {
                Some((
                    seq,
                    format!(
                        "entry {seq} was inserted out of order (it records a change \
                    older than entry {}'s)",
                        seq - 1
                    ),
                ))
            } else if prev_seal != prev {
                Some((
                    seq,
                    format!(
                        "entry {seq} does not follow entry {}: an entry between them \
                    was deleted, or this one was inserted",
                        seq - 1
                    ),
                ))
            } else if key.seal(&prev, &entry) != seal {
                Some((
                    seq,
                    format!("entry {seq} was edited (its content no longer matches its seal)"),
                ))
            } else {
                None
            };
            if problem.is_some() {
                report.problem = problem;
                report.head = prev;
                return Ok(report);
            }
            report.entries += 1;
            expect = seq + 1;
            prev = seal;
            prev_history = history_id;
        }
    }
}

/// The last verification of a tenant's chain, as `verify` recorded it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Verdict {
    pub verified_at: DateTime<Utc>,
    pub held: bool,
    pub entries: i64,
    pub problem: Option<String>,
}

/// The tenant's last verdict (`None`: never verified).
pub async fn last_verdict(pool: &PgPool, tenant: &str) -> sqlx::Result<Option<Verdict>> {
    sqlx::query_as(
        "SELECT verified_at, held, entries, problem FROM audit_verifications WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
}
