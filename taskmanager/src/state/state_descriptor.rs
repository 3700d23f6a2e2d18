//! What an operator declares about its keyed state before the backend opens (as Flink's
//! state descriptors): each named state is one RocksDB column family of one kind, with
//! the options and merge operator that kind needs.

use std::sync::Arc;

use rocksdb::merge_operator::MergeOperands;
use rocksdb::{BlockBasedOptions, DBCompressionType, Options};

/// The column family that holds an operator's event-time timers.
pub const TIMERS: &str = "timers";

/// An associative merge of partial results: `(key, existing value, operands) -> value`.
pub type MergeFunction = Arc<dyn Fn(&[u8], Option<&[u8]>, &MergeOperands) -> Option<Vec<u8>> + Send + Sync>;

#[derive(Clone)]
pub enum StateKind {
    /// One value per (namespace, key).
    Value,
    /// A list per (namespace, key); appends never read.
    List,
    /// A map per (namespace, key), each entry its own RocksDB row.
    Map,
    /// One value per (namespace, key) that partial results merge into without a read.
    Merging { operator: String, merge: MergeFunction },
    /// Event-time timers, ordered by time.
    Timers,
}

/// The kind of a state without its parameters: what an accessor checks it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindTag {
    Value,
    List,
    Map,
    Merging,
    Timers,
}

impl std::fmt::Display for KindTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KindTag::Value => "value",
            KindTag::List => "list",
            KindTag::Map => "map",
            KindTag::Merging => "merging",
            KindTag::Timers => "timers",
        })
    }
}

impl StateKind {
    pub fn tag(&self) -> KindTag {
        match self {
            StateKind::Value => KindTag::Value,
            StateKind::List => KindTag::List,
            StateKind::Map => KindTag::Map,
            StateKind::Merging { .. } => KindTag::Merging,
            StateKind::Timers => KindTag::Timers,
        }
    }
}

#[derive(Clone)]
pub struct StateDescriptor {
    pub name: String,
    pub kind: StateKind,
    /// Read mostly by key, often for keys it does not hold: bloom filters in the memtable
    /// and in every file answer a miss without a search.
    pub point_lookups: bool,
}

impl StateDescriptor {
    pub fn value(name: &str) -> Self {
        Self::new(name, StateKind::Value)
    }

    pub fn list(name: &str) -> Self {
        Self::new(name, StateKind::List)
    }

    pub fn map(name: &str) -> Self {
        Self::new(name, StateKind::Map)
    }

    pub fn merging(name: &str, operator: &str, merge: MergeFunction) -> Self {
        Self::new(
            name,
            StateKind::Merging {
                operator: operator.to_string(),
                merge,
            },
        )
    }

    pub fn timers() -> Self {
        Self::new(TIMERS, StateKind::Timers)
    }

    fn new(name: &str, kind: StateKind) -> Self {
        Self {
            name: name.to_string(),
            kind,
            point_lookups: false,
        }
    }

    pub fn with_point_lookups(mut self) -> Self {
        self.point_lookups = true;
        self
    }

    /// The column family's options: its merge operator, and no compression above the
    /// bottom level (state churns; compressing short-lived files costs CPU for nothing).
    pub fn column_family_options(&self) -> Options {
        let mut o = plain_column_family_options();
        match &self.kind {
            StateKind::List => o.set_merge_operator_associative("weir_list_append", list_append),
            StateKind::Merging { operator, merge } => {
                let merge = merge.clone();
                o.set_merge_operator_associative(operator, move |k: &[u8], e: Option<&[u8]>, ops: &MergeOperands| {
                    merge(k, e, ops)
                });
            }
            StateKind::Value | StateKind::Map | StateKind::Timers => {}
        }
        if self.point_lookups {
            o.set_memtable_whole_key_filtering(true);
            o.set_memtable_prefix_bloom_ratio(0.1);
            let mut table = BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            table.set_whole_key_filtering(true);
            o.set_block_based_table_factory(&table);
        }
        o
    }
}

/// Options for a column family no descriptor names (one a restored snapshot brought).
pub fn plain_column_family_options() -> Options {
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::None);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    o
}

/// A list value is its elements, each as `length (u32, little-endian) | bytes`; so
/// appending is concatenation, which RocksDB merges without reading the list.
fn list_append(_: &[u8], existing: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(existing.map_or(0, <[u8]>::len) + ops.iter().map(<[u8]>::len).sum::<usize>());
    out.extend_from_slice(existing.unwrap_or_default());
    for op in ops {
        out.extend_from_slice(op);
    }
    Some(out)
}
