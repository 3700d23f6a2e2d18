//! What a task manager's `/metrics` shows: for every subtask running here, the counters
//! every vertex keeps (records and bytes in and out, errors, dead letters, processing
//! time, backpressure, input queue fill, watermark and its lag), per source split (Kafka
//! partition) its lag, watermark and whether alignment paused it, per chain its last
//! checkpoint and barrier alignment, per file sink its open parts; and the task manager's
//! slots and process. Labels: `job_id`, `job_name`, `vertex`, `kind`, `subtask`,
//! `task_manager` (not `job`, which Prometheus keeps for the scrape job).

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN};

use super::metric_families::{Labels, MetricFamilies, with};
use super::process_metrics;
use crate::runtime::subtask_metrics::SubtaskMetrics;
use crate::worker::deployed_jobs::{DeployedJobs, RunningAttempt};

const NANOS: f64 = 1e9;

pub struct TaskManagerMetrics {
    pub task_manager_id: String,
    pub slots: u32,
    pub jobs: DeployedJobs,
}

impl std::fmt::Debug for TaskManagerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskManagerMetrics")
            .field("task_manager_id", &self.task_manager_id)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl TaskManagerMetrics {
    pub fn gather(&self) -> MetricFamilies {
        let mut f = MetricFamilies::default();
        let tm: Labels = vec![("task_manager", self.task_manager_id.clone())];
        let attempts = self.jobs.running();
        let used: usize = attempts.iter().map(|a| a.chains.len()).sum();
        f.gauge(
            "weir_task_manager_slots",
            "Slots this task manager offers.",
            &tm,
            self.slots.into(),
        );
        f.gauge(
            "weir_task_manager_subtasks_running",
            "Subtasks (chains) running on this task manager.",
            &tm,
            used as f64,
        );
        process_metrics::collect(&mut f, &tm);
        let now = now_ms();
        for a in &attempts {
            attempt(&mut f, &tm, a, now);
        }
        f
    }
}

impl Collector for TaskManagerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.gather().encode(&mut encoder)
    }
}

fn attempt(f: &mut MetricFamilies, tm: &Labels, a: &RunningAttempt, now: i64) {
    let job: Labels = [("job_id", a.job_id.clone()), ("job_name", a.job_name.clone())]
        .into_iter()
        .chain(tm.iter().cloned())
        .collect();
    for ((task, subtask), vertices) in &a.chains {
        let chain = with(&with(&job, "task", task), "subtask", subtask);
        let progress = a.metrics.checkpoint(*task, *subtask);
        f.gauge(
            "weir_checkpoint_acknowledged_id",
            "The newest checkpoint whose barrier the chain passed on.",
            &chain,
            progress.acknowledged.load(Ordering::Relaxed) as f64,
        );
        if let Some((_, ms)) = *progress.alignment_ms.lock().expect("alignment lock") {
            f.gauge(
                "weir_checkpoint_alignment_seconds",
                "How long the chain's input held channels back to align the last checkpoint barrier.",
                &chain,
                ms as f64 / 1e3,
            );
        }
        for v in vertices {
            let (name, kind) = &a.vertices[*v];
            let labels: Labels = [
                ("job_id", a.job_id.clone()),
                ("job_name", a.job_name.clone()),
                ("vertex", name.clone()),
                ("kind", kind.to_string()),
                ("subtask", subtask.to_string()),
            ]
            .into_iter()
            .chain(tm.iter().cloned())
            .collect();
            vertex(f, &labels, kind, &a.metrics.get(*v, *subtask), now);
        }
    }
}

fn vertex(f: &mut MetricFamilies, l: &Labels, kind: &str, m: &SubtaskMetrics, now: i64) {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    f.counter("weir_records_in", "Records taken in.", l, get(&m.records_in));
    f.counter(
        "weir_records_out",
        "Records given out (sinks: written).",
        l,
        get(&m.records_out),
    );
    f.counter(
        "weir_bytes_in",
        "Bytes taken in: raw bytes read by sources, Arrow batch memory for operators.",
        l,
        get(&m.bytes_in),
    );
    f.counter(
        "weir_bytes_out",
        "Bytes given out: bytes written by sinks, Arrow batch memory for operators.",
        l,
        get(&m.bytes_out),
    );
    f.counter(
        "weir_errors",
        "Failures survived: failed lookups, failed deliveries, retried requests.",
        l,
        get(&m.errors),
    );
    f.counter(
        "weir_dead_letters",
        "Records sent to the dead-letter output.",
        l,
        get(&m.dead_letters),
    );
    f.counter(
        "weir_late_records",
        "Records behind the watermark (dropped or diverted).",
        l,
        get(&m.late_records),
    );
    f.counter(
        "weir_processing_seconds",
        "Time spent processing: decoding for sources, the operator, writing for sinks.",
        l,
        get(&m.busy_ns) / NANOS,
    );
    f.counter(
        "weir_backpressured_seconds",
        "Time the chain's output waited for room downstream (on the chain's last vertex).",
        l,
        get(&m.backpressured_ns) / NANOS,
    );
    let capacity = m.input_capacity.load(Ordering::Relaxed);
    if capacity > 0 {
        f.gauge(
            "weir_input_queue_fill_ratio",
            "How full the subtask's input channels were at its last read (0 to 1): near 1 means backpressure from this vertex.",
            l,
            get(&m.input_queued) / capacity as f64,
        );
    }
    let wm = m.watermark.load(Ordering::Relaxed);
    if wm > WATERMARK_MIN && wm < WATERMARK_MAX {
        f.gauge(
            "weir_watermark_milliseconds",
            "The vertex's current watermark (event time, ms since the epoch).",
            l,
            wm as f64,
        );
        f.gauge(
            "weir_watermark_lag_seconds",
            "How far the watermark is behind wall-clock time.",
            l,
            (now - wm) as f64 / 1e3,
        );
    }
    if kind == "sink" {
        f.gauge(
            "weir_sink_open_parts",
            "Part files a file sink has open (written, not finished).",
            l,
            get(&m.open_parts),
        );
        f.gauge(
            "weir_sink_max_disorder_seconds",
            "How far behind the greatest event time seen the furthest row arrived at the sink.",
            l,
            get(&m.max_disorder_ms) / 1e3,
        );
    }
    for s in m.splits.lock().expect("splits lock").iter() {
        let (topic, partition) = s.name.rsplit_once('/').unwrap_or(("", &s.name));
        let p = with(&with(l, "topic", topic), "partition", partition);
        if let Some(lag) = s.lag {
            f.gauge(
                "weir_source_partition_lag_records",
                "Records in the partition not read yet (its high watermark minus the next offset).",
                &p,
                lag as f64,
            );
        }
        if s.watermark > WATERMARK_MIN {
            f.gauge(
                "weir_source_partition_watermark_milliseconds",
                "The partition's own watermark.",
                &p,
                s.watermark as f64,
            );
        }
        f.gauge(
            "weir_source_partition_paused",
            "1 while watermark alignment pauses the partition (it ran ahead of its group).",
            &p,
            if s.paused { 1.0 } else { 0.0 },
        );
    }
}
