//! What a completed checkpoint holds of one stateful operator subtask: the files of its
//! RocksDB snapshot in checkpoint storage and the key groups they cover. Handles are
//! written into the Raft log with the checkpoint, and a restore (or a rescale, which
//! reads every handle whose key groups overlap the new subtask's) starts from them.

use serde::{Deserialize, Serialize};

use crate::key_groups::KeyGroupRange;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHandle {
    /// The vertex (operator) id in the job graph.
    pub vertex: u32,
    pub subtask: u32,
    pub key_groups: KeyGroupRange,
    pub files: Vec<StateFile>,
    /// Bytes this checkpoint uploaded (the rest were uploaded by earlier checkpoints and
    /// are shared with them).
    pub uploaded_bytes: u64,
}

/// One file of a RocksDB snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Its name inside the RocksDB directory.
    pub name: String,
    /// Where it is, relative to the checkpoint storage root.
    pub path: String,
    pub bytes: u64,
    /// The checkpoint that uploaded it.
    pub checkpoint: u64,
}

impl StateHandle {
    /// The snapshot's full size.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}
