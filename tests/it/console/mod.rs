//! Tests of the admin console (src/console/), over HTTP and in a real browser.

mod admin_browser;
mod admin_console;
