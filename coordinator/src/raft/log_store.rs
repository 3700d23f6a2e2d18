//! The Raft log in RocksDB: entries keyed by big-endian index (so key order is log order),
//! vote and committed id in a metadata column family. Appends and votes are synced
//! before Raft is told they are durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, OptionalSend, RaftLogReader};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::storage::{CF_LOGS, CF_META, DbError, blocking, synced};
use crate::raft::types::{LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    async fn get_meta<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static [u8],
    ) -> Result<Option<T>, StorageError> {
        let db = self.db.clone();
        Ok(blocking(move || match db.get_cf(cf(&db, CF_META), key)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        })
        .await?)
    }

    async fn put_meta<T: Serialize>(&self, key: &'static [u8], value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(DbError::from)?;
        let db = self.db.clone();
        Ok(blocking(move || Ok(db.put_cf_opt(cf(&db, CF_META), key, bytes, &synced())?)).await?)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        // The range itself cannot go to the blocking thread (it need not be 'static).
        let end = range.end_bound().cloned();
        let db = self.db.clone();
        Ok(blocking(move || {
            let mut out = Vec::new();
            let from = start.to_be_bytes();
            for item in db.iterator_cf(cf(&db, CF_LOGS), IteratorMode::From(&from, Direction::Forward)) {
                let (key, value) = item?;
                let index = u64::from_be_bytes(key.as_ref().try_into().map_err(|_| DbError::BadKey(key.clone()))?);
                if !(Bound::Included(start), end).contains(&index) {
                    break;
                }
                out.push(serde_json::from_slice(&value)?);
            }
            Ok(out)
        })
        .await?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED).await?;
        let db = self.db.clone();
        let last: Option<LogId> = blocking(
            move || match db.iterator_cf(cf(&db, CF_LOGS), IteratorMode::End).next() {
                Some(item) => {
                    let (_, value) = item?;
                    let entry: Entry<TypeConfig> = serde_json::from_slice(&value)?;
                    Ok(Some(entry.log_id))
                }
                None => Ok(None),
            },
        )
        .await?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta(KEY_COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED).await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            encoded.push((
                entry.log_id.index.to_be_bytes(),
                serde_json::to_vec(&entry).map_err(DbError::from)?,
            ));
        }
        let db = self.db.clone();
        let result = blocking(move || {
            let mut batch = WriteBatch::default();
            for (key, value) in encoded {
                batch.put_cf(cf(&db, CF_LOGS), key, value);
            }
            Ok(db.write_opt(batch, &synced())?)
        })
        .await;
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        Ok(result?)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        Ok(blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(cf(&db, CF_LOGS), log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
            batch.delete_cf(cf(&db, CF_LOGS), u64::MAX.to_be_bytes());
            Ok(db.write_opt(batch, &synced())?)
        })
        .await?)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(KEY_PURGED, &log_id).await?;
        let db = self.db.clone();
        Ok(blocking(move || {
            Ok(db.delete_range_cf(cf(&db, CF_LOGS), 0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes())?)
        })
        .await?)
    }
}
