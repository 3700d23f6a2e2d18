//! List state: a list of elements per (namespace, key), as Flink's `ListState`. An
//! append is a RocksDB merge (no read), so buffering rows per key costs one write each.

use crate::state::keyed_state_backend::StateError;
use crate::state::state_key::state_key;
use crate::state::state_table::StateTable;

#[derive(Clone, Copy)]
pub struct ListState<'a>(pub(crate) StateTable<'a>);

impl ListState<'_> {
    pub fn add(&self, ns: i64, key_group: u32, key: &[u8], element: &[u8]) -> Result<(), StateError> {
        self.0.merge(&state_key(ns, key_group, key), &encode_element(element))
    }

    /// The elements in the order they were added (empty when there are none).
    pub fn get(&self, ns: i64, key_group: u32, key: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        Ok(self
            .0
            .get(&state_key(ns, key_group, key))?
            .map(|v| decode_elements(&v).map(<[u8]>::to_vec).collect())
            .unwrap_or_default())
    }

    pub fn clear(&self, ns: i64, key_group: u32, key: &[u8]) -> Result<(), StateError> {
        self.0.delete(&state_key(ns, key_group, key))
    }

    /// Sets the list to `elements` (one write, for dropping some elements).
    pub fn replace<'e>(
        &self,
        ns: i64,
        key_group: u32,
        key: &[u8],
        elements: impl Iterator<Item = &'e [u8]>,
    ) -> Result<(), StateError> {
        let list: Vec<u8> = elements.flat_map(encode_element).collect();
        self.0.put(&state_key(ns, key_group, key), &list)
    }

    /// Every namespace's rows, for operators that scope state by window or by time.
    pub fn table(&self) -> &StateTable<'_> {
        &self.0
    }
}

fn encode_element(element: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + element.len());
    out.extend_from_slice(&(element.len() as u32).to_le_bytes());
    out.extend_from_slice(element);
    out
}

/// The elements of a stored list (the layout `StateDescriptor::list` merges).
pub fn decode_elements(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let (element, rest) = bytes[4..].split_at(len);
        bytes = rest;
        Some(element)
    })
}
