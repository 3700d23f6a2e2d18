//! The input side of a subtask: one bounded channel per upstream subtask, polled fairly.
//! The gate turns per-channel watermarks into the subtask's watermark (the minimum over
//! channels still open) and reports end of stream once every channel has ended. A channel
//! that closes without an end-of-stream event means its producer failed (or, across the
//! network, its task manager was lost): the gate fails rather than finish with part of
//! the input.
//!
//! Checkpoint barriers are aligned here: a channel that delivered `Barrier(n)` is not read
//! again until every other open channel has delivered it too; then the gate emits
//! `Barrier(n)` once. Events after the barrier wait in their (bounded) channels, so the
//! subtask's state at the barrier holds exactly what came before it on every input. A
//! newer barrier arriving during an alignment abandons the older checkpoint (it was
//! aborted upstream); an older one is ignored.
//!
//! The head of a two-input task (a join) reads both inputs through one gate: each channel
//! belongs to an input, and the gate says which input the batch it returned came from.
//! Watermarks and barriers are the same over all channels, whatever their input.
//!
//! Watermark status: a channel whose producer went idle (`Idle(true)`) does not hold the
//! watermark back until it delivers data or `Idle(false)`; when every open channel is
//! idle the gate passes `Idle(true)` on (and `Idle(false)` once one is active again), so
//! idleness reaches the sinks, which commit an idle stream's partitions.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN};

use crate::error::TaskError;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

/// A barrier being aligned: its checkpoint id and which channels delivered it.
struct Alignment {
    id: u64,
    arrived: Vec<bool>,
    started: Instant,
}

pub struct InputGate {
    channels: Vec<mpsc::Receiver<StreamEvent>>,
    /// Which input of the head operator each channel feeds.
    inputs: Vec<usize>,
    /// The input of the last batch returned.
    batch_input: usize,
    watermarks: Vec<i64>,
    ended: Vec<bool>,
    idle: Vec<bool>,
    /// The status the gate last passed on.
    gate_idle: bool,
    current: i64,
    next_poll: usize,
    finished: bool,
    aligning: Option<Alignment>,
    /// The newest checkpoint whose barrier this gate emitted (or abandoned).
    last_barrier: Option<u64>,
    /// How long the last completed alignment held channels back, with its checkpoint.
    last_alignment: Option<(u64, Duration)>,
    /// The head vertex's counters, where the gate records how full its channels are.
    metrics: Option<Arc<SubtaskMetrics>>,
}

impl InputGate {
    pub fn new(channels: Vec<mpsc::Receiver<StreamEvent>>) -> Self {
        let inputs = vec![0; channels.len()];
        Self::with_inputs(channels, inputs)
    }

    /// A gate whose channel `i` feeds input `inputs[i]` of the head operator.
    pub fn with_inputs(channels: Vec<mpsc::Receiver<StreamEvent>>, inputs: Vec<usize>) -> Self {
        let n = channels.len();
        Self {
            channels,
            inputs,
            batch_input: 0,
            watermarks: vec![WATERMARK_MIN; n],
            ended: vec![false; n],
            idle: vec![false; n],
            gate_idle: false,
            current: WATERMARK_MIN,
            next_poll: 0,
            finished: false,
            aligning: None,
            last_barrier: None,
            last_alignment: None,
            metrics: None,
        }
    }

    /// Records the fill of the gate's channels in `metrics` at every read.
    pub fn with_metrics(mut self, metrics: Arc<SubtaskMetrics>) -> Self {
        metrics.input_capacity.store(
            self.channels.iter().map(|c| c.max_capacity() as u64).sum(),
            Ordering::Relaxed,
        );
        self.metrics = Some(metrics);
        self
    }

    /// The next events for the chain: a batch, an advanced watermark, an aligned barrier,
    /// or the end. Returns an empty vector when the gate has finished.
    pub async fn next(&mut self) -> Result<Vec<StreamEvent>, TaskError> {
        loop {
            if self.finished {
                return Ok(Vec::new());
            }
            let (channel, event) = self.recv_any().await;
            match event {
                Some(StreamEvent::Data(batch)) => {
                    self.idle[channel] = false;
                    self.batch_input = self.inputs[channel];
                    if self.gate_idle {
                        self.gate_idle = false;
                        return Ok(vec![StreamEvent::Idle(false), StreamEvent::Data(batch)]);
                    }
                    return Ok(vec![StreamEvent::Data(batch)]);
                }
                Some(StreamEvent::Idle(idle)) => self.idle[channel] = idle,
                Some(StreamEvent::Watermark(wm)) => {
                    self.watermarks[channel] = self.watermarks[channel].max(wm);
                }
                Some(StreamEvent::Barrier(id)) => self.on_barrier(channel, id),
                Some(StreamEvent::EndOfStream) => {
                    self.ended[channel] = true;
                    self.watermarks[channel] = WATERMARK_MAX;
                }
                None => {
                    return Err(TaskError::PeerGone(format!(
                        "input channel {channel} (closed before its end of stream)"
                    )));
                }
            }
            let mut out = Vec::new();
            if let Some(id) = self.aligned() {
                out.push(StreamEvent::Barrier(id));
            }
            let open = (0..self.channels.len()).filter(|c| !self.ended[*c]);
            let all_idle = open.clone().count() > 0 && open.clone().all(|c| self.idle[c]);
            if all_idle != self.gate_idle {
                self.gate_idle = all_idle;
                out.push(StreamEvent::Idle(all_idle));
            }
            // Ended channels sit at the maximum; with every open channel idle nothing moves.
            let min = if self.ended.iter().all(|e| *e) {
                Some(WATERMARK_MAX)
            } else {
                (0..self.channels.len())
                    .filter(|c| !self.ended[*c] && !self.idle[*c])
                    .map(|c| self.watermarks[c])
                    .min()
            };
            if let Some(min) = min
                && min > self.current
            {
                self.current = min;
                out.push(StreamEvent::Watermark(min));
            }
            if self.ended.iter().all(|e| *e) {
                self.finished = true;
                out.push(StreamEvent::EndOfStream);
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    fn on_barrier(&mut self, channel: usize, id: u64) {
        if self.last_barrier.is_some_and(|last| id <= last) {
            return;
        }
        match &mut self.aligning {
            Some(a) if a.id == id => a.arrived[channel] = true,
            Some(a) if a.id > id => {}
            _ => {
                if let Some(old) = &self.aligning {
                    tracing::warn!(
                        abandoned = old.id,
                        newer = id,
                        "checkpoint barrier overtaken by a newer one"
                    );
                }
                let mut arrived = vec![false; self.channels.len()];
                arrived[channel] = true;
                self.aligning = Some(Alignment {
                    id,
                    arrived,
                    started: Instant::now(),
                });
            }
        }
    }

    /// The checkpoint whose barrier every open channel has now delivered, if any; the
    /// channels are read again from here on.
    fn aligned(&mut self) -> Option<u64> {
        let a = self.aligning.as_ref()?;
        let complete = a
            .arrived
            .iter()
            .zip(&self.ended)
            .all(|(arrived, ended)| *arrived || *ended);
        if !complete {
            return None;
        }
        let id = a.id;
        self.last_alignment = Some((id, a.started.elapsed()));
        self.aligning = None;
        self.last_barrier = Some(id);
        Some(id)
    }

    /// The input of the head operator that the batch in the last events returned by
    /// [`InputGate::next`] came from (each call returns at most one batch).
    pub fn batch_input(&self) -> usize {
        self.batch_input
    }

    /// The last completed alignment: its checkpoint and how long the first barrier waited
    /// for the last (Flink's "alignment duration").
    pub fn last_alignment(&self) -> Option<(u64, Duration)> {
        self.last_alignment
    }

    /// Whether channel `i` may be read now (open, and not holding back after a barrier).
    fn readable(&self, i: usize) -> bool {
        !self.ended[i] && !self.aligning.as_ref().is_some_and(|a| a.arrived[i])
    }

    async fn recv_any(&mut self) -> (usize, Option<StreamEvent>) {
        poll_fn(|cx| {
            let n = self.channels.len();
            for k in 0..n {
                let i = (self.next_poll + k) % n;
                if !self.readable(i) {
                    continue;
                }
                if let Poll::Ready(ev) = self.channels[i].poll_recv(cx) {
                    self.next_poll = (i + 1) % n;
                    if let Some(m) = &self.metrics {
                        let queued = self.channels.iter().map(|c| c.len() as u64).sum();
                        m.input_queued.store(queued, Ordering::Relaxed);
                    }
                    return Poll::Ready((i, ev));
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn watermark_is_minimum_of_open_channels_and_end_waits_for_all() {
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        tx0.send(StreamEvent::Watermark(100)).await.unwrap();
        tx1.send(StreamEvent::Watermark(50)).await.unwrap();
        let ev = gate.next().await.unwrap();
        assert!(matches!(ev[..], [StreamEvent::Watermark(50)]), "{ev:?}");
        tx1.send(StreamEvent::EndOfStream).await.unwrap();
        let ev = gate.next().await.unwrap();
        assert!(matches!(ev[..], [StreamEvent::Watermark(100)]), "{ev:?}");
        tx0.send(StreamEvent::EndOfStream).await.unwrap();
        let ev = gate.next().await.unwrap();
        assert!(
            matches!(
                ev[..],
                [StreamEvent::Watermark(WATERMARK_MAX), StreamEvent::EndOfStream]
            ),
            "{ev:?}"
        );
        assert!(gate.next().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn idle_channels_do_not_hold_the_watermark_and_all_idle_passes_idleness_on() {
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        tx0.send(StreamEvent::Watermark(100)).await.unwrap();
        assert!(gate.next().now_or_never().is_none(), "channel 1 holds it at the start");
        tx1.send(StreamEvent::Idle(true)).await.unwrap();
        let ev = gate.next().await.unwrap();
        assert!(matches!(ev[..], [StreamEvent::Watermark(100)]), "{ev:?}");
        tx0.send(StreamEvent::EndOfStream).await.unwrap();
        let ev = gate.next().await.unwrap();
        assert!(
            matches!(ev[..], [StreamEvent::Idle(true)]),
            "channel 0 ended, channel 1 idle: no maximum watermark, idleness passes on: {ev:?}"
        );
        tx1.send(batch(1)).await.unwrap();
        let ev = gate.next().await.unwrap();
        assert!(
            matches!(ev[..], [StreamEvent::Idle(false), StreamEvent::Data(_)]),
            "{ev:?}"
        );
    }

    fn batch(v: i32) -> StreamEvent {
        use std::sync::Arc;

        use arrow::array::Int32Array;
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::record_batch::RecordBatch;
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)]));
        StreamEvent::Data(RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![v]))]).unwrap())
    }

    fn value(ev: &StreamEvent) -> Option<i32> {
        match ev {
            StreamEvent::Data(b) => Some(
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int32Array>()
                    .unwrap()
                    .value(0),
            ),
            _ => None,
        }
    }

    /// Reads everything the gate gives until `until` matches or the gate ends.
    async fn drain(gate: &mut InputGate, until: impl Fn(&StreamEvent) -> bool) -> Vec<StreamEvent> {
        let mut seen = Vec::new();
        loop {
            let events = gate.next().await.unwrap();
            if events.is_empty() {
                return seen;
            }
            let stop = events.iter().any(&until);
            seen.extend(events);
            if stop {
                return seen;
            }
        }
    }

    #[tokio::test]
    async fn a_barrier_is_emitted_once_after_every_channel_delivered_it() {
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        // Channel 0 is ahead: its barrier and what follows arrive before channel 1's.
        for ev in [batch(1), StreamEvent::Barrier(7), batch(2), batch(3)] {
            tx0.send(ev).await.unwrap();
        }
        for ev in [batch(10), batch(11), StreamEvent::Barrier(7), batch(12)] {
            tx1.send(ev).await.unwrap();
        }
        let seen = drain(&mut gate, |e| matches!(e, StreamEvent::Barrier(_))).await;
        let before: Vec<i32> = seen.iter().filter_map(value).collect();
        let mut sorted = before.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![1, 10, 11],
            "exactly the pre-barrier records come first: {seen:?}"
        );
        assert!(matches!(seen.last(), Some(StreamEvent::Barrier(7))));
        drop((tx0, tx1));
        let mut after = Vec::new();
        for _ in 0..3 {
            after.extend(gate.next().await.unwrap().iter().filter_map(value));
        }
        after.sort();
        assert_eq!(after, vec![2, 3, 12]);
    }

    #[tokio::test]
    async fn an_ended_channel_does_not_hold_a_barrier_back_and_a_newer_barrier_wins() {
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let (tx2, rx2) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![rx0, rx1, rx2]);
        tx2.send(StreamEvent::EndOfStream).await.unwrap();
        tx0.send(StreamEvent::Barrier(1)).await.unwrap();
        // Checkpoint 1 was aborted before channel 1 saw it; checkpoint 2 overtakes it.
        tx1.send(StreamEvent::Barrier(2)).await.unwrap();
        tx0.send(StreamEvent::Barrier(2)).await.unwrap();
        let seen = drain(&mut gate, |e| matches!(e, StreamEvent::Barrier(_))).await;
        let barriers: Vec<u64> = seen
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Barrier(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(barriers, vec![2], "{seen:?}");
        // A late copy of the abandoned barrier is ignored.
        tx1.send(StreamEvent::Barrier(1)).await.unwrap();
        tx0.send(StreamEvent::EndOfStream).await.unwrap();
        tx1.send(StreamEvent::EndOfStream).await.unwrap();
        let rest = drain(&mut gate, |e| matches!(e, StreamEvent::EndOfStream)).await;
        assert!(!rest.iter().any(|e| matches!(e, StreamEvent::Barrier(_))), "{rest:?}");
    }

    #[tokio::test]
    async fn each_batch_is_tagged_with_the_input_its_channel_feeds() {
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let (tx2, rx2) = mpsc::channel(8);
        let mut gate = InputGate::with_inputs(vec![rx0, rx1, rx2], vec![0, 1, 1]);
        tx0.send(batch(0)).await.unwrap();
        tx1.send(batch(1)).await.unwrap();
        tx2.send(batch(2)).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let events = gate.next().await.unwrap();
            seen.push((events.iter().find_map(value).unwrap(), gate.batch_input()));
        }
        seen.sort();
        assert_eq!(seen, [(0, 0), (1, 1), (2, 1)]);
    }

    #[tokio::test]
    async fn a_channel_closed_without_its_end_fails_the_gate() {
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        tx0.send(StreamEvent::EndOfStream).await.unwrap();
        drop(tx1);
        let mut result = Ok(Vec::new());
        for _ in 0..2 {
            result = gate.next().await;
            if result.is_err() {
                break;
            }
        }
        assert!(
            result.is_err(),
            "a vanished producer must not look like the end: {result:?}"
        );
    }
}
