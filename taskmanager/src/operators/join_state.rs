//! What the window join keeps between watermarks, whichever store holds it: A rows
//! waiting for their time (they are the timers) and B rows waiting for A rows to match.
//! `join_store` keeps them in RocksDB, `heap_join_store` in memory (snapshotted into the
//! same RocksDB layout, so a job can switch between the two from a savepoint), and
//! `redis_join_store` keeps the rows in Redis and the timers in RocksDB.

use futures::future::BoxFuture;

use crate::state::keyed_state_backend::StateError;

/// An A row whose time came, with the B rows of its key inside its window (ordered by
/// their event time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub key_group: u32,
    pub key: Vec<u8>,
    pub t_a: i64,
    pub row: Vec<u8>,
    pub matches: Vec<(i64, Vec<u8>)>,
}

pub trait JoinState: Send {
    /// An A row of `key` at `t_a`; it is due at `t_a + window + delay`.
    fn add_a(&mut self, key_group: u32, key: &[u8], t_a: i64, row: &[u8]) -> Result<(), StateError>;

    /// A B row of `key` at `t_b`.
    fn add_b(&mut self, key_group: u32, key: &[u8], t_b: i64, row: &[u8]) -> Result<(), StateError>;

    /// Moves into `out` the A rows due at `watermark`, at most `limit` keys' worth, oldest
    /// due time first (then by key group and key), and removes them. Returns whether more
    /// are due.
    fn fire(&mut self, watermark: i64, limit: usize, out: &mut Vec<Fired>) -> Result<bool, StateError>;

    /// Drops the B rows that no A row can match once the watermark is `watermark` (call
    /// after `fire` has emptied what is due). Returns how many went.
    fn expire(&mut self, watermark: i64) -> Result<u64, StateError>;

    /// Checkpoint `id`'s barrier: the state as it is now goes to checkpoint storage.
    fn checkpoint(&mut self, id: u64) -> Result<(), StateError>;

    /// Fills in the rows of `fired` (its A rows and their matches) when the store keeps
    /// them elsewhere; `false` while they are on their way: call again (with the same
    /// `fired`) once [`JoinState::io_wait`]'s future ended.
    fn resolve(&mut self, _fired: &mut Vec<Fired>) -> Result<bool, StateError> {
        Ok(true)
    }

    /// Sends what the store holds back (batched writes, deletions) on its way;
    /// [`JoinState::synced`] tells when it arrived. A checkpoint does this too.
    fn sync(&mut self) {}

    /// Whether everything written before the last sync or checkpoint is durable where
    /// the store keeps it: the checkpoint's barrier goes on only then.
    fn synced(&mut self) -> Result<bool, StateError> {
        Ok(true)
    }

    /// Whether the store takes more rows now (its writes on their way are within bounds).
    fn accepting(&self) -> bool {
        true
    }

    /// What the store waits on, if anything: the subtask awaits it, without blocking its
    /// thread, before it calls the join again.
    fn io_wait(&mut self) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// The B rows of one key that lie in the window of an A row at `t_a`, by event time.
pub fn matches_in_window<'r>(
    rows: impl Iterator<Item = (i64, &'r [u8])>,
    t_a: i64,
    window: i64,
) -> Vec<(i64, Vec<u8>)> {
    let mut found: Vec<(i64, Vec<u8>)> = rows
        .filter(|(t_b, _)| *t_b >= t_a && *t_b <= t_a.saturating_add(window))
        .map(|(t_b, row)| (t_b, row.to_vec()))
        .collect();
    found.sort_by_key(|(t_b, _)| *t_b);
    found
}
