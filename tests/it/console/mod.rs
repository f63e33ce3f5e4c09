//! Tests of the admin console (src/admin/), over HTTP and in a real browser.

mod admin_browser;
mod admin_console;
