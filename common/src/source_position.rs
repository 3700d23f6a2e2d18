//! Where a source subtask stands in its input, as recorded in a checkpoint: reading again
//! from a position yields exactly the records that followed it; and the checkpoint a new
//! attempt resumes from (positions and operator state).

use serde::{Deserialize, Serialize};

use crate::state_handle::StateHandle;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourcePosition {
    /// A generator: the next index it would emit (indices before it are done).
    Generator { next_index: u64 },
    /// JSON-lines files, none read yet.
    FilesStart,
    /// JSON-lines files: the file being read and the byte offset and line number of its
    /// next record; the files this subtask reads that sort before it are done.
    FileAt { file: String, offset: u64, line: u64 },
    /// JSON-lines files, every one read.
    FilesDone,
    /// Kafka: the next offset of every partition the subtask has read from; partitions
    /// not listed start where the source's `start` says.
    Kafka { offsets: Vec<KafkaOffset> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaOffset {
    pub topic: String,
    pub partition: i32,
    /// The offset of the first record not yet read.
    pub next: i64,
}

/// The checkpoint a new attempt resumes from: which attempt took it, its id, and where
/// every source subtask stood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFrom {
    pub attempt: u32,
    pub checkpoint: u64,
    pub sources: Vec<RestoredSource>,
    /// The keyed state of every stateful operator subtask.
    #[serde(default)]
    pub state: Vec<StateHandle>,
    /// The storage URL the state handles' paths are relative to, when it is not the
    /// job's checkpoint storage (a savepoint).
    #[serde(default)]
    pub state_storage: Option<String>,
    /// Per committing sink (by name): its commit watermark at the checkpoint. Partitions
    /// complete by then may be committed, so the restored sink treats rows for them as
    /// late instead of writing them again.
    #[serde(default)]
    pub sink_watermarks: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredSource {
    pub task: u32,
    pub subtask: u32,
    pub position: SourcePosition,
}
