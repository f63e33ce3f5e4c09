//! Tests of the accept loop (src/serve.rs): timeouts and connection limits.

mod connection_limits;
mod connections;
