//! `OdooCtx`: what the mirror, the write-back and the scheduler use from the running
//! process (the pool, the table registry, the Odoo settings, the scheduler's wake-up).
//! The web layer's state holds one and hands it out; the scheduler runs on a clone.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::config::OdooSettings;
use crate::sync::registry::RegistryHandle;

#[derive(Clone)]
pub struct OdooCtx {
    pub pool: PgPool,
    /// Mirror tables join the registry when a connection is created.
    pub registry: RegistryHandle,
    pub settings: Arc<OdooSettings>,
    /// Wakes the scheduler (a connection was created, changed or retried).
    pub wakeup: Arc<Notify>,
}
