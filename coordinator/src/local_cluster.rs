//! `coordinator local`: the coordinator and N task managers in one process. The job runs
//! through the same components as in a cluster: the task manager's job attempts
//! (`DeployedJobs`), slots, subtask actors and bounded channels; the placement follows
//! the same slot-sharing rule. Only the transport between coordinator and task managers is
//! a function call, and every channel stays in-process.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_common::JobGraph;
use weir_common::graph::{SinkConnector, VertexKind};
use weir_taskmanager::file_name::file_name_safe;
use weir_taskmanager::runtime::sink::SinkReport;
use weir_taskmanager::runtime::slot_pool::SlotPool;
use weir_taskmanager::runtime::subtask_metrics::{JobMetrics, SubtaskMetrics};
use weir_taskmanager::worker::deployed_jobs::{AttemptState, DeployError, DeployedJobs, Placed};

use crate::config::LocalConfig;
use crate::job_summary::{JobSummary, SinkSummary};
use crate::progress::Progress;
use crate::scheduler::{NotEnoughSlots, check_capacity, place};
use crate::watermark_aggregator::WatermarkAggregator;

/// How often `coordinator local` updates watermark alignment allowances.
const LOCAL_ALIGNMENT_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Slots(#[from] NotEnoughSlots),
    #[error("job '{job}' failed: {failure}")]
    Subtask { job: String, failure: String },
    #[error("job '{job}': deploying failed: {source}")]
    Deploy {
        job: String,
        #[source]
        source: DeployError,
    },
    #[error("job '{job}' was interrupted")]
    Interrupted { job: String },
}

/// Runs `graph` to completion and reports.
pub fn run_local(graph: JobGraph, config: &LocalConfig) -> Result<JobSummary, LocalError> {
    let slots = config
        .slots
        .unwrap_or_else(|| (graph.slots_needed() as usize).div_ceil(config.task_managers));
    check_capacity(&graph, config.task_managers, slots)?;
    // Slots are arbiters, which belong to a running actix system.
    let system = actix_rt::System::new();
    let pool = SlotPool::new(config.task_managers * slots);
    let result = system.block_on(run_job(&graph, config, &pool, slots));
    pool.shutdown();
    result
}

async fn run_job(
    graph: &JobGraph,
    config: &LocalConfig,
    pool: &SlotPool,
    slots: usize,
) -> Result<JobSummary, LocalError> {
    let job = graph.name.clone();
    let started = Instant::now();
    let job_id = format!("{}-{}", file_name_safe(&job), run_stamp());
    let handles = (0..config.task_managers * slots).map(|i| pool.slot(i)).collect();
    let jobs = DeployedJobs::new("local".into(), handles, None, config.work_dir.clone());
    let tm_count = config.task_managers;
    let placement = |_task: usize, subtask: u32| {
        let at = place(subtask, tm_count);
        Some(Placed::Here {
            slot: at.task_manager * slots + at.slot,
        })
    };
    jobs.run(&job_id, 0, graph, None, &placement)
        .await
        .map_err(|source| LocalError::Deploy {
            job: job.clone(),
            source,
        })?;
    let metrics = jobs.metrics(&job_id).expect("deployed above");
    let mut state = jobs.watch(&job_id).expect("deployed above");

    let mut progress = (config.progress_ms > 0).then(|| Progress::new(graph));
    let mut tick = tokio::time::interval(Duration::from_millis(config.progress_ms.max(100)));
    tick.tick().await;
    // Watermark alignment in-process: the same aggregator the leader runs, updated far
    // more often than over the network (it costs nothing here): with a 10 s drift and
    // 10k events per event-time second, a 200 ms update would cap a source at 500k
    // events/s however fast the job runs.
    let watermarks = WatermarkAggregator::default();
    let mut align = tokio::time::interval(LOCAL_ALIGNMENT_INTERVAL);
    let outcome = loop {
        tokio::select! {
            changed = state.changed() => {
                let s = state.borrow_and_update().clone();
                if let Some(failure) = s.failure() {
                    break Err(LocalError::Subtask { job: job.clone(), failure: failure.to_string() });
                }
                if s.ended.is_some() || changed.is_err() {
                    break Ok(s);
                }
            }
            _ = align.tick() => {
                let sources = jobs.alignment().reports();
                if !sources.is_empty() {
                    jobs.alignment().apply(&watermarks.report(sources));
                }
            }
            _ = tick.tick() => {
                if let Some(p) = &mut progress {
                    p.show(&metrics);
                }
            }
            _ = tokio::signal::ctrl_c() => {
                break Err(LocalError::Interrupted { job: job.clone() });
            }
        }
    };
    if let Some(p) = &mut progress {
        p.show(&metrics);
        p.done();
    }
    let ended = match outcome {
        Ok(s) => s,
        Err(e) => {
            jobs.cancel(&job_id, u32::MAX).await;
            return Err(e);
        }
    };
    Ok(summarize(graph, &metrics, &ended, started.elapsed()))
}

fn summarize(graph: &JobGraph, metrics: &JobMetrics, ended: &AttemptState, elapsed: Duration) -> JobSummary {
    let end = ended.ended.as_ref();
    let dead_lettered = end.map(|e| e.dead_lettered).unwrap_or(0);
    let mut sinks = Vec::new();
    for v in &graph.vertices {
        let VertexKind::Sink(connector) = &v.kind else { continue };
        let mut report = SinkReport::default();
        for ((task, _), status) in &ended.subtasks {
            if graph.tasks[*task].tail() == v.id
                && let Some(r) = &status.report
            {
                report.merge(r.clone());
            }
        }
        let path = match connector {
            SinkConnector::Parquet(p) => Some(p.path.clone()),
            SinkConnector::Kafka(_) | SinkConnector::Blackhole(_) => None,
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
        dead_letter_file: end.filter(|e| e.dead_lettered > 0).map(|e| e.dead_letter_file.clone()),
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
