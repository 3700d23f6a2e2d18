//! Reads the Kafka partitions assigned to one source subtask (`partition_assignment`).
//! A consumer thread takes librdkafka's messages in batches (`message_batch`) and hands
//! over one chunk per partition at a time (so each partition keeps its own watermark)
//! through a bounded channel: a slow job stops the reading, and librdkafka's own fetch
//! buffers bound what waits in between.
//! Offsets are tracked from the chunks handed out, so a checkpoint records exactly what
//! went downstream. When a checkpoint completes, its offsets are committed to the consumer
//! group (asynchronously, by the consumer thread) so lag monitors see progress; restores
//! never read them (`start: committed` does, on a first run).
//! Watermark alignment pauses partitions through flags the consumer thread applies
//! (librdkafka `pause`/`resume`) before its next poll.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use weir_common::source_position::{KafkaOffset, SourcePosition};
use weir_common::spec::{KafkaSourceSpec, KafkaStart};

use super::message_batch::{MessageBatch, MessageQueue, Queued, cached_high_watermark};
use super::partition_assignment::{TopicPartition, assigned_partitions};
use crate::error::TaskError;
use crate::runtime::source::{RawRecords, SourceOutput, SourceReader, foreign_position};
use crate::runtime::subtask_metrics::OnSourceCheckpointComplete;

/// Every call to a broker (metadata, committed offsets, offsets for times) gives up after
/// this long.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the consumer thread waits for a message when it holds none.
const POLL: Duration = Duration::from_millis(50);
/// The most messages taken off librdkafka's queue at a time.
const BATCH_MESSAGES: usize = 1024;
/// A partition's records wait at most this long for more before they are handed over.
const LINGER: Duration = Duration::from_millis(20);
/// How long `next` waits for a chunk before it returns an empty one, so the subtask can
/// notice idle partitions and checkpoint barriers.
const QUIET: Duration = Duration::from_millis(200);
/// Chunks in flight between the consumer thread and the subtask.
const CHANNEL_CHUNKS: usize = 4;

/// A partition's records and the offset after the last of them.
type Chunk = (RawRecords, i64);

/// How often the consumer thread copies librdkafka's cached high watermarks (for the
/// partitions' lag).
const HIGH_WATERMARK_EVERY: Duration = Duration::from_secs(1);

/// librdkafka's client callbacks: its error callback also reports every partition end
/// (the consumer sees those as events, which is how partitions become idle), so ends are
/// not logged; other client errors are warnings (librdkafka retries them itself).
struct SourceContext {
    vertex: String,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::warn!(source = %self.vertex, error = %error, reason, "Kafka client");
        }
    }
}

impl ConsumerContext for SourceContext {}

/// What starting the consumer needs, shared with the blocking thread that does it.
struct Settings {
    vertex: String,
    spec: KafkaSourceSpec,
    group_id: String,
    subtask: u32,
    parallelism: u32,
}

pub struct KafkaSource {
    settings: Arc<Settings>,
    /// Offsets a restore brought, by partition.
    restored: HashMap<TopicPartition, i64>,
    /// The subtask's partitions (index = split) once started.
    partitions: Vec<TopicPartition>,
    /// The next offset of each split, as far as chunks were handed out (from its start
    /// offset on).
    next_offsets: Vec<i64>,
    running: Option<Running>,
    /// Offsets of completed checkpoints, to commit to the group; the receiver goes to the
    /// consumer thread when it starts.
    commits: flume::Sender<Vec<KafkaOffset>>,
    commits_rx: Option<flume::Receiver<Vec<KafkaOffset>>>,
}

/// Completed checkpoints waiting to be committed to the group (older ones are skipped
/// when the consumer thread is behind: a newer commit covers them).
const PENDING_COMMITS: usize = 2;

struct Running {
    chunks: flume::Receiver<Chunk>,
    /// Per split: alignment wants it paused.
    paused: Arc<[AtomicBool]>,
    /// Per split: records wait in the partition (it has not reported its end since).
    behind: Arc<[AtomicBool]>,
    /// Per split: the offset after its last record as of the latest fetch (-1: unknown).
    high_watermarks: Arc<[AtomicI64]>,
    stop: Arc<AtomicBool>,
    /// Set by the consumer thread when a bounded source read every partition to its end.
    done: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl KafkaSource {
    pub fn new(vertex: &str, job: &str, spec: &KafkaSourceSpec, subtask: u32, parallelism: u32) -> Self {
        let (commits, commits_rx) = flume::bounded(PENDING_COMMITS);
        Self {
            commits,
            commits_rx: Some(commits_rx),
            settings: Arc::new(Settings {
                vertex: vertex.to_string(),
                group_id: spec.group_id.clone().unwrap_or_else(|| format!("weir-{job}")),
                spec: spec.clone(),
                subtask,
                parallelism,
            }),
            restored: HashMap::new(),
            partitions: Vec::new(),
            next_offsets: Vec::new(),
            running: None,
        }
    }
}

impl Settings {
    fn error(&self, message: String) -> TaskError {
        TaskError::Connector {
            vertex: self.vertex.clone(),
            message,
        }
    }

    fn consumer(&self) -> Result<BaseConsumer<SourceContext>, TaskError> {
        let mut config = ClientConfig::new();
        // librdkafka stops fetching a partition for `fetch.queue.backoff.ms` (1 s) whenever
        // its prefetch queue is full, which is always the case when the job, not the
        // broker, sets the pace: the queue then drains and the consumer sits idle for the
        // rest of the second (measured: 4x slower against a fast broker). A short backoff
        // keeps fetches flowing; a spec may override it.
        config.set("fetch.queue.backoff.ms", "10");
        // librdkafka prefetches up to 64 MB and 100k records per partition by default;
        // the job reads in chunks of `batch_size`, so a smaller prefetch keeps the same
        // rate (measured: 0.68 of the ceiling either way) with ~70 MB less resident.
        config.set("queued.max.messages.kbytes", "16384");
        config.set("queued.min.messages", "10000");
        for (k, v) in &self.spec.properties {
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", &self.spec.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .create_with_context(SourceContext {
                vertex: self.vertex.clone(),
            })
            .map_err(|e| self.error(format!("cannot create a Kafka consumer: {e}")))
    }

    /// Connects, learns the partitions, decides where each starts, and starts the
    /// consumer thread; returns the subtask's partitions and their start offsets. Runs on
    /// a blocking thread: every librdkafka call here waits.
    fn start(
        &self,
        restored: &HashMap<TopicPartition, i64>,
        commits: flume::Receiver<Vec<KafkaOffset>>,
    ) -> Result<(Vec<TopicPartition>, Vec<i64>, Running), TaskError> {
        let consumer = self.consumer()?;
        let mut topics = Vec::with_capacity(self.spec.topics.len());
        for topic in &self.spec.topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), BROKER_TIMEOUT)
                .map_err(|e| self.error(format!("metadata of topic {topic:?}: {e}")))?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if partitions == 0 {
                return Err(self.error(format!("topic {topic:?} does not exist (no partitions)")));
            }
            topics.push((topic.clone(), partitions as i32));
        }
        let partitions = assigned_partitions(&topics, self.subtask, self.parallelism);
        let starts = self.start_offsets(&consumer, &partitions, restored)?;
        // Every start is made concrete, and it is the partition's position until its first
        // record: a checkpoint taken before a partition delivered anything then restores
        // that offset, not `start` again (which for `latest` would skip what arrived in
        // between). A bounded source also learns where each partition ends.
        let mut concrete = Vec::with_capacity(partitions.len());
        let mut ends = vec![None; partitions.len()];
        for (i, (tp, start)) in partitions.iter().zip(&starts).enumerate() {
            if let (Offset::Offset(o), false) = (start, self.spec.bounded) {
                concrete.push(*o);
                continue;
            }
            let (low, high) = consumer
                .fetch_watermarks(&tp.topic, tp.partition, BROKER_TIMEOUT)
                .map_err(|e| self.error(format!("offsets of {}/{}: {e}", tp.topic, tp.partition)))?;
            if self.spec.bounded {
                ends[i] = Some(high);
            }
            concrete.push(match start {
                Offset::End => high,
                Offset::Offset(o) => *o,
                _ => low,
            });
        }
        let mut assignment = TopicPartitionList::new();
        for (tp, offset) in partitions.iter().zip(&concrete) {
            assignment
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
                .map_err(|e| self.error(format!("{}/{}: {e}", tp.topic, tp.partition)))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| self.error(format!("assigning partitions: {e}")))?;
        tracing::info!(
            source = %self.vertex,
            subtask = self.subtask,
            partitions = ?partitions.iter().map(|p| format!("{}/{}", p.topic, p.partition)).collect::<Vec<_>>(),
            "Kafka source assigned"
        );
        let (tx, rx) = flume::bounded(CHANNEL_CHUNKS);
        let paused: Arc<[AtomicBool]> = partitions.iter().map(|_| AtomicBool::new(false)).collect();
        let behind: Arc<[AtomicBool]> = partitions.iter().map(|_| AtomicBool::new(true)).collect();
        let high_watermarks: Arc<[AtomicI64]> = partitions.iter().map(|_| AtomicI64::new(-1)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let poller = Poller {
            bounded: self.spec.bounded,
            finished: ends
                .iter()
                .zip(&concrete)
                .map(|(end, start)| end.is_some_and(|end| *start >= end))
                .collect(),
            ends,
            done: done.clone(),
            commits,
            group_id: self.group_id.clone(),
            paused: paused.clone(),
            behind: behind.clone(),
            high_watermarks: high_watermarks.clone(),
            partitions: partitions.clone(),
            consumer,
            splits: partitions
                .iter()
                .enumerate()
                .fold(HashMap::<&str, HashMap<i32, usize>>::new(), |mut m, (i, tp)| {
                    m.entry(&tp.topic).or_default().insert(tp.partition, i);
                    m
                })
                .into_iter()
                .map(|(topic, splits)| (topic.as_bytes().into(), splits))
                .collect(),
            origins: partitions
                .iter()
                .map(|tp| Arc::from(format!("{}/{}", tp.topic, tp.partition)))
                .collect(),
            batch_size: self.spec.batch_size,
            vertex: self.vertex.clone(),
            stop: stop.clone(),
            tx,
        };
        std::thread::Builder::new()
            .name(format!("kafka-{}-{}", self.vertex, self.subtask))
            .spawn(move || poller.run())
            .map_err(|e| self.error(format!("cannot start the consumer thread: {e}")))?;
        Ok((
            partitions,
            concrete,
            Running {
                chunks: rx,
                paused,
                behind,
                high_watermarks,
                stop,
                done,
            },
        ))
    }

    /// Where each partition starts: the restored offset, else as `start` says.
    fn start_offsets(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        partitions: &[TopicPartition],
        restored: &HashMap<TopicPartition, i64>,
    ) -> Result<Vec<Offset>, TaskError> {
        let mut query = TopicPartitionList::new();
        for tp in partitions.iter().filter(|tp| !restored.contains_key(*tp)) {
            let at = match self.spec.start {
                KafkaStart::Timestamp => Offset::Offset(self.spec.start_timestamp_ms.unwrap_or(0)),
                _ => Offset::Invalid,
            };
            query
                .add_partition_offset(&tp.topic, tp.partition, at)
                .map_err(|e| self.error(format!("{}/{}: {e}", tp.topic, tp.partition)))?;
        }
        let answer = match self.spec.start {
            _ if query.count() == 0 => None,
            KafkaStart::Earliest | KafkaStart::Latest => None,
            KafkaStart::Committed => Some(
                consumer
                    .committed_offsets(query, BROKER_TIMEOUT)
                    .map_err(|e| self.error(format!("committed offsets of group {:?}: {e}", self.group_id)))?,
            ),
            KafkaStart::Timestamp => Some(
                consumer
                    .offsets_for_times(query, BROKER_TIMEOUT)
                    .map_err(|e| self.error(format!("offsets for start_timestamp_ms: {e}")))?,
            ),
        };
        Ok(partitions
            .iter()
            .map(|tp| {
                if let Some(o) = restored.get(tp) {
                    return Offset::Offset(*o);
                }
                let found = answer
                    .as_ref()
                    .and_then(|a| a.find_partition(&tp.topic, tp.partition))
                    .map(|e| e.offset());
                match (self.spec.start, found) {
                    (KafkaStart::Latest, _) => Offset::End,
                    (_, Some(Offset::Offset(o))) => Offset::Offset(o),
                    // No record at or after the time: only new ones.
                    (KafkaStart::Timestamp, _) => Offset::End,
                    // No committed offset (or earliest): from the beginning.
                    _ => Offset::Beginning,
                }
            })
            .collect())
    }
}

impl KafkaSource {
    /// The position with `next` as the next offset of each split. Before the start it is
    /// the restored one (which after a rescale lists every partition of the source); once
    /// started, only the subtask's own partitions.
    fn position_at(&self, next: &[i64]) -> SourcePosition {
        let offsets: Vec<(&TopicPartition, i64)> = if self.running.is_some() {
            self.partitions.iter().zip(next.iter().copied()).collect()
        } else {
            self.restored.iter().map(|(tp, o)| (tp, *o)).collect()
        };
        let mut offsets: Vec<KafkaOffset> = offsets
            .into_iter()
            .map(|(tp, next)| KafkaOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
                next,
            })
            .collect();
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        SourcePosition::Kafka { offsets }
    }
}

impl SourceReader for KafkaSource {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<SourceOutput>, TaskError>> {
        async move {
            if self.running.is_none() {
                let (settings, restored) = (self.settings.clone(), self.restored.clone());
                let commits = self.commits_rx.take().ok_or_else(|| {
                    TaskError::Disconnected(format!("Kafka source {} started twice", self.settings.vertex))
                })?;
                let (partitions, starts, running) =
                    tokio::task::spawn_blocking(move || settings.start(&restored, commits))
                        .await
                        .map_err(|e| TaskError::Disconnected(format!("Kafka source start: {e}")))??;
                self.next_offsets = starts;
                self.partitions = partitions;
                self.running = Some(running);
            }
            let running = self.running.as_ref().expect("started above");
            match tokio::time::timeout(QUIET, running.chunks.recv_async()).await {
                Err(_) => Ok(Some(SourceOutput::Raw(RawRecords::default()))),
                Ok(Err(_)) if running.done.load(Ordering::Acquire) => Ok(None),
                Ok(Err(_)) => Err(TaskError::Disconnected(format!(
                    "Kafka consumer of {}",
                    self.settings.vertex
                ))),
                Ok(Ok((raw, next))) => {
                    self.next_offsets[raw.split] = next;
                    Ok(Some(SourceOutput::Raw(raw)))
                }
            }
        }
        .boxed()
    }

    fn position(&self) -> SourcePosition {
        self.position_at(&self.next_offsets)
    }

    fn position_before(&self, held: &[(usize, u64)]) -> Option<SourcePosition> {
        let mut next = self.next_offsets.clone();
        for (split, offset) in held {
            if let Some(n) = next.get_mut(*split) {
                *n = *offset as i64;
            }
        }
        Some(self.position_at(&next))
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), TaskError> {
        let SourcePosition::Kafka { offsets } = position else {
            return Err(foreign_position(&self.settings.vertex, position));
        };
        self.restored = offsets
            .iter()
            .map(|o| {
                (
                    TopicPartition {
                        topic: o.topic.clone(),
                        partition: o.partition,
                    },
                    o.next,
                )
            })
            .collect();
        Ok(())
    }

    fn splits(&self) -> usize {
        self.partitions.len()
    }

    fn set_paused(&mut self, split: usize, paused: bool) {
        if let Some(flag) = self.running.as_ref().and_then(|r| r.paused.get(split)) {
            flag.store(paused, Ordering::Relaxed);
        }
    }

    fn on_checkpoint_complete(&self) -> Option<OnSourceCheckpointComplete> {
        let commits = self.commits.clone();
        Some(Box::new(move |position| {
            if let SourcePosition::Kafka { offsets } = position {
                let _ = commits.try_send(offsets.clone());
            }
        }))
    }

    fn split_behind(&self, split: usize) -> bool {
        self.running
            .as_ref()
            .and_then(|r| r.behind.get(split))
            .is_some_and(|b| b.load(Ordering::Relaxed))
    }

    fn split_lag(&self, split: usize) -> Option<i64> {
        let next = *self.next_offsets.get(split)?;
        let high = self
            .running
            .as_ref()?
            .high_watermarks
            .get(split)?
            .load(Ordering::Relaxed);
        (high >= 0).then(|| (high - next).max(0))
    }

    fn split_name(&self, split: usize) -> String {
        self.partitions
            .get(split)
            .map_or_else(|| split.to_string(), |tp| format!("{}/{}", tp.topic, tp.partition))
    }
}

/// A topic's name and the split of each of its partitions the subtask reads.
type TopicSplits = (Box<[u8]>, HashMap<i32, usize>);

/// The consumer thread: takes messages, gathers records per partition, hands chunks over.
struct Poller {
    consumer: BaseConsumer<SourceContext>,
    bounded: bool,
    /// A bounded source's end offset per split, and whether the split reached it.
    ends: Vec<Option<i64>>,
    finished: Vec<bool>,
    done: Arc<AtomicBool>,
    /// Offsets of completed checkpoints to commit to `group_id`.
    commits: flume::Receiver<Vec<KafkaOffset>>,
    group_id: String,
    /// Alignment's wishes per split, and the partitions they name.
    paused: Arc<[AtomicBool]>,
    /// Set per split by a message, cleared when librdkafka reports the partition's end.
    behind: Arc<[AtomicBool]>,
    high_watermarks: Arc<[AtomicI64]>,
    partitions: Vec<TopicPartition>,
    /// Split index by topic (a handful: scanned), then partition; looked up per message
    /// without allocating.
    splits: Vec<TopicSplits>,
    origins: Vec<Arc<str>>,
    batch_size: usize,
    vertex: String,
    stop: Arc<AtomicBool>,
    tx: flume::Sender<Chunk>,
}

impl Poller {
    fn run(mut self) {
        let mut finished = std::mem::take(&mut self.finished);
        let Some(queue) = MessageQueue::new(&self.consumer) else {
            tracing::error!(source = %self.vertex, "the Kafka consumer has no message queue");
            return;
        };
        let mut batch = MessageBatch::with_capacity(BATCH_MESSAGES);
        let mut pending: Vec<(RawRecords, i64, Instant)> = self
            .origins
            .iter()
            .enumerate()
            .map(|(split, origin)| {
                (
                    RawRecords {
                        origin: origin.clone(),
                        split,
                        ..Default::default()
                    },
                    0,
                    Instant::now(),
                )
            })
            .collect();
        let mut unfinished = finished.iter().filter(|f| !**f).count();
        let mut applied = vec![false; self.partitions.len()];
        let mut wait = POLL;
        let mut high_watermarks_at = Instant::now() - HIGH_WATERMARK_EVERY;
        while !self.stop.load(Ordering::Relaxed) {
            self.apply_pauses(&mut applied);
            self.commit_completed();
            if high_watermarks_at.elapsed() >= HIGH_WATERMARK_EVERY {
                high_watermarks_at = Instant::now();
                for (tp, high) in self.partitions.iter().zip(self.high_watermarks.iter()) {
                    if let Some(h) = cached_high_watermark(&self.consumer, &tp.topic, tp.partition) {
                        high.store(h, Ordering::Relaxed);
                    }
                }
            }
            if self.bounded && unfinished == 0 {
                for p in pending.iter_mut() {
                    if !p.0.is_empty() && !self.hand_over(p) {
                        return;
                    }
                }
                self.done.store(true, Ordering::Release);
                return;
            }
            // Block for the first message only as long as no chunk must be handed over
            // sooner: the call waits its whole timeout to fill the batch.
            queue.consume(wait, &mut batch);
            for m in batch.iter() {
                let kind = m.kind();
                let Some(split) = self.split_of(m.topic(), m.partition()) else {
                    if let Queued::Error(e) = kind {
                        tracing::warn!(source = %self.vertex, error = %e, "Kafka consumer");
                    }
                    continue;
                };
                match kind {
                    Queued::Record { payload, offset } => {
                        self.behind[split].store(true, Ordering::Relaxed);
                        let (raw, next, since) = &mut pending[split];
                        if raw.is_empty() {
                            *since = Instant::now();
                        }
                        raw.push(payload, offset as u64);
                        *next = offset + 1;
                        if let Some(end) = self.ends[split]
                            && *next >= end
                            && !finished[split]
                        {
                            finished[split] = true;
                            unfinished -= 1;
                        }
                        if raw.len() >= self.batch_size && !self.hand_over(&mut pending[split]) {
                            return;
                        }
                    }
                    // Caught up with the partition.
                    Queued::End => self.behind[split].store(false, Ordering::Relaxed),
                    // librdkafka retries broker and network failures itself; what reaches
                    // here is informational (a broker went away, an offset out of range).
                    Queued::Error(e) => {
                        tracing::warn!(source = %self.vertex, partition = %self.origins[split], error = %e, "Kafka consumer");
                    }
                }
            }
            wait = POLL;
            let now = Instant::now();
            for p in pending.iter_mut().filter(|p| !p.0.is_empty()) {
                let lingered = now.duration_since(p.2);
                if lingered < LINGER {
                    wait = wait.min(LINGER - lingered);
                } else if !self.hand_over(p) {
                    return;
                }
            }
        }
    }

    fn split_of(&self, topic: &[u8], partition: i32) -> Option<usize> {
        let (_, partitions) = self.splits.iter().find(|(t, _)| **t == *topic)?;
        partitions.get(&partition).copied()
    }

    /// Commits the offsets of the latest completed checkpoint to the group (for lag
    /// monitoring; a failed commit is retried by the next checkpoint's).
    fn commit_completed(&self) {
        let Some(offsets) = self.commits.try_iter().last() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for o in offsets {
            let own = self.split_of(o.topic.as_bytes(), o.partition).is_some();
            if own
                && list
                    .add_partition_offset(&o.topic, o.partition, Offset::Offset(o.next))
                    .is_err()
            {
                return;
            }
        }
        if list.count() > 0
            && let Err(e) = self.consumer.commit(&list, CommitMode::Async)
        {
            tracing::warn!(source = %self.vertex, group = %self.group_id, error = %e, "committing checkpointed offsets to the group");
        }
    }

    /// Pauses and resumes partitions as alignment asks.
    fn apply_pauses(&self, applied: &mut [bool]) {
        // Per message: nothing is allocated unless alignment changed its mind.
        if self
            .paused
            .iter()
            .zip(applied.iter())
            .all(|(flag, applied)| flag.load(Ordering::Relaxed) == *applied)
        {
            return;
        }
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for (split, flag) in self.paused.iter().enumerate() {
            let want = flag.load(Ordering::Relaxed);
            if want != applied[split] {
                let tp = &self.partitions[split];
                let list = if want { &mut pause } else { &mut resume };
                list.add_partition(&tp.topic, tp.partition);
                applied[split] = want;
            }
        }
        if pause.count() > 0
            && let Err(e) = self.consumer.pause(&pause)
        {
            tracing::warn!(source = %self.vertex, error = %e, "pausing partitions for watermark alignment");
        }
        if resume.count() > 0
            && let Err(e) = self.consumer.resume(&resume)
        {
            tracing::warn!(source = %self.vertex, error = %e, "resuming partitions after watermark alignment");
        }
    }

    /// Sends a partition's records on (waiting while the subtask is busy); false when the
    /// subtask is gone.
    fn hand_over(&self, p: &mut (RawRecords, i64, Instant)) -> bool {
        let fresh = RawRecords {
            origin: p.0.origin.clone(),
            split: p.0.split,
            ..Default::default()
        };
        let mut chunk = std::mem::replace(&mut p.0, fresh);
        loop {
            match self.tx.send_timeout((chunk, p.1), Duration::from_millis(200)) {
                Ok(()) => return true,
                Err(flume::SendTimeoutError::Timeout((c, _))) if !self.stop.load(Ordering::Relaxed) => chunk = c,
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use super::*;

    fn produce(producer: &BaseProducer, ids: std::ops::Range<u32>) {
        for i in ids {
            let payload = format!(r#"{{"id":{i}}}"#);
            producer
                .send(BaseRecord::<(), _>::to("in").payload(&payload).partition(0))
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    /// Reads until `count` records arrived or `wait` passed, returning their payloads.
    async fn read(source: &mut KafkaSource, count: usize, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = Instant::now() + wait;
        while out.len() < count && Instant::now() < deadline {
            if let Some(SourceOutput::Raw(raw)) = source.next().await.unwrap() {
                let mut from = 0;
                for end in raw.ends {
                    let record = String::from_utf8(raw.data[from..end].to_vec()).unwrap();
                    out.push(record.trim_end().to_string());
                    from = end;
                }
            }
        }
        out
    }

    /// A checkpoint taken before a `latest` partition delivered anything holds the offset
    /// the source started at, so a restore reads what arrived since instead of starting at
    /// the new end again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_position_taken_before_the_first_record_holds_the_start_offset() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("in", 1, 1).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        produce(&producer, 0..5);
        let spec: KafkaSourceSpec = serde_json::from_value(serde_json::json!({
            "bootstrap_servers": cluster.bootstrap_servers(),
            "topics": ["in"],
            "start": "latest",
        }))
        .unwrap();
        let mut first = KafkaSource::new("in", "job", &spec, 0, 1);
        assert!(
            read(&mut first, 1, Duration::from_secs(2)).await.is_empty(),
            "latest skips what was there"
        );
        let checkpointed = first.position();
        let SourcePosition::Kafka { offsets } = &checkpointed else {
            panic!("{checkpointed:?}")
        };
        assert_eq!(offsets.iter().map(|o| o.next).collect::<Vec<_>>(), vec![5]);
        drop(first);

        produce(&producer, 5..8);
        let mut restored = KafkaSource::new("in", "job", &spec, 0, 1);
        restored.seek(&checkpointed).unwrap();
        assert_eq!(
            read(&mut restored, 3, Duration::from_secs(20)).await,
            vec![r#"{"id":5}"#, r#"{"id":6}"#, r#"{"id":7}"#]
        );
    }
}
