//! What a coordinator's `/metrics` shows. Every coordinator: its Raft standing (term,
//! leader, commit and log indexes) and, from the replicated job records, each job's state,
//! attempt, checkpoints (count, and the latest one's duration, size, upload and barrier
//! alignment) and file-sink partition commits. The leader also shows what only it hears:
//! live task managers, follower replication and the watermark alignment groups.

use openraft::ServerState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN};
use weir_taskmanager::metrics::metric_families::{Labels, MetricFamilies, with};
use weir_taskmanager::metrics::process_metrics;

use crate::raft::cluster_state::{JobRecord, JobState};
use crate::raft::state_machine::StateMachineStore;
use crate::raft::types::{NodeId, Raft};
use crate::server::task_manager_registry::Registry;

pub struct CoordinatorMetrics {
    pub id: NodeId,
    pub raft: Raft,
    pub state: StateMachineStore,
    pub registry: Registry,
}

impl std::fmt::Debug for CoordinatorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorMetrics")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

const STATES: [JobState; 6] = [
    JobState::Scheduling,
    JobState::Running,
    JobState::Restarting,
    JobState::Finished,
    JobState::Failed,
    JobState::Cancelled,
];

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Scheduling => "scheduling",
        JobState::Running => "running",
        JobState::Restarting => "restarting",
        JobState::Finished => "finished",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

impl CoordinatorMetrics {
    pub fn gather(&self) -> MetricFamilies {
        let mut f = MetricFamilies::default();
        let me: Labels = vec![("coordinator", self.id.to_string())];
        process_metrics::collect(&mut f, &me);
        let leader = self.raft(&mut f, &me);
        self.state.read(|d| {
            for s in STATES {
                f.gauge(
                    "weir_jobs",
                    "Jobs in each state.",
                    &with(&me, "state", state_name(s)),
                    d.cluster.jobs.values().filter(|j| j.state == s).count() as f64,
                );
            }
            for job in d.cluster.jobs.values() {
                self.job(&mut f, &me, job, leader);
            }
        });
        if leader {
            let live = self.registry.live();
            f.gauge(
                "weir_task_managers_alive",
                "Task managers heartbeating the leader.",
                &me,
                live.len() as f64,
            );
            f.gauge(
                "weir_task_manager_slots_total",
                "Slots offered by the live task managers.",
                &me,
                live.iter().map(|t| f64::from(t.slots)).sum(),
            );
        }
        f
    }

    /// Raft metrics; returns whether this coordinator leads.
    fn raft(&self, f: &mut MetricFamilies, me: &Labels) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.state == ServerState::Leader;
        f.gauge("weir_raft_term", "The current Raft term.", me, m.current_term as f64);
        f.gauge(
            "weir_raft_leader",
            "The id of the Raft leader this coordinator knows (0: none).",
            me,
            m.current_leader.unwrap_or(0) as f64,
        );
        f.gauge(
            "weir_raft_is_leader",
            "1 on the Raft leader.",
            me,
            if leader { 1.0 } else { 0.0 },
        );
        f.gauge(
            "weir_raft_commit_index",
            "The last log index committed and applied to this coordinator's state machine.",
            me,
            m.last_applied.map_or(0, |l| l.index) as f64,
        );
        f.gauge(
            "weir_raft_last_log_index",
            "The last index in this coordinator's Raft log.",
            me,
            m.last_log_index.unwrap_or(0) as f64,
        );
        for (peer, matched) in m.replication.iter().flatten() {
            f.gauge(
                "weir_raft_replication_matched_index",
                "Leader only: the last log index each member is known to hold.",
                &with(me, "peer", peer),
                matched.map_or(0, |l| l.index) as f64,
            );
        }
        leader
    }

    fn job(&self, f: &mut MetricFamilies, me: &Labels, job: &JobRecord, leader: bool) {
        let l: Labels = [("job_id", job.job_id.clone()), ("job_name", job.name.clone())]
            .into_iter()
            .chain(me.iter().cloned())
            .collect();
        for s in STATES {
            f.gauge(
                "weir_job_state",
                "1 for the job's current state.",
                &with(&l, "state", state_name(s)),
                if job.state == s { 1.0 } else { 0.0 },
            );
        }
        if job.state.is_terminal() {
            return;
        }
        f.gauge(
            "weir_job_attempt",
            "The job's current attempt (restarts so far).",
            &l,
            job.attempt.into(),
        );
        f.counter(
            "weir_checkpoints_completed",
            "Checkpoints completed over the job's life.",
            &l,
            job.checkpoints_completed as f64,
        );
        if let Some(c) = job.checkpoints.last() {
            f.gauge(
                "weir_checkpoint_last_id",
                "The latest completed checkpoint.",
                &l,
                c.id as f64,
            );
            f.gauge(
                "weir_checkpoint_last_duration_seconds",
                "From trigger to completion, for the latest completed checkpoint.",
                &l,
                c.duration_ms as f64 / 1e3,
            );
            f.gauge(
                "weir_checkpoint_last_size_bytes",
                "Operator state the latest completed checkpoint refers to.",
                &l,
                c.state_bytes() as f64,
            );
            f.gauge(
                "weir_checkpoint_last_uploaded_bytes",
                "State the latest completed checkpoint uploaded (the rest it shares with earlier ones).",
                &l,
                c.uploaded_bytes() as f64,
            );
            f.gauge(
                "weir_checkpoint_last_alignment_seconds",
                "The longest barrier alignment of any subtask in the latest completed checkpoint.",
                &l,
                c.alignment_ms as f64 / 1e3,
            );
            f.gauge(
                "weir_checkpoint_last_completed_timestamp_seconds",
                "When the latest checkpoint completed (seconds since the epoch).",
                &l,
                c.completed_at_ms as f64 / 1e3,
            );
        }
        for (sink, ledger) in &job.partitions {
            let s = with(&l, "sink", sink);
            f.counter(
                "weir_sink_committed_partitions",
                "Partitions the file sink committed.",
                &s,
                ledger.committed.partitions as f64,
            );
            f.counter(
                "weir_sink_committed_rows",
                "Rows in the partitions the file sink committed.",
                &s,
                ledger.committed.rows as f64,
            );
            f.counter(
                "weir_sink_committed_bytes",
                "Bytes in the partitions the file sink committed.",
                &s,
                ledger.committed.bytes as f64,
            );
            f.gauge(
                "weir_sink_pending_partitions",
                "Partitions with rows that wait for the commit watermark.",
                &s,
                ledger.pending.len() as f64,
            );
            if ledger.watermark > WATERMARK_MIN && ledger.watermark < WATERMARK_MAX {
                f.gauge(
                    "weir_sink_commit_watermark_milliseconds",
                    "The least commit watermark over the sink's subtasks at the latest checkpoint.",
                    &s,
                    ledger.watermark as f64,
                );
            }
        }
        if leader {
            for g in self.registry.watermarks.status(&job.job_id) {
                let gl = with(&l, "group", &g.group);
                if g.global_watermark > WATERMARK_MIN && g.global_watermark < WATERMARK_MAX {
                    f.gauge(
                        "weir_alignment_group_watermark_milliseconds",
                        "The least watermark over the alignment group's active source subtasks.",
                        &gl,
                        g.global_watermark as f64,
                    );
                }
                f.gauge(
                    "weir_alignment_group_throttled_partitions",
                    "Partitions of the group paused because they ran ahead.",
                    &gl,
                    g.throttled.len() as f64,
                );
            }
        }
    }
}

impl Collector for CoordinatorMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.gather().encode(&mut encoder)
    }
}
