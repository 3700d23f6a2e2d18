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
