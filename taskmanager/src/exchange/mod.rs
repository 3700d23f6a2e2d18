//! The data exchange between task managers: one gRPC stream per producer/consumer subtask
//! pair whose subtasks run on different task managers, carrying Arrow IPC batches and
//! control events, with credit-based flow control.

pub mod channel_key;
pub mod inbound_channels;
pub mod ipc_codec;
pub mod remote_sender;

/// HTTP/2 keep-alive on exchange connections: a peer that vanishes (SIGKILL, network
/// loss) fails the channel within a few seconds instead of hanging it.
pub const KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
pub const KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// HTTP/2 flow-control windows of exchange connections. The default (64 KiB) is smaller
/// than one frame, so every frame waited for window updates: a round trip and two thread
/// wake-ups per 64 KiB. Credits already bound what is in flight; these only must not.
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONNECTION_WINDOW: u32 = 32 << 20;

/// Credits a consumer grants per network channel: frames the producer may have in flight.
/// More than a local channel holds, because a credit comes back only after a network round
/// trip; with 4 the producer stalled on credits and both sides paid a thread wake-up per
/// frame. Memory stays bounded: this many batches per channel.
pub const NETWORK_CREDITS: usize = 16;
