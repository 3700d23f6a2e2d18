//! Brings a stateful operator subtask's state from checkpoint storage onto local disk
//! before the subtask starts. When one old snapshot covers exactly the subtask's key
//! groups (same parallelism) its files become the RocksDB directory as they are; after a
//! change of parallelism every snapshot whose key groups overlap is fetched, and the
//! backend copies the keys of its own key groups out of each when it opens.

use std::path::{Path, PathBuf};

use weir_common::key_groups::KeyGroupRange;
use weir_common::state_handle::{StateFile, StateHandle};

use crate::state::checkpoint_storage::{CheckpointStorage, StorageError};

/// What a restore left on local disk for one operator subtask.
#[derive(Debug, Clone, Default)]
pub struct RestoredState {
    /// Snapshots to copy keys from when the backend opens (a rescale).
    pub merge_from: Vec<PathBuf>,
    /// Whether any state was restored (the operator then opens its backend eagerly).
    pub any: bool,
    /// The stored files the instance was opened from as they are (same parallelism):
    /// its next snapshot refers to those it still holds instead of uploading them again.
    pub files: Vec<StateFile>,
}

/// Fetches the snapshots `handles` hold for operator `vertex`'s subtask owning
/// `key_groups` into `instance_dir` (its RocksDB goes to `instance_dir/db`).
pub async fn fetch(
    storage: &CheckpointStorage,
    handles: &[StateHandle],
    vertex: u32,
    key_groups: KeyGroupRange,
    instance_dir: &Path,
) -> Result<RestoredState, StorageError> {
    let relevant: Vec<&StateHandle> = handles
        .iter()
        .filter(|h| h.vertex == vertex && h.key_groups.overlaps(&key_groups))
        .collect();
    if let [only] = relevant[..]
        && only.key_groups == key_groups
    {
        fetch_files(storage, only, &instance_dir.join("db")).await?;
        return Ok(RestoredState {
            merge_from: Vec::new(),
            any: true,
            files: only.files.clone(),
        });
    }
    let mut merge_from = Vec::with_capacity(relevant.len());
    for (i, h) in relevant.iter().enumerate() {
        let dir = instance_dir.join("restore").join(i.to_string());
        fetch_files(storage, h, &dir).await?;
        merge_from.push(dir);
    }
    Ok(RestoredState {
        any: !merge_from.is_empty(),
        merge_from,
        files: Vec::new(),
    })
}

async fn fetch_files(storage: &CheckpointStorage, handle: &StateHandle, dir: &Path) -> Result<(), StorageError> {
    if tokio::fs::try_exists(dir).await.unwrap_or(false) {
        tokio::fs::remove_dir_all(dir)
            .await
            .map_err(|source| StorageError::Local {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| StorageError::Local {
            path: dir.to_path_buf(),
            source,
        })?;
    for f in &handle.files {
        storage.download(&f.path, &dir.join(&f.name)).await?;
    }
    Ok(())
}
