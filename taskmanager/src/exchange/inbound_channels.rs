//! The consumer side of the exchange. A deployment registers, for every channel whose
//! producer runs on another task manager, the sender into the consuming subtask's input
//! gate; the producer's stream then finds it by its header. Deployments on the two task
//! managers race, so a stream waits a while for its channel to be registered.
//!
//! Credits: the consumer grants `capacity` credits, then gives back credits for the frames
//! it has handed to the input gate, half a window at a time (one message per frame cost a
//! round of thread wake-ups each). A slow consumer stops granting, the producer stops
//! sending, and neither side buffers more than the credits allow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tonic::{Status, Streaming};
use weir_proto::taskmanager::exchange_frame::Kind;
use weir_proto::taskmanager::{ExchangeCredit, ExchangeFrame};

use super::channel_key::ChannelKey;
use super::ipc_codec::BatchDecoder;
use crate::runtime::stream_event::StreamEvent;

/// How long a producer's stream waits for the consumer's deployment to register it.
const REGISTRATION_WAIT: Duration = Duration::from_secs(15);

#[derive(Clone, Default)]
pub struct InboundChannels {
    channels: Arc<Mutex<HashMap<ChannelKey, mpsc::Sender<StreamEvent>>>>,
    registered: Arc<Notify>,
}

impl InboundChannels {
    pub fn register(&self, key: ChannelKey, tx: mpsc::Sender<StreamEvent>) {
        self.channels.lock().expect("inbound lock").insert(key, tx);
        self.registered.notify_waiters();
    }

    /// Forgets the channels of attempts of `job_id` below `below_attempt` that no producer
    /// has connected to (their consumers are being cancelled).
    pub fn forget(&self, job_id: &str, below_attempt: u32) {
        self.channels
            .lock()
            .expect("inbound lock")
            .retain(|k, _| !(k.job_id == job_id && k.attempt < below_attempt));
    }

    async fn take(&self, key: &ChannelKey) -> Option<mpsc::Sender<StreamEvent>> {
        let deadline = tokio::time::Instant::now() + REGISTRATION_WAIT;
        loop {
            let notified = self.registered.notified();
            if let Some(tx) = self.channels.lock().expect("inbound lock").remove(key) {
                return Some(tx);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Serves one producer's stream: finds its channel, grants the initial credits and
    /// forwards frames into the input gate on a task of its own. Returns the credit stream.
    pub async fn accept(
        &self,
        mut frames: Streaming<ExchangeFrame>,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Result<ExchangeCredit, Status>>, Status> {
        let header = match frames.message().await? {
            Some(ExchangeFrame {
                kind: Some(Kind::Header(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "an exchange stream starts with a channel header",
                ));
            }
        };
        let key = ChannelKey::from(&header);
        let Some(tx) = self.take(&key).await else {
            return Err(Status::not_found(format!("no channel {key} is deployed here")));
        };
        let (credit_tx, credit_rx) = mpsc::channel(capacity + 1);
        let _ = credit_tx.try_send(Ok(ExchangeCredit {
            credits: capacity as u32,
        }));
        tokio::spawn(forward(key, frames, tx, credit_tx, (capacity / 2).max(1) as u32));
        Ok(credit_rx)
    }
}

/// Frames into the input gate until end of stream. Any other ending drops the sender
/// without an end-of-stream event, which the input gate reports as an upstream failure.
async fn forward(
    key: ChannelKey,
    mut frames: Streaming<ExchangeFrame>,
    tx: mpsc::Sender<StreamEvent>,
    credits: mpsc::Sender<Result<ExchangeCredit, Status>>,
    grant_every: u32,
) {
    let mut decoder = BatchDecoder::default();
    let mut owed = 0;
    loop {
        let frame = match frames.message().await {
            Ok(Some(f)) => f,
            Ok(None) => {
                tracing::warn!(channel = %key, "producer closed the channel before its end");
                return;
            }
            Err(status) => {
                tracing::warn!(channel = %key, error = %status, "exchange stream failed");
                return;
            }
        };
        let event = match frame.kind {
            Some(Kind::Batch(bytes)) => match decoder.decode(bytes) {
                Ok(batch) => StreamEvent::Data(batch),
                Err(e) => {
                    tracing::error!(channel = %key, error = %e, "undecodable batch");
                    return;
                }
            },
            Some(Kind::Watermark(wm)) => StreamEvent::Watermark(wm),
            Some(Kind::Barrier(id)) => StreamEvent::Barrier(id),
            Some(Kind::EndOfStream(_)) => StreamEvent::EndOfStream,
            Some(Kind::Idle(idle)) => StreamEvent::Idle(idle),
            Some(Kind::Header(_)) | None => {
                tracing::error!(channel = %key, "unexpected frame");
                return;
            }
        };
        let end = matches!(event, StreamEvent::EndOfStream);
        if tx.send(event).await.is_err() || end {
            return;
        }
        owed += 1;
        if owed >= grant_every {
            if credits.send(Ok(ExchangeCredit { credits: owed })).await.is_err() {
                return;
            }
            owed = 0;
        }
    }
}
