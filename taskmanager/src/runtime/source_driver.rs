//! Drives one source subtask: reads, decodes raw records (sending rejects to the
//! dead-letter output), and generates the watermark by the bounded-out-of-orderness rule,
//! per split (`split_watermarks`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN};

use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::error::TaskError;
use crate::formats::json_decoder::JsonDecoder;
use crate::runtime::event_time_column::max_event_time;
use crate::runtime::source::{SourceOutput, SourceReader};
use crate::runtime::split_watermarks::SplitWatermarks;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

pub struct SourceDriver {
    pub vertex: Arc<str>,
    pub subtask: u32,
    pub reader: Box<dyn SourceReader>,
    pub decoder: Option<JsonDecoder>,
    pub event_time_column: usize,
    pub dead_letters: DeadLetterQueue,
    pub metrics: Arc<SubtaskMetrics>,
    splits: SplitWatermarks,
    watermark: i64,
    finished: bool,
}

impl SourceDriver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vertex: Arc<str>,
        subtask: u32,
        reader: Box<dyn SourceReader>,
        decoder: Option<JsonDecoder>,
        event_time_column: usize,
        (max_out_of_orderness_ms, idle_timeout): (u64, Option<Duration>),
        dead_letters: DeadLetterQueue,
        metrics: Arc<SubtaskMetrics>,
    ) -> Self {
        Self {
            vertex,
            subtask,
            reader,
            decoder,
            event_time_column,
            dead_letters,
            metrics,
            splits: SplitWatermarks::new(max_out_of_orderness_ms, idle_timeout),
            watermark: WATERMARK_MIN,
            finished: false,
        }
    }

    /// The next events, or `None` once the end of input was reported.
    pub async fn next(&mut self) -> Result<Option<Vec<StreamEvent>>, TaskError> {
        if self.finished {
            return Ok(None);
        }
        let (split, batch) = match self.reader.next().await? {
            None => {
                self.finished = true;
                self.metrics.set_watermark(WATERMARK_MAX);
                return Ok(Some(vec![
                    StreamEvent::Watermark(WATERMARK_MAX),
                    StreamEvent::EndOfStream,
                ]));
            }
            Some(SourceOutput::Rows(batch)) => {
                SubtaskMetrics::add(&self.metrics.records_in, batch.num_rows() as u64);
                (0, Some(batch))
            }
            // Nothing arrived in a while: only the watermark may move (splits go idle).
            Some(SourceOutput::Raw(raw)) if raw.is_empty() => (raw.split, None),
            Some(SourceOutput::Raw(raw)) => {
                SubtaskMetrics::add(&self.metrics.records_in, raw.len() as u64);
                SubtaskMetrics::add(&self.metrics.bytes_in, raw.data.len() as u64);
                let decoder = self.decoder.as_mut().ok_or_else(|| TaskError::Invalid {
                    vertex: self.vertex.to_string(),
                    message: "raw records but no format".into(),
                })?;
                let (batch, rejected) = decoder.decode(&raw)?;
                SubtaskMetrics::add(&self.metrics.dead_letters, rejected.len() as u64);
                for (i, reason) in rejected {
                    self.dead_letters
                        .send(DeadLetter {
                            source: self.vertex.clone(),
                            subtask: self.subtask,
                            origin: raw.origin.clone(),
                            position: raw.positions[i],
                            reason,
                            raw: raw.record(i).to_vec(),
                        })
                        .await?;
                }
                (raw.split, Some(batch))
            }
        };
        let now = Instant::now();
        self.splits.set_splits(self.reader.splits(), now);
        let mut events = Vec::with_capacity(2);
        if let Some(batch) = batch {
            let max = max_event_time(&batch, self.event_time_column);
            self.splits.observe(split, max, now);
            if max.is_some() {
                SubtaskMetrics::add(&self.metrics.records_out, batch.num_rows() as u64);
                events.push(StreamEvent::Data(batch));
            }
        }
        if let Some(wm) = self.splits.watermark(now)
            && wm > self.watermark
        {
            self.watermark = wm;
            self.metrics.set_watermark(wm);
            events.push(StreamEvent::Watermark(wm));
        }
        Ok(Some(events))
    }
}
