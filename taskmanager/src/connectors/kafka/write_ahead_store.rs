//! Where the exactly-once Kafka sink keeps its write-ahead log: the open transaction's
//! segment in a local spool directory, the segments of prepared transactions until they
//! commit, and their copies in checkpoint storage. At every barrier the segments of all
//! transactions still uncommitted are uploaded under that checkpoint (usually just the
//! one it prepares; earlier ones only when a completion was missed or a checkpoint
//! failed), so a checkpoint's handle names every transaction a restore from it may have
//! to finish, and each file belongs to exactly one checkpoint (retention deletes it with
//! that checkpoint). Runs on the producer thread: uploads block it, not an event loop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use weir_common::key_groups::KeyGroupRange;
use weir_common::state_handle::{StateFile, StateHandle};

use super::record_producer::OutgoingRecord;
use super::write_ahead_log::{SealedSegment, SpoolWriter};
use crate::error::TaskError;
use crate::state::checkpoint_storage::CheckpointStorage;

/// Where one sink subtask's write-ahead log goes, and what a restore hands it.
pub struct WriteAheadTarget {
    pub storage: CheckpointStorage,
    /// `<job>/<sink instance>-a<attempt>`: unique per attempt, so attempts never collide.
    pub prefix: String,
    /// A local directory of this subtask's own (emptied at start).
    pub spool_dir: PathBuf,
    pub runtime: tokio::runtime::Handle,
    pub vertex: u32,
    pub subtask: u32,
    /// The restored checkpoint's segments this subtask settles, with the storage they
    /// are in (a savepoint's, or the job's).
    pub restored: Vec<(CheckpointStorage, String)>,
}

pub struct WriteAheadStore {
    sink: String,
    storage: CheckpointStorage,
    prefix: String,
    spool_dir: PathBuf,
    runtime: tokio::runtime::Handle,
    vertex: u32,
    subtask: u32,
    open: Option<SpoolWriter>,
    /// Segments of prepared transactions, by the checkpoint that prepared them.
    sealed: BTreeMap<u64, SealedSegment>,
    spools: u64,
}

impl WriteAheadStore {
    /// Opens the spool; returns the store and the restored segments, downloaded.
    pub fn open(sink: &str, target: WriteAheadTarget) -> Result<(Self, Vec<PathBuf>), TaskError> {
        let _ = std::fs::remove_dir_all(&target.spool_dir);
        std::fs::create_dir_all(&target.spool_dir)
            .map_err(|e| TaskError::io("creating the write-ahead spool", &target.spool_dir, e))?;
        let mut restored = Vec::with_capacity(target.restored.len());
        for (i, (storage, path)) in target.restored.iter().enumerate() {
            let local = target.spool_dir.join(format!("restored-{i}"));
            target
                .runtime
                .block_on(storage.download(path, &local))
                .map_err(|e| connector(sink, format!("fetching write-ahead segment {path}: {e}")))?;
            restored.push(local);
        }
        let mut this = Self {
            sink: sink.to_string(),
            storage: target.storage,
            prefix: target.prefix,
            spool_dir: target.spool_dir,
            runtime: target.runtime,
            vertex: target.vertex,
            subtask: target.subtask,
            open: None,
            sealed: BTreeMap::new(),
            spools: 0,
        };
        this.open = Some(this.new_spool()?);
        Ok((this, restored))
    }

    fn new_spool(&mut self) -> Result<SpoolWriter, TaskError> {
        self.spools += 1;
        let path = self.spool_dir.join(format!("txn-{}", self.spools));
        SpoolWriter::create(path.clone()).map_err(|e| TaskError::io("creating the write-ahead segment", path, e))
    }

    pub fn append(&mut self, records: &[OutgoingRecord]) -> Result<(), TaskError> {
        let spool = self.open.as_mut().expect("a spool is open between barriers");
        for r in records {
            spool
                .append(r)
                .map_err(|e| connector(&self.sink, format!("writing the write-ahead log: {e}")))?;
        }
        Ok(())
    }

    /// The open transaction's first topic (its commit marker's), `None` while empty.
    pub fn marker_topic(&self) -> Option<Arc<str>> {
        self.open.as_ref().and_then(|s| s.first_topic().cloned())
    }

    /// The open transaction was prepared for `checkpoint`: its segment is sealed and a
    /// new one begins.
    pub fn seal(&mut self, checkpoint: u64, transactional_ids: &[String], marker_group: &str) -> Result<(), TaskError> {
        let next = self.new_spool()?;
        let spool = self.open.replace(next).expect("a spool is open between barriers");
        if let Some(segment) = spool.seal(checkpoint, transactional_ids, marker_group).map_err(|e| {
            connector(
                &self.sink,
                format!("sealing the write-ahead log of checkpoint {checkpoint}: {e}"),
            )
        })? {
            self.sealed.insert(checkpoint, segment);
        }
        Ok(())
    }

    /// Uploads the segments of every uncommitted transaction under `checkpoint`; the
    /// handle the subtask reports with its acknowledgement.
    pub fn upload(&self, checkpoint: u64) -> Result<StateHandle, TaskError> {
        let mut files = Vec::with_capacity(self.sealed.len());
        for (txn, segment) in &self.sealed {
            let name = format!("kafka-wal-c{txn}");
            let path = format!("{}/chk-{checkpoint}/{name}", self.prefix);
            let bytes = self
                .runtime
                .block_on(self.storage.upload(&segment.path, &path))
                .map_err(|e| {
                    connector(
                        &self.sink,
                        format!("uploading the write-ahead log of checkpoint {txn}: {e}"),
                    )
                })?;
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
            // Not keyed: a rescaled restore hands whole handles to subtasks.
            key_groups: KeyGroupRange { start: 0, end: 0 },
            uploaded_bytes: files.iter().map(|f| f.bytes).sum(),
            files,
        })
    }

    /// The transactions prepared up to `checkpoint` committed: their segments go.
    pub fn committed_up_to(&mut self, checkpoint: u64) {
        self.sealed.retain(|txn, segment| {
            let keep = *txn > checkpoint;
            if !keep {
                let _ = std::fs::remove_file(&segment.path);
            }
            keep
        });
    }

    /// The transactions whose segments are still held.
    #[cfg(test)]
    pub fn uncommitted(&self) -> Vec<u64> {
        self.sealed.keys().copied().collect()
    }
}

fn connector(sink: &str, message: String) -> TaskError {
    TaskError::Connector {
        vertex: sink.to_string(),
        message,
    }
}
