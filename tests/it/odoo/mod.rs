//! Tests of the Odoo mirror and write-back against the fake Odoo (src/odoo/).

mod bridgecore_examples;
mod mirror;
mod odoo_http;
