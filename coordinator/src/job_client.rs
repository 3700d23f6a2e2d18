//! The CLI's side of the job API: tries the coordinators it was given, follows a
//! redirect to the leader, and bounds every call with a timeout.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tonic::transport::{Channel, Endpoint};
use weir_proto::job::job_service_client::JobServiceClient;

use crate::server::job_api::LEADER_METADATA;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Rounds over all coordinators; with the delays below about 6 s in all, enough to ride
/// out an election (about 2 s).
const ATTEMPTS: u32 = 25;
const MAX_DELAY: Duration = Duration::from_millis(250);

pub struct JobClient {
    addresses: Vec<String>,
    /// The address that answered last (the leader, usually).
    preferred: Option<String>,
}

impl JobClient {
    pub fn new(addresses: Vec<String>) -> Result<Self> {
        if addresses.is_empty() {
            bail!("no coordinator address: give --coordinators or set WEIR_COORDINATORS");
        }
        Ok(Self {
            addresses,
            preferred: None,
        })
    }

    fn client(addr: &str) -> Result<JobServiceClient<Channel>> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(CALL_TIMEOUT);
        Ok(JobServiceClient::new(endpoint.connect_lazy()))
    }

    /// Calls `f` on a coordinator, following leader redirects and trying the others when
    /// one is unreachable; waits a little longer between rounds (an election may be on).
    pub async fn call<T, F, Fut>(&mut self, mut f: F) -> Result<T>
    where
        F: FnMut(JobServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last_error = None;
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
                match f(Self::client(&addr)?).await {
                    Ok(resp) => {
                        self.preferred = Some(addr);
                        return Ok(resp.into_inner());
                    }
                    Err(status) => {
                        if let Some(leader) = status.metadata().get(LEADER_METADATA).and_then(|v| v.to_str().ok()) {
                            let leader = leader.to_string();
                            if let Ok(resp) = f(Self::client(&leader)?).await {
                                self.preferred = Some(leader);
                                return Ok(resp.into_inner());
                            }
                        }
                        match status.code() {
                            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                                last_error = Some(anyhow!("{addr}: {}", status.message()));
                            }
                            _ => return Err(anyhow!("{}", status.message())),
                        }
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no coordinator answered")))
    }
}
