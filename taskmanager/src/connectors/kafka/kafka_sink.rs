//! The Kafka sink as the tail of a chain: routes each row to its topic, encodes it (one
//! JSON object or protobuf message) and hands the records to its producer thread (`record_producer`) through a
//! bounded channel. At a checkpoint barrier it waits until the thread has everything
//! before the barrier acknowledged (and, with transactions, prepared and written ahead to
//! checkpoint storage), so the subtask acknowledges the checkpoint only then. Rows with no
//! valid topic, or that cannot be encoded, go to the dead-letter output (as JSON), counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use weir_common::graph::Vertex;
use weir_common::spec::{FormatSpec, KafkaSinkSpec};

use super::record_producer::{self, OutgoingRecord, ProducerCommand, RecordProducer};
use super::topic_router::TopicRouter;
use super::write_ahead_store::WriteAheadTarget;
use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::error::TaskError;
use crate::formats::json_rows::rows_as_json;
use crate::formats::protobuf_encoder::ProtobufEncoder;
use crate::runtime::job_deployment::JobContext;
use crate::runtime::sink::{Sink, SinkReport};
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::{CheckpointProgress, SubtaskMetrics};
use crate::state::{instance_name, job_prefix};

/// Record chunks queued for the producer thread (one chunk per input batch).
const PRODUCER_QUEUE: usize = 8;
/// Completed checkpoints queued for the producer thread; commits are cumulative, so one
/// dropped from a full queue is covered by the next.
const COMPLETION_QUEUE: usize = 16;

pub struct KafkaSink {
    name: String,
    subtask: u32,
    router: TopicRouter,
    /// `None`: JSON.
    encoder: Option<ProtobufEncoder>,
    producer: Option<flume::Sender<ProducerCommand>>,
    thread: Option<JoinHandle<Result<(), TaskError>>>,
    abort: Arc<AtomicBool>,
    checkpoints: Option<Arc<CheckpointProgress>>,
    dead_letters: DeadLetterQueue,
    metrics: Arc<SubtaskMetrics>,
    rows: u64,
}

impl KafkaSink {
    pub fn start(
        job_name: &str,
        vertex: &Vertex,
        spec: &KafkaSinkSpec,
        subtask: u32,
        ctx: &JobContext,
        metrics: Arc<SubtaskMetrics>,
        checkpoints: Option<Arc<CheckpointProgress>>,
    ) -> Result<Self, TaskError> {
        let router = TopicRouter::new(&vertex.name, spec, &vertex.schema)?;
        let encoder = match &spec.format {
            Some(FormatSpec::Protobuf {
                descriptor_set,
                message,
            }) => Some(ProtobufEncoder::new(
                &vertex.name,
                &vertex.schema,
                descriptor_set,
                message,
            )?),
            Some(FormatSpec::Json) | None => None,
        };
        let (tx, rx) = flume::bounded(PRODUCER_QUEUE);
        let (completed_tx, completed_rx) = flume::bounded(COMPLETION_QUEUE);
        if let Some(progress) = &checkpoints {
            *progress.on_complete.lock().expect("on_complete lock") = Some(Box::new(move |id| {
                let _ = completed_tx.try_send(id);
            }));
        }
        let abort = Arc::new(AtomicBool::new(false));
        let prefix = spec
            .transactional_id_prefix
            .clone()
            .unwrap_or_else(|| format!("weir-{job_name}-{}", vertex.name));
        // The producer keeps it only with transactions.
        let write_ahead = match &checkpoints {
            Some(_) => write_ahead_target(vertex, subtask, ctx)?,
            None => None,
        };
        let (name, spec_, thread_metrics, thread_abort) =
            (vertex.name.clone(), spec.clone(), metrics.clone(), abort.clone());
        let thread = std::thread::Builder::new()
            .name(format!("kafka-sink-{}-{subtask}", vertex.name))
            .spawn(move || {
                let producer = RecordProducer::connect(&name, &spec_, &prefix, subtask, thread_metrics, write_ahead)?;
                record_producer::run(producer, rx, completed_rx, thread_abort)
            })
            .map_err(|e| TaskError::Connector {
                vertex: vertex.name.clone(),
                message: format!("starting the producer thread: {e}"),
            })?;
        Ok(Self {
            name: vertex.name.clone(),
            subtask,
            router,
            encoder,
            producer: Some(tx),
            thread: Some(thread),
            abort,
            checkpoints,
            dead_letters: ctx.dead_letters.clone(),
            metrics,
            rows: 0,
        })
    }

    async fn send(&mut self, cmd: ProducerCommand) -> Result<(), TaskError> {
        let sent = match &self.producer {
            Some(p) => p.send_async(cmd).await.is_ok(),
            None => false,
        };
        if sent { Ok(()) } else { Err(self.thread_error()) }
    }

    /// Waits for the producer thread's answer to a barrier or the end of input.
    async fn ask<T>(
        &mut self,
        cmd: impl FnOnce(oneshot::Sender<Result<T, TaskError>>) -> ProducerCommand,
    ) -> Result<T, TaskError> {
        let (done, answer) = oneshot::channel();
        self.send(cmd(done)).await?;
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(self.thread_error()),
        }
    }

    /// The producer thread's own error explains a closed channel.
    fn thread_error(&mut self) -> TaskError {
        self.producer = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => TaskError::Disconnected(format!("the Kafka producer of '{}'", self.name)),
        }
    }

    /// One payload per row, or why the row cannot be encoded.
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<Result<Vec<u8>, String>>, TaskError> {
        match &self.encoder {
            None => Ok(rows_as_json(batch)
                .map_err(|e| TaskError::arrow(&self.name, e))?
                .into_iter()
                .map(Ok)
                .collect()),
            Some(protobuf) => protobuf.encode(batch),
        }
    }

    async fn write_batch(&mut self, batch: RecordBatch) -> Result<(), TaskError> {
        let rows = batch.num_rows();
        SubtaskMetrics::add(&self.metrics.records_in, rows as u64);
        let routes = self.router.route(&batch)?;
        let payloads = self.encode(&batch)?;
        let mut keys = routes.keys.map(Vec::into_iter);
        let mut records = Vec::with_capacity(rows);
        let mut rejected = Vec::new();
        for (row, (topic, payload)) in routes.topics.into_iter().zip(payloads).enumerate() {
            let key = keys.as_mut().and_then(|k| k.next().flatten());
            match (topic, payload) {
                (Ok(topic), Ok(payload)) => records.push(OutgoingRecord { topic, key, payload }),
                (Err(reason), _) => rejected.push((row, format!("no topic: {reason}"))),
                (_, Err(reason)) => rejected.push((row, format!("cannot encode: {reason}"))),
            }
        }
        if !rejected.is_empty() {
            // The dead-letter output holds the rows as JSON, whatever the sink's format.
            let json = rows_as_json(&batch).map_err(|e| TaskError::arrow(&self.name, e))?;
            let origin: Arc<str> = Arc::from(self.name.as_str());
            SubtaskMetrics::add(&self.metrics.dead_letters, rejected.len() as u64);
            for (row, reason) in rejected {
                self.dead_letters
                    .send(DeadLetter {
                        source: origin.clone(),
                        subtask: self.subtask,
                        origin: origin.clone(),
                        position: self.rows + row as u64,
                        reason,
                        raw: json[row].clone(),
                    })
                    .await?;
            }
        }
        self.rows += rows as u64;
        if !records.is_empty() {
            self.send(ProducerCommand::Records(records)).await?;
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, events: Vec<StreamEvent>) -> BoxFuture<'_, Result<(), TaskError>> {
        Box::pin(async move {
            for event in events {
                match event {
                    StreamEvent::Data(batch) => self.write_batch(batch).await?,
                    StreamEvent::Watermark(wm) => self.metrics.set_watermark(wm),
                    StreamEvent::Barrier(checkpoint) => {
                        if let Some(progress) = self.checkpoints.clone() {
                            let handle = self.ask(|done| ProducerCommand::Barrier { checkpoint, done }).await?;
                            if let Some(handle) = handle {
                                // Registered before the barrier counts as passed, so the
                                // acknowledgement carries it.
                                let mut state = progress.state.lock().expect("state lock");
                                state.begin(checkpoint);
                                state.finish(checkpoint, Some(handle));
                            }
                        }
                    }
                    StreamEvent::EndOfStream | StreamEvent::Idle(_) => {}
                }
            }
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<SinkReport, TaskError>> {
        Box::pin(async move {
            if let Some(progress) = self.checkpoints.take() {
                *progress.on_complete.lock().expect("on_complete lock") = None;
            }
            self.ask(ProducerCommand::Finish).await?;
            self.producer = None;
            if let Some(thread) = self.thread.take() {
                thread
                    .join()
                    .map_err(|_| TaskError::Disconnected(format!("the Kafka producer of '{}'", self.name)))??;
            }
            Ok(SinkReport {
                rows: self.rows,
                ..SinkReport::default()
            })
        })
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Some(progress) = self.checkpoints.take() {
            *progress.on_complete.lock().expect("on_complete lock") = None;
        }
        // Cancelled: the thread stops after the call in progress, without waiting for
        // it here (a flush may wait on an unreachable broker). Anything it still delivers
        // is a duplicate the at-least-once contract allows; a transaction it leaves open is
        // aborted when the next attempt initialises the same transactional id.
        self.abort.store(true, Ordering::Release);
        self.producer = None;
        self.thread = None;
    }
}

/// Where an exactly-once sink subtask writes ahead, and the restored checkpoint's segments
/// it settles: those of the old subtasks `j` with `j % parallelism == subtask` (all of
/// them after a rescale). `None` without checkpoint storage (`coordinator local` does not
/// restore).
fn write_ahead_target(vertex: &Vertex, subtask: u32, ctx: &JobContext) -> Result<Option<WriteAheadTarget>, TaskError> {
    let Some(storage) = ctx.state.storage.clone() else {
        return Ok(None);
    };
    let id = vertex.id.0 as u32;
    let mut restored = Vec::new();
    if let Some(r) = &ctx.restore {
        for h in r
            .state
            .iter()
            .filter(|h| h.vertex == id && h.subtask % vertex.parallelism == subtask)
        {
            let from = ctx.state.restore_storage.clone().ok_or_else(|| TaskError::Connector {
                vertex: vertex.name.clone(),
                message: "the restored checkpoint has a write-ahead log but no storage to read it from".into(),
            })?;
            restored.extend(h.files.iter().map(|f| (from.clone(), f.path.clone())));
        }
    }
    let instance = instance_name(vertex, subtask);
    Ok(Some(WriteAheadTarget {
        storage,
        prefix: format!("{}/{instance}-a{}", job_prefix(&ctx.job_id), ctx.attempt),
        spool_dir: ctx.state.local_root.join(format!("kafka-wal-{instance}")),
        runtime: ctx.state.runtime.clone(),
        vertex: id,
        subtask,
        restored,
    }))
}
