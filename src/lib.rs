//! nas-sync: a delta-sync server for offline-first apps, with PostgreSQL as the
//! source of truth.
#![forbid(unsafe_code)]

/// HTTP routes, extractors and middleware.
pub mod api;
/// The router and the launcher.
pub mod app;
/// The audit trail: who changed what, sealed in a chain per tenant.
pub mod audit;
/// Passwords, tokens, users, devices and the caller's identity (`Principal`).
pub mod auth;
/// BridgeCore compatibility: the offline-sync and smart-sync protocols.
pub mod bridge;
/// The command line.
pub mod cli;
/// Settings from the environment.
pub mod config;
/// The admin console at `/admin`: sessions, CSRF, pages.
pub mod console;
/// Database creation, pool and migrations.
pub mod db;
/// `nas-sync doctor`: checks of a deployment, with fixes.
pub mod doctor;
/// The one error type.
pub mod error;
/// Byte-level entry points for the fuzz targets (`fuzz/`) and random-input tests.
#[doc(hidden)]
pub mod fuzzing;
/// Guards against overload and abuse as plain types: rate limits, load shedding and
/// fair shares, body arrival, trusted proxies.
pub mod guard;
/// How long what a process learned from PostgreSQL is trusted in memory.
pub mod lease;
/// The Odoo mirror: client, mirror tables, batches, write-back, workers.
pub mod odoo;
/// WebSocket pokes: the LISTEN connection and the hub.
pub mod realtime;
/// Secrets at rest: values sealed under `NAS_SYNC_SECRET_KEY`.
pub mod secrets;
/// The HTTP server's accept loop: header and idle timeouts, graceful drain.
pub mod serve;
/// The shared state every handler reaches, and how it is built.
pub mod state;
/// The sync engine: registry, cursor, pull, push, rules.
pub mod sync;

pub use app::{launch, router};
pub use state::AppState;

/// Installs ring as the process's TLS crypto provider (HTTPS to Odoo uses rustls);
/// harmless when one is installed already. Every HTTP client needs it first.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub use config::Config;
pub use error::AppError;
