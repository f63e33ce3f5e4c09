//! Tables another module fills may not be readable yet: the Odoo mirror's tables until
//! its first full copy is done. The engine asks through [`Readiness`], which that
//! module implements and the state registers at start; the engine itself knows
//! nothing of Odoo.

use futures_util::future::BoxFuture;
use sqlx::PgPool;

use crate::error::AppError;

/// Whether a tenant's `tables` may be read now; `Err` (e.g. `SYNC_NOT_READY`) says why
/// not.
pub trait Readiness: Send + Sync {
    /// Whether `tables` need asking at all (`false`: they are always ready, and a
    /// pull may be answered without `check`).
    fn needs_check(&self, tables: &[&str]) -> bool {
        !tables.is_empty()
    }

    fn check<'a>(
        &'a self,
        pool: &'a PgPool,
        tenant: &'a str,
        tables: &'a [&'a str],
    ) -> BoxFuture<'a, Result<(), AppError>>;
}

/// Every table is ready: no module fills tables of its own.
pub struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn needs_check(&self, _tables: &[&str]) -> bool {
        false
    }

    fn check<'a>(
        &'a self,
        _pool: &'a PgPool,
        _tenant: &'a str,
        _tables: &'a [&'a str],
    ) -> BoxFuture<'a, Result<(), AppError>> {
        Box::pin(async { Ok(()) })
    }
}
