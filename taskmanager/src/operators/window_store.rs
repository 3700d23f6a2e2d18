//! The window aggregate's keyed state in RocksDB. Windows accumulate in memory (a hash
//! probe and an add per row); at every checkpoint barrier, and whenever the in-memory
//! windows hold more than [`SPILL_KEYS`] keys, their partial results are merged into
//! RocksDB and memory starts over. A window fires from memory alone unless part of it
//! was spilled; then its in-memory part is merged into RocksDB too and the window streams
//! out of RocksDB in chunks (range scans: rows are ordered by window start), each chunk
//! sent downstream before the next is read; then its rows are deleted. So memory stays
//! bounded, state larger than memory lives on disk, and a job whose windows close between
//! checkpoints barely touches RocksDB.
//!
//! Value layout: one little-endian i64 word per aggregate, then one "seen" byte per
//! aggregate. Every aggregate is associative, so RocksDB merges partial results itself
//! (a merge operator) and a spill never reads before it writes.

use std::collections::{BTreeMap, BTreeSet};

use arrow::datatypes::DataType;
use arrow::row::RowConverter;
use weir_common::key_groups::key_group;

use crate::error::TaskError;
use crate::operators::window_state::{Accumulator, WindowState, fold_partial, initial};
use crate::runtime::key_partitioner::hash_keys;
use crate::state::OperatorStateContext;
use crate::state::merging_state::MergingState;
use crate::state::operator_state::OperatorState;
use crate::state::state_descriptor::StateDescriptor;
use crate::state::state_key::{PREFIX_LEN, namespace_bounds};

/// In-memory keys (over all open windows) above which the windows spill to RocksDB:
/// roughly 100 MB of hash tables for one aggregate.
pub const SPILL_KEYS: usize = 2 << 20;

/// The merging state windows spill into; its namespace is the window start.
const WINDOWS: &str = "windows";

pub struct WindowStore {
    name: String,
    state: OperatorState,
    accumulators: Vec<Accumulator>,
    /// Window starts with rows in RocksDB (known once the backend is open).
    spilled: BTreeSet<i64>,
}

impl WindowStore {
    pub fn new(name: &str, ctx: OperatorStateContext, accumulators: Vec<Accumulator>) -> Self {
        let accs = accumulators.clone();
        let merge = move |_: &[u8], existing: Option<&[u8]>, ops: &rocksdb::merge_operator::MergeOperands| {
            let mut acc = existing.map_or_else(|| empty(&accs), |e| decode(e, accs.len()));
            for op in ops {
                let (v, s) = decode(op, accs.len());
                fold_partial(&accs, &mut acc.0, &mut acc.1, &v, &s);
            }
            Some(encode(&acc.0, &acc.1))
        };
        let windows = StateDescriptor::merging(WINDOWS, "weir_window_accumulators", std::sync::Arc::new(merge));
        Self {
            name: name.to_string(),
            state: OperatorState::new(name, ctx, vec![windows]),
            accumulators,
            spilled: BTreeSet::new(),
        }
    }

    /// Opens RocksDB now if a restore brought state (its windows must be known before
    /// the first watermark); otherwise RocksDB opens on first need.
    pub fn open_if_restored(&mut self) -> Result<(), TaskError> {
        if self.state.restored() && self.state.opened().is_none() {
            self.windows()?;
        }
        Ok(())
    }

    fn windows(&mut self) -> Result<MergingState<'_>, TaskError> {
        if self.state.opened().is_none() {
            self.spilled = self.state.backend()?.merging(WINDOWS)?.table().namespaces()?;
        }
        Ok(self.state.backend()?.merging(WINDOWS)?)
    }

    /// The earliest window start with rows in RocksDB.
    pub fn first_spilled(&self) -> Option<i64> {
        self.spilled.first().copied()
    }

    /// Merges every in-memory window into RocksDB and empties them.
    pub fn spill(
        &mut self,
        windows: &mut BTreeMap<i64, WindowState>,
        key_types: &[DataType],
        converter: Option<&RowConverter>,
    ) -> Result<(), TaskError> {
        if windows.values().all(WindowState::is_empty) {
            windows.clear();
            return Ok(());
        }
        let n = self.accumulators.len();
        let max_parallelism = self.state.max_parallelism();
        let name = self.name.clone();
        let store = self.windows()?;
        for (start, state) in windows.iter() {
            if state.is_empty() {
                continue;
            }
            let cols = state
                .key_columns(key_types, converter)
                .map_err(|e| TaskError::arrow(&name, e))?;
            let hashes = hash_keys(&cols, state.len()).map_err(|e| TaskError::arrow(&name, e))?;
            store.merge_all(
                state.entries(n).zip(&hashes).map(|((key, values, seen), h)| {
                    (*start, key_group(*h, max_parallelism), key, encode(values, seen))
                }),
            )?;
        }
        self.spilled
            .extend(windows.iter().filter(|(_, w)| !w.is_empty()).map(|(start, _)| *start));
        windows.clear();
        Ok(())
    }

    pub fn is_spilled(&self, start: i64) -> bool {
        self.spilled.contains(&start)
    }

    /// Reads the next chunk of window `start` out of RocksDB (which has merged every
    /// partial result by then): at most `chunk_keys` keys after the stored key `after`
    /// (from the first with `None`), and the last key read when the chunk is full (more
    /// may follow). So firing a window never holds all of it in memory.
    pub fn read_chunk(
        &self,
        start: i64,
        after: Option<&[u8]>,
        chunk_keys: usize,
        int_keys: bool,
    ) -> Result<(WindowState, Option<Vec<u8>>), TaskError> {
        let mut chunk = WindowState::new(int_keys);
        let Some(backend) = self.state.opened() else {
            return Ok((chunk, None));
        };
        let accs = &self.accumulators;
        let (first, end) = namespace_bounds(start);
        let from = match after {
            // The smallest key after `after`.
            Some(k) => [k, &[0]].concat(),
            None => first,
        };
        let mut last = None;
        backend.merging(WINDOWS)?.table().scan(&from, end.as_deref(), |k, v| {
            let (values, seen) = decode(v, accs.len());
            chunk.merge_entry(&k[PREFIX_LEN..], &values, &seen, accs);
            if chunk.len() >= chunk_keys {
                last = Some(k.to_vec());
                return false;
            }
            true
        })?;
        Ok((chunk, last))
    }

    /// Window `start` has fired: its rows leave RocksDB.
    pub fn forget(&mut self, start: i64) -> Result<(), TaskError> {
        if self.spilled.remove(&start) {
            self.windows()?.table().delete_namespace(start)?;
        }
        Ok(())
    }

    /// Checkpoint `id`'s barrier: spill, then snapshot RocksDB and upload. Does nothing
    /// when the job does not checkpoint.
    pub fn checkpoint(
        &mut self,
        id: u64,
        windows: &mut BTreeMap<i64, WindowState>,
        key_types: &[DataType],
        converter: Option<&RowConverter>,
    ) -> Result<(), TaskError> {
        if !self.state.checkpoints() {
            return Ok(());
        }
        self.spill(windows, key_types, converter)?;
        Ok(self.state.checkpoint(id)?)
    }
}

fn empty(accs: &[Accumulator]) -> (Vec<i64>, Vec<bool>) {
    (accs.iter().map(|a| initial(*a)).collect(), vec![false; accs.len()])
}

fn encode(values: &[i64], seen: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 9);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend(seen.iter().map(|s| *s as u8));
    out
}

fn decode(bytes: &[u8], n: usize) -> (Vec<i64>, Vec<bool>) {
    let values = bytes[..n * 8]
        .chunks_exact(8)
        .map(|w| i64::from_le_bytes(w.try_into().expect("8 bytes")))
        .collect();
    let seen = bytes[n * 8..n * 9].iter().map(|b| *b != 0).collect();
    (values, seen)
}
