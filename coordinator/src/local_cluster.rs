//! `coordinator local`: the coordinator and N task managers in one process. The job runs
//! on the same components as in a cluster (slot pools, subtask actors, bounded channels);
//! only the transport between coordinator and task managers is a function call.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use weir_common::JobGraph;
use weir_common::graph::{SinkConnector, VertexKind};
use weir_taskmanager::TaskError;
use weir_taskmanager::dead_letter::DeadLetterWriter;
use weir_taskmanager::runtime::job_deployment::{JobContext, SubtaskLocation, deploy};
use weir_taskmanager::runtime::sink::SinkReport;
use weir_taskmanager::runtime::slot_pool::SlotPool;
use weir_taskmanager::runtime::subtask_actor::{Cancel, SubtaskDone};
use weir_taskmanager::runtime::subtask_metrics::{JobMetrics, SubtaskMetrics};

use crate::config::LocalConfig;
use crate::job_summary::{JobSummary, SinkSummary};
use crate::progress::Progress;
use crate::scheduler::{NotEnoughSlots, check_capacity, place};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Slots(#[from] NotEnoughSlots),
    #[error("job '{job}' failed: subtask {subtask} of [{chain}]: {source}")]
    Subtask {
        job: String,
        chain: String,
        subtask: u32,
        #[source]
        source: TaskError,
    },
    #[error("job '{job}': deploying failed: {source}")]
    Deploy {
        job: String,
        #[source]
        source: TaskError,
    },
    #[error("job '{job}' was interrupted")]
    Interrupted { job: String },
    #[error("job '{job}': dead-letter output failed: {source}")]
    DeadLetters {
        job: String,
        #[source]
        source: TaskError,
    },
}

/// Runs `graph` to completion and reports.
pub fn run_local(graph: JobGraph, config: &LocalConfig) -> Result<JobSummary, LocalError> {
    let slots = config
        .slots
        .unwrap_or_else(|| (graph.slots_needed() as usize).div_ceil(config.task_managers));
    check_capacity(&graph, config.task_managers, slots)?;
    // Slots are arbiters, which belong to a running actix system.
    let system = actix_rt::System::new();
    let task_managers: Vec<SlotPool> = (0..config.task_managers).map(|_| SlotPool::new(slots)).collect();
    let result = system.block_on(run_job(&graph, config, &task_managers));
    for tm in task_managers {
        tm.shutdown();
    }
    result
}

async fn run_job(graph: &JobGraph, config: &LocalConfig, task_managers: &[SlotPool]) -> Result<JobSummary, LocalError> {
    let job = graph.name.clone();
    let started = Instant::now();
    let job_id = format!("{}-{}", sanitize(&job), run_stamp());
    let dead_dir = graph
        .dead_letter_path
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| config.work_dir.join("dead-letter"));
    let (dead_letters, dead_writer) = DeadLetterWriter::start(&dead_dir, &format!("{job_id}.jsonl"));
    let metrics = JobMetrics::new(graph.vertices.iter().map(|v| v.parallelism));
    let subtasks: usize = graph.tasks.iter().map(|t| t.parallelism as usize).sum();
    let (done_tx, mut done_rx) = mpsc::channel::<SubtaskDone>(subtasks);
    let ctx = JobContext {
        run_id: JobContext::run_id(&job_id, 0),
        job_id,
        attempt: 0,
        dead_letters,
        metrics: metrics.clone(),
        done: done_tx,
        channel_capacity: config.channel_capacity,
        exchange: None,
    };
    let tm_count = task_managers.len();
    let placement = |_task: usize, subtask: u32| {
        let at = place(subtask, tm_count);
        SubtaskLocation::Local(task_managers[at.task_manager].slot(at.slot))
    };
    let actors = deploy(graph, &placement, &ctx).map_err(|source| LocalError::Deploy {
        job: job.clone(),
        source,
    })?;
    // Only the subtasks hold the dead-letter queue and the done channel from here on, so
    // both close when the last subtask ends.
    drop(ctx);

    let mut progress = (config.progress_ms > 0).then(|| Progress::new(graph));
    let mut tick = tokio::time::interval(Duration::from_millis(config.progress_ms.max(100)));
    tick.tick().await;
    let mut reports: Vec<(usize, SinkReport)> = Vec::new();
    let mut remaining = subtasks;
    let mut failure = None;
    while remaining > 0 {
        tokio::select! {
            done = done_rx.recv() => {
                let Some(done) = done else { break };
                remaining -= 1;
                match done.result {
                    Ok(Some(report)) => {
                        let tail = graph.tasks[done.id.task].tail();
                        reports.push((tail.0, report));
                    }
                    Ok(None) => {}
                    Err(source) => {
                        failure = Some(LocalError::Subtask { job: job.clone(), chain: done.id.label, subtask: done.id.subtask, source });
                        break;
                    }
                }
            }
            _ = tick.tick() => {
                if let Some(p) = &mut progress {
                    p.show(&metrics);
                }
            }
            _ = tokio::signal::ctrl_c() => {
                failure = Some(LocalError::Interrupted { job: job.clone() });
                break;
            }
        }
    }
    if let Some(p) = &mut progress {
        p.show(&metrics);
        p.done();
    }
    if let Some(failure) = failure {
        for a in &actors {
            a.do_send(Cancel);
        }
        return Err(failure);
    }
    drop(actors);

    let dead_file = dead_writer.path().to_path_buf();
    let dead_lettered = tokio::task::spawn_blocking(move || dead_writer.finish())
        .await
        .map_err(|_| LocalError::DeadLetters {
            job: job.clone(),
            source: TaskError::Disconnected("dead-letter writer".into()),
        })?
        .map_err(|source| LocalError::DeadLetters {
            job: job.clone(),
            source,
        })?;

    Ok(summarize(
        graph,
        &metrics,
        reports,
        started.elapsed(),
        dead_lettered,
        dead_file,
    ))
}

fn summarize(
    graph: &JobGraph,
    metrics: &JobMetrics,
    reports: Vec<(usize, SinkReport)>,
    elapsed: Duration,
    dead_lettered: u64,
    dead_file: PathBuf,
) -> JobSummary {
    let mut sinks = Vec::new();
    for v in &graph.vertices {
        let VertexKind::Sink(connector) = &v.kind else { continue };
        let mut report = SinkReport::default();
        for (_, r) in reports.iter().filter(|(id, _)| *id == v.id.0) {
            report.merge(r.clone());
        }
        let path = match connector {
            SinkConnector::Parquet(p) => Some(p.path.clone()),
            SinkConnector::Blackhole(_) => None,
        };
        sinks.push(SinkSummary::new(v.name.clone(), path, report));
    }
    let sum_over = |pred: fn(&VertexKind) -> bool, f: fn(&SubtaskMetrics) -> &AtomicU64| -> u64 {
        graph
            .vertices
            .iter()
            .filter(|v| pred(&v.kind))
            .map(|v| metrics.sum(v.id.0, f))
            .sum()
    };
    JobSummary {
        job: graph.name.clone(),
        seconds: elapsed.as_secs_f64(),
        records_read: sum_over(|k| matches!(k, VertexKind::Source { .. }), |m| &m.records_in),
        records_written: sinks.iter().map(|s| s.rows).sum(),
        dead_lettered,
        late_records: sum_over(|_| true, |m| &m.late_records),
        dead_letter_file: (dead_lettered > 0).then_some(dead_file),
        sinks,
    }
}

/// Sorts by start time and differs between runs of the same job.
fn run_stamp() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{ms:x}{:04x}", std::process::id() & 0xffff)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
