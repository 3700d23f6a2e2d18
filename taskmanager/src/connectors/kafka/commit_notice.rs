//! Publishes partition-commit notices: one JSON record per committed partition on a
//! Kafka topic, keyed by the partition (so one partition's notices stay in order), from
//! an idempotent producer (a retry never duplicates). `publish` blocks until the broker
//! acknowledged the record or the delivery timeout passed; callers run it on a blocking
//! thread. A notice repeats only when the committer crashed between delivery and
//! recording it, and then carries the same `notice_id`.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde::Serialize;
use weir_common::spec::CommitNoticeSpec;

use crate::error::TaskError;

/// How long one notice may take to be acknowledged (librdkafka retries within it).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// The notice record.
#[derive(Debug, Serialize)]
pub struct CommitNotice<'a> {
    pub notice_id: &'a str,
    pub table: &'a str,
    pub partition: &'a str,
    pub files: &'a [String],
    pub rows: u64,
    pub bytes: u64,
    pub watermark: i64,
    pub committed_at_ms: i64,
}

/// Remembers the outcome of the last delivery.
#[derive(Default)]
struct Delivery {
    failure: Mutex<Option<String>>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            *self.failure.lock().expect("delivery lock") = Some(e.to_string());
        }
    }
}

pub struct NoticePublisher {
    producer: BaseProducer<Delivery>,
    topic: String,
}

impl NoticePublisher {
    pub fn new(spec: &CommitNoticeSpec) -> Result<Self, TaskError> {
        let mut config = ClientConfig::new();
        for (k, v) in &spec.properties {
            config.set(k, v);
        }
        let producer = config
            .set("bootstrap.servers", &spec.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            .create_with_context(Delivery::default())
            .map_err(|e| error(&spec.topic, format!("cannot create a Kafka producer: {e}")))?;
        Ok(Self {
            producer,
            topic: spec.topic.clone(),
        })
    }

    /// Sends the notice and waits for its acknowledgement.
    pub fn publish(&self, notice: &CommitNotice<'_>) -> Result<(), TaskError> {
        let payload = serde_json::to_vec(notice).expect("notices serialize");
        *self.producer.context().failure.lock().expect("delivery lock") = None;
        self.producer
            .send(BaseRecord::to(&self.topic).key(notice.partition).payload(&payload))
            .map_err(|(e, _)| error(&self.topic, format!("notice {}: {e}", notice.notice_id)))?;
        self.producer
            .flush(DELIVERY_TIMEOUT + Duration::from_secs(1))
            .map_err(|e| {
                error(
                    &self.topic,
                    format!("notice {} not acknowledged: {e}", notice.notice_id),
                )
            })?;
        match self.producer.context().failure.lock().expect("delivery lock").take() {
            Some(e) => Err(error(&self.topic, format!("notice {}: {e}", notice.notice_id))),
            None => Ok(()),
        }
    }
}

fn error(topic: &str, message: String) -> TaskError {
    TaskError::Connector {
        vertex: format!("commit notices to {topic}"),
        message,
    }
}
