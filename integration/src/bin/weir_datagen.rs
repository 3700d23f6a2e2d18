//! Writes the benchmark workloads' input as files, for tests that check Weir's output
//! against an independent reader (DuckDB) of the same input, and prints the reference dump.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use weir_taskmanager::connectors::generator::datagen::{dump, w2};

#[derive(Parser)]
#[command(about = "Generate Weir's benchmark inputs")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// W2 log records as JSON lines, g = 0..events in order.
    W2 {
        #[arg(long)]
        events: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// The first K events of every workload, in the reference `bench.Main dump` format.
    Dump { k: u64 },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::W2 { events, out } => {
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&out)?);
            let mut line = Vec::with_capacity(256);
            for g in 0..events {
                line.clear();
                w2::json_into(g, &mut line);
                line.push(b'\n');
                w.write_all(&line)?;
            }
            w.flush()?;
        }
        Cmd::Dump { k } => print!("{}", dump(k)),
    }
    Ok(())
}
