//! Reports the watermarks of this task manager's aligned source subtasks to the
//! coordinator leader every [`REPORT_INTERVAL`] and hands each its group's allowance.
//! Separate from the heartbeat: alignment needs a shorter period, and a slow heartbeat
//! must not hold sources paused. When the leader cannot be reached the last allowances
//! stay (sources neither race ahead nor resume on a guess); a task manager cut off for
//! long is fenced by its heartbeat anyway.

use std::time::Duration;

use weir_proto::cluster::AlignWatermarksRequest;
use weir_proto::cluster::task_manager_registry_client::TaskManagerRegistryClient;

use crate::leader_client::LeaderClient;
use crate::runtime::watermark_alignment::AlignmentSlots;

/// How often aligned sources report (Flink's default update interval is 1 s; the
/// coordinator's answer bounds how far past `max_drift` a partition can run, so shorter
/// is tighter).
pub const REPORT_INTERVAL: Duration = Duration::from_millis(200);

pub struct WatermarkReporter {
    pub task_manager_id: String,
    pub slots: AlignmentSlots,
}

impl WatermarkReporter {
    /// Reports until the process ends.
    pub async fn run(self, mut leader: LeaderClient) {
        let mut ticker = tokio::time::interval(REPORT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let sources = self.slots.reports();
            if sources.is_empty() {
                continue;
            }
            let req = AlignWatermarksRequest {
                task_manager_id: self.task_manager_id.clone(),
                sources,
            };
            let answer = leader
                .call(|ch| {
                    let req = req.clone();
                    async move { TaskManagerRegistryClient::new(ch).align_watermarks(req).await }
                })
                .await;
            match answer {
                Ok(resp) => self.slots.apply(&resp.groups),
                Err(e) => {
                    tracing::warn!(task_manager = %self.task_manager_id, error = %e, "watermark report not delivered")
                }
            }
        }
    }
}
