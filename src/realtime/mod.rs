//! Real time: one PostgreSQL `LISTEN` connection per server process (`listener`),
//! fed by `NOTIFY` from the change trigger, and the hub that fans each change out to
//! the WebSockets allowed to see it (`hub`): same tenant, a readable table, and the
//! device's own store for store-scoped tables. Pokes are hints; a device that misses
//! one loses nothing, it pulls on reconnect.

pub mod hub;
pub mod listener;

pub use hub::Hub;
