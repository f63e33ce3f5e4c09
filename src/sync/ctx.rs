//! `SyncCtx`: the few things the engine uses from the running process (the pool, the
//! table registry, the keys that sign cursors, the pull ledger, the readiness of
//! tables other modules fill). The web layer's state
//! holds one and hands it out; the engine never sees HTTP types, rate limiters,
//! WebSockets or metrics exporters.

use std::sync::Arc;

use sqlx::PgPool;

use super::registry::RegistryHandle;
use crate::auth::token::Keys;
use crate::sync::activity::PullLedger;

/// What pull, push and the status routes need.
#[derive(Clone)]
pub struct SyncCtx {
    pub pool: PgPool,
    pub registry: RegistryHandle,
    /// Sign and check cursors (derived from the JWT secret).
    pub keys: Arc<Keys>,
    /// Pull bookkeeping, written once a second.
    pub pull_ledger: Arc<PullLedger>,
    pub limits: SyncLimits,
    /// Empty pulls answered from memory (`quiet`), fed by the change listener.
    pub quiet: Arc<super::quiet::Quiet>,
    /// Sessions checked lately (`auth::remembered`), fed by the change listener; trusted
    /// only for empty pulls answered from memory.
    pub sessions: Arc<crate::auth::remembered::Sessions>,
    /// Whether tables another module fills (the Odoo mirror) may be read yet.
    pub readiness: Arc<dyn super::readiness::Readiness>,
}

/// Size limits of rows and pages (docs/contract.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncLimits {
    /// Largest text or JSON value a pushed row may carry (`NAS_SYNC_MAX_VALUE_BYTES`).
    pub max_value_bytes: usize,
    /// A pull page stops adding rows past this many bytes, after at least one row
    /// (`NAS_SYNC_MAX_PAGE_BYTES`).
    pub max_page_bytes: usize,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_value_bytes: 1 << 20,
            max_page_bytes: 4 << 20,
        }
    }
}
