//! A real Kafka-protocol broker for tests: tansu with sqlite storage, started as its own
//! process on a free port of 127.0.0.1 and killed when dropped (shared/FACTS.md: no
//! Apache Kafka can be fetched here; `scripts/setup.sh test` installs tansu).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

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
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
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
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
