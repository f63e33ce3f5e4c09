//! Tests of the Odoo mirror and write-back against the fake Odoo (src/odoo/).

mod mirror;
mod odoo_http;
