//! The CLI's side of the job API, through the leader-following client.

use std::future::Future;

use anyhow::Result;
use weir_proto::job::job_service_client::JobServiceClient;
use weir_taskmanager::leader_client::LeaderClient;
use weir_taskmanager::transport::{AuthChannel, ClusterTransport};

pub struct JobClient {
    inner: LeaderClient,
}

impl JobClient {
    pub fn new(addresses: Vec<String>, transport: ClusterTransport) -> Result<Self> {
        Ok(Self {
            inner: LeaderClient::new(addresses, transport)?,
        })
    }

    /// Calls `f` on the leader's job service.
    pub async fn call<T, F, Fut>(&mut self, mut f: F) -> Result<T>
    where
        F: FnMut(JobServiceClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        Ok(self.inner.call(|ch| f(JobServiceClient::new(ch))).await?)
    }
}
