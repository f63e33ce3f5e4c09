//! `OdooCtx`: what the mirror, the write-back and the scheduler use from the running
//! process (the pool, the table registry, the Odoo settings, the secret key that seals
//! API keys, the scheduler's wake-up).
//! The web layer's state holds one and hands it out; the scheduler runs on a clone.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::odoo::settings::OdooSettings;
use crate::secrets::SecretBox;
use crate::sync::registry::RegistryHandle;

#[derive(Clone)]
pub struct OdooCtx {
    pub pool: PgPool,
    /// Mirror tables join the registry when a connection is created.
    pub registry: RegistryHandle,
    pub settings: Arc<OdooSettings>,
    /// From `NAS_SYNC_SECRET_KEY`; `None`: API keys can be neither stored nor opened
    /// sealed (creating connections and renewing keys answer `SECRET_KEY_MISSING`).
    pub secrets: Option<Arc<SecretBox>>,
    /// Wakes the scheduler (a connection was created, changed or retried).
    pub wakeup: Arc<Notify>,
}
