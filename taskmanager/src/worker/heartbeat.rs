//! The heartbeat: registers this task manager with the coordinator leader (the first
//! heartbeat does), follows the leader across failovers, and reports the state and
//! counters of its subtasks, which is how the leader learns that they finished or failed.

use std::time::Duration;

use weir_proto::cluster::HeartbeatRequest;
use weir_proto::cluster::task_manager_registry_client::TaskManagerRegistryClient;

use super::deployed_jobs::DeployedJobs;
use crate::leader_client::{LeaderCallError, LeaderClient};

pub struct Heartbeat {
    pub task_manager_id: String,
    pub address: String,
    pub slots: u32,
    pub jobs: DeployedJobs,
}

impl Heartbeat {
    /// Heartbeats until the process ends.
    pub async fn run(self, mut leader: LeaderClient) -> Result<(), LeaderCallError> {
        let mut interval = Duration::from_millis(500);
        let mut registered = false;
        loop {
            let req = HeartbeatRequest {
                task_manager_id: self.task_manager_id.clone(),
                address: self.address.clone(),
                slots: self.slots,
                subtasks: self.jobs.reports(),
            };
            let sent = leader
                .call(|ch| {
                    let req = req.clone();
                    async move { TaskManagerRegistryClient::new(ch).heartbeat(req).await }
                })
                .await;
            match sent {
                Ok(resp) => {
                    if !registered {
                        tracing::info!(task_manager = %self.task_manager_id, slots = self.slots, "registered with the coordinator leader");
                        registered = true;
                    }
                    interval = Duration::from_millis(resp.interval_ms.max(50));
                }
                Err(LeaderCallError::Refused(status)) => {
                    tracing::error!(task_manager = %self.task_manager_id, error = %status.message(), "heartbeat refused");
                    registered = false;
                }
                Err(e) => {
                    tracing::warn!(task_manager = %self.task_manager_id, error = %e, "heartbeat not delivered; retrying");
                    registered = false;
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}
