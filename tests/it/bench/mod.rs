//! Tests of benchmarks, ignored by default; run with --ignored (see each file).

mod odoo_bench;
mod ws_bench;
