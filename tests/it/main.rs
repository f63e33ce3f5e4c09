//! The integration tests, one binary: a change rebuilds and links one test target,
//! not forty. Folders follow src/; `common` is the harness (a real PostgreSQL database
//! per test, the real server on port 0, a syncing device). Run one group or test with
//! a filter: `cargo test --test it -- sync::push`.

mod architecture;
mod audit;
mod common;

mod auth;
mod bridge;
mod cli;
mod console;
mod db;
mod odoo;
mod realtime;
mod serve;
mod sync;
mod web;
