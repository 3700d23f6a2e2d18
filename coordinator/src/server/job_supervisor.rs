//! The leader's job supervisor (the JobMaster of every job): places jobs waiting for slots
//! on live task managers, deploys them, watches their subtasks through the task managers'
//! heartbeats, and decides when an attempt has finished or failed.
//!
//! An attempt fails when a subtask fails or a task manager running part of it is lost;
//! the job then restarts (a new attempt, after a back-off) on the slots that remain, until
//! its attempts are used up. Every state change goes through the Raft log, and a leader
//! only ever deploys attempts it wrote itself: a new leader restarts the jobs it finds
//! running as a new attempt, and task managers refuse attempts older than one they run,
//! so a deposed leader cannot bring an old attempt back. Without checkpoints a new attempt
//! replays its sources from the beginning and its sinks remove what earlier attempts wrote.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::oneshot;
use weir_common::event_time::WATERMARK_MIN;
use weir_common::partition_commit::SinkCommitReport;
use weir_common::source_position::RestoreFrom;
use weir_common::spec::CheckpointSpec;
use weir_common::spec_loader::parse_spec;
use weir_common::state_handle::StateHandle;
use weir_common::validation::validate;
use weir_common::{JobGraph, VertexKind};
use weir_proto::cluster::{SubtaskReport, SubtaskState};
use weir_proto::job::{PartitionStatus, VertexStatus};
use weir_proto::taskmanager::task_manager_service_client::TaskManagerServiceClient;
use weir_proto::taskmanager::{CancelRequest, DeployRequest, SubtaskPlacement, TriggerCheckpointRequest};
use weir_taskmanager::state::checkpoint_storage::{CheckpointStorage, StorageError};
use weir_taskmanager::state::job_prefix;
use weir_taskmanager::transport::{AuthChannel, ClusterTransport};

use crate::partition_committer::ended_and_settled;
use crate::raft::cluster_state::{
    ClusterCommand, CompletedCheckpoint, JobRecord, JobState, PlacedSubtask, SinkAtCheckpoint, SourceSnapshot,
};
use crate::raft::state_machine::StateMachineStore;
use crate::raft::types::Raft;
use crate::scheduler::{FreeSlots, place_in_cluster};
use crate::server::task_manager_registry::{HEARTBEAT_INTERVAL, LOST_AFTER, Registry};

const TICK: Duration = Duration::from_millis(200);
/// A new leader waits this long before placing jobs, so that task managers (which follow
/// the leader within a heartbeat or two) have registered with it.
const REGISTRATION_GRACE: Duration = Duration::from_millis(1500);
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(30);
const CANCEL_TIMEOUT: Duration = Duration::from_secs(15);
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failure that only echoes a peer's waits for its cause: a failed subtask is
/// reported within a heartbeat, a lost task manager declared within `LOST_AFTER`.
const CAUSE_WAIT: Duration = LOST_AFTER.saturating_add(HEARTBEAT_INTERVAL);

/// How long a probe waits for a task manager to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How often and how soon a failed job is restarted.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Attempts after the first one; a job whose attempt would exceed this fails.
    pub max_restarts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RestartPolicy {
    fn backoff(&self, failures: u32) -> Duration {
        self.initial_backoff
            .saturating_mul(1 << failures.min(16))
            .min(self.max_backoff)
    }
}

/// What the job API shares with the supervisor.
#[derive(Clone, Default)]
pub struct SupervisorHandle {
    /// Jobs this leader submitted, at attempt 0: it may deploy them without a new attempt.
    claims: Arc<Mutex<HashSet<String>>>,
    /// Per job, the live view of its vertices (from the latest heartbeats).
    vertices: Arc<Mutex<HashMap<String, Vec<VertexStatus>>>>,
    /// Per job, `savepoint` calls waiting for a checkpoint.
    savepoints: Arc<Mutex<HashMap<String, Vec<PendingSavepoint>>>>,
}

/// A `savepoint` call waiting for the checkpoint that answers it.
pub struct PendingSavepoint {
    pub cancel: bool,
    pub reply: oneshot::Sender<Result<(String, u64), String>>,
}

impl SupervisorHandle {
    /// Asks for a savepoint of `job` at its next checkpoint (triggered at once).
    pub fn request_savepoint(&self, job_id: &str, cancel: bool) -> oneshot::Receiver<Result<(String, u64), String>> {
        let (reply, answer) = oneshot::channel();
        self.savepoints
            .lock()
            .expect("savepoints lock")
            .entry(job_id.to_string())
            .or_default()
            .push(PendingSavepoint { cancel, reply });
        answer
    }

    fn savepoint_requested(&self, job_id: &str) -> bool {
        self.savepoints
            .lock()
            .expect("savepoints lock")
            .get(job_id)
            .is_some_and(|r| r.iter().any(|p| !p.reply.is_closed()))
    }

    fn take_savepoint_requests(&self, job_id: &str) -> Vec<PendingSavepoint> {
        let mut requests = self
            .savepoints
            .lock()
            .expect("savepoints lock")
            .remove(job_id)
            .unwrap_or_default();
        requests.retain(|p| !p.reply.is_closed());
        requests
    }

    fn requeue_savepoints(&self, job_id: &str, requests: Vec<PendingSavepoint>) {
        if requests.is_empty() {
            return;
        }
        self.savepoints
            .lock()
            .expect("savepoints lock")
            .entry(job_id.to_string())
            .or_default()
            .extend(requests);
    }

    pub fn claim(&self, job_id: &str) {
        self.claims.lock().expect("claims lock").insert(job_id.to_string());
    }

    /// Withdraws a claim whose job was never written.
    pub fn unclaim(&self, job_id: &str) {
        self.claims.lock().expect("claims lock").remove(job_id);
    }

    pub fn vertices(&self, job_id: &str) -> Vec<VertexStatus> {
        self.vertices
            .lock()
            .expect("vertices lock")
            .get(job_id)
            .cloned()
            .unwrap_or_default()
    }
}

enum Phase {
    Waiting {
        not_before: Instant,
    },
    Deployed {
        placement: Vec<SubtaskPlacement>,
    },
    /// Every subtask finished; the job finishes once its partitions are committed.
    Ending,
}

/// The checkpoint a new attempt resumes from: the job's latest completed one (source
/// positions and operator state); before the first one completes, the savepoint the job
/// was submitted from, if any.
fn restore_point(graph: &JobGraph, record: &JobRecord) -> Option<RestoreFrom> {
    let Some(last) = record.checkpoints.last().filter(|_| graph.checkpoint.is_some()) else {
        return record.from_savepoint.clone();
    };
    Some(last.restore_from())
}

/// A file the checkpoint refers to that it did not upload itself and that no kept
/// checkpoint holds: it may be gone from storage (a task manager missed a completion),
/// so the checkpoint must not complete.
fn missing_state_file(checkpoint: &CompletedCheckpoint, kept: &[CompletedCheckpoint]) -> Option<String> {
    let held: HashSet<&str> = kept
        .iter()
        .flat_map(|c| c.state.iter().flat_map(|h| h.files.iter().map(|f| f.path.as_str())))
        .collect();
    checkpoint
        .state
        .iter()
        .flat_map(|h| &h.files)
        .find(|f| f.checkpoint != checkpoint.id && !held.contains(f.path.as_str()))
        .map(|f| f.path.clone())
}

/// Copies checkpoint `checkpoint`'s state into `savepoints/<job>-<id>/` of the storage
/// at `url` and writes its `_metadata` (a `RestoreFrom` whose handles point into the
/// savepoint): a savepoint stands alone, so later checkpoints' retention never touches it.
/// Returns the savepoint's URL.
async fn write_savepoint(url: &str, job: &str, checkpoint: &CompletedCheckpoint) -> Result<String, StorageError> {
    let storage = CheckpointStorage::open(url)?;
    let dir = format!("savepoints/{}-{}", job_prefix(job), checkpoint.id);
    let mut metadata = checkpoint.restore_from();
    for h in &mut metadata.state {
        for f in &mut h.files {
            let to = format!("{}-{}/{}", h.vertex, h.subtask, f.name);
            storage.copy(&f.path, &format!("{dir}/{to}")).await?;
            f.path = to;
        }
    }
    let json = serde_json::to_vec_pretty(&metadata).expect("restore points serialize");
    storage.put(&format!("{dir}/_metadata"), json).await?;
    Ok(format!("{}/{dir}", url.trim_end_matches('/')))
}

/// The items reported for checkpoint `id`.
/// The reports of the committing sink subtasks, with their sink's name.
fn sink_reports(graph: &JobGraph, reports: &[(String, SubtaskReport)]) -> Vec<(String, SinkCommitReport)> {
    reports
        .iter()
        .filter(|(_, r)| !r.sink_commit.is_empty())
        .filter_map(|(_, r)| {
            let task = graph.tasks.get(r.task as usize)?;
            let report = serde_json::from_str(&r.sink_commit).ok()?;
            Some((graph.vertex(task.tail()).name.clone(), report))
        })
        .collect()
}

/// Per sink: the least watermark over its subtasks and every bucket any of them wrote.
fn sinks_at_checkpoint(reports: Vec<(String, SinkCommitReport)>) -> Vec<SinkAtCheckpoint> {
    let mut by_sink: BTreeMap<String, SinkAtCheckpoint> = BTreeMap::new();
    for (sink, r) in reports {
        let s = by_sink.entry(sink.clone()).or_insert_with(|| SinkAtCheckpoint {
            sink,
            watermark: i64::MAX,
            buckets: Vec::new(),
        });
        s.watermark = s.watermark.min(r.watermark);
        s.buckets.extend(r.buckets);
    }
    by_sink
        .into_values()
        .map(|mut s| {
            s.buckets.sort_unstable();
            s.buckets.dedup();
            s
        })
        .collect()
}

fn at_checkpoint<T>(items: Vec<(u64, T)>, id: u64) -> impl Iterator<Item = T> {
    items.into_iter().filter_map(move |(at, x)| (at == id).then_some(x))
}

/// What the subtasks' heartbeats say about checkpoints: the lowest checkpoint every
/// subtask acknowledged, and per subtask (with the checkpoint it refers to) source
/// positions, state handles and alignment times.
struct CheckpointAcks {
    acknowledged: u64,
    sources: Vec<(u64, SourceSnapshot)>,
    state: Vec<(u64, StateHandle)>,
    alignment_ms: Vec<(u64, u64)>,
    /// Committing sinks: (sink name, report).
    sinks: Vec<(String, SinkCommitReport)>,
}

#[derive(Debug, Clone, Copy)]
enum CheckpointCall {
    Trigger,
    Complete,
}

/// The checkpoints of a deployed attempt: the next id, and the one in flight.
struct CheckpointClock {
    next_id: u64,
    in_flight: Option<(u64, Instant)>,
    next_trigger: Instant,
    /// Savepoint requests the checkpoint in flight answers.
    savepoints: Vec<PendingSavepoint>,
}

struct Supervised {
    attempt: u32,
    checkpoints: CheckpointClock,
    /// When this attempt's first failure report arrived.
    first_failure_seen: Option<Instant>,
    /// Failures under this leader, for the back-off.
    failures: u32,
    graph: JobGraph,
    phase: Phase,
}

pub struct JobSupervisor {
    raft: Raft,
    state: StateMachineStore,
    registry: Registry,
    policy: RestartPolicy,
    handle: SupervisorHandle,
    jobs: HashMap<String, Supervised>,
    leader_since: Option<Instant>,
    channels: HashMap<String, AuthChannel>,
    transport: ClusterTransport,
}

impl JobSupervisor {
    pub fn new(
        raft: Raft,
        state: StateMachineStore,
        registry: Registry,
        policy: RestartPolicy,
        handle: SupervisorHandle,
        transport: ClusterTransport,
    ) -> Self {
        Self {
            raft,
            state,
            registry,
            policy,
            handle,
            jobs: HashMap::new(),
            leader_since: None,
            channels: HashMap::new(),
            transport,
        }
    }

    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.registry.is_leader() {
                if self.leader_since.take().is_some() {
                    tracing::info!("no longer the leader: supervising no job");
                    self.jobs.clear();
                    self.registry.clear();
                }
                continue;
            }
            let since = *self.leader_since.get_or_insert_with(Instant::now);
            // Ended jobs matter only while this leader still has their subtasks to stop.
            let records: Vec<JobRecord> = self.state.read(|d| {
                d.cluster
                    .jobs
                    .values()
                    .filter(|j| !j.state.is_terminal() || self.jobs.contains_key(&j.job_id))
                    .cloned()
                    .collect()
            });
            for record in records {
                self.supervise(&record, since).await;
            }
        }
    }

    async fn write(&self, cmd: ClusterCommand) -> bool {
        match self.raft.client_write(cmd).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "job state change not committed");
                false
            }
        }
    }

    async fn set_state(&self, job: &str, state: JobState, attempt: u32, failure: Option<String>) -> bool {
        self.write(ClusterCommand::SetJobState {
            job_id: job.to_string(),
            state,
            attempt,
            failure,
            placement: Vec::new(),
        })
        .await
    }

    async fn supervise(&mut self, record: &JobRecord, leader_since: Instant) {
        let job = record.job_id.as_str();
        if record.state.is_terminal() {
            self.registry.watermarks.forget(job);
            if let Some(sup) = self.jobs.remove(job)
                && matches!(sup.phase, Phase::Deployed { .. })
            {
                tracing::info!(job, state = ?record.state, "stopping the job's subtasks");
                self.cancel_everywhere(job, u32::MAX).await;
            }
            return;
        }
        if !self.jobs.contains_key(job) {
            let graph = match parse_spec(&record.spec_json, &[])
                .map_err(|e| e.to_string())
                .and_then(|s| validate(&s).map_err(|e| e.to_string()))
            {
                Ok(g) => g,
                Err(e) => {
                    self.set_state(
                        job,
                        JobState::Failed,
                        record.attempt,
                        Some(format!("invalid spec: {e}")),
                    )
                    .await;
                    return;
                }
            };
            // A job whose input had ended under the previous leader only waits for its
            // partition commits: restarting it would write its last rows again.
            let ended = {
                let mut committing = graph.committing_sinks().peekable();
                committing.peek().is_some()
                    && committing.all(|v| record.partitions.get(&v.name).is_some_and(|l| l.input_ended))
            };
            let claimed = self.handle.claims.lock().expect("claims lock").remove(job);
            let attempt = if ended {
                record.attempt
            } else if claimed && record.state == JobState::Scheduling && record.attempt == 0 {
                0
            } else {
                // Another leader may have deployed this attempt: start a new one.
                let next = record.attempt + 1;
                let (state, why) = match record.state {
                    JobState::Scheduling => (JobState::Scheduling, None),
                    _ => (
                        JobState::Restarting,
                        Some("restarted by a new coordinator leader".to_string()),
                    ),
                };
                if !self.set_state(job, state, next, why).await {
                    return;
                }
                next
            };
            self.jobs.insert(
                job.to_string(),
                Supervised {
                    attempt,
                    checkpoints: CheckpointClock {
                        // Ids keep growing across attempts and leaders.
                        next_id: record.checkpoints.last().map_or(1, |c| c.id + 1),
                        in_flight: None,
                        next_trigger: Instant::now(),
                        savepoints: Vec::new(),
                    },
                    first_failure_seen: None,
                    failures: 0,
                    graph,
                    phase: if ended {
                        Phase::Ending
                    } else {
                        Phase::Waiting {
                            not_before: Instant::now(),
                        }
                    },
                },
            );
        }
        match self.jobs[job].phase {
            Phase::Waiting { not_before } => {
                if Instant::now() >= not_before && leader_since.elapsed() >= REGISTRATION_GRACE {
                    self.try_deploy(job).await;
                }
            }
            Phase::Deployed { .. } => self.watch(job).await,
            Phase::Ending => self.await_commits(record).await,
        }
    }

    /// Slots used by the jobs this leader has deployed, per task manager.
    fn used_slots(&self) -> HashMap<String, BTreeSet<u32>> {
        let mut used: HashMap<String, BTreeSet<u32>> = HashMap::new();
        for sup in self.jobs.values() {
            if let Phase::Deployed { placement } = &sup.phase {
                for p in placement {
                    used.entry(p.task_manager_id.clone()).or_default().insert(p.slot);
                }
            }
        }
        used
    }

    async fn try_deploy(&mut self, job: &str) {
        let used = self.used_slots();
        let free: Vec<FreeSlots> = self
            .registry
            .live()
            .into_iter()
            .map(|tm| FreeSlots {
                free: (0..tm.slots)
                    .filter(|s| !used.get(&tm.id).is_some_and(|u| u.contains(s)))
                    .collect(),
                task_manager_id: tm.id,
                address: tm.address,
            })
            .collect();
        let sup = &self.jobs[job];
        let Some(placement) = place_in_cluster(&sup.graph, free) else {
            return;
        };
        let attempt = sup.attempt;
        let record = self.state.read(|d| d.cluster.jobs.get(job).cloned());
        let Some(record) = record else { return };
        let spec_json = record.spec_json.clone();
        let restore = restore_point(&sup.graph, &record);
        let restore_json = restore
            .as_ref()
            .and_then(|r| serde_json::to_string(r).ok())
            .unwrap_or_default();
        if let Some(r) = &restore {
            tracing::info!(job, attempt, checkpoint = r.checkpoint, "restoring from checkpoint");
        }
        // Stop whatever older attempt still runs anywhere before the new one writes.
        self.cancel_everywhere(job, attempt).await;
        let targets: BTreeMap<String, String> = placement
            .iter()
            .map(|p| (p.task_manager_id.clone(), p.address.clone()))
            .collect();
        let calls = targets.iter().map(|(id, address)| {
            let mut client = TaskManagerServiceClient::new(self.channel(address));
            let req = DeployRequest {
                job_id: job.to_string(),
                attempt,
                spec_json: spec_json.clone(),
                placements: placement.clone(),
                restore_json: restore_json.clone(),
            };
            async move {
                match tokio::time::timeout(DEPLOY_TIMEOUT, client.deploy(req)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(s)) => Err((id.clone(), s.code(), format!("deploying on {id}: {}", s.message()))),
                    Err(_) => Err((
                        id.clone(),
                        tonic::Code::DeadlineExceeded,
                        format!("deploying on {id}: timed out"),
                    )),
                }
            }
        });
        let results = join_all(calls).await;
        if let Some(Err((tm, code, e))) = results.into_iter().find(|r| r.is_err()) {
            if matches!(code, tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) {
                self.registry.suspect(&tm);
            }
            self.fail(job, e).await;
            return;
        }
        tracing::info!(job, attempt, task_managers = targets.len(), "job deployed");
        let running = ClusterCommand::SetJobState {
            job_id: job.to_string(),
            state: JobState::Running,
            attempt,
            failure: None,
            placement: placement
                .iter()
                .map(|p| PlacedSubtask {
                    task: p.task,
                    subtask: p.subtask,
                    task_manager: p.task_manager_id.clone(),
                    slot: p.slot,
                })
                .collect(),
        };
        if !self.write(running).await {
            return;
        }
        if let Some(sup) = self.jobs.get_mut(job) {
            sup.phase = Phase::Deployed { placement };
            let interval = sup.graph.checkpoint.as_ref().map(|c| c.interval_ms).unwrap_or(0);
            sup.checkpoints.in_flight = None;
            sup.checkpoints.next_trigger = Instant::now() + Duration::from_millis(interval);
        }
    }

    /// The job's input ended and everything it wrote is final.
    async fn finish(&mut self, job: &str, attempt: u32) {
        if self.set_state(job, JobState::Finished, attempt, None).await {
            tracing::info!(job, attempt, "job finished");
            // A finished job is never restored: its checkpoints go. (A cancelled or
            // failed job keeps its last ones.)
            if let Some(config) = self.jobs.remove(job).and_then(|s| s.graph.checkpoint) {
                self.discard_checkpoints(job, &config, 0).await;
            }
        }
    }

    /// An ended job finishes when every committing sink has committed and announced its
    /// last partition (the partition committer does that work).
    async fn await_commits(&mut self, record: &JobRecord) {
        let Some(sup) = self.jobs.get(&record.job_id) else {
            return;
        };
        let attempt = sup.attempt;
        let Ok(spec) = parse_spec(&record.spec_json, &[]) else {
            return;
        };
        let settled = spec.sinks.iter().all(|sink| {
            let Some(commit) = sink.parquet.as_ref().and_then(|p| p.commit.as_ref()) else {
                return true;
            };
            record
                .partitions
                .get(&sink.id)
                .is_some_and(|ledger| ended_and_settled(ledger, commit))
        });
        if settled {
            self.finish(&record.job_id, attempt).await;
        }
    }

    async fn watch(&mut self, job: &str) {
        let sup = &self.jobs[job];
        let Phase::Deployed { placement } = &sup.phase else {
            return;
        };
        let attempt = sup.attempt;
        let subtasks = placement.len();
        let task_managers: BTreeSet<String> = placement.iter().map(|p| p.task_manager_id.clone()).collect();
        let reports = self.registry.reports(job, attempt);
        self.publish_vertices(job, sup, &reports);
        let sink_commits = sink_reports(&sup.graph, &reports);
        let committing: Vec<String> = sup.graph.committing_sinks().map(|v| v.name.clone()).collect();
        let failed = |cause: bool| {
            reports
                .iter()
                .find(|(_, r)| r.state == SubtaskState::SubtaskFailed as i32 && (!cause || !r.failure_is_consequence))
                .map(|(tm, r)| (format!("on task manager {tm}: {}", r.failure), r.failure_is_consequence))
        };
        if let Some((why, echo)) = failed(true).or_else(|| failed(false)) {
            // A failure that only echoes a peer's usually arrives with (or just before) its
            // cause from another task manager's heartbeat: wait a moment for the cause.
            let first_seen = self
                .jobs
                .get_mut(job)
                .map(|s| *s.first_failure_seen.get_or_insert_with(Instant::now))
                .unwrap_or_else(Instant::now);
            if !echo || first_seen.elapsed() >= CAUSE_WAIT {
                self.fail(job, why).await;
                return;
            }
            // The cause is often a task manager that died: a refused connection says so
            // at once, where its silence takes LOST_AFTER to tell.
            if let Some(tm) = self.unreachable_task_manager(job).await {
                let why = format!("task manager {tm} lost (its address refuses connections)");
                self.registry.suspect(&tm);
                self.fail(job, why).await;
                return;
            }
        }
        if let Some(tm) = task_managers.iter().find(|tm| !self.registry.is_alive(tm)) {
            let why = format!("task manager {tm} lost (no heartbeat for {LOST_AFTER:?})");
            self.fail(job, why).await;
            return;
        }
        let finished = reports
            .iter()
            .filter(|(_, r)| r.state == SubtaskState::SubtaskFinished as i32)
            .count();
        if finished == subtasks {
            // The input ended: the committing sinks' partitions all complete. The job
            // finishes once the partition committer has committed and announced them.
            for sink in &committing {
                let buckets = sink_commits
                    .iter()
                    .filter(|(s, r)| s == sink && r.checkpoint == 0)
                    .flat_map(|(_, r)| r.buckets.iter().copied())
                    .collect();
                let cmd = ClusterCommand::SinkInputEnded {
                    job_id: job.to_string(),
                    sink: sink.clone(),
                    buckets,
                };
                if !self.write(cmd).await {
                    return;
                }
            }
            if committing.is_empty() {
                self.finish(job, attempt).await;
            } else if let Some(sup) = self.jobs.get_mut(job) {
                tracing::info!(job, attempt, "input ended; finishing once its partitions are committed");
                sup.phase = Phase::Ending;
            }
            return;
        }
        let running = reports
            .iter()
            .filter(|(_, r)| r.state == SubtaskState::SubtaskRunning as i32)
            .count();
        if running == subtasks {
            let acks = CheckpointAcks {
                acknowledged: reports
                    .iter()
                    .map(|(_, r)| r.checkpoint_acknowledged)
                    .min()
                    .unwrap_or(0),
                sources: reports
                    .iter()
                    .filter(|(_, r)| !r.checkpoint_source_position.is_empty())
                    .filter_map(|(_, r)| {
                        let position = serde_json::from_str(&r.checkpoint_source_position).ok()?;
                        Some((
                            r.checkpoint_acknowledged,
                            SourceSnapshot {
                                task: r.task,
                                subtask: r.subtask,
                                position,
                            },
                        ))
                    })
                    .collect(),
                state: reports
                    .iter()
                    .filter(|(_, r)| !r.checkpoint_state.is_empty())
                    .filter_map(|(_, r)| {
                        let handles: Vec<StateHandle> = serde_json::from_str(&r.checkpoint_state).ok()?;
                        Some(handles.into_iter().map(|h| (r.checkpoint_acknowledged, h)))
                    })
                    .flatten()
                    .collect(),
                alignment_ms: reports
                    .iter()
                    .map(|(_, r)| (r.checkpoint_acknowledged, r.checkpoint_alignment_ms))
                    .collect(),
                sinks: sink_commits,
            };
            self.checkpoint(job, acks).await;
        }
    }

    /// Completes the checkpoint in flight once every subtask acknowledged it, abandons it
    /// after its timeout, and triggers the next one when it is due. Checkpoints run only
    /// while every subtask runs (a finished subtask acknowledges nothing more).
    async fn checkpoint(&mut self, job: &str, acks: CheckpointAcks) {
        let Some(sup) = self.jobs.get(job) else { return };
        let Some(config) = sup.graph.checkpoint.clone() else {
            return;
        };
        let attempt = sup.attempt;
        let source_subtasks: usize = sup
            .graph
            .tasks
            .iter()
            .filter(|t| matches!(sup.graph.vertex(t.head()).kind, VertexKind::Source { .. }))
            .map(|t| t.parallelism as usize)
            .sum();
        let stateful_subtasks: usize = sup
            .graph
            .checkpointed_state_vertices()
            .map(|v| v.parallelism as usize)
            .sum();
        let committing_subtasks: usize = sup.graph.committing_sinks().map(|v| v.parallelism as usize).sum();
        if let Some((id, started)) = sup.checkpoints.in_flight {
            let positions: Vec<SourceSnapshot> = at_checkpoint(acks.sources, id).collect();
            let state: Vec<StateHandle> = at_checkpoint(acks.state, id).collect();
            let sinks: Vec<(String, SinkCommitReport)> =
                acks.sinks.into_iter().filter(|(_, r)| r.checkpoint == id).collect();
            if acks.acknowledged >= id
                && positions.len() == source_subtasks
                && state.len() == stateful_subtasks
                && sinks.len() == committing_subtasks
            {
                let completed_at_ms = chrono::Utc::now().timestamp_millis();
                let checkpoint = CompletedCheckpoint {
                    id,
                    attempt,
                    duration_ms: started.elapsed().as_millis() as u64,
                    completed_at_ms,
                    sources: positions,
                    state,
                    alignment_ms: at_checkpoint(acks.alignment_ms, id).max().unwrap_or(0),
                    sinks: sinks_at_checkpoint(sinks),
                };
                let kept = self.kept_checkpoints(job, config.retain);
                if let Some(missing) = missing_state_file(&checkpoint, &kept) {
                    tracing::warn!(job, attempt, checkpoint = id, file = %missing, "checkpoint refers to state a discarded checkpoint held; abandoned");
                    self.end_in_flight(job);
                    return;
                }
                if self
                    .write(ClusterCommand::CompleteCheckpoint {
                        job_id: job.to_string(),
                        checkpoint: checkpoint.clone(),
                    })
                    .await
                {
                    tracing::info!(
                        job,
                        attempt,
                        checkpoint = id,
                        ms = started.elapsed().as_millis() as u64,
                        "checkpoint complete"
                    );
                    // Recorded first, then announced: sinks publish only what a restore
                    // would keep.
                    self.tell_task_managers(job, attempt, id, CheckpointCall::Complete)
                        .await;
                    self.discard_checkpoints(job, &config, config.retain).await;
                    let requests = self
                        .jobs
                        .get_mut(job)
                        .map(|s| std::mem::take(&mut s.checkpoints.savepoints))
                        .unwrap_or_default();
                    if !requests.is_empty() {
                        self.answer_savepoints(job, &config, &checkpoint, requests).await;
                    }
                }
            } else if started.elapsed() < Duration::from_millis(config.timeout_ms) {
                return;
            } else {
                tracing::warn!(job, attempt, checkpoint = id, "checkpoint timed out; abandoned");
            }
            self.end_in_flight(job);
            return;
        }
        if Instant::now() < sup.checkpoints.next_trigger && !self.handle.savepoint_requested(job) {
            return;
        }
        let id = sup.checkpoints.next_id;
        self.tell_task_managers(job, attempt, id, CheckpointCall::Trigger).await;
        let requests = self.handle.take_savepoint_requests(job);
        if let Some(sup) = self.jobs.get_mut(job) {
            let now = Instant::now();
            sup.checkpoints.next_id = id + 1;
            sup.checkpoints.in_flight = Some((id, now));
            sup.checkpoints.next_trigger = now + Duration::from_millis(config.interval_ms);
            sup.checkpoints.savepoints = requests;
        }
    }

    /// The checkpoint in flight is over without completing: its savepoint requests wait
    /// for the next one.
    fn end_in_flight(&mut self, job: &str) {
        if let Some(sup) = self.jobs.get_mut(job) {
            sup.checkpoints.in_flight = None;
            let requests = std::mem::take(&mut sup.checkpoints.savepoints);
            self.handle.requeue_savepoints(job, requests);
        }
    }

    /// Copies a completed checkpoint out as a savepoint, answers the requests, and
    /// cancels the job if one of them asked for it.
    async fn answer_savepoints(
        &mut self,
        job: &str,
        config: &CheckpointSpec,
        checkpoint: &CompletedCheckpoint,
        requests: Vec<PendingSavepoint>,
    ) {
        let written = match &config.storage {
            Some(url) => write_savepoint(url, job, checkpoint).await.map_err(|e| e.to_string()),
            None => Err("the job has no checkpoint storage (checkpoint.storage)".to_string()),
        };
        match &written {
            Ok(url) => tracing::info!(job, checkpoint = checkpoint.id, url, "savepoint taken"),
            Err(e) => tracing::warn!(job, checkpoint = checkpoint.id, error = %e, "savepoint failed"),
        }
        let cancel = written.is_ok() && requests.iter().any(|r| r.cancel);
        for r in requests {
            let _ = r.reply.send(written.clone().map(|url| (url, checkpoint.id)));
        }
        if cancel
            && self
                .write(ClusterCommand::CancelJob {
                    job_id: job.to_string(),
                })
                .await
        {
            tracing::info!(job, "cancelled after its savepoint");
        }
    }

    /// The job's last `retain` completed checkpoints: the ones whose files stay in
    /// storage.
    fn kept_checkpoints(&self, job: &str, retain: u32) -> Vec<CompletedCheckpoint> {
        self.state.read(|d| {
            d.cluster.jobs.get(job).map_or_else(Vec::new, |j| {
                let skip = j.checkpoints.len().saturating_sub(retain as usize);
                j.checkpoints[skip..].to_vec()
            })
        })
    }

    /// Deletes from checkpoint storage every file of the job that none of its last
    /// `retain` checkpoints refers to. Runs before the next checkpoint is triggered, so
    /// nothing uploaded for a checkpoint that may still complete is touched. With
    /// `retain` 0 (the job finished) the job's whole tree goes, leftovers of killed
    /// writers included.
    async fn discard_checkpoints(&self, job: &str, config: &CheckpointSpec, retain: u32) {
        let Some(url) = &config.storage else { return };
        let kept: HashSet<String> = self
            .kept_checkpoints(job, retain)
            .iter()
            .flat_map(|c| c.state.iter().flat_map(|h| h.files.iter().map(|f| f.path.clone())))
            .collect();
        let discard = async {
            let storage = CheckpointStorage::open(url)?;
            if retain == 0 {
                return storage.delete_tree(&job_prefix(job)).await;
            }
            let mut deleted = 0;
            for path in storage.list(&job_prefix(job)).await? {
                if !kept.contains(&path) {
                    storage.delete(&path).await?;
                    deleted += 1;
                }
            }
            Ok::<_, StorageError>(deleted)
        };
        match discard.await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(job, deleted, "old checkpoint files deleted"),
            Err(e) => {
                tracing::warn!(job, error = %e, "deleting old checkpoint files failed; retried after the next checkpoint")
            }
        }
    }

    /// Sends a checkpoint trigger or completion to every task manager of the attempt.
    async fn tell_task_managers(&mut self, job: &str, attempt: u32, id: u64, call: CheckpointCall) {
        let Some(Phase::Deployed { placement }) = self.jobs.get(job).map(|s| &s.phase) else {
            return;
        };
        let completed_before = match call {
            CheckpointCall::Trigger => self
                .state
                .read(|d| d.cluster.jobs.get(job).and_then(|j| j.checkpoints.last().cloned()))
                .filter(|c| c.attempt == attempt)
                .map_or(0, |c| c.id),
            CheckpointCall::Complete => 0,
        };
        let targets: BTreeMap<String, String> = placement
            .iter()
            .map(|p| (p.task_manager_id.clone(), p.address.clone()))
            .collect();
        let calls: Vec<_> = targets
            .iter()
            .map(|(tm, address)| {
                let mut client = TaskManagerServiceClient::new(self.channel(address));
                let req = TriggerCheckpointRequest {
                    job_id: job.to_string(),
                    attempt,
                    checkpoint_id: id,
                    completed_before,
                };
                async move {
                    let sent = match call {
                        CheckpointCall::Trigger => {
                            tokio::time::timeout(TRIGGER_TIMEOUT, client.trigger_checkpoint(req)).await
                        }
                        CheckpointCall::Complete => {
                            tokio::time::timeout(TRIGGER_TIMEOUT, client.notify_checkpoint_complete(req)).await
                        }
                    };
                    match sent {
                        Ok(Ok(_)) => {}
                        Ok(Err(s)) => tracing::warn!(job, task_manager = %tm, checkpoint = id, ?call, error = %s.message(), "checkpoint call refused"),
                        Err(_) => tracing::warn!(job, task_manager = %tm, checkpoint = id, ?call, "checkpoint call timed out"),
                    }
                }
            })
            .collect();
        join_all(calls).await;
    }

    /// Restarts the job after a back-off, or fails it when its attempts are used up.
    async fn fail(&mut self, job: &str, why: String) {
        let Some(sup) = self.jobs.get(job) else { return };
        let (attempt, failures) = (sup.attempt, sup.failures);
        tracing::warn!(job, attempt, reason = %why, "job attempt failed");
        self.cancel_everywhere(job, attempt + 1).await;
        if attempt >= self.policy.max_restarts {
            let why = format!("{why} (after {} attempts)", attempt + 1);
            if self.set_state(job, JobState::Failed, attempt, Some(why)).await {
                self.jobs.remove(job);
            }
            return;
        }
        if !self.set_state(job, JobState::Restarting, attempt + 1, Some(why)).await {
            return;
        }
        let backoff = self.policy.backoff(failures);
        if let Some(sup) = self.jobs.get_mut(job) {
            sup.attempt = attempt + 1;
            sup.first_failure_seen = None;
            sup.failures = failures + 1;
            sup.phase = Phase::Waiting {
                not_before: Instant::now() + backoff,
            };
        }
    }

    /// Cancels the attempts of `job` below `below_attempt` on every live task manager.
    async fn cancel_everywhere(&mut self, job: &str, below_attempt: u32) {
        let live = self.registry.live();
        let calls = live.iter().map(|tm| {
            let mut client = TaskManagerServiceClient::new(self.channel(&tm.address));
            let req = CancelRequest {
                job_id: job.to_string(),
                below_attempt,
            };
            let id = tm.id.clone();
            async move {
                match tokio::time::timeout(CANCEL_TIMEOUT, client.cancel(req)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(s)) => tracing::warn!(job, task_manager = %id, error = %s.message(), "cancel refused"),
                    Err(_) => tracing::warn!(job, task_manager = %id, "cancel timed out"),
                }
            }
        });
        join_all(calls).await;
    }

    /// A task manager of the job's attempt that does not accept a TCP connection.
    async fn unreachable_task_manager(&self, job: &str) -> Option<String> {
        let Some(Phase::Deployed { placement }) = self.jobs.get(job).map(|s| &s.phase) else {
            return None;
        };
        let targets: BTreeMap<&str, &str> = placement
            .iter()
            .map(|p| (p.task_manager_id.as_str(), p.address.as_str()))
            .collect();
        for (tm, address) in targets {
            let connect = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await;
            if !matches!(connect, Ok(Ok(_))) {
                return Some(tm.to_string());
            }
        }
        None
    }

    fn channel(&mut self, address: &str) -> AuthChannel {
        let transport = &self.transport;
        self.channels
            .entry(address.to_string())
            .or_insert_with(|| {
                transport
                    .channel(address, Duration::from_secs(2))
                    .expect("task manager addresses are checked when they register")
            })
            .clone()
    }

    fn publish_vertices(&self, job: &str, sup: &Supervised, reports: &[(String, weir_proto::cluster::SubtaskReport)]) {
        let graph = &sup.graph;
        let mut vertices: Vec<VertexStatus> = graph
            .vertices
            .iter()
            .map(|v| VertexStatus {
                name: v.name.clone(),
                parallelism: v.parallelism,
                records_in: 0,
                records_out: 0,
                watermark: WATERMARK_MIN,
                task_managers: vec![String::new(); v.parallelism as usize],
                max_disorder_ms: 0,
                late_records: 0,
                dead_letters: 0,
                kind: v.kind.label().to_string(),
                busy_ns: 0,
                backpressured_ns: 0,
                input_fill: 0.0,
                bytes_in: 0,
                bytes_out: 0,
                errors: 0,
                partitions: Vec::new(),
            })
            .collect();
        let mut watermarks: Vec<Vec<i64>> = vec![Vec::new(); vertices.len()];
        for (tm, r) in reports {
            for m in &r.vertices {
                let Some(v) = vertices.get_mut(m.vertex as usize) else {
                    continue;
                };
                v.records_in += m.records_in;
                v.records_out += m.records_out;
                v.late_records += m.late_records;
                v.dead_letters += m.dead_letters;
                v.max_disorder_ms = v.max_disorder_ms.max(m.max_disorder_ms);
                v.busy_ns += m.busy_ns;
                v.backpressured_ns += m.backpressured_ns;
                v.bytes_in += m.bytes_in;
                v.bytes_out += m.bytes_out;
                v.errors += m.errors;
                if m.input_capacity > 0 {
                    v.input_fill = v.input_fill.max(m.input_queued as f64 / m.input_capacity as f64);
                }
                v.partitions.extend(m.splits.iter().map(|s| PartitionStatus {
                    subtask: r.subtask,
                    name: s.name.clone(),
                    watermark: s.watermark,
                    paused: s.paused,
                    lag: s.lag,
                }));
                if let Some(slot) = v.task_managers.get_mut(r.subtask as usize) {
                    *slot = tm.clone();
                }
                watermarks[m.vertex as usize].push(m.watermark);
            }
        }
        for v in &mut vertices {
            v.partitions
                .sort_by(|a, b| (a.subtask, &a.name).cmp(&(b.subtask, &b.name)));
        }
        for (v, wms) in vertices.iter_mut().zip(watermarks) {
            if wms.len() == v.parallelism as usize {
                v.watermark = wms.into_iter().min().unwrap_or(WATERMARK_MIN);
            }
        }
        self.handle
            .vertices
            .lock()
            .expect("vertices lock")
            .insert(job.to_string(), vertices);
    }
}
