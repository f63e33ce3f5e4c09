//! `SyncCtx`: the few things the engine uses from the running process (the pool, the
//! table registry, the keys that sign cursors, the pull ledger). The web layer's state
//! holds one and hands it out; the engine never sees HTTP types, rate limiters,
//! WebSockets or metrics exporters.

use std::sync::Arc;

use sqlx::PgPool;

use super::registry::RegistryHandle;
use crate::auth::devices::PullLedger;
use crate::auth::token::Keys;

/// What pull, push and the status routes need.
#[derive(Clone)]
pub struct SyncCtx {
    pub pool: PgPool,
    pub registry: RegistryHandle,
    /// Sign and check cursors (derived from the JWT secret).
    pub keys: Arc<Keys>,
    /// Pull bookkeeping, written once a second.
    pub pull_ledger: Arc<PullLedger>,
}
