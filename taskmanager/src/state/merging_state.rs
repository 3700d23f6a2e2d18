//! Merging state: a value per (namespace, key) that partial results merge into without a
//! read (RocksDB applies the descriptor's associative merge), as Flink's
//! `AggregatingState`. The window aggregate spills its partial aggregates here.

use rocksdb::WriteBatch;

use crate::state::keyed_state_backend::StateError;
use crate::state::state_key::state_key;
use crate::state::state_table::StateTable;

#[derive(Clone, Copy)]
pub struct MergingState<'a>(pub(crate) StateTable<'a>);

impl MergingState<'_> {
    /// Merges `(namespace, key group, key, operand)` rows in one atomic batch.
    pub fn merge_all<K: AsRef<[u8]>>(
        &self,
        rows: impl Iterator<Item = (i64, u32, K, Vec<u8>)>,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for (ns, kg, key, operand) in rows {
            batch.merge_cf(self.0.cf, state_key(ns, kg, key.as_ref()), operand);
        }
        self.0.write_batch(batch)
    }

    /// Namespace-wide reads and deletes (a window's rows are one namespace).
    pub fn table(&self) -> &StateTable<'_> {
        &self.0
    }
}
