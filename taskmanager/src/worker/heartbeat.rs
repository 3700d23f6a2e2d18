//! The heartbeat: registers this task manager with the coordinator leader (the first
//! heartbeat does), follows the leader across failovers, and reports the state and
//! counters of its subtasks, which is how the leader learns that they finished or failed.
//!
//! A task manager that has not reached any leader for [`FENCE_AFTER`] cancels its subtasks:
//! the leader declared it lost long before (3 s) and restarted its jobs elsewhere, so
//! whatever still runs here is a zombie that would only compete with the new attempt.

use std::time::{Duration, Instant};

use weir_proto::cluster::HeartbeatRequest;
use weir_proto::cluster::task_manager_registry_client::TaskManagerRegistryClient;

use super::deployed_jobs::DeployedJobs;
use crate::leader_client::{LeaderCallError, LeaderClient};

/// Longer than a leader election plus the client's retries (about 6 s), so a failover
/// alone never fences a healthy task manager.
pub const FENCE_AFTER: Duration = Duration::from_secs(15);

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
        let mut last_delivered = Instant::now();
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
                    last_delivered = Instant::now();
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
            if last_delivered.elapsed() >= FENCE_AFTER {
                let stopped = self.jobs.cancel_all().await;
                if stopped > 0 {
                    tracing::warn!(task_manager = %self.task_manager_id, stopped, "no leader reachable: cancelled every subtask");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}
