//! Value state: one value per (namespace, key), as Flink's `ValueState`.

use crate::state::keyed_state_backend::StateError;
use crate::state::state_key::state_key;
use crate::state::state_table::StateTable;

#[derive(Clone, Copy)]
pub struct ValueState<'a>(pub(crate) StateTable<'a>);

impl ValueState<'_> {
    pub fn get(&self, ns: i64, key_group: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.0.get(&state_key(ns, key_group, key))
    }

    pub fn put(&self, ns: i64, key_group: u32, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.0.put(&state_key(ns, key_group, key), value)
    }

    pub fn clear(&self, ns: i64, key_group: u32, key: &[u8]) -> Result<(), StateError> {
        self.0.delete(&state_key(ns, key_group, key))
    }

    /// Every namespace's rows, for operators that scope state by window or by time.
    pub fn table(&self) -> &StateTable<'_> {
        &self.0
    }
}
