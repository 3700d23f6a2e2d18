//! The leader's partition committer (Flink's partition commit policy, driven by the Raft
//! state): for every committing Parquet sink it takes the partition ledger the completed
//! checkpoints filled (`raft::cluster_state::PartitionLedger`) and commits, one partition
//! at a time in bucket order, each partition the sink's watermark has completed:
//! publishes its remaining parts, compacts them and writes `_SUCCESS`
//! (`partition_files`, on a blocking thread), records the commit in the Raft log, then
//! publishes the notice and records that it went out.
//!
//! Everything it needs is in the Raft state, so a new leader carries on where the old one
//! stopped: a partition whose commit was not recorded is committed again (the file steps
//! repeat safely), a recorded commit whose notice was not recorded is announced again
//! with the same notice id. It runs in the leader rather than in a task: commits are
//! rare, strictly ordered and decided by replicated state, and the table root is shared
//! storage every process reaches; compaction runs on a blocking thread so it never delays
//! Raft or the job supervisor.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use weir_common::partition_commit::bucket_complete;
use weir_common::spec::{ParquetSinkSpec, PartitionCommitSpec};
use weir_common::spec_loader::parse_spec;
use weir_taskmanager::connectors::filesystem::partition_files::{PartitionToCommit, commit_partition};
use weir_taskmanager::connectors::filesystem::partition_path::PartitionScheme;
use weir_taskmanager::connectors::kafka::commit_notice::{CommitNotice, NoticePublisher};

use crate::raft::cluster_state::{ClusterCommand, JobRecord, PartitionCommit, PartitionLedger};
use crate::raft::state_machine::StateMachineStore;
use crate::raft::types::{NodeId, Raft};

const TICK: Duration = Duration::from_millis(500);

pub struct PartitionCommitter {
    pub raft: Raft,
    pub state: StateMachineStore,
    pub id: NodeId,
    /// Notice producers, by job and sink (created on first use).
    publishers: HashMap<(String, String), Arc<NoticePublisher>>,
}

/// What one step found to do for one sink.
enum Work {
    Notice(PartitionCommit),
    Commit(i64),
}

impl PartitionCommitter {
    pub fn new(raft: Raft, state: StateMachineStore, id: NodeId) -> Self {
        Self {
            raft,
            state,
            id,
            publishers: HashMap::new(),
        }
    }

    pub async fn run(mut self) {
        loop {
            tokio::time::sleep(TICK).await;
            if self.raft.metrics().borrow().current_leader != Some(self.id) {
                self.publishers.clear();
                continue;
            }
            let jobs: Vec<JobRecord> = self.state.read(|d| {
                d.cluster
                    .jobs
                    .values()
                    .filter(|j| !j.partitions.is_empty())
                    .cloned()
                    .collect()
            });
            for job in jobs {
                let Ok(spec) = parse_spec(&job.spec_json, &[]) else {
                    continue;
                };
                for sink in &spec.sinks {
                    let Some(parquet) = &sink.parquet else { continue };
                    let Some(commit) = &parquet.commit else { continue };
                    // Each step is recorded before the next is chosen: read the ledger anew.
                    while self.step(&job.job_id, &sink.id, parquet, commit).await {}
                }
            }
        }
    }

    fn ledger(&self, job: &str, sink: &str) -> Option<(PartitionLedger, Option<(u32, u64)>)> {
        self.state.read(|d| {
            let j = d.cluster.jobs.get(job)?;
            let checkpoint = j.checkpoints.last().map(|c| (c.attempt, c.id));
            Some((j.partitions.get(sink)?.clone(), checkpoint))
        })
    }

    /// Does the next thing for one sink; false when there is nothing to do (or it failed:
    /// the next tick tries again).
    async fn step(&mut self, job: &str, sink: &str, spec: &ParquetSinkSpec, commit: &PartitionCommitSpec) -> bool {
        let Some((ledger, checkpoint)) = self.ledger(job, sink) else {
            return false;
        };
        let scheme = PartitionScheme::new(&spec.partition);
        let work = match ledger.unnoticed() {
            Some(c) if commit.notice.is_some() => Work::Notice(c.clone()),
            _ => match next_bucket(&ledger, commit.empty_partitions) {
                Some(b) if bucket_complete(scheme.bounds(b).1, commit.delay_ms, ledger.watermark) => Work::Commit(b),
                _ => return false,
            },
        };
        match work {
            Work::Notice(c) => self.announce(job, sink, commit, &c).await,
            Work::Commit(bucket) => {
                let partition = scheme.directory(bucket);
                let (root, dir) = (PathBuf::from(&spec.path), partition.clone());
                let (job_id, target, compression) = (job.to_string(), commit.target_file_bytes, spec.compression);
                let files = tokio::task::spawn_blocking(move || {
                    commit_partition(&PartitionToCommit {
                        dir: &root.join(&dir),
                        job_id: &job_id,
                        checkpoint,
                        target_file_bytes: target,
                        compression,
                    })
                })
                .await;
                let files = match files {
                    Ok(Ok(f)) => f,
                    Ok(Err(e)) => {
                        tracing::warn!(job, sink, partition, error = %e, "partition commit failed; retrying");
                        return false;
                    }
                    Err(e) => {
                        tracing::warn!(job, sink, partition, error = %e, "partition commit task failed; retrying");
                        return false;
                    }
                };
                let record = PartitionCommit {
                    bucket,
                    notice_id: format!("{job}/{sink}/{partition}"),
                    partition: partition.clone(),
                    files: files.files,
                    rows: files.rows,
                    bytes: files.bytes,
                    watermark: ledger.watermark,
                    committed_at_ms: chrono::Utc::now().timestamp_millis(),
                    notified: commit.notice.is_none(),
                };
                let (rows, n) = (record.rows, record.files.len());
                let cmd = ClusterCommand::CommitPartition {
                    job_id: job.to_string(),
                    sink: sink.to_string(),
                    commit: record,
                };
                match self.raft.client_write(cmd).await {
                    Ok(_) => {
                        tracing::info!(job, sink, partition, rows, files = n, "partition committed");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(job, sink, partition, error = %e, "partition commit not recorded");
                        false
                    }
                }
            }
        }
    }

    /// Publishes a recorded commit's notice, then records that it went out.
    async fn announce(&mut self, job: &str, sink: &str, commit: &PartitionCommitSpec, c: &PartitionCommit) -> bool {
        let Some(spec) = &commit.notice else { return false };
        let key = (job.to_string(), sink.to_string());
        let publisher = match self.publishers.get(&key) {
            Some(p) => p.clone(),
            None => match NoticePublisher::new(spec) {
                Ok(p) => self.publishers.entry(key).or_insert(Arc::new(p)).clone(),
                Err(e) => {
                    tracing::warn!(job, sink, error = %e, "commit notices cannot be sent");
                    return false;
                }
            },
        };
        let table = spec.table.clone().unwrap_or_else(|| sink.to_string());
        let commit_record = c.clone();
        let sent = tokio::task::spawn_blocking(move || {
            publisher.publish(&CommitNotice {
                notice_id: &commit_record.notice_id,
                table: &table,
                partition: &commit_record.partition,
                files: &commit_record.files,
                rows: commit_record.rows,
                bytes: commit_record.bytes,
                watermark: commit_record.watermark,
                committed_at_ms: commit_record.committed_at_ms,
            })
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(job, sink, partition = %c.partition, error = %e, "commit notice not delivered; retrying");
                return false;
            }
            Err(e) => {
                tracing::warn!(job, sink, error = %e, "commit notice task failed; retrying");
                return false;
            }
        }
        let cmd = ClusterCommand::NoticeSent {
            job_id: job.to_string(),
            sink: sink.to_string(),
            bucket: c.bucket,
        };
        self.raft.client_write(cmd).await.is_ok()
    }
}

/// Whether a sink whose input ended has nothing left to commit or announce (its job may
/// then finish).
pub fn ended_and_settled(ledger: &PartitionLedger, commit: &PartitionCommitSpec) -> bool {
    ledger.input_ended
        && next_bucket(ledger, commit.empty_partitions).is_none()
        && (commit.notice.is_none() || ledger.unnoticed().is_none())
}

/// The next bucket to commit: the first pending one, or with empty commits every bucket
/// from the first one that had rows.
fn next_bucket(ledger: &PartitionLedger, empty_partitions: bool) -> Option<i64> {
    let after = ledger.committed_through;
    if empty_partitions {
        let first = ledger.first_bucket?;
        let next = after.map_or(first, |c| (c + 1).max(first));
        // A live stream's watermark bounds the empty ones; an ended one's rows do.
        let ended = ledger.watermark == i64::MAX;
        return (!ended || ledger.last_bucket.is_some_and(|l| next <= l)).then_some(next);
    }
    ledger.pending.iter().copied().find(|b| after.is_none_or(|c| *b > c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_buckets_go_in_order_and_empty_commits_fill_the_gaps() {
        let mut ledger = PartitionLedger {
            pending: [3, 7].into_iter().collect(),
            first_bucket: Some(3),
            ..Default::default()
        };
        assert_eq!(next_bucket(&ledger, false), Some(3));
        assert_eq!(next_bucket(&ledger, true), Some(3));
        ledger.committed_through = Some(3);
        ledger.pending.remove(&3);
        assert_eq!(next_bucket(&ledger, false), Some(7));
        assert_eq!(next_bucket(&ledger, true), Some(4), "bucket 4 had no rows");
        assert_eq!(next_bucket(&PartitionLedger::default(), true), None);
        ledger.watermark = i64::MAX;
        ledger.last_bucket = Some(7);
        ledger.committed_through = Some(7);
        assert_eq!(next_bucket(&ledger, true), None, "the input ended with bucket 7");
    }

    #[test]
    fn an_ended_sink_is_settled_once_its_last_partition_is_committed_and_announced() {
        let commit: PartitionCommitSpec = serde_json::from_value(serde_json::json!({
            "notice": {"bootstrap_servers": "127.0.0.1:9092", "topic": "notices"}
        }))
        .unwrap();
        let mut ledger = PartitionLedger {
            pending: [5].into_iter().collect(),
            first_bucket: Some(5),
            last_bucket: Some(5),
            watermark: i64::MAX,
            ..Default::default()
        };
        assert!(!ended_and_settled(&ledger, &commit), "the input has not ended");
        ledger.input_ended = true;
        assert!(!ended_and_settled(&ledger, &commit), "bucket 5 is pending");
        ledger.pending.clear();
        ledger.committed_through = Some(5);
        ledger.recent.push(PartitionCommit {
            bucket: 5,
            partition: "hour=05".into(),
            files: Vec::new(),
            rows: 1,
            bytes: 1,
            watermark: i64::MAX,
            committed_at_ms: 0,
            notice_id: "j/s/hour=05".into(),
            notified: false,
        });
        assert!(!ended_and_settled(&ledger, &commit), "its notice has not gone out");
        ledger.recent[0].notified = true;
        assert!(ended_and_settled(&ledger, &commit));
    }
}
