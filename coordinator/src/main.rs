//! The `coordinator` binary.

use std::process::ExitCode;

use clap::Parser;
use weir_coordinator::cli::{Cli, run};

/// Batches allocate and free megabytes at a time; glibc's allocator returns such blocks to
/// the kernel and faults them back in on every batch (a third of the run time went to the
/// kernel), mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    run(Cli::parse())
}
