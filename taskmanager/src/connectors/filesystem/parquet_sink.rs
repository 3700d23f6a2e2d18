//! The Parquet sink as the tail of a chain: encodes batches into part files on the
//! subtask's thread and hands the resulting file operations to its own I/O thread through
//! a bounded channel (a slow disk backpressures the chain; no blocking call runs on the
//! actor's event loop). Parts older than the rollover interval are rolled as data arrives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use weir_common::graph::Vertex;
use weir_common::spec::ParquetSinkSpec;

use super::file_io::{FileCommand, FileIo};
use super::partitioned_writer::PartitionedWriter;
use crate::error::TaskError;
use crate::runtime::sink::{Sink, SinkReport};
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

/// File operations queued for the I/O thread (each append is up to 1 MiB).
const IO_QUEUE: usize = 16;
/// How often arriving data triggers the check for parts past their rollover interval.
const ROLLOVER_CHECK: Duration = Duration::from_millis(500);

pub struct ParquetSink {
    name: String,
    writer: PartitionedWriter,
    io: Option<flume::Sender<FileCommand>>,
    io_result: Option<oneshot::Receiver<Result<(), TaskError>>>,
    last_rollover_check: Instant,
    metrics: Arc<SubtaskMetrics>,
}

impl ParquetSink {
    pub fn start(
        vertex: &Vertex,
        spec: &ParquetSinkSpec,
        subtask: u32,
        run_id: &str,
        metrics: Arc<SubtaskMetrics>,
    ) -> Result<Self, TaskError> {
        let event_time_column = vertex
            .schema
            .index_of(&vertex.event_time_column)
            .map_err(|e| TaskError::arrow(&vertex.name, e))?;
        let writer = PartitionedWriter::new(spec, vertex.schema.clone(), event_time_column, run_id, subtask);
        let (tx, rx) = flume::bounded(IO_QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("parquet-io-{}-{subtask}", vertex.name))
            .spawn(move || {
                let _ = done_tx.send(FileIo::default().run(rx));
            })
            .map_err(|e| TaskError::io("starting I/O thread for", &spec.path, e))?;
        Ok(Self {
            name: vertex.name.clone(),
            writer,
            io: Some(tx),
            io_result: Some(done_rx),
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
            let io = self.io.as_ref().ok_or_else(|| self.gone())?;
            if io.send_async(cmd).await.is_err() {
                return Err(self.io_error().await);
            }
        }
        Ok(())
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
                        self.writer.write(&b)?;
                    }
                    StreamEvent::Watermark(wm) => {
                        self.metrics.set_watermark(wm);
                        self.writer.on_watermark(wm)?;
                    }
                    StreamEvent::EndOfStream => {}
                }
                if self.last_rollover_check.elapsed() >= ROLLOVER_CHECK {
                    self.last_rollover_check = Instant::now();
                    self.writer.on_timer()?;
                }
                self.drain().await?;
            }
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<SinkReport, TaskError>> {
        Box::pin(async move {
            let report = self.writer.finish()?;
            self.drain().await?;
            self.io = None;
            let rx = self.io_result.take().ok_or_else(|| self.gone())?;
            rx.await.map_err(|_| self.gone())??;
            SubtaskMetrics::add(&self.metrics.records_out, report.rows);
            Ok(report)
        })
    }
}
