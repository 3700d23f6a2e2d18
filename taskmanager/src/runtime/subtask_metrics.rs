//! Live counters of one vertex's subtask, shared lock-free between the actor that updates
//! them and whoever reports progress. One vocabulary for every operator and connector.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weir_common::JobGraph;
use weir_common::event_time::WATERMARK_MIN;
use weir_common::partition_commit::SinkCommitReport;
use weir_common::source_position::SourcePosition;

use crate::state::snapshot_progress::SnapshotProgress;

#[derive(Debug)]
pub struct SubtaskMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Sources: the raw bytes read; operators: the Arrow memory of the batches they took.
    pub bytes_in: AtomicU64,
    /// Sinks: the bytes written; operators: the Arrow memory of the batches they gave.
    pub bytes_out: AtomicU64,
    /// Failures the vertex survived (a lookup that timed out, a request retried).
    pub errors: AtomicU64,
    pub dead_letters: AtomicU64,
    pub late_records: AtomicU64,
    /// Time spent processing (ns): in the operator, or writing for a sink.
    pub busy_ns: AtomicU64,
    /// Time the chain's output waited for room downstream (ns): backpressure. Counted on
    /// the chain's last vertex.
    pub backpressured_ns: AtomicU64,
    /// The chain's input queues as last read: events queued and room (chain heads fed by
    /// other tasks only).
    pub input_queued: AtomicU64,
    pub input_capacity: AtomicU64,
    /// File sinks: part files open (written, not yet finished).
    pub open_parts: AtomicU64,
    /// Sources: each split's standing, refreshed about once a second.
    pub splits: Mutex<Vec<SplitMetrics>>,
    pub watermark: AtomicI64,
    /// Event-time disorder at a sink: how far the furthest row arrived behind the greatest
    /// event time the subtask had seen (ms); what watermark alignment keeps small.
    pub max_disorder_ms: AtomicU64,
    /// The greatest event time the sink has seen.
    pub max_event_time: AtomicI64,
}

impl Default for SubtaskMetrics {
    fn default() -> Self {
        Self {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            late_records: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            input_queued: AtomicU64::new(0),
            input_capacity: AtomicU64::new(0),
            open_parts: AtomicU64::new(0),
            splits: Mutex::new(Vec::new()),
            watermark: AtomicI64::new(WATERMARK_MIN),
            max_disorder_ms: AtomicU64::new(0),
            max_event_time: AtomicI64::new(WATERMARK_MIN),
        }
    }
}

/// One split (a Kafka partition) of a source subtask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMetrics {
    /// `topic/partition` for Kafka.
    pub name: String,
    pub watermark: i64,
    /// Paused by watermark alignment: it ran ahead of its group.
    pub paused: bool,
    /// Records in the split not read yet, where the reader knows.
    pub lag: Option<i64>,
}

impl SubtaskMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_elapsed(counter: &AtomicU64, since: std::time::Instant) {
        counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    pub fn set_watermark(&self, wm: i64) {
        self.watermark.store(wm, Ordering::Relaxed);
    }

    /// A sink received rows with event times `ts`, in arrival order.
    pub fn observe_disorder(&self, ts: &[i64]) {
        let mut max = self.max_event_time.load(Ordering::Relaxed);
        let mut worst = 0;
        for t in ts {
            if *t > max {
                max = *t;
            } else {
                worst = worst.max(max - *t);
            }
        }
        self.max_event_time.store(max, Ordering::Relaxed);
        if worst > 0 {
            self.max_disorder_ms.fetch_max(worst as u64, Ordering::Relaxed);
        }
    }
}

/// What a two-phase sink does when a checkpoint completes (publish what it pre-committed).
pub type OnCheckpointComplete = Box<dyn Fn(u64) + Send + Sync>;

/// What a source does with the position a completed checkpoint recorded.
pub type OnSourceCheckpointComplete = Box<dyn Fn(&SourcePosition) + Send + Sync>;

/// A subtask's part in checkpoints: the newest checkpoint whose barrier it passed on, for
/// a source where it stood when it emitted that barrier, and for a two-phase sink how to
/// tell it that a checkpoint completed.
#[derive(Default)]
pub struct CheckpointProgress {
    pub acknowledged: AtomicU64,
    /// The newest checkpoint of this attempt known to be complete.
    pub completed: AtomicU64,
    pub source_position: Mutex<Option<(u64, SourcePosition)>>,
    pub on_complete: Mutex<Option<OnCheckpointComplete>>,
    /// What a source does with its position at a completed checkpoint (a Kafka source
    /// commits the offsets to its consumer group, for monitoring).
    pub on_source_complete: Mutex<Option<OnSourceCheckpointComplete>>,
    /// The chain's state snapshots and their uploads.
    pub state: Mutex<SnapshotProgress>,
    /// The last barrier alignment at the chain's input: (checkpoint, milliseconds).
    pub alignment_ms: Mutex<Option<(u64, u64)>>,
    /// A committing sink's report at its last barrier or at the end of its input.
    pub sink_commit: Mutex<Option<SinkCommitReport>>,
}

impl std::fmt::Debug for CheckpointProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointProgress")
            .field("acknowledged", &self.acknowledged)
            .field("source_position", &self.source_position)
            .finish_non_exhaustive()
    }
}

impl CheckpointProgress {
    /// Checkpoint `id` completed: a two-phase sink publishes what it pre-committed.
    pub fn complete(&self, id: u64) {
        self.completed.fetch_max(id, Ordering::Release);
        self.state.lock().expect("state lock").complete(id);
        if let Some(f) = &*self.on_complete.lock().expect("on_complete lock") {
            f(id);
        }
        if let Some(position) = self.position_at(id)
            && let Some(f) = &*self.on_source_complete.lock().expect("on_complete lock")
        {
            f(&position);
        }
    }

    /// The source position recorded for checkpoint `id`, if this subtask is a source.
    pub fn position_at(&self, id: u64) -> Option<SourcePosition> {
        match &*self.source_position.lock().expect("position lock") {
            Some((at, p)) if *at == id => Some(p.clone()),
            _ => None,
        }
    }
}

/// The metrics of every subtask of a job, indexed `[vertex][subtask]`, and per task
/// subtask (a chain) its checkpoint progress.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    pub vertices: Vec<Vec<Arc<SubtaskMetrics>>>,
    checkpoints: Vec<Vec<Arc<CheckpointProgress>>>,
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

    /// Where subtask `subtask` of task `task` records its checkpoint progress.
    pub fn checkpoint(&self, task: usize, subtask: u32) -> Arc<CheckpointProgress> {
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
