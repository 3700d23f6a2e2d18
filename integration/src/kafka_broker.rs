//! A real Kafka-protocol broker for tests: tansu with sqlite storage, started as its own
//! process on a free port of 127.0.0.1 and killed when dropped (shared/FACTS.md: no
//! Apache Kafka can be fetched here; `scripts/setup.sh test` installs tansu).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub struct KafkaBroker {
    child: Child,
    pub address: String,
}

fn tansu() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let installed = home.join(".cargo/bin/tansu");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("tansu")
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl KafkaBroker {
    /// Starts a broker keeping its data in `dir`, and waits until it accepts connections.
    pub fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let address = format!("127.0.0.1:{}", free_port()?);
        let url = format!("tcp://{address}");
        let log = std::fs::File::create(dir.join("tansu.log"))?;
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // tansu reads the sqlite path relative to its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting tansu (scripts/setup.sh test installs it)")?;
        let broker = Self { child, address };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            if Instant::now() > deadline {
                bail!("tansu did not listen on {} within 20 s", broker.address);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        let out = Command::new(tansu())
            .args(["topic", "create", name, "--partitions", &partitions.to_string()])
            .arg("--broker")
            .arg(format!("tcp://{}", self.address))
            .output()?;
        if !out.status.success() {
            bail!("tansu topic create {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Produces `(partition, payload)` records to `topic` and waits until every one is
    /// acknowledged.
    pub fn produce(&self, topic: &str, records: &[(i32, Vec<u8>)]) -> Result<()> {
        produce(&self.address, topic, records)
    }
}

/// Produces `(partition, payload)` records to `topic` on the broker at `address` and waits
/// until every one is acknowledged.
pub fn produce(address: &str, topic: &str, records: &[(i32, Vec<u8>)]) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()?;
    for (partition, payload) in records {
        let mut record = BaseRecord::<(), [u8]>::to(topic).partition(*partition).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

impl KafkaBroker {
    /// The offsets group `group` committed for partitions `0..partitions` of `topic`
    /// (-1 where it has none).
    pub fn committed_offsets(&self, group: &str, topic: &str, partitions: i32) -> Result<Vec<i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("group.id", group)
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok((0..partitions)
            .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect())
    }

    /// Every record of partition `partition` of `topic`, oldest first (reads up to the
    /// end offset as of the call).
    pub fn read_partition(&self, topic: &str, partition: i32) -> Result<Vec<Vec<u8>>> {
        read_partition(&self.address, topic, partition)
    }
}

/// Every record of partition `partition` of `topic` on the broker at `address`, oldest
/// first (reads up to the end offset as of the call).
pub fn read_partition(address: &str, topic: &str, partition: i32) -> Result<Vec<Vec<u8>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", "weir-test-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = low;
    while next < high {
        if Instant::now() > deadline {
            bail!("reading {topic}/{partition}: stuck at offset {next} of {high}");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            out.push(m.payload().unwrap_or_default().to_vec());
            next = m.offset() + 1;
        }
    }
    Ok(out)
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
