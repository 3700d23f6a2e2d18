//! The input side of a subtask: one bounded channel per upstream subtask, polled fairly.
//! The gate turns per-channel watermarks into the subtask's watermark (the minimum over
//! channels still open) and reports end of stream once every channel has ended. A channel
//! that closes without an end-of-stream event means its producer failed (or, across the
//! network, its task manager was lost): the gate fails rather than finish with part of
//! the input.

use std::future::poll_fn;
use std::task::Poll;

use tokio::sync::mpsc;
use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN};

use crate::error::TaskError;
use crate::runtime::stream_event::StreamEvent;

pub struct InputGate {
    channels: Vec<mpsc::Receiver<StreamEvent>>,
    watermarks: Vec<i64>,
    ended: Vec<bool>,
    current: i64,
    next_poll: usize,
    finished: bool,
}

impl InputGate {
    pub fn new(channels: Vec<mpsc::Receiver<StreamEvent>>) -> Self {
        let n = channels.len();
        Self {
            channels,
            watermarks: vec![WATERMARK_MIN; n],
            ended: vec![false; n],
            current: WATERMARK_MIN,
            next_poll: 0,
            finished: false,
        }
    }

    /// The next events for the chain: a batch, an advanced watermark, or the end.
    /// Returns an empty vector when the gate has finished.
    pub async fn next(&mut self) -> Result<Vec<StreamEvent>, TaskError> {
        loop {
            if self.finished {
                return Ok(Vec::new());
            }
            let (channel, event) = self.recv_any().await;
            match event {
                Some(StreamEvent::Data(batch)) => return Ok(vec![StreamEvent::Data(batch)]),
                Some(StreamEvent::Watermark(wm)) => {
                    self.watermarks[channel] = self.watermarks[channel].max(wm);
                }
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
            let min = self.watermarks.iter().copied().min().unwrap_or(WATERMARK_MAX);
            if min > self.current {
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

    async fn recv_any(&mut self) -> (usize, Option<StreamEvent>) {
        poll_fn(|cx| {
            let n = self.channels.len();
            for k in 0..n {
                let i = (self.next_poll + k) % n;
                if self.ended[i] {
                    continue;
                }
                if let Poll::Ready(ev) = self.channels[i].poll_recv(cx) {
                    self.next_poll = (i + 1) % n;
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
