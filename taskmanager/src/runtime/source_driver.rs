//! Drives one source subtask: reads, decodes raw records (sending rejects to the
//! dead-letter output), and generates the watermark by the bounded-out-of-orderness rule,
//! per split (`split_watermarks`). An aligned source also publishes its watermark for the
//! leader, pauses the splits that ran past its group's allowance
//! (`watermark_alignment`) and keeps back the rows it read past it (`held_rows`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN};
use weir_common::source_position::SourcePosition;

use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::error::TaskError;
use crate::formats::record_decoder::RecordDecoder;
use crate::runtime::event_time_column::max_event_time;
use crate::runtime::held_rows::HeldRows;
use crate::runtime::source::{SourceOutput, SourceReader};
use crate::runtime::split_watermarks::SplitWatermarks;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::{SplitMetrics, SubtaskMetrics};
use crate::runtime::watermark_alignment::AlignedSource;

/// How long an aligned source waits for its group's first allowance.
const FIRST_ALLOWANCE_WAIT: Duration = Duration::from_secs(5);

pub struct SourceDriver {
    pub vertex: Arc<str>,
    pub subtask: u32,
    pub reader: Box<dyn SourceReader>,
    pub decoder: Option<RecordDecoder>,
    pub event_time_column: usize,
    pub dead_letters: DeadLetterQueue,
    pub metrics: Arc<SubtaskMetrics>,
    splits: SplitWatermarks,
    alignment: Option<Arc<AlignedSource>>,
    /// Rows read past the allowance, when the reader can put a checkpoint before them.
    held: Option<HeldRows>,
    /// Which splits alignment paused.
    paused: Vec<bool>,
    /// When the subtask first asked for its group's allowance.
    aligning_since: Option<Instant>,
    watermark: i64,
    /// Every split is idle: downstream was told (`StreamEvent::Idle`).
    idle: bool,
    finished: bool,
    /// When the splits' standing was last copied to the metrics.
    splits_published: Option<Instant>,
}

/// How often a source copies its splits' standing (watermark, pause, lag) to its metrics.
const SPLIT_METRICS_EVERY: Duration = Duration::from_secs(1);

impl SourceDriver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vertex: Arc<str>,
        subtask: u32,
        reader: Box<dyn SourceReader>,
        decoder: Option<RecordDecoder>,
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
            alignment: None,
            held: None,
            paused: Vec::new(),
            aligning_since: None,
            watermark: WATERMARK_MIN,
            idle: false,
            finished: false,
            splits_published: None,
        }
    }

    /// Takes part in watermark alignment.
    pub fn with_alignment(mut self, aligned: Arc<AlignedSource>) -> Self {
        self.alignment = Some(aligned);
        if self.reader.position_before(&[]).is_some() {
            self.held = Some(HeldRows::default());
        }
        self
    }

    /// Where a restore from a checkpoint taken now resumes: after everything emitted,
    /// before every held row.
    pub fn position(&self) -> SourcePosition {
        let held = self.held.as_ref().map(HeldRows::first_positions).unwrap_or_default();
        if held.is_empty() {
            return self.reader.position();
        }
        self.reader
            .position_before(&held)
            .expect("rows are held only for readers that can place a position before them")
    }

    /// How far the splits may go: `None` when unlimited. Until the leader's first answer
    /// the subtask lets through nothing that has an event time yet (a split that delivered
    /// nothing has none): otherwise every start and restore would let fast partitions race
    /// ahead. If no answer comes (no leader, or part of the group finished) it stops
    /// waiting.
    fn limit(&mut self, now: Instant) -> Option<i64> {
        let aligned = self.alignment.as_ref()?;
        let since = *self.aligning_since.get_or_insert(now);
        aligned
            .allowed()
            .or_else(|| (now.duration_since(since) < FIRST_ALLOWANCE_WAIT).then_some(i64::MIN))
    }

    /// Whether a row at `ts` would take its split's watermark past `limit`.
    fn past(splits: &SplitWatermarks, limit: Option<i64>) -> impl Fn(i64) -> bool + '_ {
        move |ts| limit.is_some_and(|l| splits.watermark_of(ts) > l)
    }

    /// Lets out held rows the allowance now covers, pauses the splits whose watermark is
    /// past it (or that hold rows), resumes those back inside it, and publishes the
    /// subtask's standing for the next report.
    fn align(&mut self, now: Instant, events: &mut Vec<StreamEvent>) {
        if self.alignment.is_none() {
            return;
        }
        let limit = self.limit(now);
        if let Some(held) = &mut self.held {
            let released = held.release(self.event_time_column, Self::past(&self.splits, limit));
            for (split, batch) in released.rows {
                self.emit(split, batch, now, events);
            }
            for (split, ts) in released.still_held {
                self.splits.observe(split, Some(ts), now);
            }
        }
        self.paused.resize(self.reader.splits(), false);
        let mut names = Vec::new();
        for split in 0..self.paused.len() {
            let holds = self.held.as_ref().is_some_and(|h| h.holds(split));
            let pause = holds || limit.is_some_and(|a| self.splits.split_watermark(split) > a);
            if pause != self.paused[split] {
                self.paused[split] = pause;
                self.reader.set_paused(split, pause);
                self.splits.set_paused(split, pause, now);
            }
            if pause {
                names.push(self.reader.split_name(split));
            }
        }
        if let Some(aligned) = &self.alignment {
            aligned.publish(self.splits.watermark(now), names);
        }
    }

    /// Copies each split's watermark, pause and lag to the metrics, at most once per
    /// `SPLIT_METRICS_EVERY`.
    fn publish_splits(&mut self, now: Instant) {
        if self
            .splits_published
            .is_some_and(|at| now.duration_since(at) < SPLIT_METRICS_EVERY)
        {
            return;
        }
        self.splits_published = Some(now);
        let splits = (0..self.reader.splits())
            .map(|split| SplitMetrics {
                name: self.reader.split_name(split),
                watermark: self.splits.split_watermark(split),
                paused: self.paused.get(split).copied().unwrap_or(false),
                lag: self.reader.split_lag(split),
            })
            .collect();
        *self.metrics.splits.lock().expect("splits lock") = splits;
    }

    /// Rows of `split` go downstream (and count for its watermark).
    fn emit(&mut self, split: usize, batch: RecordBatch, now: Instant, events: &mut Vec<StreamEvent>) {
        let max = max_event_time(&batch, self.event_time_column);
        self.splits.observe(split, max, now);
        if max.is_some() {
            SubtaskMetrics::add(&self.metrics.records_out, batch.num_rows() as u64);
            events.push(StreamEvent::Data(batch));
        }
    }

    /// The next events, or `None` once the end of input was reported.
    pub async fn next(&mut self) -> Result<Option<Vec<StreamEvent>>, TaskError> {
        if self.finished {
            return Ok(None);
        }
        let (split, batch, positions) = match self.reader.next().await? {
            None => {
                self.finished = true;
                let mut events = Vec::new();
                let held = self.held.as_mut().map(HeldRows::drain).unwrap_or_default();
                for (split, batch) in held {
                    self.emit(split, batch, Instant::now(), &mut events);
                }
                self.metrics.set_watermark(WATERMARK_MAX);
                if let Some(aligned) = &self.alignment {
                    aligned.finish();
                }
                events.extend([StreamEvent::Watermark(WATERMARK_MAX), StreamEvent::EndOfStream]);
                return Ok(Some(events));
            }
            Some(SourceOutput::Rows(batch)) => {
                SubtaskMetrics::add(&self.metrics.records_in, batch.num_rows() as u64);
                (0, Some(batch), Vec::new())
            }
            // Nothing arrived in a while: only the watermark may move (splits go idle).
            Some(SourceOutput::Raw(raw)) if raw.is_empty() => (raw.split, None, Vec::new()),
            Some(SourceOutput::Raw(raw)) => {
                SubtaskMetrics::add(&self.metrics.records_in, raw.len() as u64);
                SubtaskMetrics::add(&self.metrics.bytes_in, raw.data.len() as u64);
                let decoder = self.decoder.as_mut().ok_or_else(|| TaskError::Invalid {
                    vertex: self.vertex.to_string(),
                    message: "raw records but no format".into(),
                })?;
                let decoding = Instant::now();
                let (batch, rejected) = decoder.decode(&raw)?;
                SubtaskMetrics::add_elapsed(&self.metrics.busy_ns, decoding);
                SubtaskMetrics::add(&self.metrics.dead_letters, rejected.len() as u64);
                let mut positions = Vec::new();
                if self.held.is_some() {
                    let mut bad: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
                    bad.sort_unstable();
                    positions = raw
                        .positions
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| bad.binary_search(i).is_err())
                        .map(|(_, p)| *p)
                        .collect();
                }
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
                (raw.split, Some(batch), positions)
            }
        };
        let now = Instant::now();
        self.splits.set_splits(self.reader.splits(), now);
        for split in 0..self.reader.splits() {
            self.splits.set_behind(split, self.reader.split_behind(split));
        }
        let mut events = Vec::with_capacity(2);
        if let Some(batch) = batch {
            let limit = self.limit(now);
            match &mut self.held {
                Some(held) if batch.num_rows() > 0 => {
                    let cut = held.take(
                        split,
                        batch,
                        positions,
                        self.event_time_column,
                        Self::past(&self.splits, limit),
                    );
                    if let Some(ts) = cut.first_held {
                        self.splits.observe(split, Some(ts), now);
                    }
                    if let Some(batch) = cut.emit {
                        self.emit(split, batch, now, &mut events);
                    }
                }
                _ => self.emit(split, batch, now, &mut events),
            }
        }
        self.align(now, &mut events);
        self.publish_splits(now);
        let watermark = self.splits.watermark(now);
        if watermark.is_some() == self.idle {
            self.idle = !self.idle;
            events.insert(0, StreamEvent::Idle(self.idle));
        }
        if let Some(wm) = watermark
            && wm > self.watermark
        {
            self.watermark = wm;
            self.metrics.set_watermark(wm);
            events.push(StreamEvent::Watermark(wm));
        }
        Ok(Some(events))
    }
}
