//! The Parquet sink as the tail of a chain: encodes batches into part files on the
//! subtask's thread and hands the resulting file operations to its own I/O thread through
//! a bounded channel (a slow disk backpressures the chain; no blocking call runs on the
//! actor's event loop). Parts older than the rollover interval are rolled as data arrives.
//! Before anything is written, the I/O thread removes the parts earlier attempts of the job
//! left for this subtask. Dropping the sink unfinished (cancellation) stops the I/O thread
//! and waits for it, so nothing of a cancelled attempt is published afterwards.
//!
//! A committing sink (`commit`) keeps a commit watermark (`commit_watermark`), sends rows
//! of partitions that may be committed to the dead-letter output as late, and reports its
//! watermark and the partitions it wrote with every checkpoint, for the leader's
//! partition committer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use weir_common::graph::Vertex;
use weir_common::spec::ParquetSinkSpec;

use arrow::array::BooleanArray;
use arrow::compute::{filter_record_batch, not};
use arrow::record_batch::RecordBatch;
use std::collections::BTreeSet;
use weir_common::event_time::WATERMARK_MAX;
use weir_common::partition_commit::SinkCommitReport;

use super::attempt_cleanup::prepare_for_attempt;
use super::commit_watermark::CommitWatermark;
use super::file_io::{FileCommand, FileIo};
use super::partition_path::PartitionScheme;
use super::partitioned_writer::PartitionedWriter;
use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::error::TaskError;
use crate::formats::json_rows::rows_as_json;
use crate::runtime::event_time_column::event_times;
use crate::runtime::job_deployment::JobContext;
use crate::runtime::sink::{Sink, SinkReport};
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::{CheckpointProgress, SubtaskMetrics};

/// File operations queued for the I/O thread (each append is up to 1 MiB).
const IO_QUEUE: usize = 16;
/// How often arriving data triggers the check for parts past their rollover interval.
const ROLLOVER_CHECK: Duration = Duration::from_millis(500);

pub struct ParquetSink {
    name: String,
    writer: PartitionedWriter,
    io: Option<flume::Sender<FileCommand>>,
    io_result: Option<oneshot::Receiver<Result<(), TaskError>>>,
    io_thread: Option<JoinHandle<()>>,
    abort: Arc<AtomicBool>,
    /// With two-phase commit: where the subtask's checkpoint progress lives.
    checkpoints: Option<Arc<CheckpointProgress>>,
    last_rollover_check: Instant,
    metrics: Arc<SubtaskMetrics>,
    /// Partition commit: the commit watermark, and where late rows go.
    commit: Option<(CommitWatermark, DeadLetterQueue)>,
    event_time_column: usize,
    subtask: u32,
}

impl ParquetSink {
    pub fn start(
        vertex: &Vertex,
        spec: &ParquetSinkSpec,
        subtask: u32,
        ctx: &JobContext,
        metrics: Arc<SubtaskMetrics>,
        checkpoints: Option<Arc<CheckpointProgress>>,
    ) -> Result<Self, TaskError> {
        let event_time_column = vertex
            .schema
            .index_of(&vertex.event_time_column)
            .map_err(|e| TaskError::arrow(&vertex.name, e))?;
        let mut writer = PartitionedWriter::new(spec, vertex.schema.clone(), event_time_column, &ctx.run_id, subtask);
        if checkpoints.is_some() {
            writer = writer.with_two_phase_commit();
        }
        let (tx, rx) = flume::bounded(IO_QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        let abort = Arc::new(AtomicBool::new(false));
        let (root, job_id, attempt, restore, io_abort) = (
            PathBuf::from(&spec.path),
            ctx.job_id.clone(),
            ctx.attempt,
            ctx.restore.as_ref().map(|r| r.point),
            abort.clone(),
        );
        let io_thread = std::thread::Builder::new()
            .name(format!("parquet-io-{}-{subtask}", vertex.name))
            .spawn(move || {
                let result = prepare_for_attempt(&root, &job_id, attempt, subtask, restore).and_then(|done| {
                    if done.removed + done.published > 0 {
                        tracing::info!(job = %job_id, attempt, subtask, removed = done.removed, published = done.published, root = %root.display(), "prepared the parts of earlier attempts");
                    }
                    FileIo::default().run(rx, io_abort)
                });
                let _ = done_tx.send(result);
            })
            .map_err(|e| TaskError::io("starting I/O thread for", &spec.path, e))?;
        if let Some(progress) = &checkpoints {
            let commits = tx.clone();
            // A full queue drops the notice; the next completed checkpoint (or the end of
            // input) publishes these parts too.
            *progress.on_complete.lock().expect("on_complete lock") = Some(Box::new(move |id| {
                let _ = commits.try_send(FileCommand::Commit(id));
            }));
        }
        let commit = spec.commit.as_ref().map(|c| {
            let floor = ctx
                .restore
                .as_ref()
                .and_then(|r| r.sink_watermarks.get(&vertex.name).copied());
            let clock = CommitWatermark::new(
                PartitionScheme::new(&spec.partition),
                c.delay_ms,
                c.idle_timeout_ms.map(Duration::from_millis),
                floor,
            );
            (clock, ctx.dead_letters.clone())
        });
        Ok(Self {
            commit,
            event_time_column,
            subtask,
            name: vertex.name.clone(),
            writer,
            io: Some(tx),
            io_result: Some(done_rx),
            io_thread: Some(io_thread),
            abort,
            checkpoints,
            last_rollover_check: Instant::now(),
            metrics,
        })
    }

    fn gone(&self) -> TaskError {
        TaskError::Disconnected(format!("file I/O of '{}'", self.name))
    }

    /// Sends the queued file operations, waiting while the I/O thread is behind.
    async fn drain(&mut self) -> Result<(), TaskError> {
        for cmd in self.writer.take_commands() {
            self.send(cmd).await?;
        }
        Ok(())
    }

    async fn send(&mut self, cmd: FileCommand) -> Result<(), TaskError> {
        let io = self.io.as_ref().ok_or_else(|| self.gone())?;
        if io.send_async(cmd).await.is_err() {
            return Err(self.io_error().await);
        }
        Ok(())
    }

    /// Checkpoint barrier: what came before it goes into sealed parts of this checkpoint,
    /// durable before the barrier moves on (the subtask acknowledges after this returns).
    async fn pre_commit(&mut self, id: u64) -> Result<(), TaskError> {
        self.writer.roll_all()?;
        self.drain().await?;
        self.send(FileCommand::Barrier(id)).await?;
        let (done, durable) = oneshot::channel();
        self.send(FileCommand::Sync(done)).await?;
        if durable.await.is_err() {
            return Err(self.io_error().await);
        }
        Ok(())
    }

    /// Sends the rows of partitions that may be committed to the late output; returns
    /// the others.
    async fn divert_late(&mut self, batch: RecordBatch) -> Result<RecordBatch, TaskError> {
        let Some((clock, late_output)) = &mut self.commit else {
            return Ok(batch);
        };
        let before = clock.late_before();
        let ts = event_times(&batch, self.event_time_column);
        let (mut buckets, mut max_ts, mut late_count) = (BTreeSet::new(), i64::MIN, 0);
        for t in ts {
            if *t < before {
                late_count += 1;
            } else {
                buckets.insert(clock.scheme().bucket(*t));
                max_ts = max_ts.max(*t);
            }
        }
        clock.wrote(buckets, max_ts, Instant::now());
        if late_count == 0 {
            return Ok(batch);
        }
        let late = BooleanArray::from_iter(ts.iter().map(|t| Some(*t < before)));
        let on_time = not(&late).map_err(|e| TaskError::arrow(&self.name, e))?;
        let late_rows = filter_record_batch(&batch, &late).map_err(|e| TaskError::arrow(&self.name, e))?;
        SubtaskMetrics::add(&self.metrics.late_records, late_count);
        let origin: Arc<str> = Arc::from(self.name.as_str());
        let late_ts = event_times(&late_rows, self.event_time_column);
        let rows = rows_as_json(&late_rows).map_err(|e| TaskError::arrow(&self.name, e))?;
        for (t, raw) in late_ts.iter().zip(rows) {
            late_output
                .send(DeadLetter {
                    source: origin.clone(),
                    subtask: self.subtask,
                    origin: origin.clone(),
                    position: *t as u64,
                    reason: format!(
                        "late: partition {} is complete (rows before {before} are late)",
                        clock.scheme().directory(clock.scheme().bucket(*t))
                    ),
                    raw,
                })
                .await?;
        }
        filter_record_batch(&batch, &on_time).map_err(|e| TaskError::arrow(&self.name, e))
    }

    /// What the leader's partition committer learns with checkpoint `id` (0: the end of
    /// input, with `watermark` the end).
    fn report_commit(&mut self, id: u64, watermark: Option<i64>) {
        let (Some((clock, _)), Some(progress)) = (&mut self.commit, &self.checkpoints) else {
            return;
        };
        let report = SinkCommitReport {
            checkpoint: id,
            watermark: watermark
                .unwrap_or_else(|| clock.on_barrier(Instant::now(), chrono::Utc::now().timestamp_millis())),
            buckets: clock.take_written(),
        };
        *progress.sink_commit.lock().expect("sink commit lock") = Some(report);
    }

    /// The I/O thread's own error explains a closed channel better than "disconnected".
    async fn io_error(&mut self) -> TaskError {
        match self.io_result.take() {
            Some(rx) => match rx.await {
                Ok(Err(e)) => e,
                _ => self.gone(),
            },
            None => self.gone(),
        }
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, events: Vec<StreamEvent>) -> BoxFuture<'_, Result<(), TaskError>> {
        Box::pin(async move {
            for event in events {
                match event {
                    StreamEvent::Data(b) => {
                        SubtaskMetrics::add(&self.metrics.records_in, b.num_rows() as u64);
                        self.metrics.observe_disorder(event_times(&b, self.event_time_column));
                        let b = self.divert_late(b).await?;
                        self.writer.write(&b)?;
                    }
                    StreamEvent::Watermark(wm) => {
                        self.metrics.set_watermark(wm);
                        if let Some((clock, _)) = &mut self.commit {
                            clock.on_watermark(wm, Instant::now());
                        }
                        self.writer.on_watermark(wm)?;
                    }
                    StreamEvent::Barrier(id) => {
                        if self.checkpoints.is_some() {
                            self.pre_commit(id).await?;
                            self.report_commit(id, None);
                        }
                    }
                    StreamEvent::EndOfStream => {}
                    StreamEvent::Idle(idle) => {
                        if let Some((clock, _)) = &mut self.commit {
                            clock.set_input_idle(idle);
                        }
                    }
                }
                if self.last_rollover_check.elapsed() >= ROLLOVER_CHECK {
                    self.last_rollover_check = Instant::now();
                    self.writer.on_timer()?;
                }
                self.drain().await?;
            }
            let (rows, bytes, open) = self.writer.progress();
            self.metrics.records_out.store(rows, Ordering::Relaxed);
            self.metrics.bytes_out.store(bytes, Ordering::Relaxed);
            self.metrics.open_parts.store(open as u64, Ordering::Relaxed);
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<SinkReport, TaskError>> {
        Box::pin(async move {
            let report = self.writer.finish()?;
            self.drain().await?;
            if let Some(progress) = self.checkpoints.clone() {
                // The input is complete: nothing of it will be replayed, publish it all.
                *progress.on_complete.lock().expect("on_complete lock") = None;
                self.send(FileCommand::CommitAll).await?;
                // Published before reported: the committer may then take every partition.
                self.report_commit(0, Some(WATERMARK_MAX));
                self.checkpoints = None;
            }
            self.io = None;
            let rx = self.io_result.take().ok_or_else(|| self.gone())?;
            rx.await.map_err(|_| self.gone())??;
            self.io_thread = None;
            self.metrics.records_out.store(report.rows, Ordering::Relaxed);
            self.metrics.bytes_out.store(report.bytes, Ordering::Relaxed);
            self.metrics.open_parts.store(0, Ordering::Relaxed);
            Ok(report)
        })
    }
}

impl Drop for ParquetSink {
    fn drop(&mut self) {
        if let Some(progress) = self.checkpoints.take() {
            *progress.on_complete.lock().expect("on_complete lock") = None;
        }
        let Some(thread) = self.io_thread.take() else { return };
        self.abort.store(true, Ordering::Release);
        self.io = None;
        // Blocks the slot's thread for at most the one file operation in progress; the
        // cancelling coordinator relies on nothing being published after this returns.
        let _ = thread.join();
    }
}
