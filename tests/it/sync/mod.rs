//! Tests of the sync engine (src/sync/): pull, push, conflicts, retention, plans, isolation between tenants and stores.

mod conflicts;
mod convergence;
mod decimals;
mod first_sync;
mod horizon;
mod inbox;
mod isolation;
mod plans;
mod pull;
mod push;
mod quiet_pulls;
mod retention;
