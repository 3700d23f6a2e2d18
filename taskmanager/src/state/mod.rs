//! Keyed operator state: a RocksDB instance per stateful operator subtask holding its
//! value, list, map and merging states and its event-time timers, its snapshots and their
//! upload to checkpoint storage, and bringing state back on restore.

pub mod checkpoint_storage;
pub mod keyed_state_backend;
pub mod list_state;
pub mod map_state;
pub mod merging_state;
pub mod operator_state;
pub mod snapshot_progress;
pub mod snapshot_uploader;
pub mod state_descriptor;
pub mod state_key;
pub mod state_restore;
pub mod state_table;
pub mod timer_service;
pub mod value_state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use weir_common::Vertex;
use weir_common::key_groups::KeyGroupRange;

use crate::file_name::file_name_safe;
use crate::runtime::subtask_metrics::CheckpointProgress;
use crate::state::checkpoint_storage::CheckpointStorage;
use crate::state::snapshot_uploader::SnapshotUploader;
use crate::state::state_restore::RestoredState;

/// Names one operator subtask's RocksDB instance (its local directory under the
/// attempt's state root, and its prefix in checkpoint storage).
pub fn instance_name(vertex: &Vertex, subtask: u32) -> String {
    format!("{}-{subtask}", file_name_safe(&vertex.name))
}

/// Where a job's checkpoint files live, relative to the storage root.
pub fn job_prefix(job_id: &str) -> String {
    file_name_safe(job_id)
}

/// What a stateful operator subtask gets at deployment.
pub struct OperatorStateContext {
    /// Its RocksDB instance directory (removed when the operator is dropped).
    pub dir: PathBuf,
    pub key_groups: KeyGroupRange,
    pub max_parallelism: u32,
    /// Restored snapshots to copy its key groups from when the backend opens.
    pub merge_from: Vec<PathBuf>,
    /// Whether state was restored (then the backend opens before the first event).
    pub restored: bool,
    /// Where snapshots go; `None` when the job does not checkpoint.
    pub uploader: Option<SnapshotUploader>,
}

impl OperatorStateContext {
    /// A new instance in `dir` holding every key group, with nothing restored and no
    /// checkpoints: an operator run on its own (tests, benchmarks).
    pub fn standalone(dir: PathBuf, max_parallelism: u32) -> Self {
        Self {
            dir,
            key_groups: KeyGroupRange {
                start: 0,
                end: max_parallelism,
            },
            max_parallelism,
            merge_from: Vec::new(),
            restored: false,
            uploader: None,
        }
    }
}

/// What every stateful operator subtask of one attempt on this task manager shares.
#[derive(Clone)]
pub struct StateServices {
    /// This attempt's RocksDB instances: `<work dir>/state/<job>/a<attempt>`.
    pub local_root: PathBuf,
    /// Where snapshots go, when the job checkpoints keyed state or a write-ahead log.
    pub storage: Option<CheckpointStorage>,
    /// Where the restored checkpoint's files are (a savepoint's own storage, or `storage`).
    pub restore_storage: Option<CheckpointStorage>,
    /// The runtime that carries uploads (not a slot thread).
    pub runtime: tokio::runtime::Handle,
    /// What the restore fetched, by (vertex, subtask).
    pub restored: HashMap<(usize, u32), RestoredState>,
}

impl StateServices {
    /// The state context of subtask `subtask` of the stateful `vertex`.
    pub fn for_operator(
        &self,
        job: (&str, u32),
        vertex: &Vertex,
        subtask: u32,
        max_parallelism: u32,
        progress: Arc<CheckpointProgress>,
    ) -> OperatorStateContext {
        let (job_id, attempt) = job;
        let key_groups = KeyGroupRange::of_subtask(subtask, max_parallelism, vertex.parallelism);
        let restored = self.restored.get(&(vertex.id.0, subtask)).cloned().unwrap_or_default();
        let instance = instance_name(vertex, subtask);
        OperatorStateContext {
            dir: self.local_root.join(&instance),
            key_groups,
            max_parallelism,
            merge_from: restored.merge_from,
            restored: restored.any,
            uploader: self.storage.as_ref().map(|storage| SnapshotUploader {
                storage: storage.clone(),
                runtime: self.runtime.clone(),
                prefix: format!("{}/{instance}-a{attempt}", job_prefix(job_id)),
                vertex: vertex.id.0 as u32,
                subtask,
                key_groups,
                progress,
                restored_files: Arc::new(restored.files),
                one_at_a_time: Arc::default(),
                stopped: Arc::default(),
            }),
        }
    }
}
