//! Tests of the real binary as an operator runs it (src/cli.rs, src/doctor.rs, src/secrets.rs).

mod commands;
mod operator;
mod secrets;
