//! Calls to "the leader" of the coordinator group: tries the coordinators it knows,
//! follows a refusal that names the leader (`weir-leader` metadata), retries unreachable
//! ones with short back-off while an election may be under way, and bounds every call.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use weir_proto::LEADER_METADATA;

use crate::transport::{AuthChannel, ClusterTransport};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Rounds over all coordinators; with the delays below about 6 s in all, enough to ride
/// out an election (about 2 s).
const ATTEMPTS: u32 = 25;
const MAX_DELAY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum LeaderCallError {
    #[error("no coordinator address given")]
    NoAddress,
    #[error("bad coordinator address '{0}'")]
    BadAddress(String),
    /// The call reached a coordinator, which refused it (not a matter of leadership).
    #[error("{}", .0.message())]
    Refused(tonic::Status),
    #[error("no leader reachable; last error: {0}")]
    Unavailable(String),
}

pub struct LeaderClient {
    addresses: Vec<String>,
    /// The address that answered last (the leader, usually).
    preferred: Option<String>,
    transport: ClusterTransport,
    /// One connection per coordinator, kept across calls (a TLS handshake per heartbeat
    /// would cost more than the heartbeat).
    channels: HashMap<String, AuthChannel>,
}

impl LeaderClient {
    pub fn new(addresses: Vec<String>, transport: ClusterTransport) -> Result<Self, LeaderCallError> {
        if addresses.is_empty() {
            return Err(LeaderCallError::NoAddress);
        }
        Ok(Self {
            addresses,
            preferred: None,
            transport,
            channels: HashMap::new(),
        })
    }

    fn channel(&mut self, addr: &str) -> Result<AuthChannel, LeaderCallError> {
        if let Some(c) = self.channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = self
            .transport
            .endpoint(addr)
            .map_err(|_| LeaderCallError::BadAddress(addr.to_string()))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(CALL_TIMEOUT);
        let channel = self.transport.authorize(endpoint.connect_lazy());
        self.channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Calls `f` with a channel to a coordinator until one (the leader) accepts.
    pub async fn call<T, F, Fut>(&mut self, mut f: F) -> Result<T, LeaderCallError>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last_error = String::new();
        let mut broken_connections = false;
        let mut delay = Duration::from_millis(50);
        for _ in 0..ATTEMPTS {
            let mut order: Vec<String> = self.preferred.iter().cloned().collect();
            order.extend(
                self.addresses
                    .iter()
                    .filter(|a| Some(*a) != self.preferred.as_ref())
                    .cloned(),
            );
            for addr in order {
                let status = match f(self.channel(&addr)?).await {
                    Ok(resp) => {
                        self.preferred = Some(addr);
                        return Ok(resp.into_inner());
                    }
                    Err(status) => status,
                };
                if let Some(leader) = status.metadata().get(LEADER_METADATA).and_then(|v| v.to_str().ok()) {
                    let leader = leader.to_string();
                    if let Ok(resp) = f(self.channel(&leader)?).await {
                        self.preferred = Some(leader);
                        return Ok(resp.into_inner());
                    }
                }
                match status.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                        last_error = format!("{addr}: {}", status.message());
                    }
                    // The connection broke before any answer: a coordinator never cancels
                    // a call itself, and an HTTP/2 protocol error means the peer did not
                    // speak gRPC over this transport.
                    tonic::Code::Cancelled | tonic::Code::Internal if broke_at_once(&status) => {
                        last_error = format!("{addr}: {}", status.message());
                        broken_connections = true;
                    }
                    _ => return Err(LeaderCallError::Refused(status)),
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
        if broken_connections {
            last_error.push_str(
                " (connections broke as soon as they were made, which is usually a TLS mismatch: \
                 check --tls-ca, --tls-cert and --tls-key against the cluster's)",
            );
        }
        Err(LeaderCallError::Unavailable(last_error))
    }
}

fn broke_at_once(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Cancelled || status.message().contains("h2 protocol error")
}
