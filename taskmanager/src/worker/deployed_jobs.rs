//! The job attempts running on this task manager: deploying this task manager's share of
//! an attempt (the leader sends the spec and the placement of every subtask; the job graph
//! derived from the spec is the same on every task manager), cancelling attempts, and the
//! per-subtask state and counters the heartbeat reports.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc;
use weir_common::JobGraph;
use weir_common::spec_loader::parse_spec;
use weir_common::validation::validate;
use weir_proto::cluster::{SubtaskReport, SubtaskState, VertexMetrics};
use weir_proto::taskmanager::DeployRequest;

use crate::dead_letter::DeadLetterWriter;
use crate::runtime::job_deployment::{DEFAULT_CHANNEL_CAPACITY, Exchange, JobContext, SubtaskLocation, deploy};
use crate::runtime::subtask_actor::{Cancel, SubtaskActor, SubtaskDone};
use crate::runtime::subtask_metrics::JobMetrics;

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
    Slot { job: String, slot: u32, slots: usize },
    #[error("job {job}: {source}")]
    Task {
        job: String,
        #[source]
        source: crate::TaskError,
    },
}

#[derive(Debug, Clone, Default)]
struct SubtaskStatus {
    state: i32,
    failure: String,
}

struct JobAttempt {
    attempt: u32,
    actors: Vec<Addr<SubtaskActor>>,
    /// (task, subtask) → state, for the subtasks deployed here.
    status: Arc<Mutex<BTreeMap<(usize, u32), SubtaskStatus>>>,
    /// (task, subtask) → the vertices of its chain.
    chains: BTreeMap<(usize, u32), Vec<usize>>,
    metrics: JobMetrics,
    ended_at: Arc<Mutex<Option<Instant>>>,
}

#[derive(Clone)]
pub struct DeployedJobs {
    task_manager_id: String,
    slots: Vec<ArbiterHandle>,
    exchange: Exchange,
    work_dir: PathBuf,
    jobs: Arc<Mutex<HashMap<String, JobAttempt>>>,
}

impl DeployedJobs {
    pub fn new(task_manager_id: String, slots: Vec<ArbiterHandle>, exchange: Exchange, work_dir: PathBuf) -> Self {
        Self {
            task_manager_id,
            slots,
            exchange,
            work_dir,
            jobs: Arc::default(),
        }
    }

    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// Starts this task manager's subtasks of the attempt in `req`; returns how many.
    pub async fn deploy(&self, req: DeployRequest) -> Result<u32, DeployError> {
        let job = req.job_id.clone();
        let running = self.jobs.lock().expect("jobs lock").get(&job).map(|a| a.attempt);
        if let Some(running) = running {
            if running > req.attempt {
                return Err(DeployError::Stale {
                    job,
                    attempt: req.attempt,
                    running,
                });
            }
            self.cancel(&job, req.attempt.max(running + 1)).await;
        }
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
        let attempt = self.start(&req, &graph)?;
        let subtasks = attempt.actors.len() as u32;
        tracing::info!(job = %job, attempt = req.attempt, subtasks, "deployed");
        self.jobs.lock().expect("jobs lock").insert(job, attempt);
        Ok(subtasks)
    }

    fn start(&self, req: &DeployRequest, graph: &JobGraph) -> Result<JobAttempt, DeployError> {
        let job = &req.job_id;
        let mut placement = HashMap::new();
        for p in &req.placements {
            placement.insert((p.task as usize, p.subtask), p);
        }
        let mut chains = BTreeMap::new();
        for task in &graph.tasks {
            for s in 0..task.parallelism {
                let p = placement.get(&(task.id, s)).ok_or_else(|| DeployError::Placement {
                    job: job.clone(),
                    task: task.id,
                    subtask: s,
                })?;
                if p.task_manager_id == self.task_manager_id {
                    if p.slot as usize >= self.slots.len() {
                        return Err(DeployError::Slot {
                            job: job.clone(),
                            slot: p.slot,
                            slots: self.slots.len(),
                        });
                    }
                    chains.insert((task.id, s), task.vertices.iter().map(|v| v.0).collect());
                }
            }
        }
        let dead_dir = graph
            .dead_letter_path
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.work_dir.join("dead-letter"));
        let run_id = JobContext::run_id(job, req.attempt);
        let file = format!("{run_id}-{}.jsonl", sanitize(&self.task_manager_id));
        let (dead_letters, dead_writer) = DeadLetterWriter::start(&dead_dir, &file);
        let metrics = JobMetrics::new(graph.vertices.iter().map(|v| v.parallelism));
        let (done_tx, done_rx) = mpsc::channel(chains.len().max(1));
        let ctx = JobContext {
            run_id,
            job_id: job.clone(),
            attempt: req.attempt,
            dead_letters,
            metrics: metrics.clone(),
            done: done_tx,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            exchange: Some(self.exchange.clone()),
        };
        let place = |task: usize, subtask: u32| {
            let p = placement[&(task, subtask)];
            if p.task_manager_id == self.task_manager_id {
                SubtaskLocation::Local(self.slots[p.slot as usize].clone())
            } else {
                SubtaskLocation::Remote(p.address.clone())
            }
        };
        let actors = deploy(graph, &place, &ctx).map_err(|source| DeployError::Task {
            job: job.clone(),
            source,
        })?;
        drop(ctx);
        let status: Arc<Mutex<BTreeMap<(usize, u32), SubtaskStatus>>> = Arc::new(Mutex::new(
            chains
                .keys()
                .map(|k| {
                    (
                        *k,
                        SubtaskStatus {
                            state: SubtaskState::SubtaskRunning as i32,
                            failure: String::new(),
                        },
                    )
                })
                .collect(),
        ));
        let ended_at = Arc::new(Mutex::new(None));
        tokio::spawn(collect_results(
            job.clone(),
            req.attempt,
            done_rx,
            status.clone(),
            ended_at.clone(),
            dead_writer,
        ));
        Ok(JobAttempt {
            attempt: req.attempt,
            actors,
            status,
            chains,
            metrics,
            ended_at,
        })
    }

    /// Stops the attempts of `job` below `below_attempt` and waits until their subtasks
    /// have stopped; returns how many subtasks were stopped.
    pub async fn cancel(&self, job: &str, below_attempt: u32) -> u32 {
        self.exchange.inbound.forget(job, below_attempt);
        let removed = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            match jobs.get(job) {
                Some(a) if a.attempt < below_attempt => jobs.remove(job),
                _ => None,
            }
        };
        let Some(attempt) = removed else { return 0 };
        for a in &attempt.actors {
            a.do_send(Cancel);
        }
        let deadline = Instant::now() + STOP_WAIT;
        while attempt.actors.iter().any(|a| a.connected()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stopped = attempt.actors.iter().filter(|a| !a.connected()).count() as u32;
        tracing::info!(job = %job, attempt = attempt.attempt, stopped, "cancelled");
        stopped
    }

    /// Stops every attempt still running here; returns how many subtasks were stopped.
    pub async fn cancel_all(&self) -> u32 {
        let jobs: Vec<String> = self
            .jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .filter(|(_, a)| a.ended_at.lock().expect("ended lock").is_none())
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
            a.ended_at
                .lock()
                .expect("ended lock")
                .is_none_or(|t| t.elapsed() < KEEP_ENDED)
        });
        let mut out = Vec::new();
        for (job_id, a) in jobs.iter() {
            let status = a.status.lock().expect("status lock");
            for ((task, subtask), vertices) in &a.chains {
                let s = status.get(&(*task, *subtask)).cloned().unwrap_or_default();
                out.push(SubtaskReport {
                    job_id: job_id.clone(),
                    attempt: a.attempt,
                    task: *task as u32,
                    subtask: *subtask,
                    state: s.state,
                    failure: s.failure,
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
/// the dead-letter file.
async fn collect_results(
    job: String,
    attempt: u32,
    mut done: mpsc::Receiver<SubtaskDone>,
    status: Arc<Mutex<BTreeMap<(usize, u32), SubtaskStatus>>>,
    ended_at: Arc<Mutex<Option<Instant>>>,
    dead_writer: DeadLetterWriter,
) {
    while let Some(d) = done.recv().await {
        let s = match &d.result {
            Ok(_) => SubtaskStatus {
                state: SubtaskState::SubtaskFinished as i32,
                failure: String::new(),
            },
            Err(e) => SubtaskStatus {
                state: SubtaskState::SubtaskFailed as i32,
                failure: format!("subtask {} of [{}]: {e}", d.id.subtask, d.id.label),
            },
        };
        status.lock().expect("status lock").insert((d.id.task, d.id.subtask), s);
    }
    match tokio::task::spawn_blocking(move || dead_writer.finish()).await {
        Ok(Ok(n)) if n > 0 => tracing::info!(job = %job, attempt, dead_lettered = n, "dead letters written"),
        Ok(Err(e)) => {
            // The bad records did not reach their output: the attempt must not count as done.
            tracing::error!(job = %job, attempt, error = %e, "dead-letter output failed");
            for s in status.lock().expect("status lock").values_mut() {
                s.state = SubtaskState::SubtaskFailed as i32;
                s.failure = format!("dead-letter output: {e}");
            }
        }
        _ => {}
    }
    *ended_at.lock().expect("ended lock") = Some(Instant::now());
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect()
}
