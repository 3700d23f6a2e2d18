//! Uploads one operator subtask's RocksDB snapshots to checkpoint storage, off the
//! subtask's thread: processing goes on while files go up. Incremental: an SST file the
//! last completed checkpoint already holds is referenced, not uploaded again (SST files
//! never change once written). SST files go to `<prefix>/shared/`, the rest of a snapshot
//! (MANIFEST, CURRENT, OPTIONS) to `<prefix>/chk-<id>/`. Uploads of one subtask run one
//! at a time, in checkpoint order.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use weir_common::key_groups::KeyGroupRange;
use weir_common::state_handle::{StateFile, StateHandle};

use crate::runtime::subtask_metrics::CheckpointProgress;
use crate::state::checkpoint_storage::{CheckpointStorage, StorageError};

#[derive(Clone)]
pub struct SnapshotUploader {
    pub storage: CheckpointStorage,
    pub runtime: tokio::runtime::Handle,
    /// `<job>/<vertex>-<subtask>-a<attempt>`: unique per RocksDB instance, so file names
    /// (RocksDB's file numbers) never collide.
    pub prefix: String,
    pub vertex: u32,
    pub subtask: u32,
    pub key_groups: KeyGroupRange,
    pub progress: Arc<CheckpointProgress>,
    pub one_at_a_time: Arc<tokio::sync::Mutex<()>>,
    /// Set when the operator is gone (its attempt was cancelled): uploads still running
    /// stop, so a dead attempt does not keep writing into checkpoint storage.
    pub stopped: Arc<AtomicBool>,
}

impl SnapshotUploader {
    /// Starts uploading the snapshot in `local` for `checkpoint`; the chain acknowledges
    /// the checkpoint once it is done. The local directory is removed afterwards.
    pub fn upload(&self, checkpoint: u64, local: PathBuf) {
        self.progress.state.lock().expect("state lock").begin(checkpoint);
        let this = self.clone();
        self.runtime.spawn(async move {
            let _turn = this.one_at_a_time.lock().await;
            let result = this.upload_files(checkpoint, &local).await;
            let _ = tokio::fs::remove_dir_all(&local).await;
            let handle = match result {
                Ok(h) => {
                    tracing::debug!(
                        checkpoint,
                        vertex = this.vertex,
                        subtask = this.subtask,
                        bytes = h.bytes(),
                        uploaded = h.uploaded_bytes,
                        "state snapshot uploaded"
                    );
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(checkpoint, vertex = this.vertex, subtask = this.subtask, error = %e, "state snapshot upload failed; the checkpoint will not complete");
                    None
                }
            };
            this.progress.state.lock().expect("state lock").finish(checkpoint, handle);
        });
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    async fn upload_files(&self, checkpoint: u64, local: &std::path::Path) -> Result<StateHandle, StorageError> {
        let reusable: Vec<StateFile> = self
            .progress
            .state
            .lock()
            .expect("state lock")
            .confirmed(self.vertex, self.subtask)
            .map(|h| h.files.clone())
            .unwrap_or_default();
        let local_err = |source| StorageError::Local {
            path: local.to_path_buf(),
            source,
        };
        let mut entries = tokio::fs::read_dir(local).await.map_err(local_err)?;
        let mut names = Vec::new();
        while let Some(e) = entries.next_entry().await.map_err(local_err)? {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        let mut uploaded_bytes = 0;
        for name in names {
            if self.stopped.load(Ordering::Relaxed) {
                return Err(StorageError::Stopped);
            }
            let shared = name.ends_with(".sst");
            if shared
                && let Some(f) = reusable
                    .iter()
                    .find(|f| f.name == name && f.path.starts_with(&self.prefix))
            {
                files.push(f.clone());
                continue;
            }
            let path = if shared {
                format!("{}/shared/{name}", self.prefix)
            } else {
                format!("{}/chk-{checkpoint}/{name}", self.prefix)
            };
            let bytes = self.storage.upload(&local.join(&name), &path).await?;
            uploaded_bytes += bytes;
            files.push(StateFile {
                name,
                path,
                bytes,
                checkpoint,
            });
        }
        Ok(StateHandle {
            vertex: self.vertex,
            subtask: self.subtask,
            key_groups: self.key_groups,
            files,
            uploaded_bytes,
        })
    }
}
