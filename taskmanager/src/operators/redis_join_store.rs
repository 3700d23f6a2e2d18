//! The window join's rows in Redis and its timers in RocksDB (`state: {"redis": ..}`),
//! for joins whose pending rows are too many for the task managers' disks or are wanted
//! by other systems.
//!
//! RocksDB keeps `join_store`'s layout (the timers ordered by due time, and per key which
//! B rows it holds) with every row replaced by its 17-byte id: the side (`a` or `b`) and
//! the row's 128-bit xxh3. The row itself is in Redis under `<prefix><id>`. An id names
//! the content, so writing a row again (a replay after a restore) writes the same key
//! with the same value, and rows that are the same are stored once however many timers
//! point at them.
//!
//! Exactly once across restores: a checkpoint's barrier goes on only once Redis has
//! acknowledged every row written before it, and a row the join is done with (an A row
//! that fired, a B row past every window) is deleted only once a checkpoint taken after
//! that completed; until then a restore may still need it. A row written again before
//! its deletion went out is not deleted (by that retirement). Rows nothing deletes (a job
//! that stops between checkpoints) expire after the TTL.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use foldhash::HashMap;
use futures::future::BoxFuture;
use weir_common::spec::RedisStateSpec;
use xxhash_rust::xxh3::xxh3_128;

use crate::operators::join_state::{Fired, JoinState};
use crate::operators::join_store::JoinStore;
use crate::operators::redis_connection::RedisConnectionError;
use crate::operators::redis_rows::{RedisRows, RedisRowsConfig};
use crate::runtime::subtask_metrics::{CheckpointProgress, SubtaskMetrics};
use crate::state::OperatorStateContext;
use crate::state::keyed_state_backend::StateError;

type RowId = [u8; 17];

fn row_id(side: u8, row: &[u8]) -> RowId {
    let mut id = [0u8; 17];
    id[0] = side;
    id[1..].copy_from_slice(&xxh3_128(row).to_le_bytes());
    id
}

/// Rows retired between two barriers: they go once the checkpoint of the second barrier
/// (`closed_by`) completed.
struct Retired {
    seq: u64,
    closed_by: Option<u64>,
    rows: Vec<RowId>,
}

pub struct RedisJoinStore {
    operator: String,
    url: String,
    timers: JoinStore,
    rows: RedisRows,
    prefix: Vec<u8>,
    /// This attempt's checkpoints (their completions); `None` when the job does not
    /// checkpoint: rows are then deleted as soon as the join is done with them.
    progress: Option<Arc<CheckpointProgress>>,
    /// Row → the retirement batch it was last retired in.
    retiring: HashMap<RowId, u64>,
    batches: VecDeque<Retired>,
    /// Whether the rows of the fired chunk are being read.
    reading: bool,
    metrics: Arc<SubtaskMetrics>,
}

impl RedisJoinStore {
    pub fn new(
        name: &str,
        ctx: OperatorStateContext,
        (window, delay): (i64, i64),
        spec: &RedisStateSpec,
        prefix: String,
        progress: Option<Arc<CheckpointProgress>>,
        metrics: Arc<SubtaskMetrics>,
    ) -> Result<Self, StateError> {
        let rows = RedisRows::start(RedisRowsConfig {
            operator: name.to_string(),
            url: spec.url.clone(),
            ttl: Duration::from_millis(spec.ttl_ms),
            timeout: Duration::from_millis(spec.timeout_ms),
            metrics: metrics.clone(),
        })
        .map_err(|e| StateError::External {
            operator: name.to_string(),
            store: spec.url.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            operator: name.to_string(),
            url: spec.url.clone(),
            timers: JoinStore::new(name, ctx, window, delay),
            rows,
            prefix: prefix.into_bytes(),
            progress,
            retiring: HashMap::default(),
            batches: VecDeque::from([Retired {
                seq: 0,
                closed_by: None,
                rows: Vec::new(),
            }]),
            reading: false,
            metrics,
        })
    }

    fn err(&self, e: RedisConnectionError) -> StateError {
        StateError::External {
            operator: self.operator.clone(),
            store: self.url.clone(),
            message: e.to_string(),
        }
    }

    fn key(&self, id: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + id.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(id);
        k
    }

    fn put(&mut self, side: u8, row: &[u8]) -> RowId {
        let id = row_id(side, row);
        self.retiring.remove(&id);
        let key = self.key(&id);
        self.rows.put(key, row.to_vec());
        id
    }

    /// The join is done with row `id`.
    fn retire(&mut self, id: &[u8]) {
        let Ok(id) = RowId::try_from(id) else { return };
        if self.progress.is_none() {
            let key = self.key(&id);
            self.rows.delete(key);
            return;
        }
        let open = self.batches.back_mut().expect("an open batch");
        self.retiring.insert(id, open.seq);
        open.rows.push(id);
    }

    /// Deletes the rows of every batch whose checkpoint completed.
    fn delete_retired(&mut self) {
        let Some(progress) = &self.progress else { return };
        let completed = progress.completed.load(Ordering::Acquire);
        while self
            .batches
            .front()
            .and_then(|b| b.closed_by)
            .is_some_and(|c| c <= completed)
        {
            let batch = self.batches.pop_front().expect("a batch");
            for id in batch.rows {
                if self.retiring.get(&id) == Some(&batch.seq) {
                    self.retiring.remove(&id);
                    let key = self.key(&id);
                    self.rows.delete(key);
                }
            }
        }
    }

    /// A row that should be in Redis is not (it expired, or Redis lost it): the join
    /// cannot emit it as it was. Counted as a dead letter and logged.
    fn missing(&self, what: &str, key: &[u8]) {
        SubtaskMetrics::add(&self.metrics.dead_letters, 1);
        tracing::error!(operator = %self.operator, url = %self.url, row = what, key = ?String::from_utf8_lossy(key), "a row of the join is missing from Redis (expired past its TTL, or lost by Redis)");
    }
}

impl JoinState for RedisJoinStore {
    fn add_a(&mut self, key_group: u32, key: &[u8], t_a: i64, row: &[u8]) -> Result<(), StateError> {
        let id = self.put(b'a', row);
        self.timers.add_a(key_group, key, t_a, &id)
    }

    fn add_b(&mut self, key_group: u32, key: &[u8], t_b: i64, row: &[u8]) -> Result<(), StateError> {
        let id = self.put(b'b', row);
        self.timers.add_b(key_group, key, t_b, &id)
    }

    fn fire(&mut self, watermark: i64, limit: usize, out: &mut Vec<Fired>) -> Result<bool, StateError> {
        self.timers.fire(watermark, limit, out)
    }

    fn resolve(&mut self, fired: &mut Vec<Fired>) -> Result<bool, StateError> {
        if !self.reading {
            let keys = fired
                .iter()
                .flat_map(|f| std::iter::once(&f.row).chain(f.matches.iter().map(|(_, b)| b)))
                .map(|id| self.key(id))
                .collect();
            self.rows.read(keys);
            self.reading = true;
        }
        let Some(values) = self.rows.try_read().map_err(|e| self.err(e))? else {
            return Ok(false);
        };
        self.reading = false;
        let mut values = values.into_iter();
        let mut resolved = Vec::with_capacity(fired.len());
        for mut f in fired.drain(..) {
            let a = values.next().flatten();
            let mut matches = Vec::with_capacity(f.matches.len());
            for (t_b, _) in f.matches {
                match values.next().flatten() {
                    Some(b) => matches.push((t_b, b)),
                    None => self.missing("B", &f.key),
                }
            }
            self.retire(&f.row);
            match a {
                Some(a) => {
                    f.row = a;
                    f.matches = matches;
                    resolved.push(f);
                }
                None => self.missing("A", &f.key),
            }
        }
        *fired = resolved;
        Ok(true)
    }

    fn expire(&mut self, watermark: i64) -> Result<u64, StateError> {
        let mut gone: Vec<Vec<u8>> = Vec::new();
        let n = self.timers.expire_with(watermark, |id| gone.push(id.to_vec()))?;
        for id in gone {
            self.retire(&id);
        }
        self.delete_retired();
        Ok(n)
    }

    fn checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        let open = self.batches.back_mut().expect("an open batch");
        open.closed_by = Some(id);
        let seq = open.seq + 1;
        self.batches.push_back(Retired {
            seq,
            closed_by: None,
            rows: Vec::new(),
        });
        self.timers.checkpoint(id)?;
        self.delete_retired();
        self.rows.sync();
        Ok(())
    }

    fn sync(&mut self) {
        self.rows.sync();
    }

    fn synced(&mut self) -> Result<bool, StateError> {
        self.rows.synced().map_err(|e| self.err(e))
    }

    fn accepting(&self) -> bool {
        self.rows.accepting()
    }

    fn io_wait(&mut self) -> Option<BoxFuture<'static, ()>> {
        self.rows.io_wait()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::operators::redis_rows::test_server::{TestRedis, drive};

    fn store(dir: &std::path::Path, redis: &TestRedis, progress: Option<Arc<CheckpointProgress>>) -> RedisJoinStore {
        let spec = RedisStateSpec {
            url: redis.url(),
            key_prefix: None,
            ttl_ms: 3_600_000,
            timeout_ms: 1_000,
        };
        RedisJoinStore::new(
            "join",
            OperatorStateContext::standalone(dir.to_path_buf(), 128),
            (60_000, 5_000),
            &spec,
            "t:".into(),
            progress,
            Arc::default(),
        )
        .unwrap()
    }

    fn wait(s: &mut RedisJoinStore, done: impl FnMut(&mut RedisJoinStore) -> bool) {
        drive(s, |s| s.io_wait(), done);
    }

    fn fire_all(s: &mut dyn JoinState, watermark: i64) -> Vec<Fired> {
        let mut all = Vec::new();
        loop {
            let mut fired = Vec::new();
            let more = s.fire(watermark, 3, &mut fired).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !s.resolve(&mut fired).unwrap() {
                assert!(Instant::now() < deadline, "no rows from Redis");
                if let Some(f) = s.io_wait() {
                    futures::executor::block_on(f);
                }
            }
            all.extend(fired);
            if !more {
                return all;
            }
        }
    }

    /// The same rows give the same firings as the RocksDB store, in the same order.
    #[test]
    fn fires_what_the_rocksdb_store_fires() {
        let redis = TestRedis::start();
        let dir = tempfile::tempdir().unwrap();
        let mut r = store(&dir.path().join("r"), &redis, None);
        let ctx = OperatorStateContext::standalone(dir.path().join("k"), 128);
        let mut k = JoinStore::new("join", ctx, 60_000, 5_000);
        let stores: [&mut dyn JoinState; 2] = [&mut r, &mut k];
        let mut results = Vec::new();
        for s in stores {
            for i in 0..40u32 {
                let key = format!("req-{}", i % 13);
                let t = i64::from(i) * 7_000;
                s.add_a(i % 5, key.as_bytes(), t, format!("imp {i}").as_bytes())
                    .unwrap();
                if i % 3 == 0 {
                    s.add_b(i % 5, key.as_bytes(), t + 30_000, format!("click {i}").as_bytes())
                        .unwrap();
                }
            }
            // An identical impression twice: two timers, two outputs, one row in Redis.
            s.add_a(1, b"dup", 1_000, b"same").unwrap();
            s.add_a(1, b"dup", 1_000, b"same").unwrap();
            let mut fired = fire_all(s, 150_000);
            s.expire(150_000).unwrap();
            fired.extend(fire_all(s, i64::MAX));
            results.push(fired);
        }
        assert_eq!(results[0].len(), 42);
        assert_eq!(results[0], results[1]);
        assert!(results[0].iter().any(|f| !f.matches.is_empty()));
    }

    /// A row the join is done with stays in Redis until a checkpoint taken after that
    /// completes (a restore from an earlier one needs it); without checkpoints it goes at
    /// once.
    #[test]
    fn rows_are_deleted_only_after_a_later_checkpoint_completes() {
        let redis = TestRedis::start();
        let dir = tempfile::tempdir().unwrap();
        let progress = Arc::new(CheckpointProgress::default());
        let mut s = store(dir.path(), &redis, Some(progress.clone()));
        s.add_a(1, b"k", 1_000, b"imp").unwrap();
        s.add_b(1, b"k", 2_000, b"click").unwrap();
        s.checkpoint(1).unwrap();
        wait(&mut s, |s| s.synced().unwrap());
        assert_eq!(redis.keys(), 2, "both rows are in Redis once the barrier may pass");
        progress.complete(1);
        let fired = fire_all(&mut s, 70_000);
        assert_eq!((fired[0].row.as_slice(), fired[0].matches.len()), (&b"imp"[..], 1));
        s.expire(70_000).unwrap();
        s.checkpoint(2).unwrap();
        wait(&mut s, |s| s.synced().unwrap());
        assert_eq!(
            redis.keys(),
            2,
            "checkpoint 2 has not completed: a restore from 1 needs the rows"
        );
        progress.complete(2);
        s.checkpoint(3).unwrap();
        wait(&mut s, |s| s.synced().unwrap());
        assert_eq!(redis.keys(), 0, "checkpoint 2 covers the firing and the expiry");

        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path(), &redis, None);
        s.add_a(1, b"k", 1_000, b"imp").unwrap();
        assert_eq!(fire_all(&mut s, i64::MAX).len(), 1);
        s.checkpoint(1).unwrap();
        wait(&mut s, |s| s.synced().unwrap());
        assert_eq!(redis.keys(), 0);
    }
}
