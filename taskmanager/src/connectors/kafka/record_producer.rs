//! The Kafka sink's producer thread: owns the librdkafka producers, so that a full send
//! queue, a flush or a transaction commit blocks this thread and never the subtask's event
//! loop; the bounded command channel in front of it backpressures the chain.
//!
//! `at_least_once`: one idempotent producer (retries never duplicate or reorder); a
//! checkpoint barrier waits until everything before it is acknowledged, so a restored
//! checkpoint never lacks a record that was before its barrier.
//!
//! `exactly_once`: a small pool of transactional producers with ids
//! `<prefix>-<subtask>-<slot>` that stay the same across restarts. Records go into the open
//! transaction; at a barrier that transaction is flushed and set aside as prepared for its
//! checkpoint, and the next free producer begins a new one. When a checkpoint completes,
//! every prepared transaction up to it is committed (a later completion also commits the
//! transactions of a checkpoint that failed). On start every slot is initialised, which
//! aborts whatever an earlier attempt left open (and fences its zombies), so consumers
//! reading `read_committed` are not held up until the broker's transaction timeout.
//!
//! In a checkpointing cluster each transaction is also written ahead
//! (`write_ahead_store`) and commits a marker (`transaction_marker`): a transaction whose
//! checkpoint completed but that the process did not live to commit is written again, from
//! its segment, by the attempt that restores that checkpoint, before anything new.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use tokio::sync::oneshot;
use weir_common::spec::{KafkaDelivery, KafkaSinkSpec};
use weir_common::state_handle::StateHandle;

use super::transaction_marker::{self as marker, marker_offsets, needs_replay};
use super::write_ahead_log::SegmentReader;
use super::write_ahead_store::{WriteAheadStore, WriteAheadTarget};
use crate::error::TaskError;
use crate::runtime::subtask_metrics::SubtaskMetrics;

/// How long librdkafka may retry one record before the sink fails (and the job restarts
/// from its last checkpoint, so nothing is lost).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one transaction call (init, commit, abort) or of a metadata request.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Transactional producers per subtask: the open transaction plus prepared ones waiting
/// for their checkpoint to complete (one checkpoint is in flight at a time).
const TRANSACTION_SLOTS: usize = 3;
/// Records handed to librdkafka at a time when a write-ahead segment is replayed.
const REPLAY_CHUNK: usize = 4096;

/// One record, ready to send.
pub struct OutgoingRecord {
    pub topic: Arc<str>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

pub enum ProducerCommand {
    Records(Vec<OutgoingRecord>),
    /// Checkpoint barrier: answers once everything before it is acknowledged (and with
    /// transactions, prepared), with the write-ahead log's handle when there is one.
    Barrier {
        checkpoint: u64,
        done: oneshot::Sender<Result<Option<StateHandle>, TaskError>>,
    },
    /// End of input: everything is delivered (and committed) before the answer.
    Finish(oneshot::Sender<Result<(), TaskError>>),
}

/// Counts acknowledgements and keeps the first delivery failure; shared by the producers
/// of one sink subtask.
#[derive(Clone)]
struct DeliveryReport {
    metrics: Arc<SubtaskMetrics>,
    failure: Arc<Mutex<Option<String>>>,
}

impl ClientContext for DeliveryReport {}

impl ProducerContext for DeliveryReport {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                SubtaskMetrics::add(&self.metrics.records_out, 1);
                let bytes = m.payload_len() + m.key_len();
                SubtaskMetrics::add(&self.metrics.bytes_out, bytes as u64);
            }
            Err((e, m)) => {
                SubtaskMetrics::add(&self.metrics.errors, 1);
                let mut failure = self.failure.lock().expect("delivery lock");
                if failure.is_none() {
                    *failure = Some(format!("record to {}/{}: {e}", m.topic(), m.partition()));
                }
            }
        }
    }
}

type Client = BaseProducer<DeliveryReport>;

pub struct RecordProducer {
    vertex: String,
    spec: KafkaSinkSpec,
    report: DeliveryReport,
    /// `at_least_once`: the producer; `exactly_once`: the one with the open transaction.
    open: Client,
    /// Prepared transactions by checkpoint, oldest first.
    prepared: VecDeque<(u64, Client)>,
    /// Initialised transactional producers without a transaction.
    free: Vec<Client>,
    /// `exactly_once`: this subtask's transactional ids.
    transactional_ids: Vec<String>,
    /// With a write-ahead log: where the transactions commit their markers.
    marker: Option<(String, ConsumerGroupMetadata)>,
    write_ahead: Option<WriteAheadStore>,
    /// Restored write-ahead segments that `recover` settles.
    restored: Vec<PathBuf>,
}

impl RecordProducer {
    /// Connects (and with transactions, initialises every slot and opens the write-ahead
    /// log when given one). `prefix` is the transactional id prefix; blocking: call on the
    /// producer thread, then `recover`.
    pub fn connect(
        vertex: &str,
        spec: &KafkaSinkSpec,
        prefix: &str,
        subtask: u32,
        metrics: Arc<SubtaskMetrics>,
        write_ahead: Option<WriteAheadTarget>,
    ) -> Result<Self, TaskError> {
        let report = DeliveryReport {
            metrics,
            failure: Arc::default(),
        };
        let error = |message: String| connector(vertex, message);
        let transactional_ids: Vec<String> = match spec.delivery {
            KafkaDelivery::AtLeastOnce => Vec::new(),
            KafkaDelivery::ExactlyOnce => (0..TRANSACTION_SLOTS)
                .map(|slot| format!("{prefix}-{subtask}-{slot}"))
                .collect(),
        };
        let (open, free) = match spec.delivery {
            KafkaDelivery::AtLeastOnce => (client(spec, &report, None).map_err(error)?, Vec::new()),
            KafkaDelivery::ExactlyOnce => {
                check_transaction_timeout(vertex, spec)?;
                let mut slots = (0..TRANSACTION_SLOTS)
                    .map(|slot| {
                        let c = client(spec, &report, Some(transactional_ids[slot].clone())).map_err(error)?;
                        c.init_transactions(CALL_TIMEOUT)
                            .map_err(|e| error(format!("initialising transactions (slot {slot}): {e}")))?;
                        Ok(c)
                    })
                    .collect::<Result<Vec<_>, TaskError>>()?;
                (slots.remove(0), slots)
            }
        };
        let (write_ahead, restored, marker) = match write_ahead.filter(|_| spec.delivery == KafkaDelivery::ExactlyOnce)
        {
            Some(target) => {
                let (store, restored) = WriteAheadStore::open(vertex, target)?;
                let group = marker::marker_group(prefix, subtask);
                let metadata = marker::group_metadata(spec, &group).map_err(error)?;
                (Some(store), restored, Some((group, metadata)))
            }
            None => (None, Vec::new(), None),
        };
        let mut this = Self {
            vertex: vertex.to_string(),
            spec: spec.clone(),
            report,
            open,
            prepared: VecDeque::new(),
            free,
            transactional_ids,
            marker,
            write_ahead,
            restored,
        };
        if this.transactional() {
            this.begin()?;
        }
        Ok(this)
    }

    fn begin(&mut self) -> Result<(), TaskError> {
        self.open
            .begin_transaction()
            .map_err(|e| self.error(format!("beginning a transaction: {e}")))
    }

    fn transactional(&self) -> bool {
        self.spec.delivery == KafkaDelivery::ExactlyOnce
    }

    /// Settles the transactions of the restored checkpoint's write-ahead segments: those
    /// whose marker shows no commit are written again, each in a transaction of its own
    /// that commits its marker, oldest first. Returns the records replayed.
    pub fn recover(&mut self, abort: &AtomicBool) -> Result<u64, TaskError> {
        let restored = std::mem::take(&mut self.restored);
        let mut segments = restored
            .iter()
            .map(|path| {
                SegmentReader::open(path)
                    .map_err(|e| self.error(format!("reading restored write-ahead segment {}: {e}", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        segments.sort_by_key(|s| s.trailer.checkpoint);
        let foreign: BTreeSet<String> = segments
            .iter()
            .flat_map(|s| s.trailer.transactional_ids.iter())
            .filter(|id| !self.transactional_ids.contains(id))
            .cloned()
            .collect();
        // Initialising an id once fences whoever held it and settles its transaction in
        // flight (a prepared commit is completed, anything else aborted).
        for id in foreign {
            client(&self.spec, &self.report, Some(id.clone()))
                .map_err(|e| self.error(e))?
                .init_transactions(CALL_TIMEOUT)
                .map_err(|e| self.error(format!("initialising {id}: {e}")))?;
        }
        let mut replayed = 0;
        for segment in segments {
            let trailer = segment.trailer.clone();
            let committed =
                marker::committed_marker(&self.spec, &trailer.marker_group, &trailer.marker_topic, CALL_TIMEOUT)
                    .map_err(|e| self.error(e))?;
            if !needs_replay(trailer.checkpoint, committed) {
                tracing::info!(sink = %self.vertex, checkpoint = trailer.checkpoint, "the restored checkpoint's transaction committed");
                continue;
            }
            let metadata = marker::group_metadata(&self.spec, &trailer.marker_group).map_err(|e| self.error(e))?;
            let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
            for record in segment {
                chunk
                    .push(record.map_err(|e| self.error(format!("replaying checkpoint {}: {e}", trailer.checkpoint)))?);
                if chunk.len() == REPLAY_CHUNK {
                    self.produce(&std::mem::take(&mut chunk), abort)?;
                }
            }
            self.produce(&chunk, abort)?;
            self.open
                .flush(DELIVERY_TIMEOUT)
                .map_err(|e| self.error(format!("flushing the replay of checkpoint {}: {e}", trailer.checkpoint)))?;
            self.failed()?;
            let offsets = marker_offsets(&trailer.marker_topic, trailer.checkpoint).map_err(|e| self.error(e))?;
            self.open
                .send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)
                .map_err(|e| {
                    self.error(format!(
                        "commit marker of the replay of checkpoint {}: {e}",
                        trailer.checkpoint
                    ))
                })?;
            self.open.commit_transaction(CALL_TIMEOUT).map_err(|e| {
                self.error(format!(
                    "committing the replay of checkpoint {}: {e}",
                    trailer.checkpoint
                ))
            })?;
            self.begin()?;
            tracing::warn!(sink = %self.vertex, checkpoint = trailer.checkpoint, records = trailer.records, marker = ?committed, "wrote again a transaction whose checkpoint completed but which was never committed");
            replayed += trailer.records;
        }
        for path in restored {
            let _ = std::fs::remove_file(path);
        }
        Ok(replayed)
    }

    pub fn send(&mut self, records: Vec<OutgoingRecord>, abort: &AtomicBool) -> Result<(), TaskError> {
        if let Some(log) = &mut self.write_ahead {
            log.append(&records)?;
        }
        self.produce(&records, abort)
    }

    fn produce(&self, records: &[OutgoingRecord], abort: &AtomicBool) -> Result<(), TaskError> {
        for r in records {
            let mut record = BaseRecord::<[u8], [u8]>::to(&r.topic).payload(&r.payload);
            if let Some(k) = &r.key {
                record = record.key(k);
            }
            loop {
                match self.open.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if abort.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        self.open.poll(Duration::from_millis(20));
                        record = back;
                    }
                    Err((e, _)) => return Err(self.error(format!("producing to {}: {e}", r.topic))),
                }
            }
        }
        self.open.poll(Duration::ZERO);
        self.failed()
    }

    /// Serves delivery reports while idle.
    pub fn poll(&self) -> Result<(), TaskError> {
        self.open.poll(Duration::ZERO);
        for (_, p) in &self.prepared {
            p.poll(Duration::ZERO);
        }
        self.failed()
    }

    fn failed(&self) -> Result<(), TaskError> {
        match self.report.failure.lock().expect("delivery lock").take() {
            Some(e) => Err(self.error(e)),
            None => Ok(()),
        }
    }

    /// Everything sent so far is acknowledged; with transactions, the open transaction is
    /// prepared for `checkpoint` and a new one begins. With no free slot (completions
    /// lagging), waits on `completions` for one. With a write-ahead log, returns its handle
    /// for the checkpoint once the segments are in checkpoint storage.
    pub fn barrier(
        &mut self,
        checkpoint: u64,
        completions: &flume::Receiver<u64>,
    ) -> Result<Option<StateHandle>, TaskError> {
        self.open
            .flush(DELIVERY_TIMEOUT)
            .map_err(|e| self.error(format!("flushing at checkpoint {checkpoint}: {e}")))?;
        self.failed()?;
        if !self.transactional() {
            return Ok(None);
        }
        if let (Some(log), Some((group, metadata))) = (&self.write_ahead, &self.marker)
            && let Some(topic) = log.marker_topic()
        {
            let offsets = marker_offsets(&topic, checkpoint).map_err(|e| self.error(e))?;
            self.open
                .send_offsets_to_transaction(&offsets, metadata, CALL_TIMEOUT)
                .map_err(|e| self.error(format!("commit marker of checkpoint {checkpoint} (group {group}): {e}")))?;
        }
        while self.free.is_empty() {
            match completions.recv_timeout(CALL_TIMEOUT) {
                Ok(id) => self.commit_up_to(id)?,
                Err(flume::RecvTimeoutError::Timeout) => {
                    tracing::warn!(sink = %self.vertex, checkpoint, prepared = self.prepared.len(), "every transaction slot waits for a checkpoint to complete");
                }
                Err(flume::RecvTimeoutError::Disconnected) => return Err(self.error("sink closed".into())),
            }
        }
        let next = self.free.pop().expect("a free slot");
        let prepared = std::mem::replace(&mut self.open, next);
        self.prepared.push_back((checkpoint, prepared));
        if let (Some(log), Some((group, _))) = (&mut self.write_ahead, &self.marker) {
            log.seal(checkpoint, &self.transactional_ids, group)?;
        }
        self.begin()?;
        self.write_ahead.as_ref().map(|log| log.upload(checkpoint)).transpose()
    }

    /// Checkpoint `id` completed: commits the transactions prepared for it and before it.
    pub fn commit_up_to(&mut self, id: u64) -> Result<(), TaskError> {
        while self.prepared.front().is_some_and(|(c, _)| *c <= id) {
            let (checkpoint, client) = self.prepared.pop_front().expect("checked");
            client
                .commit_transaction(CALL_TIMEOUT)
                .map_err(|e| self.error(format!("committing the transaction of checkpoint {checkpoint}: {e}")))?;
            self.free.push(client);
            if let Some(log) = &mut self.write_ahead {
                log.committed_up_to(checkpoint);
            }
        }
        Ok(())
    }

    /// End of input: nothing will be replayed, so everything is delivered and committed.
    pub fn finish(&mut self) -> Result<(), TaskError> {
        self.open
            .flush(DELIVERY_TIMEOUT)
            .map_err(|e| self.error(format!("flushing at the end of input: {e}")))?;
        self.failed()?;
        if self.transactional() {
            self.commit_up_to(u64::MAX)?;
            self.open
                .commit_transaction(CALL_TIMEOUT)
                .map_err(|e| self.error(format!("committing the last transaction: {e}")))?;
        }
        Ok(())
    }

    fn error(&self, message: String) -> TaskError {
        connector(&self.vertex, message)
    }
}

fn client(spec: &KafkaSinkSpec, report: &DeliveryReport, transactional_id: Option<String>) -> Result<Client, String> {
    let mut config = ClientConfig::new();
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", &spec.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string());
    if let Some(id) = transactional_id {
        config
            .set("transactional.id", id)
            .set("transaction.timeout.ms", spec.transaction_timeout_ms.to_string());
    }
    config
        .create_with_context(report.clone())
        .map_err(|e| format!("cannot create a Kafka producer: {e}"))
}

/// A transaction timeout above the broker's maximum makes `InitProducerId` fail with an
/// obscure error; say which setting is wrong instead. A broker that does not answer the
/// question is not taken as a refusal.
fn check_transaction_timeout(vertex: &str, spec: &KafkaSinkSpec) -> Result<(), TaskError> {
    let error = |message: String| connector(vertex, message);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &spec.bootstrap_servers)
        .create()
        .map_err(|e| error(format!("cannot create a Kafka admin client: {e}")))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, CALL_TIMEOUT)
        .map_err(|e| error(format!("broker metadata: {e}")))?;
    let Some(broker) = metadata.brokers().first().map(|b| b.id()) else {
        return Ok(());
    };
    let options = AdminOptions::new().request_timeout(Some(CALL_TIMEOUT));
    let answer = futures::executor::block_on(admin.describe_configs([&ResourceSpecifier::Broker(broker)], &options));
    let max = answer
        .ok()
        .and_then(|results| results.into_iter().next())
        .and_then(Result::ok)
        .and_then(|resource| {
            resource
                .get("transaction.max.timeout.ms")
                .and_then(|entry| entry.value.as_deref()?.parse::<u64>().ok())
        });
    match max {
        Some(max) if spec.transaction_timeout_ms > max => Err(error(format!(
            "transaction_timeout_ms {} exceeds the broker's transaction.max.timeout.ms {max}",
            spec.transaction_timeout_ms
        ))),
        Some(_) => Ok(()),
        None => {
            tracing::warn!(sink = %vertex, "the broker did not report transaction.max.timeout.ms; transaction_timeout_ms not checked");
            Ok(())
        }
    }
}

fn connector(vertex: &str, message: String) -> TaskError {
    TaskError::Connector {
        vertex: vertex.to_string(),
        message,
    }
}

/// The thread's loop: records and barriers in order from `commands`, completed
/// checkpoints from `completions` (cumulative, so a dropped one costs nothing).
pub fn run(
    mut producer: RecordProducer,
    commands: flume::Receiver<ProducerCommand>,
    completions: flume::Receiver<u64>,
    abort: Arc<AtomicBool>,
) -> Result<(), TaskError> {
    producer.recover(&abort)?;
    loop {
        if abort.load(Ordering::Acquire) {
            return Ok(());
        }
        while let Ok(id) = completions.try_recv() {
            producer.commit_up_to(id)?;
        }
        match commands.recv_timeout(Duration::from_millis(50)) {
            Ok(ProducerCommand::Records(records)) => producer.send(records, &abort)?,
            Ok(ProducerCommand::Barrier { checkpoint, done }) => {
                let result = producer.barrier(checkpoint, &completions);
                let failed = result.as_ref().err().map(ToString::to_string);
                let _ = done.send(result);
                if let Some(e) = failed {
                    return Err(producer.error(e));
                }
            }
            Ok(ProducerCommand::Finish(done)) => {
                let result = producer.finish();
                let failed = result.as_ref().err().map(ToString::to_string);
                let _ = done.send(result);
                return match failed {
                    Some(e) => Err(producer.error(e)),
                    None => Ok(()),
                };
            }
            Err(flume::RecvTimeoutError::Timeout) => producer.poll()?,
            // The sink was dropped unfinished (cancelled): whatever is open is aborted by
            // the next attempt's initialisation or the broker's timeout.
            Err(flume::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;
    use crate::state::checkpoint_storage::CheckpointStorage;

    fn records(topic: &str, ids: std::ops::Range<u32>) -> Vec<OutgoingRecord> {
        ids.map(|i| OutgoingRecord {
            topic: Arc::from(topic),
            key: Some(i.to_string().into_bytes()),
            payload: format!(r#"{{"id":{i}}}"#).into_bytes(),
        })
        .collect()
    }

    fn read_all(bootstrap: &str, topic: &str, expected: usize) -> Vec<String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "reader")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while out.len() < expected && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            }
        }
        out
    }

    /// The librdkafka mock cluster accepts the transaction calls (it writes no markers, so
    /// isolation is not checked here): the slots rotate through prepare and commit, a
    /// barrier with every slot prepared waits for a completion, and everything arrives.
    #[test]
    fn transactions_rotate_through_the_slots_and_commit_on_completion() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        let spec = exactly_once(&cluster);
        let metrics = Arc::new(SubtaskMetrics::default());
        let mut producer = RecordProducer::connect("out", &spec, "weir-test", 0, metrics.clone(), None).unwrap();
        let abort = AtomicBool::new(false);
        let (done_tx, done_rx) = flume::bounded(4);
        producer.send(records("out", 0..100), &abort).unwrap();
        assert_eq!(producer.barrier(1, &done_rx).unwrap(), None, "no write-ahead log");
        producer.send(records("out", 100..200), &abort).unwrap();
        producer.barrier(2, &done_rx).unwrap();
        assert_eq!(producer.prepared.len(), 2);
        assert!(producer.free.is_empty());
        // Checkpoint 1 completes while the third barrier waits for a free slot.
        done_tx.send(1).unwrap();
        producer.send(records("out", 200..300), &abort).unwrap();
        producer.barrier(3, &done_rx).unwrap();
        assert_eq!(
            producer.prepared.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            vec![2, 3]
        );
        producer.commit_up_to(3).unwrap();
        assert_eq!(producer.free.len(), 2);
        producer.send(records("out", 300..400), &abort).unwrap();
        producer.finish().unwrap();
        assert_eq!(metrics.records_out.load(Ordering::Relaxed), 400);
        let read = read_all(&cluster.bootstrap_servers(), "out", 400);
        assert_eq!(read.len(), 400);
        assert_eq!(read[399], r#"{"id":399}"#);
    }

    fn exactly_once(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> KafkaSinkSpec {
        serde_json::from_value(serde_json::json!({
            "bootstrap_servers": cluster.bootstrap_servers(),
            "topic": "out",
            "delivery": "exactly_once",
        }))
        .unwrap()
    }

    struct Storage {
        dir: tempfile::TempDir,
        runtime: tokio::runtime::Runtime,
        storage: CheckpointStorage,
    }

    impl Storage {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let storage = CheckpointStorage::open(&format!("file://{}", dir.path().join("chk").display())).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            Self { dir, runtime, storage }
        }

        /// A transactional producer of subtask 0 writing ahead into this storage.
        fn connect(
            &self,
            spec: &KafkaSinkSpec,
            prefix: &str,
            attempt: u32,
            restored: &Option<StateHandle>,
        ) -> RecordProducer {
            let metrics = Arc::new(SubtaskMetrics::default());
            RecordProducer::connect("out", spec, prefix, 0, metrics, Some(self.target(attempt, restored))).unwrap()
        }

        fn target(&self, attempt: u32, restored: &Option<StateHandle>) -> WriteAheadTarget {
            WriteAheadTarget {
                storage: self.storage.clone(),
                prefix: format!("job/out-0-a{attempt}"),
                spool_dir: self.dir.path().join(format!("spool-a{attempt}")),
                runtime: self.runtime.handle().clone(),
                vertex: 3,
                subtask: 0,
                restored: restored
                    .iter()
                    .flat_map(|h| h.files.iter().map(|f| (self.storage.clone(), f.path.clone())))
                    .collect(),
            }
        }
    }

    fn payloads(ids: std::ops::Range<u32>) -> Vec<String> {
        ids.map(|i| format!(r#"{{"id":{i}}}"#)).collect()
    }

    /// The window the write-ahead log closes: checkpoint 1 fails (its transaction rides
    /// with the next), checkpoint 2 completes, and the process dies before committing.
    /// Checkpoint 2's handle holds both transactions' segments, and the attempt that
    /// restores it writes both again, oldest first, each committing its marker. (The mock
    /// cluster writes no transaction markers, so the records of the dead attempt stay
    /// visible there; a real broker aborts them when the new attempt initialises the ids.)
    #[test]
    fn transactions_a_crash_left_uncommitted_are_written_again_from_the_write_ahead_log() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        let spec = exactly_once(&cluster);
        let storage = Storage::new();
        let abort = AtomicBool::new(false);
        let (_done_tx, done_rx) = flume::bounded(4);
        let mut first = storage.connect(&spec, "weir-test", 0, &None);
        assert_eq!(first.recover(&abort).unwrap(), 0);
        first.send(records("out", 0..100), &abort).unwrap();
        let at_1 = first.barrier(1, &done_rx).unwrap().expect("a write-ahead handle");
        assert_eq!(at_1.files.len(), 1);
        first.send(records("out", 100..250), &abort).unwrap();
        let at_2 = first.barrier(2, &done_rx).unwrap().expect("a write-ahead handle");
        assert_eq!(
            at_2.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            vec!["kafka-wal-c1", "kafka-wal-c2"],
            "checkpoint 1 failed: its transaction is still open at checkpoint 2"
        );
        assert!(
            at_2.files
                .iter()
                .all(|f| f.checkpoint == 2 && f.path.starts_with("job/out-0-a0/chk-2/"))
        );
        assert_eq!(first.write_ahead.as_ref().unwrap().uncommitted(), vec![1, 2]);
        drop(first);
        assert_eq!(read_all(&cluster.bootstrap_servers(), "out", 250).len(), 250);

        let mut second = storage.connect(&spec, "weir-test", 1, &Some(at_2));
        assert_eq!(second.recover(&abort).unwrap(), 250);
        second.send(records("out", 250..300), &abort).unwrap();
        second.finish().unwrap();
        let read = read_all(&cluster.bootstrap_servers(), "out", 550);
        assert_eq!(read.len(), 550);
        assert_eq!(
            read[250..],
            payloads(0..300)[..],
            "replayed in order, then the new records"
        );
    }

    /// A transaction whose marker reached its checkpoint committed: nothing is written
    /// again, also when another prefix wrote it (a job submitted again from a savepoint
    /// under another name), whose transactional ids are initialised first.
    #[test]
    fn a_transaction_whose_marker_committed_is_not_written_again() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        let spec = exactly_once(&cluster);
        let storage = Storage::new();
        let abort = AtomicBool::new(false);
        let (_done_tx, done_rx) = flume::bounded(4);
        let mut first = storage.connect(&spec, "old-name", 0, &None);
        first.send(records("out", 0..100), &abort).unwrap();
        let at_1 = first.barrier(1, &done_rx).unwrap().unwrap();
        first.commit_up_to(1).unwrap();
        assert!(first.write_ahead.as_ref().unwrap().uncommitted().is_empty());
        drop(first);
        // What a broker with transactions shows once checkpoint 1's transaction committed
        // (the mock cluster drops transactional offset commits).
        let group = marker::marker_group("old-name", 0);
        let committer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", &group)
            .create()
            .unwrap();
        committer
            .commit(&marker_offsets("out", 1).unwrap(), rdkafka::consumer::CommitMode::Sync)
            .unwrap();

        let mut second = storage.connect(&spec, "new-name", 1, &Some(at_1));
        assert_eq!(second.recover(&abort).unwrap(), 0);
        second.finish().unwrap();
        assert_eq!(read_all(&cluster.bootstrap_servers(), "out", 101).len(), 100);
    }
}
