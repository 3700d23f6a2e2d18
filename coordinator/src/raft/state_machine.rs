//! The Raft state machine: the cluster state in memory, made durable by snapshots in
//! RocksDB. After a restart the latest snapshot is loaded and openraft re-applies the
//! committed log entries after it (the log store keeps the committed id for that).

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{BasicNode, Entry, EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::DB;
use serde::{Deserialize, Serialize};

use crate::raft::cluster_state::{ClusterState, CommandOutcome};
use crate::raft::storage::{CF_SNAPSHOT, DbError, blocking, synced};
use crate::raft::types::{LogId, NodeId, StorageError, StoredMembership, TypeConfig};

const KEY_CURRENT: &[u8] = b"current";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateMachineData {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub cluster: ClusterState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// Cheap to clone: clones share the state (the API reads it through [`Self::read`]).
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<DB>,
    data: Arc<RwLock<StateMachineData>>,
    snapshot_seq: Arc<AtomicU64>,
}

fn io_err(e: serde_json::Error) -> StorageError {
    DbError::from(e).into()
}

impl StateMachineStore {
    pub async fn open(db: Arc<DB>) -> Result<Self, StorageError> {
        let store = Self {
            db,
            data: Arc::default(),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        };
        if let Some(snap) = store.load_snapshot().await? {
            let data: StateMachineData = serde_json::from_slice(&snap.data).map_err(io_err)?;
            *store.data.write().expect("state lock") = data;
        }
        Ok(store)
    }

    /// A consistent copy of what this member has applied so far.
    pub fn read<T>(&self, f: impl FnOnce(&StateMachineData) -> T) -> T {
        f(&self.data.read().expect("state lock"))
    }

    async fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let db = self.db.clone();
        Ok(blocking(move || {
            let cf = db.cf_handle(CF_SNAPSHOT).expect("column family");
            match db.get_cf(cf, KEY_CURRENT)? {
                Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
                None => Ok(None),
            }
        })
        .await?)
    }

    async fn save_snapshot(&self, snap: &StoredSnapshot) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(snap).map_err(io_err)?;
        let db = self.db.clone();
        Ok(blocking(move || {
            let cf = db.cf_handle(CF_SNAPSHOT).expect("column family");
            Ok(db.put_cf_opt(cf, KEY_CURRENT, bytes, &synced())?)
        })
        .await?)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_applied, membership) = {
            let state = self.data.read().expect("state lock");
            (
                serde_json::to_vec(&*state).map_err(io_err)?,
                state.last_applied,
                state.last_membership.clone(),
            )
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.data.read().expect("state lock");
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.data.write().expect("state lock");
        let mut outcomes = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            outcomes.push(match entry.payload {
                EntryPayload::Blank => CommandOutcome::Applied,
                EntryPayload::Normal(cmd) => state.cluster.apply(&cmd),
                EntryPayload::Membership(m) => {
                    state.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandOutcome::Applied
                }
            });
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let mut data: StateMachineData = serde_json::from_slice(&bytes).map_err(io_err)?;
        data.last_applied = meta.last_log_id;
        data.last_membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: serde_json::to_vec(&data).map_err(io_err)?,
        };
        self.save_snapshot(&stored).await?;
        *self.data.write().expect("state lock") = data;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.load_snapshot().await?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::raft::log_store::LogStore;
    use crate::raft::storage::open;

    struct RocksBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let (log, sm) = open(dir.path()).await?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage conformance suite.
    #[test]
    fn passes_openraft_storage_suite() {
        Suite::test_all(RocksBuilder).unwrap();
    }
}
