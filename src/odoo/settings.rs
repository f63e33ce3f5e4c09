//! The Odoo module's own settings (`NAS_SYNC_ODOO_*`, read by `config`): how the
//! mirror talks to Odoo and schedules its work, and who may read and write its tables.

use std::time::Duration;

/// How the Odoo mirror talks to Odoo and schedules its work.
#[derive(Clone, Debug)]
pub struct OdooSettings {
    /// Run the mirror and write-back workers in this process.
    pub worker: bool,
    /// How often the scheduler looks for connections to serve.
    pub tick: Duration,
    pub call_timeout: Duration,
    /// Least time between two calls to one Odoo.
    pub call_delay: Duration,
    /// Extra attempts of one call on a retryable fault.
    pub call_retries: u32,
    /// Largest answer read from Odoo (`NAS_SYNC_ODOO_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Attempts of a batch before it is `permanently_failed`.
    pub max_attempts: i32,
    /// First wait before a failed batch is tried again (doubles per attempt).
    pub retry_delay: Duration,
    /// Narrowest write_date window; a denser one is paged by id.
    pub min_window: Duration,
    /// How often deletions are reconciled by comparing id sets.
    pub reconcile_interval: Duration,
    /// Roles that read mirror tables.
    pub read_roles: Vec<String>,
    /// Per model, the roles that may write its mirror table (written back to Odoo).
    pub write_roles: Vec<(String, Vec<String>)>,
}

impl OdooSettings {
    /// The roles that may write `model`'s table (none: read-only).
    pub fn write_roles_for(&self, model: &str) -> Vec<String> {
        self.write_roles
            .iter()
            .find(|(m, _)| m == model)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    }
}
