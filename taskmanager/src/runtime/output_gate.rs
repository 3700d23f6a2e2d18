//! The output side of a chain: for every outgoing edge, the channels to the consuming
//! subtasks and how batches are routed to them (forward, by key group, round robin).
//! A channel is an in-process bounded queue when the consumer runs on the same task
//! manager and a network channel otherwise. Sending waits while a channel is full (or out
//! of credits): that wait is the backpressure that slows a source down to the pace of its
//! slowest consumer.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::error::TaskError;
use crate::exchange::remote_sender::RemoteSender;
use crate::runtime::key_partitioner::KeyPartitioner;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

pub enum Routing {
    /// One channel: the consumer subtask with the same index.
    Forward,
    Hash(KeyPartitioner),
    RoundRobin {
        next: usize,
    },
}

pub enum ChannelSender {
    Local(mpsc::Sender<StreamEvent>),
    Remote(Box<RemoteSender>),
}

impl ChannelSender {
    /// Sends one event; the time spent waiting for room is added to `waited_ns`.
    async fn send(&mut self, ev: StreamEvent, consumer: &str, waited_ns: &AtomicU64) -> Result<(), TaskError> {
        let gone = || TaskError::PeerGone(format!("consumer '{consumer}'"));
        match self {
            ChannelSender::Local(ch) => match ch.try_send(ev) {
                Ok(()) => Ok(()),
                Err(TrySendError::Closed(_)) => Err(gone()),
                Err(TrySendError::Full(ev)) => {
                    let since = Instant::now();
                    let sent = ch.send(ev).await.map_err(|_| gone());
                    SubtaskMetrics::add_elapsed(waited_ns, since);
                    sent
                }
            },
            ChannelSender::Remote(r) => r.send(&ev, waited_ns).await,
        }
    }
}

pub struct OutputEdge {
    pub routing: Routing,
    /// Indexed by consumer subtask (a single entry for `Forward`).
    pub channels: Vec<ChannelSender>,
    pub consumer: String,
}

pub struct OutputGate {
    pub edges: Vec<OutputEdge>,
    /// The chain's last vertex: its `backpressured_ns` counts the waits for room.
    pub metrics: Arc<SubtaskMetrics>,
}

impl OutputGate {
    pub async fn emit(&mut self, events: Vec<StreamEvent>) -> Result<(), TaskError> {
        let waited = &self.metrics.backpressured_ns;
        for event in events {
            for edge in &mut self.edges {
                edge.send(&event, waited).await?;
            }
        }
        Ok(())
    }
}

impl OutputEdge {
    async fn send(&mut self, event: &StreamEvent, waited: &AtomicU64) -> Result<(), TaskError> {
        match (event, &mut self.routing) {
            (StreamEvent::Data(batch), Routing::Hash(p)) => {
                let parts = p.split(batch).map_err(|e| TaskError::arrow(&self.consumer, e))?;
                for (target, part) in parts {
                    self.channels[target]
                        .send(StreamEvent::Data(part), &self.consumer, waited)
                        .await?;
                }
            }
            (StreamEvent::Data(batch), Routing::RoundRobin { next }) => {
                let target = *next;
                *next = (*next + 1) % self.channels.len();
                self.channels[target]
                    .send(StreamEvent::Data(batch.clone()), &self.consumer, waited)
                    .await?;
            }
            // Forward data, and every control event, goes to all channels of the edge.
            _ => {
                for ch in &mut self.channels {
                    ch.send(event.clone(), &self.consumer, waited).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn batch() -> StreamEvent {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, false)]));
        StreamEvent::Data(RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1, 2, 3]))]).unwrap())
    }

    #[tokio::test]
    async fn a_consumer_that_does_not_read_stops_the_producer() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut gate = OutputGate {
            edges: vec![OutputEdge {
                routing: Routing::Forward,
                channels: vec![ChannelSender::Local(tx)],
                consumer: "slow".into(),
            }],
            metrics: Arc::default(),
        };
        gate.emit(vec![batch(), batch()]).await.unwrap();
        assert_eq!(
            gate.metrics.backpressured_ns.load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        let blocked = tokio::time::timeout(Duration::from_millis(200), gate.emit(vec![batch()])).await;
        assert!(blocked.is_err(), "the third batch must wait for the consumer");
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            rx.recv().await.unwrap();
            rx
        });
        tokio::time::timeout(Duration::from_secs(5), gate.emit(vec![batch()]))
            .await
            .expect("room again once the consumer read one")
            .unwrap();
        let waited = Duration::from_nanos(gate.metrics.backpressured_ns.load(std::sync::atomic::Ordering::Relaxed));
        assert!(
            waited >= Duration::from_millis(50),
            "the wait for room counts as backpressure: {waited:?}"
        );
        drop(reader.await.unwrap());
    }
}
