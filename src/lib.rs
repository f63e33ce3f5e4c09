//! nas-sync: a delta-sync server for offline-first apps, with PostgreSQL as the
//! source of truth.
#![forbid(unsafe_code)]

/// HTTP routes, extractors and middleware.
pub mod api;
/// Shared state, router and launcher.
pub mod app;
/// Passwords, tokens, users, devices and the `Principal` extractor.
pub mod auth;
/// The command line.
pub mod cli;
/// Settings from the environment.
pub mod config;
/// Database creation, pool and migrations.
pub mod db;
/// The one error type.
pub mod error;
/// The sync engine: registry, cursor, pull, push, rules.
pub mod sync;

pub use app::{AppState, launch, router};
pub use config::Config;
pub use error::AppError;
