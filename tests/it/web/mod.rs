//! Tests of the HTTP surface (src/api/): the OpenAPI document, fuzz findings, hardening, limits, load shedding, observability.

mod admin_api;
mod fuzz_findings;
mod fuzz_inputs;
mod hardening;
mod limits;
mod load_shedding;
mod observability;
mod openapi;
mod slow_clients;
mod smoke;
