//! The `nas-sync` binary: parse the command line, start logging, dispatch.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc gives freed memory back to the system within moments. With glibc's
/// allocator the server kept the peak of a busy minute (large pages of JSON, password
/// hashing buffers on blocking threads, each with its own arena) resident for good:
/// 500 MB after the benchmark's load, against 17 MB at start (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = nas_sync::cli::Cli::parse();
    nas_sync::install_tls_provider();
    nas_sync::cli::run(cli).await
}
