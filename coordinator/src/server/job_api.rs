//! The gRPC job API (`weir.job.v1.JobService`) on every coordinator. Writes go through the
//! Raft log; reads are linearizable (the leader confirms its leadership with a quorum and
//! waits until its state machine has caught up). A coordinator that is not the leader
//! answers UNAVAILABLE with the leader's address in the `weir-leader` metadata entry.

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use openraft::error::{ClientWriteError, RaftError};
use tonic::{Request, Response, Status};
use weir_common::source_position::{RestoreFrom, RestoredSource, SourcePosition};
use weir_common::spec_loader::parse_spec;
use weir_common::storage_roots::StorageRoots;
use weir_common::validation::validate;
use weir_common::{EdgePartitioning, JobGraph, JobSpec, VertexKind};
use weir_proto::job::job_service_server::JobService;
use weir_proto::job::{
    CancelRequest, CompletedCheckpoint as WireCheckpoint, GetRequest, JobState as WireState, JobStatus, ListRequest,
    ListResponse, PartitionCommitStatus, PlacedSubtask as WirePlaced, SavepointRequest, SavepointResponse, SinkCommits,
    SourceSnapshot as WireSourceSnapshot, SpecError, SubmitRequest, SubmitResponse, VertexEdge, VertexStatus,
};
use weir_taskmanager::state::checkpoint_storage::CheckpointStorage;

use crate::raft::cluster_state::{ClusterCommand, CommandOutcome, JobRecord, JobState};
use crate::raft::state_machine::StateMachineStore;
use crate::raft::types::{NodeId, Raft};
use crate::server::job_supervisor::SupervisorHandle;
use crate::server::not_leader;
use crate::watermark_aggregator::WatermarkAggregator;

const WATCH_POLL: Duration = Duration::from_millis(200);

pub struct JobApi {
    pub raft: Raft,
    pub state: StateMachineStore,
    /// This coordinator's address, as its peers know it.
    pub address: String,
    pub supervisor: SupervisorHandle,
    pub watermarks: WatermarkAggregator,
    /// Checkpoint storage for specs that name none.
    pub checkpoint_storage: Option<String>,
    /// Where specs may read and write.
    pub storage_roots: StorageRoots,
}

/// Turns "not the leader" into a redirect, anything else into UNAVAILABLE.
fn redirect<E: std::error::Error>(err: RaftError<NodeId, E>, leader: Option<String>) -> Status {
    not_leader(leader, &err.to_string())
}

impl JobApi {
    async fn write(&self, cmd: ClusterCommand) -> Result<CommandOutcome, Status> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(err) => {
                let leader = match &err {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                        f.leader_node.as_ref().map(|n| n.addr.clone())
                    }
                    _ => None,
                };
                Err(redirect(err, leader))
            }
        }
    }

    async fn linearizable(&self) -> Result<(), Status> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let leader = match &err {
                    RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f)) => {
                        f.leader_node.as_ref().map(|n| n.addr.clone())
                    }
                    _ => None,
                };
                Err(redirect(err, leader))
            }
        }
    }

    /// The job's record with the live per-vertex view the supervisor keeps.
    fn job(&self, job_id: &str) -> Result<JobStatus, Status> {
        let mut status = self
            .state
            .read(|d| d.cluster.jobs.get(job_id).map(to_wire))
            .ok_or_else(|| Status::not_found(format!("no job '{job_id}'")))?;
        status.vertices = self.supervisor.vertices(job_id);
        status.alignment = self.watermarks.status(job_id);
        let spec_json = self
            .state
            .read(|d| d.cluster.jobs.get(job_id).map(|j| j.spec_json.clone()));
        let graph = spec_json
            .and_then(|s| parse_spec(&s, &[]).ok())
            .and_then(|spec| validate(&spec).ok());
        if let Some(graph) = graph {
            status.edges = graph
                .edges
                .iter()
                .map(|e| VertexEdge {
                    from: e.from.0 as u32,
                    to: e.to.0 as u32,
                    partitioning: match e.partitioning {
                        EdgePartitioning::Forward => "forward",
                        EdgePartitioning::Hash { .. } => "hash",
                        EdgePartitioning::Rebalance => "rebalance",
                    }
                    .into(),
                })
                .collect();
            // A job that does not run has no live figures; its graph still shows.
            if status.vertices.is_empty() {
                status.vertices = graph
                    .vertices
                    .iter()
                    .map(|v| VertexStatus {
                        name: v.name.clone(),
                        parallelism: v.parallelism,
                        kind: v.kind.label().into(),
                        watermark: i64::MIN,
                        ..Default::default()
                    })
                    .collect();
            }
        }
        Ok(status)
    }
}

pub fn to_wire(job: &JobRecord) -> JobStatus {
    let state = match job.state {
        JobState::Scheduling => WireState::Scheduling,
        JobState::Running => WireState::Running,
        JobState::Finished => WireState::Finished,
        JobState::Failed => WireState::Failed,
        JobState::Cancelled => WireState::Cancelled,
        JobState::Restarting => WireState::Restarting,
    };
    JobStatus {
        job_id: job.job_id.clone(),
        name: job.name.clone(),
        state: state as i32,
        attempt: job.attempt,
        vertices: Vec::new(),
        failure: job.failure.clone().unwrap_or_default(),
        submitted_at_ms: job.submitted_at_ms,
        placement: job
            .placement
            .iter()
            .map(|p| WirePlaced {
                task: p.task,
                subtask: p.subtask,
                task_manager: p.task_manager.clone(),
                slot: p.slot,
            })
            .collect(),
        checkpoints: job
            .checkpoints
            .iter()
            .map(|c| WireCheckpoint {
                id: c.id,
                attempt: c.attempt,
                duration_ms: c.duration_ms,
                completed_at_ms: c.completed_at_ms,
                sources: c
                    .sources
                    .iter()
                    .map(|s| WireSourceSnapshot {
                        task: s.task,
                        subtask: s.subtask,
                        position: serde_json::to_string(&s.position).unwrap_or_default(),
                    })
                    .collect(),
                state_bytes: c.state_bytes(),
                uploaded_bytes: c.uploaded_bytes(),
                alignment_ms: c.alignment_ms,
            })
            .collect(),
        alignment: Vec::new(),
        commits: job
            .partitions
            .iter()
            .map(|(sink, l)| SinkCommits {
                sink: sink.clone(),
                watermark: l.watermark,
                pending: l.pending.len() as u32,
                recent: l
                    .recent
                    .iter()
                    .map(|c| PartitionCommitStatus {
                        partition: c.partition.clone(),
                        files: c.files.len() as u64,
                        rows: c.rows,
                        bytes: c.bytes,
                        notified: c.notified,
                        committed_at_ms: c.committed_at_ms,
                    })
                    .collect(),
            })
            .collect(),
        edges: Vec::new(),
    }
}

fn new_job_id(name: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .take(40)
        .collect();
    format!("{clean}-{:x}{:05x}", now.as_secs(), now.subsec_nanos() & 0xfffff)
}

/// Reads a savepoint's metadata and checks that `graph` can start from it: the same
/// source parallelism (source positions belong to one subtask each; a Kafka source may
/// change it) and the same stateful operators (their parallelism may change: state is
/// rescaled by key groups).
async fn read_savepoint(url: &str, graph: &JobGraph) -> Result<RestoreFrom, weir_common::SpecError> {
    let refuse = |message: String| weir_common::SpecError {
        path: "from_savepoint".into(),
        message: format!("{url}: {message}"),
    };
    let storage = CheckpointStorage::open(url).map_err(|e| refuse(e.to_string()))?;
    let bytes = storage.get("_metadata").await.map_err(|e| refuse(e.to_string()))?;
    let mut restore: RestoreFrom =
        serde_json::from_slice(&bytes).map_err(|e| refuse(format!("not a savepoint: {e}")))?;
    for task in &graph.tasks {
        let head = graph.vertex(task.head());
        if !matches!(head.kind, VertexKind::Source { .. }) {
            continue;
        }
        let saved = restore.sources.iter().filter(|s| s.task as usize == task.id).count();
        if saved != task.parallelism as usize {
            // A Kafka source rescales: every new subtask gets the union of the positions
            // and takes the offsets of the partitions it is assigned.
            let union = SourcePosition::kafka_union(
                restore
                    .sources
                    .iter()
                    .filter(|s| s.task as usize == task.id)
                    .map(|s| &s.position),
            )
            .ok_or_else(|| {
                refuse(format!(
                    "source {} ran with parallelism {saved} there and has {} here; only Kafka sources can be rescaled",
                    head.name, task.parallelism
                ))
            })?;
            restore.sources.retain(|s| s.task as usize != task.id);
            restore
                .sources
                .extend((0..task.parallelism).map(|subtask| RestoredSource {
                    task: task.id as u32,
                    subtask,
                    position: union.clone(),
                }));
        }
    }
    for h in &restore.state {
        let stateful = graph
            .vertices
            .get(h.vertex as usize)
            .is_some_and(|v| v.kind.has_checkpointed_state());
        if !stateful {
            return Err(refuse(format!(
                "it holds state of operator #{} that this job does not have",
                h.vertex
            )));
        }
    }
    restore.state_storage = Some(url.to_string());
    Ok(restore)
}

/// A job that checkpoints keyed state (or an exactly-once Kafka sink's write-ahead log)
/// needs storage every process can open.
fn check_checkpoint_storage(spec: &JobSpec, graph: &JobGraph) -> Result<(), weir_common::SpecError> {
    let Some(c) = &spec.checkpoint else { return Ok(()) };
    let refuse = |message: String| weir_common::SpecError {
        path: "checkpoint.storage".into(),
        message,
    };
    match &c.storage {
        Some(url) => CheckpointStorage::open(url)
            .map(|_| ())
            .map_err(|e| refuse(e.to_string())),
        None => match graph.checkpointed_state_vertices().next() {
            Some(v) => Err(refuse(format!(
                "required: {} '{}' keeps checkpointed state ({}); name a URL here or start the coordinators with --checkpoint-storage",
                v.kind.label(),
                v.name,
                if v.kind.has_keyed_state() {
                    "keyed state"
                } else {
                    "the write-ahead log of its Kafka transactions"
                }
            ))),
            None => Ok(()),
        },
    }
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit(&self, request: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let req = request.into_inner();
        let refused = |errors: weir_common::SpecErrors| {
            Response::new(SubmitResponse {
                job_id: String::new(),
                errors: errors
                    .0
                    .into_iter()
                    .map(|e| SpecError {
                        path: e.path,
                        message: e.message,
                    })
                    .collect(),
            })
        };
        let mut spec = match parse_spec(&req.spec_json, &req.overrides) {
            Ok(s) => s,
            Err(e) => return Ok(refused(e)),
        };
        // The spec's own paths, before the cluster's default checkpoint storage fills in.
        let mut outside = self.storage_roots.check_spec(&spec);
        if !req.from_savepoint.is_empty()
            && let Err(m) = self.storage_roots.check(&req.from_savepoint)
        {
            outside.push(weir_common::SpecError::new("from_savepoint", m));
        }
        if !outside.is_empty() {
            tracing::warn!(job = %spec.name, refused = outside.len(), "spec names paths outside the allowed storage roots");
            return Ok(refused(weir_common::SpecErrors(outside)));
        }
        if let Some(c) = spec.checkpoint.as_mut()
            && c.storage.is_none()
        {
            c.storage = self.checkpoint_storage.clone();
        }
        let graph = match validate(&spec) {
            Ok(g) => g,
            Err(e) => return Ok(refused(e)),
        };
        if let Err(e) = check_checkpoint_storage(&spec, &graph) {
            return Ok(refused(weir_common::SpecErrors(vec![e])));
        }
        let from_savepoint = if req.from_savepoint.is_empty() {
            None
        } else {
            match read_savepoint(&req.from_savepoint, &graph).await {
                Ok(r) => Some(r),
                Err(e) => return Ok(refused(weir_common::SpecErrors(vec![e]))),
            }
        };
        let job_id = new_job_id(&spec.name);
        let spec_json = serde_json::to_string(&spec).map_err(|e| Status::internal(e.to_string()))?;
        let submitted_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        // Claimed before the write, so the supervisor never sees the job unclaimed.
        self.supervisor.claim(&job_id);
        let written = self
            .write(ClusterCommand::SubmitJob {
                job_id: job_id.clone(),
                name: spec.name.clone(),
                spec_json,
                submitted_at_ms,
                from_savepoint,
            })
            .await;
        if let Err(e) = written {
            self.supervisor.unclaim(&job_id);
            return Err(e);
        }
        Ok(Response::new(SubmitResponse {
            job_id,
            errors: Vec::new(),
        }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<JobStatus>, Status> {
        self.linearizable().await?;
        self.job(&request.into_inner().job_id).map(Response::new)
    }

    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        self.linearizable().await?;
        let jobs = self.state.read(|d| d.cluster.jobs.values().map(to_wire).collect());
        Ok(Response::new(ListResponse {
            jobs,
            leader: self.address.clone(),
        }))
    }

    async fn cancel(&self, request: Request<CancelRequest>) -> Result<Response<JobStatus>, Status> {
        let job_id = request.into_inner().job_id;
        match self.write(ClusterCommand::CancelJob { job_id: job_id.clone() }).await? {
            CommandOutcome::UnknownJob(id) => Err(Status::not_found(format!("no job '{id}'"))),
            CommandOutcome::Applied | CommandOutcome::Ignored(_) => self.job(&job_id).map(Response::new),
        }
    }

    async fn savepoint(&self, request: Request<SavepointRequest>) -> Result<Response<SavepointResponse>, Status> {
        let req = request.into_inner();
        self.linearizable().await?;
        let timeout = self.state.read(|d| {
            let job = d
                .cluster
                .jobs
                .get(&req.job_id)
                .ok_or_else(|| Status::not_found(format!("no job '{}'", req.job_id)))?;
            if job.state != JobState::Running {
                return Err(Status::failed_precondition(format!(
                    "job {} is {:?}; savepoints are taken of running jobs",
                    req.job_id, job.state
                )));
            }
            let spec: JobSpec = serde_json::from_str(&job.spec_json).map_err(|e| Status::internal(e.to_string()))?;
            let c = spec.checkpoint.ok_or_else(|| {
                Status::failed_precondition(format!(
                    "job {} does not checkpoint (spec field checkpoint); it has no savepoints",
                    req.job_id
                ))
            })?;
            Ok(Duration::from_millis(c.timeout_ms.saturating_mul(2)))
        })?;
        let answer = self.supervisor.request_savepoint(&req.job_id, req.cancel);
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok((url, checkpoint_id)))) => Ok(Response::new(SavepointResponse { url, checkpoint_id })),
            Ok(Ok(Err(e))) => Err(Status::internal(format!("savepoint of {}: {e}", req.job_id))),
            Ok(Err(_)) => Err(Status::unavailable(format!(
                "savepoint of {}: the job stopped or this coordinator lost the leadership",
                req.job_id
            ))),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "savepoint of {}: no checkpoint completed within {timeout:?}",
                req.job_id
            ))),
        }
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<JobStatus, Status>> + Send>>;

    async fn watch(&self, request: Request<GetRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let job_id = request.into_inner().job_id;
        self.linearizable().await?;
        let first = self.job(&job_id)?;
        let state = self.state.clone();
        // Yields the job's status whenever it changes, until it ends.
        let stream = futures::stream::unfold((Some(first), None::<JobStatus>), move |(next, last)| {
            let state = state.clone();
            let job_id = job_id.clone();
            async move {
                let mut current = next?;
                loop {
                    if last.as_ref() != Some(&current) {
                        let ended =
                            [WireState::Finished, WireState::Failed, WireState::Cancelled].contains(&current.state());
                        let next = (!ended).then(|| current.clone());
                        return Some((Ok(current.clone()), (next, Some(current))));
                    }
                    tokio::time::sleep(WATCH_POLL).await;
                    current = state.read(|d| d.cluster.jobs.get(&job_id).map(to_wire))?;
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
