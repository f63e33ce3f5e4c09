//! HTTP only: extractors that turn bad input into the contract's errors, one file
//! per route family, middleware, and the OpenAPI document. Handlers parse and
//! authorize, then hand over to `sync`, `auth` or `odoo`; they never build SQL.

pub mod admin;
pub mod admission;
pub mod audit;
pub mod auth;
pub mod bridge;
pub mod conflicts;
pub mod decimals;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod odoo;
pub mod openapi;
pub mod principal;
pub mod proxies;
pub mod routes;
pub mod sync;
pub mod tenant;
pub mod ws;
