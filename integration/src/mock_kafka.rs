//! The `weir-mock-kafka` process (librdkafka's mock cluster) for cluster tests of the
//! transactional Kafka sink, killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::binary;

pub struct MockKafka {
    child: Child,
    pub address: String,
}

impl MockKafka {
    /// Starts it with `(topic, partitions)` created.
    pub fn start(topics: &[(&str, u32)]) -> Result<Self> {
        let mut command = Command::new(binary("weir-mock-kafka"));
        for (name, partitions) in topics {
            command.arg("--topic").arg(format!("{name}:{partitions}"));
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .context("starting weir-mock-kafka")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("its stdout")?).read_line(&mut line)?;
        Ok(Self {
            child,
            address: line.trim().to_string(),
        })
    }

    /// Every record of `topic`'s partition `partition`, oldest first. Fails if the mock
    /// already dropped the oldest ones (it keeps about 5 MB per partition).
    pub fn read_partition(&self, topic: &str, partition: i32) -> Result<Vec<Vec<u8>>> {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.address).create()?;
        let (low, _) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if low > 0 {
            bail!(
                "the mock cluster dropped the first {low} records of {topic}/{partition} (it keeps ~5 MB per partition)"
            );
        }
        crate::kafka_broker::read_partition(&self.address, topic, partition)
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
