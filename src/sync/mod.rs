//! The sync engine: one generic pull and push over every registered table, with no
//! per-table Rust code. Rows move in and out as JSON, validated against the table's
//! real columns; the change log (filled by one trigger) orders pulls by transaction
//! id below the snapshot horizon, so no concurrent writer's change is ever missed.

pub mod activity;
pub mod conflicts;
mod ctx;
pub mod cursor;
pub mod events;
pub mod horizon;
pub mod merge;
pub mod pull;
pub mod push;
pub mod quiet;
pub mod readiness;
pub mod registry;
pub mod resolve;
pub mod retention;
pub mod rules;
pub mod status;
pub mod validate;
pub mod walk;

pub use ctx::{SyncCtx, SyncLimits};
pub use registry::Registry;
