//! Opens a coordinator's Raft storage: one RocksDB with a column family for the log, one
//! for log metadata (vote, committed, purged) and one for the state machine's snapshot.
//! Every write that Raft relies on is synced to disk before it is acknowledged.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachineStore;
use crate::raft::types::StorageError;

pub const CF_LOGS: &str = "logs";
pub const CF_META: &str = "meta";
pub const CF_SNAPSHOT: &str = "snapshot";

/// Opens (or creates) the storage under `dir`.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StorageError> {
    let dir = dir.to_path_buf();
    let db = blocking(move || {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = [CF_LOGS, CF_META, CF_SNAPSHOT].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        Ok(DB::open_cf_descriptors(&opts, &dir, cfs)?)
    })
    .await?;
    let db = Arc::new(db);
    let sm = StateMachineStore::open(db.clone()).await?;
    Ok((LogStore::new(db), sm))
}

/// What can go wrong inside a storage call, before it becomes openraft's error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Rocks(#[from] rocksdb::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("corrupt log key {0:?}")]
    BadKey(Box<[u8]>),
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<DbError> for StorageError {
    fn from(e: DbError) -> Self {
        openraft::StorageIOError::write(&e).into()
    }
}

/// Runs a RocksDB call on tokio's blocking pool: it may wait on the disk (fsync), which
/// must not stall the async threads that run Raft and the API.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(f).await?
}

/// Write options for anything Raft must find again after a crash.
pub fn synced() -> rocksdb::WriteOptions {
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    wo
}
