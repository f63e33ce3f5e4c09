//! The `nas-sync` binary: parse the command line, start logging, dispatch.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = nas_sync::cli::Cli::parse();
    nas_sync::install_tls_provider();
    nas_sync::cli::run(cli).await
}
