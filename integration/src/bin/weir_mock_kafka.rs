//! librdkafka's mock cluster as a process of its own, for cluster tests of what no broker
//! here implements (Kafka transactions: the mock accepts every transaction call, though it
//! writes no markers and keeps no transactional offsets, see shared/FACTS.md). Prints its
//! bootstrap address on the first line of stdout and serves until killed.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Parser;
use rdkafka::mocking::MockCluster;

#[derive(Parser)]
struct Args {
    /// A topic to create, `name:partitions` (repeatable).
    #[arg(long = "topic")]
    topics: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cluster = MockCluster::new(1).context("starting the mock cluster")?;
    for topic in &args.topics {
        let (name, partitions) = topic.split_once(':').context("--topic name:partitions")?;
        cluster.create_topic(name, partitions.parse().context("partitions")?, 1)?;
    }
    let mut out = std::io::stdout();
    writeln!(out, "{}", cluster.bootstrap_servers())?;
    out.flush()?;
    loop {
        std::thread::park();
    }
}
