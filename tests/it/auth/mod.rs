//! Tests of accounts, login, refresh, sessions and their memory (src/auth/).

mod accounts;
mod remembered_sessions;
mod sessions;
mod tokens;
