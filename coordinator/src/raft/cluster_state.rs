//! The cluster metadata every coordinator agrees on, and the commands that change it.
//! Applying a command is deterministic: the same log gives the same state on every member.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use weir_common::source_position::{RestoreFrom, RestoredSource, SourcePosition};
use weir_common::state_handle::StateHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Scheduling,
    Running,
    Finished,
    Failed,
    Cancelled,
    Restarting,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Finished | JobState::Failed | JobState::Cancelled)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub name: String,
    /// The validated spec, as submitted (overrides applied).
    pub spec_json: String,
    pub state: JobState,
    pub attempt: u32,
    pub failure: Option<String>,
    pub submitted_at_ms: i64,
    /// Where the current attempt's subtasks run (empty until it is deployed).
    #[serde(default)]
    pub placement: Vec<PlacedSubtask>,
    /// The latest completed checkpoints, oldest first (at most `KEEP_CHECKPOINTS`).
    #[serde(default)]
    pub checkpoints: Vec<CompletedCheckpoint>,
    /// How many checkpoints completed over the job's life, every attempt.
    #[serde(default)]
    pub checkpoints_completed: u64,
    /// The savepoint the job started from: where it resumes until its first checkpoint.
    #[serde(default)]
    pub from_savepoint: Option<RestoreFrom>,
    /// Partition commits of every committing sink, by sink name.
    #[serde(default)]
    pub partitions: BTreeMap<String, PartitionLedger>,
}

/// How many commits a ledger remembers (for status and the notice of the newest).
pub const KEEP_COMMITS: usize = 48;

/// A committing sink's partitions: which wait, which are committed, and the watermark
/// that decides. Fed by completed checkpoints (and the end of input), advanced by the
/// leader's partition committer one partition at a time, in bucket order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLedger {
    /// Buckets that received rows and are not committed yet.
    pub pending: BTreeSet<i64>,
    /// The least commit watermark over the sink's subtasks as of the latest completed
    /// checkpoint (`i64::MAX` once the input ended).
    pub watermark: i64,
    /// The first and the last bucket that ever received rows: empty commits start at the
    /// first, and after the end of input stop at the last.
    pub first_bucket: Option<i64>,
    #[serde(default)]
    pub last_bucket: Option<i64>,
    /// Every bucket up to this one is committed.
    pub committed_through: Option<i64>,
    /// The latest commits, oldest first.
    pub recent: Vec<PartitionCommit>,
    /// How many partitions were committed, with their rows and bytes, over the job's life.
    #[serde(default)]
    pub committed: CommitTotals,
    /// The sink's input ended (every subtask finished): once the rest is committed, the
    /// job is finished.
    #[serde(default)]
    pub input_ended: bool,
}

/// Running totals of a sink's partition commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitTotals {
    pub partitions: u64,
    pub rows: u64,
    pub bytes: u64,
}

impl PartitionLedger {
    fn add(&mut self, watermark: i64, buckets: &[i64]) {
        self.watermark = self.watermark.max(watermark);
        for b in buckets {
            if self.committed_through.is_none_or(|c| *b > c) {
                self.pending.insert(*b);
            }
            self.first_bucket = Some(self.first_bucket.map_or(*b, |f| f.min(*b)));
            self.last_bucket = Some(self.last_bucket.map_or(*b, |l| l.max(*b)));
        }
    }

    /// The newest commit whose notice was not sent yet.
    pub fn unnoticed(&self) -> Option<&PartitionCommit> {
        self.recent.last().filter(|c| !c.notified)
    }
}

/// One committed partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCommit {
    pub bucket: i64,
    /// The partition's directory under the table root.
    pub partition: String,
    pub files: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    /// The watermark that completed it.
    pub watermark: i64,
    pub committed_at_ms: i64,
    /// Stays the same for every delivery of this commit's notice.
    pub notice_id: String,
    pub notified: bool,
}

/// A committing sink's part of a checkpoint: the least commit watermark over its
/// subtasks and the buckets they wrote since the previous checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkAtCheckpoint {
    pub sink: String,
    pub watermark: i64,
    pub buckets: Vec<i64>,
}

/// How many completed checkpoints a job record keeps.
pub const KEEP_CHECKPOINTS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedCheckpoint {
    pub id: u64,
    pub attempt: u32,
    pub duration_ms: u64,
    pub completed_at_ms: i64,
    /// Where every source subtask stood: a restore resumes reading there.
    #[serde(default)]
    pub sources: Vec<SourceSnapshot>,
    /// The keyed state of every stateful operator subtask.
    #[serde(default)]
    pub state: Vec<StateHandle>,
    /// The longest barrier alignment over the subtasks.
    #[serde(default)]
    pub alignment_ms: u64,
    /// Every committing sink's watermark and new buckets.
    #[serde(default)]
    pub sinks: Vec<SinkAtCheckpoint>,
}

impl CompletedCheckpoint {
    /// Size of the operator state in storage.
    pub fn state_bytes(&self) -> u64 {
        self.state.iter().map(StateHandle::bytes).sum()
    }

    /// What a new attempt resumes from when it restores this checkpoint.
    pub fn restore_from(&self) -> RestoreFrom {
        RestoreFrom {
            attempt: self.attempt,
            checkpoint: self.id,
            sources: self
                .sources
                .iter()
                .map(|s| RestoredSource {
                    task: s.task,
                    subtask: s.subtask,
                    position: s.position.clone(),
                })
                .collect(),
            state: self.state.clone(),
            state_storage: None,
            sink_watermarks: self.sinks.iter().map(|s| (s.sink.clone(), s.watermark)).collect(),
        }
    }

    /// What this checkpoint uploaded (the rest it shares with earlier ones).
    pub fn uploaded_bytes(&self) -> u64 {
        self.state.iter().map(|h| h.uploaded_bytes).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    pub task: u32,
    pub subtask: u32,
    pub position: SourcePosition,
}

/// One subtask of a deployed attempt and the task-manager slot it runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedSubtask {
    pub task: u32,
    pub subtask: u32,
    pub task_manager: String,
    pub slot: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCommand {
    SubmitJob {
        job_id: String,
        name: String,
        spec_json: String,
        submitted_at_ms: i64,
        /// A savepoint to start from.
        #[serde(default)]
        from_savepoint: Option<RestoreFrom>,
    },
    SetJobState {
        job_id: String,
        state: JobState,
        attempt: u32,
        failure: Option<String>,
        /// The attempt's placement; kept from before when empty and the attempt is the same.
        #[serde(default)]
        placement: Vec<PlacedSubtask>,
    },
    CancelJob {
        job_id: String,
    },
    /// Every subtask of the attempt acknowledged the checkpoint.
    CompleteCheckpoint {
        job_id: String,
        checkpoint: CompletedCheckpoint,
    },
    /// A committing sink's input ended: every bucket it wrote may be committed.
    SinkInputEnded {
        job_id: String,
        sink: String,
        buckets: Vec<i64>,
    },
    /// The partition committer compacted a partition and wrote its `_SUCCESS`.
    CommitPartition {
        job_id: String,
        sink: String,
        commit: PartitionCommit,
    },
    /// The commit's notice was delivered.
    NoticeSent {
        job_id: String,
        sink: String,
        bucket: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Applied,
    UnknownJob(String),
    /// The command raced with a state that makes it meaningless (e.g. cancelling a
    /// finished job); the state is unchanged.
    Ignored(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub jobs: BTreeMap<String, JobRecord>,
}

impl ClusterState {
    pub fn apply(&mut self, cmd: &ClusterCommand) -> CommandOutcome {
        match cmd {
            ClusterCommand::SubmitJob {
                job_id,
                name,
                spec_json,
                submitted_at_ms,
                from_savepoint,
            } => {
                if self.jobs.contains_key(job_id) {
                    return CommandOutcome::Ignored(format!("job {job_id} exists already"));
                }
                self.jobs.insert(
                    job_id.clone(),
                    JobRecord {
                        job_id: job_id.clone(),
                        name: name.clone(),
                        spec_json: spec_json.clone(),
                        state: JobState::Scheduling,
                        attempt: 0,
                        failure: None,
                        submitted_at_ms: *submitted_at_ms,
                        placement: Vec::new(),
                        checkpoints: Vec::new(),
                        checkpoints_completed: 0,
                        from_savepoint: from_savepoint.clone(),
                        partitions: BTreeMap::new(),
                    },
                );
                CommandOutcome::Applied
            }
            ClusterCommand::SetJobState {
                job_id,
                state,
                attempt,
                failure,
                placement,
            } => {
                let Some(job) = self.jobs.get_mut(job_id) else {
                    return CommandOutcome::UnknownJob(job_id.clone());
                };
                if job.state.is_terminal() {
                    return CommandOutcome::Ignored(format!("job {job_id} already ended ({:?})", job.state));
                }
                if !placement.is_empty() || job.attempt != *attempt {
                    job.placement = placement.clone();
                }
                job.state = *state;
                job.attempt = *attempt;
                job.failure = failure.clone();
                CommandOutcome::Applied
            }
            ClusterCommand::CompleteCheckpoint { job_id, checkpoint } => {
                let Some(job) = self.jobs.get_mut(job_id) else {
                    return CommandOutcome::UnknownJob(job_id.clone());
                };
                if job.state.is_terminal() || job.attempt != checkpoint.attempt {
                    return CommandOutcome::Ignored(format!(
                        "checkpoint {} of attempt {} of job {job_id}: the job moved on",
                        checkpoint.id, checkpoint.attempt
                    ));
                }
                if job.checkpoints.last().is_some_and(|c| c.id >= checkpoint.id) {
                    return CommandOutcome::Ignored(format!("checkpoint {} is not newer", checkpoint.id));
                }
                for s in &checkpoint.sinks {
                    job.partitions
                        .entry(s.sink.clone())
                        .or_insert_with(|| PartitionLedger {
                            watermark: i64::MIN,
                            ..Default::default()
                        })
                        .add(s.watermark, &s.buckets);
                }
                job.checkpoints.push(checkpoint.clone());
                job.checkpoints_completed += 1;
                let excess = job.checkpoints.len().saturating_sub(KEEP_CHECKPOINTS);
                job.checkpoints.drain(..excess);
                CommandOutcome::Applied
            }
            ClusterCommand::SinkInputEnded { job_id, sink, buckets } => {
                let Some(job) = self.jobs.get_mut(job_id) else {
                    return CommandOutcome::UnknownJob(job_id.clone());
                };
                let ledger = job.partitions.entry(sink.clone()).or_default();
                ledger.add(i64::MAX, buckets);
                ledger.input_ended = true;
                CommandOutcome::Applied
            }
            ClusterCommand::CommitPartition { job_id, sink, commit } => {
                let Some(ledger) = self.jobs.get_mut(job_id).and_then(|j| j.partitions.get_mut(sink)) else {
                    return CommandOutcome::UnknownJob(job_id.clone());
                };
                if ledger.committed_through.is_some_and(|c| c >= commit.bucket) {
                    return CommandOutcome::Ignored(format!("partition {} is committed already", commit.partition));
                }
                ledger.committed_through = Some(commit.bucket);
                ledger.pending = ledger.pending.split_off(&(commit.bucket + 1));
                ledger.recent.push(commit.clone());
                ledger.committed.partitions += 1;
                ledger.committed.rows += commit.rows;
                ledger.committed.bytes += commit.bytes;
                let excess = ledger.recent.len().saturating_sub(KEEP_COMMITS);
                ledger.recent.drain(..excess);
                CommandOutcome::Applied
            }
            ClusterCommand::NoticeSent { job_id, sink, bucket } => {
                let Some(ledger) = self.jobs.get_mut(job_id).and_then(|j| j.partitions.get_mut(sink)) else {
                    return CommandOutcome::UnknownJob(job_id.clone());
                };
                if let Some(c) = ledger.recent.iter_mut().find(|c| c.bucket == *bucket) {
                    c.notified = true;
                }
                CommandOutcome::Applied
            }
            ClusterCommand::CancelJob { job_id } => {
                let Some(job) = self.jobs.get_mut(job_id) else {
                    return CommandOutcome::UnknownJob(job_id.clone());
                };
                if job.state.is_terminal() {
                    return CommandOutcome::Ignored(format!("job {job_id} already ended ({:?})", job.state));
                }
                job.state = JobState::Cancelled;
                CommandOutcome::Applied
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(id: &str) -> ClusterCommand {
        ClusterCommand::SubmitJob {
            job_id: id.into(),
            name: "n".into(),
            spec_json: "{}".into(),
            submitted_at_ms: 1,
            from_savepoint: None,
        }
    }

    #[test]
    fn a_finished_job_stays_finished() {
        let mut s = ClusterState::default();
        assert_eq!(s.apply(&submit("j1")), CommandOutcome::Applied);
        let done = ClusterCommand::SetJobState {
            job_id: "j1".into(),
            state: JobState::Finished,
            attempt: 0,
            failure: None,
            placement: Vec::new(),
        };
        assert_eq!(s.apply(&done), CommandOutcome::Applied);
        assert!(matches!(
            s.apply(&ClusterCommand::CancelJob { job_id: "j1".into() }),
            CommandOutcome::Ignored(_)
        ));
        assert_eq!(s.jobs["j1"].state, JobState::Finished);
        assert!(matches!(s.apply(&submit("j1")), CommandOutcome::Ignored(_)));
        assert_eq!(
            s.apply(&ClusterCommand::CancelJob { job_id: "nope".into() }),
            CommandOutcome::UnknownJob("nope".into())
        );
    }
}
