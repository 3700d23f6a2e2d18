//! Map state: a map per (namespace, key), as Flink's `MapState`. Each entry is its own
//! RocksDB row under the (namespace, key) prefix, so one entry is read or written
//! without touching the rest of the map.

use crate::state::keyed_state_backend::StateError;
use crate::state::state_key::{map_prefix, prefix_end};
use crate::state::state_table::StateTable;

/// A map entry: (map key, value).
pub type MapEntry = (Vec<u8>, Vec<u8>);

#[derive(Clone, Copy)]
pub struct MapState<'a>(pub(crate) StateTable<'a>);

impl MapState<'_> {
    pub fn get(&self, ns: i64, key_group: u32, key: &[u8], map_key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.0.get(&entry_key(ns, key_group, key, map_key))
    }

    pub fn put(&self, ns: i64, key_group: u32, key: &[u8], map_key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.0.put(&entry_key(ns, key_group, key, map_key), value)
    }

    pub fn remove(&self, ns: i64, key_group: u32, key: &[u8], map_key: &[u8]) -> Result<(), StateError> {
        self.0.delete(&entry_key(ns, key_group, key, map_key))
    }

    /// The entries, ordered by map key.
    pub fn entries(&self, ns: i64, key_group: u32, key: &[u8]) -> Result<Vec<MapEntry>, StateError> {
        let prefix = map_prefix(ns, key_group, key);
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        self.0.scan(&prefix, end.as_deref(), |k, v| {
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Removes the whole map of (namespace, key).
    pub fn clear(&self, ns: i64, key_group: u32, key: &[u8]) -> Result<(), StateError> {
        let prefix = map_prefix(ns, key_group, key);
        self.0.delete_range(&prefix, prefix_end(&prefix).as_deref())
    }

    /// Every namespace's rows, for operators that scope state by window or by time.
    pub fn table(&self) -> &StateTable<'_> {
        &self.0
    }
}

fn entry_key(ns: i64, key_group: u32, key: &[u8], map_key: &[u8]) -> Vec<u8> {
    let mut k = map_prefix(ns, key_group, key);
    k.extend_from_slice(map_key);
    k
}
