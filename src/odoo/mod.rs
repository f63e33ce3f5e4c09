//! The Odoo mirror: a live copy of chosen Odoo models in PostgreSQL, synced to devices
//! through the normal pull, with device edits written back.
//!
//! - `OdooCtx`: the pool, registry, settings and wake-up the rest uses.
//! - `client` and `fault`: JSON-RPC and JSON-2, retries, pacing, Odoo's clock.
//! - `models` and `schema`: which fields each model's table holds, and the DDL.
//! - `connections`: the manager routes' logic, readiness (`SYNC_NOT_READY`).
//! - `mirror`: write_date windows, batches, idempotent upserts.
//! - `reconcile`: deletions found by comparing id sets.
//! - `outbox`: write-back, parents first, never creating twice.
//! - `worker`: the scheduler and one worker per connection (lease-guarded).

pub mod client;
pub mod connections;
mod ctx;
pub mod fault;
pub mod field_type;
pub mod mirror;
pub mod models;
pub mod outbox;
pub mod reconcile;
pub mod schema;
pub mod settings;
pub use settings::OdooSettings;
pub mod worker;

pub use connections::MirrorReadiness;
pub use ctx::OdooCtx;
