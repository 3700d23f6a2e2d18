//! The Parquet sink as the tail of a chain: it forwards batches and watermarks to its own
//! writer thread through a bounded channel (encoding and file I/O stay off the actor's
//! event loop; a full channel backpressures the chain) and collects the thread's report.

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use weir_common::graph::Vertex;
use weir_common::spec::ParquetSinkSpec;

use super::partitioned_writer::PartitionedWriter;
use crate::error::TaskError;
use crate::runtime::sink::{Sink, SinkReport};
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

/// Batches queued for the writer thread.
const WRITER_QUEUE: usize = 4;
/// How often an idle writer checks for parts past their rollover interval.
const TIMER_TICK: Duration = Duration::from_millis(500);

enum WriterCommand {
    Batch(RecordBatch),
    Watermark(i64),
}

pub struct ParquetSink {
    name: String,
    tx: Option<flume::Sender<WriterCommand>>,
    result: Option<oneshot::Receiver<Result<SinkReport, TaskError>>>,
    metrics: Arc<SubtaskMetrics>,
}

impl ParquetSink {
    pub fn start(vertex: &Vertex, spec: &ParquetSinkSpec, subtask: u32, run_id: &str, metrics: Arc<SubtaskMetrics>) -> Result<Self, TaskError> {
        let event_time_column = vertex
            .schema
            .index_of(&vertex.event_time_column)
            .map_err(|e| TaskError::arrow(&vertex.name, e))?;
        let writer = PartitionedWriter::new(spec, vertex.schema.clone(), event_time_column, run_id, subtask);
        let (tx, rx) = flume::bounded(WRITER_QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("parquet-{}-{subtask}", vertex.name))
            .spawn(move || {
                let _ = done_tx.send(run_writer(writer, rx));
            })
            .map_err(|e| TaskError::io("starting writer thread for", &spec.path, e))?;
        Ok(Self {
            name: vertex.name.clone(),
            tx: Some(tx),
            result: Some(done_rx),
            metrics,
        })
    }

    /// The writer thread's own error explains a closed channel better than "disconnected".
    async fn writer_error(&mut self) -> TaskError {
        match self.result.take() {
            Some(rx) => match rx.await {
                Ok(Err(e)) => e,
                _ => TaskError::Disconnected(format!("parquet writer of '{}'", self.name)),
            },
            None => TaskError::Disconnected(format!("parquet writer of '{}'", self.name)),
        }
    }
}

fn run_writer(mut writer: PartitionedWriter, rx: flume::Receiver<WriterCommand>) -> Result<SinkReport, TaskError> {
    loop {
        match rx.recv_timeout(TIMER_TICK) {
            Ok(WriterCommand::Batch(b)) => writer.write(&b)?,
            Ok(WriterCommand::Watermark(wm)) => writer.on_watermark(wm)?,
            Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => break,
        }
        writer.on_timer()?;
    }
    writer.finish()
}

impl Sink for ParquetSink {
    fn write(&mut self, events: Vec<StreamEvent>) -> BoxFuture<'_, Result<(), TaskError>> {
        Box::pin(async move {
            for event in events {
                let cmd = match event {
                    StreamEvent::Data(b) => {
                        SubtaskMetrics::add(&self.metrics.records_in, b.num_rows() as u64);
                        WriterCommand::Batch(b)
                    }
                    StreamEvent::Watermark(wm) => {
                        self.metrics.set_watermark(wm);
                        WriterCommand::Watermark(wm)
                    }
                    StreamEvent::EndOfStream => continue,
                };
                let tx = self.tx.as_ref().expect("sink used after finish");
                if tx.send_async(cmd).await.is_err() {
                    return Err(self.writer_error().await);
                }
            }
            Ok(())
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<SinkReport, TaskError>> {
        Box::pin(async move {
            self.tx = None;
            let rx = self.result.take().ok_or_else(|| TaskError::Disconnected(format!("parquet writer of '{}'", self.name)))?;
            let report = rx
                .await
                .map_err(|_| TaskError::Disconnected(format!("parquet writer of '{}'", self.name)))??;
            SubtaskMetrics::add(&self.metrics.records_out, report.rows);
            Ok(report)
        })
    }
}
