//! Uploads one operator subtask's RocksDB snapshots to checkpoint storage, off the
//! subtask's thread: processing goes on while files go up. Incremental: an SST file the
//! last completed checkpoint already holds is referenced, not uploaded again (SST files
//! never change once written); after a restore at the same parallelism, so are the
//! restored files (as Flink's claim mode), except a savepoint's. SST files go to `<prefix>/shared/`, the rest of a snapshot
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
    /// The stored files a restore opened this instance from, shared until a checkpoint of
    /// this instance completes.
    pub restored_files: Arc<Vec<StateFile>>,
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
        // Every file here is a file of this very RocksDB instance (its own uploads, or the
        // restored files it was opened from, which keep their numbers), and RocksDB never
        // reuses a file number: a matching name is the same file.
        let reusable: Vec<StateFile> = self
            .progress
            .state
            .lock()
            .expect("state lock")
            .confirmed(self.vertex, self.subtask)
            .map_or_else(|| self.restored_files.to_vec(), |h| h.files.clone());
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
            if shared && let Some(f) = reusable.iter().find(|f| f.name == name) {
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::state::keyed_state_backend::KeyedStateBackend;
    use crate::state::state_descriptor::StateDescriptor;
    use crate::state::state_restore;

    const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 128 };

    fn uploader(
        storage: &CheckpointStorage,
        rt: &tokio::runtime::Runtime,
        attempt: u32,
        restored: Vec<StateFile>,
    ) -> SnapshotUploader {
        SnapshotUploader {
            storage: storage.clone(),
            runtime: rt.handle().clone(),
            prefix: format!("job/op-0-a{attempt}"),
            vertex: 1,
            subtask: 0,
            key_groups: ALL,
            progress: Arc::default(),
            restored_files: Arc::new(restored),
            one_at_a_time: Arc::default(),
            stopped: Arc::default(),
        }
    }

    fn uploaded(u: &SnapshotUploader, checkpoint: u64) -> StateHandle {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ack, handles) = u.progress.state.lock().unwrap().acknowledge(checkpoint);
            if ack == checkpoint {
                return handles.into_iter().next().expect("the upload succeeded");
            }
            assert!(
                Instant::now() < deadline,
                "upload of checkpoint {checkpoint} did not finish"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn after_a_restore_at_the_same_parallelism_the_next_snapshot_shares_the_restored_files() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(&format!("file://{}", tmp.path().join("ckpt").display())).unwrap();
        let states = [StateDescriptor::value("v")];

        let first = KeyedStateBackend::open("op", &tmp.path().join("a0"), &states, &[], ALL).unwrap();
        for i in 0..50_000u32 {
            first
                .value("v")
                .unwrap()
                .put(0, i % 128, &i.to_be_bytes(), &[7; 100])
                .unwrap();
        }
        let u0 = uploader(&storage, &rt, 0, Vec::new());
        u0.upload(1, first.snapshot(1).unwrap());
        let h1 = uploaded(&u0, 1);
        assert_eq!(h1.uploaded_bytes, h1.bytes(), "a first snapshot uploads everything");
        drop(first);

        let dir = tmp.path().join("a1");
        let restored = rt
            .block_on(state_restore::fetch(&storage, std::slice::from_ref(&h1), 1, ALL, &dir))
            .unwrap();
        assert_eq!(restored.files, h1.files);
        let second = KeyedStateBackend::open("op", &dir, &states, &restored.merge_from, ALL).unwrap();
        assert_eq!(
            second.value("v").unwrap().get(0, 7, &7u32.to_be_bytes()).unwrap(),
            Some(vec![7; 100])
        );
        second.value("v").unwrap().put(0, 1, b"new", b"x").unwrap();
        let u1 = uploader(&storage, &rt, 1, restored.files);
        u1.upload(2, second.snapshot(2).unwrap());
        let h2 = uploaded(&u1, 2);
        assert!(
            h2.uploaded_bytes * 10 < h2.bytes(),
            "uploaded {} of {}",
            h2.uploaded_bytes,
            h2.bytes()
        );
        for f in h1.files.iter().filter(|f| f.name.ends_with(".sst")) {
            assert!(h2.files.contains(f), "{} is shared", f.name);
        }
    }
}
