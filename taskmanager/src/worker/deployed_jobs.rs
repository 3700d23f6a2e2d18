//! The job attempts running on this task manager: deploying this task manager's share of
//! an attempt (the leader sends the spec and the placement of every subtask; the job graph
//! derived from the spec is the same on every task manager), cancelling attempts, and the
//! per-subtask state, counters and sink reports that the heartbeat reports and
//! `coordinator local` summarizes. `coordinator local` runs its job through this same
//! code, as one task manager that holds every subtask.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{mpsc, watch};
use weir_common::JobGraph;
use weir_common::key_groups::KeyGroupRange;
use weir_common::source_position::RestoreFrom;
use weir_common::spec_loader::parse_spec;
use weir_common::validation::validate;
use weir_proto::cluster::{SplitReport, SubtaskReport, SubtaskState, VertexMetrics};
use weir_proto::taskmanager::DeployRequest;

use crate::dead_letter::DeadLetterWriter;
use crate::file_name::file_name_safe;
use crate::runtime::job_deployment::{
    DEFAULT_CHANNEL_CAPACITY, Exchange, JobContext, Restore, SubtaskLocation, deploy,
};
use crate::runtime::sink::SinkReport;
use crate::runtime::subtask_actor::{Cancel, SubtaskActor, SubtaskDone, TriggerCheckpoint};
use crate::runtime::subtask_metrics::JobMetrics;
use crate::runtime::watermark_alignment::AlignmentSlots;
use crate::state::checkpoint_storage::CheckpointStorage;
use crate::state::state_restore;
use crate::state::{StateServices, instance_name};

/// How long the reports of an ended attempt are kept for the heartbeat, so that a leader
/// elected meanwhile still learns how it ended.
const KEEP_ENDED: Duration = Duration::from_secs(600);
/// How long cancelling waits for subtasks to stop.
const STOP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("job {job}: attempt {attempt} is older than attempt {running}, which runs here")]
    Stale { job: String, attempt: u32, running: u32 },
    #[error("job {job}: the spec does not validate: {message}")]
    Spec { job: String, message: String },
    #[error("job {job}: no placement for subtask {subtask} of task {task}")]
    Placement { job: String, task: usize, subtask: u32 },
    #[error("job {job}: slot {slot} does not exist (this task manager has {slots})")]
    Slot { job: String, slot: usize, slots: usize },
    #[error("job {job}: {source}")]
    Task {
        job: String,
        #[source]
        source: crate::TaskError,
    },
    #[error("job {job}: {message}")]
    State { job: String, message: String },
}

/// Where a subtask of an attempt runs, as this task manager sees it.
#[derive(Debug, Clone)]
pub enum Placed {
    Here {
        slot: usize,
    },
    /// On the task manager serving the exchange at this address.
    Elsewhere {
        address: String,
    },
}

#[derive(Debug, Clone)]
pub struct SubtaskStatus {
    pub state: SubtaskState,
    pub failure: Option<String>,
    /// The failure only echoes another subtask's failure.
    pub consequence: bool,
    /// What the subtask's sink committed, when it ends in one and finished.
    pub report: Option<SinkReport>,
}

/// An attempt with subtasks running here, as metrics show it.
pub struct RunningAttempt {
    pub job_id: String,
    pub job_name: String,
    pub attempt: u32,
    /// Every vertex of the job: name and kind.
    pub vertices: Arc<[(String, &'static str)]>,
    /// The running subtasks here, (task, subtask), with the vertices of their chains.
    pub chains: Vec<((usize, u32), Vec<usize>)>,
    pub metrics: JobMetrics,
}

/// How an attempt ended on this task manager.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub dead_lettered: u64,
    pub dead_letter_file: PathBuf,
    pub ended_at: Instant,
}

/// The live state of one attempt's subtasks here.
#[derive(Debug, Clone, Default)]
pub struct AttemptState {
    /// (task, subtask) → state, for the subtasks deployed here.
    pub subtasks: BTreeMap<(usize, u32), SubtaskStatus>,
    /// Set once every subtask here has ended (or been cancelled) and the dead letters are
    /// on disk.
    pub ended: Option<AttemptEnd>,
}

impl AttemptState {
    /// A failure here, the cause rather than its echoes when both are present.
    pub fn failure(&self) -> Option<&str> {
        let failed = || self.subtasks.values().filter(|s| s.failure.is_some());
        failed()
            .find(|s| !s.consequence)
            .or_else(|| failed().next())
            .and_then(|s| s.failure.as_deref())
    }
}

struct JobAttempt {
    attempt: u32,
    /// The job's name and its vertices' names and kinds, for metrics.
    name: String,
    vertices: Arc<[(String, &'static str)]>,
    actors: Vec<Addr<SubtaskActor>>,
    state: watch::Receiver<AttemptState>,
    /// (task, subtask) → the vertices of its chain.
    chains: BTreeMap<(usize, u32), Vec<usize>>,
    metrics: JobMetrics,
}

#[derive(Clone)]
pub struct DeployedJobs {
    task_manager_id: String,
    slots: Vec<ArbiterHandle>,
    /// `None` in `coordinator local`, where every subtask is here.
    exchange: Option<Exchange>,
    work_dir: PathBuf,
    jobs: Arc<Mutex<HashMap<String, JobAttempt>>>,
    /// The aligned source subtasks running here.
    alignment: AlignmentSlots,
}

impl DeployedJobs {
    pub fn new(
        task_manager_id: String,
        slots: Vec<ArbiterHandle>,
        exchange: Option<Exchange>,
        work_dir: PathBuf,
    ) -> Self {
        Self {
            task_manager_id,
            slots,
            exchange,
            work_dir,
            jobs: Arc::default(),
            alignment: AlignmentSlots::default(),
        }
    }

    /// The aligned source subtasks, for the watermark report.
    pub fn alignment(&self) -> &AlignmentSlots {
        &self.alignment
    }

    /// Starts this task manager's subtasks of the attempt in `req`; returns how many.
    pub async fn deploy(&self, req: DeployRequest) -> Result<u32, DeployError> {
        let job = req.job_id.clone();
        // Parsing and validating plans DataFusion expressions: CPU work off the I/O threads.
        let spec_json = req.spec_json.clone();
        let graph = tokio::task::spawn_blocking(move || {
            let spec = parse_spec(&spec_json, &[]).map_err(|e| e.to_string())?;
            validate(&spec).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| DeployError::Spec {
            job: job.clone(),
            message: e.to_string(),
        })?
        .map_err(|message| DeployError::Spec {
            job: job.clone(),
            message,
        })?;
        let mut placement = HashMap::new();
        for p in &req.placements {
            let placed = if p.task_manager_id == self.task_manager_id {
                Placed::Here { slot: p.slot as usize }
            } else {
                Placed::Elsewhere {
                    address: p.address.clone(),
                }
            };
            placement.insert((p.task as usize, p.subtask), placed);
        }
        let restore = if req.restore_json.is_empty() {
            None
        } else {
            let from: RestoreFrom = serde_json::from_str(&req.restore_json).map_err(|e| DeployError::Spec {
                job: job.clone(),
                message: format!("bad restore point: {e}"),
            })?;
            Some(Restore::from(from))
        };
        self.run(&job, req.attempt, &graph, restore, &|task, subtask| {
            placement.get(&(task, subtask)).cloned()
        })
        .await
    }

    /// Starts the subtasks of one attempt of `graph` that `place` puts here; older attempts
    /// of the job here are cancelled first. Returns how many subtasks started.
    pub async fn run(
        &self,
        job: &str,
        attempt: u32,
        graph: &JobGraph,
        restore: Option<Restore>,
        place: &(dyn Fn(usize, u32) -> Option<Placed> + Sync),
    ) -> Result<u32, DeployError> {
        let running = self.jobs.lock().expect("jobs lock").get(job).map(|a| a.attempt);
        if let Some(running) = running {
            if running > attempt {
                return Err(DeployError::Stale {
                    job: job.to_string(),
                    attempt,
                    running,
                });
            }
            self.cancel(job, attempt.max(running + 1)).await;
        }
        let state = self.prepare_state(job, attempt, graph, restore.as_ref(), place).await?;
        let started = self.start(job, attempt, graph, restore, state, place)?;
        let subtasks = started.actors.len() as u32;
        tracing::info!(job, attempt, subtasks, "deployed");
        self.jobs.lock().expect("jobs lock").insert(job.to_string(), started);
        Ok(subtasks)
    }

    /// Opens the job's checkpoint storage and fetches the restored state of the stateful
    /// operator subtasks placed here. RocksDB instances of earlier attempts are removed:
    /// state always comes back from checkpoint storage.
    async fn prepare_state(
        &self,
        job: &str,
        attempt: u32,
        graph: &JobGraph,
        restore: Option<&Restore>,
        place: &(dyn Fn(usize, u32) -> Option<Placed> + Sync),
    ) -> Result<StateServices, DeployError> {
        let state_err = |message: String| DeployError::State {
            job: job.to_string(),
            message,
        };
        let job_root = self.work_dir.join("state").join(file_name_safe(job));
        let old = job_root.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(old)).await;
        let stateful = graph.checkpointed_state_vertices().next().is_some();
        let storage = match graph.checkpoint.as_ref() {
            Some(c) if stateful && self.exchange.is_some() => {
                let url = c.storage.as_deref().ok_or_else(|| {
                    state_err("checkpoint.storage is not set, and the job keeps checkpointed state".into())
                })?;
                Some(CheckpointStorage::open(url).map_err(|e| state_err(e.to_string()))?)
            }
            _ => None,
        };
        let local_root = job_root.join(format!("a{attempt}"));
        let mut restored = HashMap::new();
        let restore_storage = match restore {
            Some(Restore {
                state_storage: Some(url),
                ..
            }) => Some(CheckpointStorage::open(url).map_err(|e| state_err(e.to_string()))?),
            _ => storage.clone(),
        };
        if let (Some(r), Some(storage)) = (restore.filter(|r| !r.state.is_empty()), &restore_storage) {
            for v in graph.stateful_vertices() {
                let task = graph.task_of(v.id).id;
                for s in 0..v.parallelism {
                    if !matches!(place(task, s), Some(Placed::Here { .. })) {
                        continue;
                    }
                    let range = KeyGroupRange::of_subtask(s, graph.max_parallelism, v.parallelism);
                    let dir = local_root.join(instance_name(v, s));
                    let mut fetched = state_restore::fetch(storage, &r.state, v.id.0 as u32, range, &dir)
                        .await
                        .map_err(|e| state_err(format!("restoring {} subtask {s}: {e}", v.name)))?;
                    if r.state_storage.is_some() {
                        // A savepoint's files stay its owner's (Flink's no-claim mode): the
                        // job's first checkpoint uploads its state in full.
                        fetched.files.clear();
                    }
                    restored.insert((v.id.0, s), fetched);
                }
            }
        }
        Ok(StateServices {
            local_root,
            storage,
            restore_storage,
            runtime: tokio::runtime::Handle::current(),
            restored,
        })
    }

    fn start(
        &self,
        job: &str,
        attempt: u32,
        graph: &JobGraph,
        restore: Option<Restore>,
        state: StateServices,
        place: &dyn Fn(usize, u32) -> Option<Placed>,
    ) -> Result<JobAttempt, DeployError> {
        let mut chains = BTreeMap::new();
        let mut locations = HashMap::new();
        for task in &graph.tasks {
            for s in 0..task.parallelism {
                let placed = place(task.id, s).ok_or_else(|| DeployError::Placement {
                    job: job.to_string(),
                    task: task.id,
                    subtask: s,
                })?;
                let location = match placed {
                    Placed::Here { slot } => {
                        let handle = self.slots.get(slot).ok_or_else(|| DeployError::Slot {
                            job: job.to_string(),
                            slot,
                            slots: self.slots.len(),
                        })?;
                        chains.insert((task.id, s), task.vertices.iter().map(|v| v.0).collect());
                        SubtaskLocation::Local(handle.clone())
                    }
                    Placed::Elsewhere { address } => SubtaskLocation::Remote(address),
                };
                locations.insert((task.id, s), location);
            }
        }
        let dead_dir = graph
            .dead_letter_path
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.work_dir.join("dead-letter"));
        let run_id = JobContext::run_id(job, attempt);
        let file = format!("{run_id}-{}.jsonl", file_name_safe(&self.task_manager_id));
        let (dead_letters, dead_writer) = DeadLetterWriter::start(&dead_dir, &file);
        let metrics = JobMetrics::new(graph);
        let (done_tx, done_rx) = mpsc::channel(chains.len().max(1));
        let ctx = JobContext {
            run_id,
            job_id: job.to_string(),
            attempt,
            dead_letters,
            metrics: metrics.clone(),
            done: done_tx,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            exchange: self.exchange.clone(),
            // `coordinator local` has no leader to complete checkpoints.
            checkpointing: graph.checkpoint.is_some() && self.exchange.is_some(),
            restore,
            state,
            alignment: self.alignment.clone(),
        };
        let place = |task: usize, subtask: u32| locations[&(task, subtask)].clone();
        let actors = deploy(graph, &place, &ctx).map_err(|source| DeployError::Task {
            job: job.to_string(),
            source,
        })?;
        // Only the subtasks hold the dead-letter queue and the done channel from here on,
        // so both close when the last subtask ends.
        drop(ctx);
        let initial = AttemptState {
            subtasks: chains
                .keys()
                .map(|k| {
                    (
                        *k,
                        SubtaskStatus {
                            state: SubtaskState::SubtaskRunning,
                            failure: None,
                            consequence: false,
                            report: None,
                        },
                    )
                })
                .collect(),
            ended: None,
        };
        let (state_tx, state_rx) = watch::channel(initial);
        tokio::spawn(collect_results(
            job.to_string(),
            attempt,
            done_rx,
            state_tx,
            dead_writer,
        ));
        Ok(JobAttempt {
            attempt,
            name: graph.name.clone(),
            vertices: graph
                .vertices
                .iter()
                .map(|v| (v.name.clone(), v.kind.label()))
                .collect(),
            actors,
            state: state_rx,
            chains,
            metrics,
        })
    }

    /// The live state of the job's current attempt here.
    pub fn watch(&self, job: &str) -> Option<watch::Receiver<AttemptState>> {
        self.jobs.lock().expect("jobs lock").get(job).map(|a| a.state.clone())
    }

    /// The counters of the job's current attempt (every vertex, every subtask; only those
    /// running here move).
    pub fn metrics(&self, job: &str) -> Option<JobMetrics> {
        self.jobs.lock().expect("jobs lock").get(job).map(|a| a.metrics.clone())
    }

    /// The attempts here that have subtasks still running, with their counters.
    pub fn running(&self) -> Vec<RunningAttempt> {
        let jobs = self.jobs.lock().expect("jobs lock");
        jobs.iter()
            .filter(|(_, a)| a.state.borrow().ended.is_none())
            .map(|(job_id, a)| {
                let state = a.state.borrow();
                RunningAttempt {
                    job_id: job_id.clone(),
                    job_name: a.name.clone(),
                    attempt: a.attempt,
                    vertices: a.vertices.clone(),
                    chains: a
                        .chains
                        .iter()
                        .filter(|(k, _)| {
                            state
                                .subtasks
                                .get(k)
                                .is_some_and(|s| s.state == SubtaskState::SubtaskRunning)
                        })
                        .map(|(k, v)| (*k, v.clone()))
                        .collect(),
                    metrics: a.metrics.clone(),
                }
            })
            .collect()
    }

    /// Stops the attempts of `job` below `below_attempt` and waits until their subtasks
    /// have stopped; returns how many subtasks were stopped.
    pub async fn cancel(&self, job: &str, below_attempt: u32) -> u32 {
        if let Some(ex) = &self.exchange {
            ex.inbound.forget(job, below_attempt);
        }
        let removed = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            match jobs.get(job) {
                Some(a) if a.attempt < below_attempt => jobs.remove(job),
                _ => None,
            }
        };
        let Some(attempt) = removed else { return 0 };
        let running = attempt.actors.iter().filter(|a| a.connected()).count() as u32;
        for a in &attempt.actors {
            a.do_send(Cancel);
        }
        let deadline = Instant::now() + STOP_WAIT;
        while attempt.actors.iter().any(|a| a.connected()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(job, attempt = attempt.attempt, running, "cancelled");
        running
    }

    /// Starts checkpoint `id` of the job's attempt `attempt` at its source subtasks here
    /// (the others ignore the trigger). Returns false when that attempt does not run here.
    pub fn trigger_checkpoint(&self, job: &str, attempt: u32, id: u64) -> bool {
        let jobs = self.jobs.lock().expect("jobs lock");
        let Some(a) = jobs.get(job).filter(|a| a.attempt == attempt) else {
            return false;
        };
        for actor in &a.actors {
            // A full mailbox means the subtask is behind on control messages; this
            // checkpoint then times out and the next one is triggered.
            let _ = actor.try_send(TriggerCheckpoint(id));
        }
        true
    }

    /// Checkpoint `id` of the attempt completed: its two-phase sinks here publish.
    pub fn checkpoint_complete(&self, job: &str, attempt: u32, id: u64) -> bool {
        let jobs = self.jobs.lock().expect("jobs lock");
        let Some(a) = jobs.get(job).filter(|a| a.attempt == attempt) else {
            return false;
        };
        for (task, subtask) in a.chains.keys() {
            a.metrics.checkpoint(*task, *subtask).complete(id);
        }
        true
    }

    /// Stops every attempt still running here; returns how many subtasks were stopped.
    pub async fn cancel_all(&self) -> u32 {
        let jobs: Vec<String> = self
            .jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .filter(|(_, a)| a.state.borrow().ended.is_none())
            .map(|(job, _)| job.clone())
            .collect();
        let mut stopped = 0;
        for job in jobs {
            stopped += self.cancel(&job, u32::MAX).await;
        }
        stopped
    }

    /// The state and counters of every subtask deployed here, for the heartbeat; forgets
    /// attempts that ended long ago.
    pub fn reports(&self) -> Vec<SubtaskReport> {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        jobs.retain(|_, a| {
            a.state
                .borrow()
                .ended
                .as_ref()
                .is_none_or(|e| e.ended_at.elapsed() < KEEP_ENDED)
        });
        let mut out = Vec::new();
        for (job_id, a) in jobs.iter() {
            let state = a.state.borrow();
            for ((task, subtask), vertices) in &a.chains {
                let Some(s) = state.subtasks.get(&(*task, *subtask)) else {
                    continue;
                };
                let progress = a.metrics.checkpoint(*task, *subtask);
                let passed = progress.acknowledged.load(Ordering::Acquire);
                let (acknowledged, handles) = progress.state.lock().expect("state lock").acknowledge(passed);
                let alignment_ms = match *progress.alignment_ms.lock().expect("alignment lock") {
                    Some((id, ms)) if id == acknowledged => ms,
                    _ => 0,
                };
                out.push(SubtaskReport {
                    job_id: job_id.clone(),
                    attempt: a.attempt,
                    task: *task as u32,
                    subtask: *subtask,
                    state: s.state as i32,
                    failure: s.failure.clone().unwrap_or_default(),
                    failure_is_consequence: s.consequence,
                    checkpoint_acknowledged: acknowledged,
                    checkpoint_source_position: progress
                        .position_at(acknowledged)
                        .and_then(|p| serde_json::to_string(&p).ok())
                        .unwrap_or_default(),
                    checkpoint_state: if handles.is_empty() {
                        String::new()
                    } else {
                        serde_json::to_string(&handles).unwrap_or_default()
                    },
                    checkpoint_alignment_ms: alignment_ms,
                    sink_commit: progress
                        .sink_commit
                        .lock()
                        .expect("sink commit lock")
                        .as_ref()
                        .filter(|r| r.checkpoint == 0 || r.checkpoint == acknowledged)
                        .and_then(|r| serde_json::to_string(r).ok())
                        .unwrap_or_default(),
                    vertices: vertices
                        .iter()
                        .map(|v| {
                            let m = a.metrics.get(*v, *subtask);
                            VertexMetrics {
                                vertex: *v as u32,
                                records_in: m.records_in.load(Ordering::Relaxed),
                                records_out: m.records_out.load(Ordering::Relaxed),
                                watermark: m.watermark.load(Ordering::Relaxed),
                                dead_letters: m.dead_letters.load(Ordering::Relaxed),
                                late_records: m.late_records.load(Ordering::Relaxed),
                                max_disorder_ms: m.max_disorder_ms.load(Ordering::Relaxed),
                                busy_ns: m.busy_ns.load(Ordering::Relaxed),
                                backpressured_ns: m.backpressured_ns.load(Ordering::Relaxed),
                                input_queued: m.input_queued.load(Ordering::Relaxed),
                                input_capacity: m.input_capacity.load(Ordering::Relaxed),
                                bytes_in: m.bytes_in.load(Ordering::Relaxed),
                                bytes_out: m.bytes_out.load(Ordering::Relaxed),
                                errors: m.errors.load(Ordering::Relaxed),
                                splits: m
                                    .splits
                                    .lock()
                                    .expect("splits lock")
                                    .iter()
                                    .map(|s| SplitReport {
                                        name: s.name.clone(),
                                        watermark: s.watermark,
                                        paused: s.paused,
                                        lag: s.lag.unwrap_or(-1),
                                    })
                                    .collect(),
                            }
                        })
                        .collect(),
                });
            }
        }
        out
    }
}

/// Records each subtask's end; when the last one has ended (or been cancelled), flushes
/// the dead-letter file and marks the attempt ended.
async fn collect_results(
    job: String,
    attempt: u32,
    mut done: mpsc::Receiver<SubtaskDone>,
    state: watch::Sender<AttemptState>,
    dead_writer: DeadLetterWriter,
) {
    while let Some(d) = done.recv().await {
        let status = match d.result {
            Ok(report) => SubtaskStatus {
                state: SubtaskState::SubtaskFinished,
                failure: None,
                consequence: false,
                report,
            },
            Err(e) => SubtaskStatus {
                state: SubtaskState::SubtaskFailed,
                failure: Some(format!("subtask {} of [{}]: {e}", d.id.subtask, d.id.label)),
                consequence: e.is_consequence(),
                report: None,
            },
        };
        state.send_modify(|s| {
            s.subtasks.insert((d.id.task, d.id.subtask), status);
        });
    }
    let dead_letter_file = dead_writer.path().to_path_buf();
    let written = tokio::task::spawn_blocking(move || dead_writer.finish())
        .await
        .unwrap_or_else(|_| Err(crate::TaskError::Disconnected("dead-letter writer".into())));
    let dead_lettered = match written {
        Ok(n) => {
            if n > 0 {
                tracing::info!(job = %job, attempt, dead_lettered = n, "dead letters written");
            }
            n
        }
        Err(e) => {
            // The bad records did not reach their output: the attempt must not count as done.
            tracing::error!(job = %job, attempt, error = %e, "dead-letter output failed");
            state.send_modify(|s| {
                for st in s.subtasks.values_mut() {
                    st.state = SubtaskState::SubtaskFailed;
                    st.failure = Some(format!("dead-letter output: {e}"));
                    st.consequence = false;
                }
            });
            0
        }
    };
    state.send_modify(|s| {
        s.ended = Some(AttemptEnd {
            dead_lettered,
            dead_letter_file,
            ended_at: Instant::now(),
        })
    });
}
