//! The producer side of one network channel. Events are encoded on the producing subtask's
//! thread; a task on the task manager's runtime owns the gRPC stream, feeds it the frames
//! and turns the consumer's credits into permits. A frame is sent only against a permit.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{Semaphore, TryAcquireError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use weir_proto::taskmanager::exchange_frame::Kind;
use weir_proto::taskmanager::task_manager_service_client::TaskManagerServiceClient;
use weir_proto::taskmanager::{ChannelHeader, ExchangeFrame};

use super::channel_key::ChannelKey;
use super::ipc_codec::BatchEncoder;
use super::{CONNECTION_WINDOW, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, STREAM_WINDOW};
use crate::error::TaskError;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;
use crate::transport::ClusterTransport;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct RemoteSender {
    key: ChannelKey,
    frames: mpsc::Sender<ExchangeFrame>,
    credits: Arc<Semaphore>,
    encoder: BatchEncoder,
    /// Why the stream ended early, set by the network task.
    failure: Arc<OnceLock<String>>,
}

impl RemoteSender {
    /// Opens the channel to the consumer at `address`; the stream starts on `runtime`.
    pub fn connect(
        (runtime, transport): (&Handle, &ClusterTransport),
        address: &str,
        key: ChannelKey,
        capacity: usize,
    ) -> Result<Self, TaskError> {
        let endpoint = transport
            .endpoint(address)
            .map_err(|e| TaskError::Exchange {
                channel: key.to_string(),
                message: e.to_string(),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        let (frames, rx) = mpsc::channel(capacity.max(1));
        frames
            .try_send(ExchangeFrame {
                kind: Some(Kind::Header(ChannelHeader::from(&key))),
            })
            .expect("a fresh channel has room for the header");
        let credits = Arc::new(Semaphore::new(0));
        let failure = Arc::new(OnceLock::new());
        let (task_credits, task_failure, channel) = (credits.clone(), failure.clone(), key.to_string());
        let transport = transport.clone();
        runtime.spawn(async move {
            let result = async {
                let mut client = TaskManagerServiceClient::new(transport.authorize(endpoint.connect().await?));
                let mut grants = client.exchange(ReceiverStream::new(rx)).await?.into_inner();
                while let Some(grant) = grants.message().await? {
                    task_credits.add_permits(grant.credits as usize);
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(channel = %channel, error = %e, "exchange channel failed");
                let _ = task_failure.set(e.to_string());
            }
            // No more credits will come: a producer still waiting for one must fail.
            task_credits.close();
        });
        Ok(Self {
            key,
            frames,
            credits,
            encoder: BatchEncoder::default(),
            failure,
        })
    }

    fn error(&self, what: &str) -> TaskError {
        TaskError::Exchange {
            channel: self.key.to_string(),
            message: match self.failure.get() {
                Some(f) => format!("{what}: {f}"),
                None => format!("{what}: the consumer closed the channel"),
            },
        }
    }

    /// Sends one event; the time spent waiting for a credit is added to `waited_ns`.
    pub async fn send(&mut self, event: &StreamEvent, waited_ns: &AtomicU64) -> Result<(), TaskError> {
        let kind = match event {
            StreamEvent::Data(batch) => Kind::Batch(self.encoder.encode(batch).map_err(|e| TaskError::Exchange {
                channel: self.key.to_string(),
                message: format!("encoding a batch: {e}"),
            })?),
            StreamEvent::Watermark(wm) => Kind::Watermark(*wm),
            StreamEvent::Barrier(id) => Kind::Barrier(*id),
            StreamEvent::EndOfStream => Kind::EndOfStream(true),
            StreamEvent::Idle(idle) => Kind::Idle(*idle),
        };
        let permit = match self.credits.try_acquire() {
            Ok(permit) => Ok(permit),
            Err(TryAcquireError::Closed) => return Err(self.error("sending")),
            Err(TryAcquireError::NoPermits) => {
                let since = Instant::now();
                let permit = self.credits.acquire().await;
                SubtaskMetrics::add_elapsed(waited_ns, since);
                permit
            }
        };
        match permit {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(self.error("sending")),
        }
        self.frames
            .send(ExchangeFrame { kind: Some(kind) })
            .await
            .map_err(|_| self.error("sending"))
    }
}
