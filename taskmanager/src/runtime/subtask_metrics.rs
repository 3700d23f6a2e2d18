//! Live counters of one vertex's subtask, shared lock-free between the actor that updates
//! them and whoever reports progress. One vocabulary for every operator and connector.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use weir_common::JobGraph;
use weir_common::event_time::WATERMARK_MIN;

#[derive(Debug)]
pub struct SubtaskMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub dead_letters: AtomicU64,
    pub late_records: AtomicU64,
    pub watermark: AtomicI64,
}

impl Default for SubtaskMetrics {
    fn default() -> Self {
        Self {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            late_records: AtomicU64::new(0),
            watermark: AtomicI64::new(WATERMARK_MIN),
        }
    }
}

impl SubtaskMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set_watermark(&self, wm: i64) {
        self.watermark.store(wm, Ordering::Relaxed);
    }
}

/// The metrics of every subtask of a job, indexed `[vertex][subtask]`, and per task
/// subtask (a chain) the newest checkpoint whose barrier it has passed on.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    pub vertices: Vec<Vec<Arc<SubtaskMetrics>>>,
    checkpoints: Vec<Vec<Arc<AtomicU64>>>,
}

impl JobMetrics {
    pub fn new(graph: &JobGraph) -> Self {
        Self {
            vertices: graph
                .vertices
                .iter()
                .map(|v| (0..v.parallelism).map(|_| Arc::default()).collect())
                .collect(),
            checkpoints: graph
                .tasks
                .iter()
                .map(|t| (0..t.parallelism).map(|_| Arc::default()).collect())
                .collect(),
        }
    }

    /// Where subtask `subtask` of task `task` records the checkpoints it acknowledged.
    pub fn checkpoint(&self, task: usize, subtask: u32) -> Arc<AtomicU64> {
        self.checkpoints[task][subtask as usize].clone()
    }

    pub fn get(&self, vertex: usize, subtask: u32) -> Arc<SubtaskMetrics> {
        self.vertices[vertex][subtask as usize].clone()
    }

    /// Sum of one counter over a vertex's subtasks.
    pub fn sum(&self, vertex: usize, f: impl Fn(&SubtaskMetrics) -> &AtomicU64) -> u64 {
        self.vertices[vertex].iter().map(|m| f(m).load(Ordering::Relaxed)).sum()
    }

    /// A vertex's watermark: the minimum over its subtasks.
    pub fn watermark(&self, vertex: usize) -> i64 {
        self.vertices[vertex]
            .iter()
            .map(|m| m.watermark.load(Ordering::Relaxed))
            .min()
            .unwrap_or(WATERMARK_MIN)
    }
}
