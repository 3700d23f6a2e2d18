//! One named state's column family, as the kinds of state see it: point reads and
//! writes, ordered scans between bounds, and what every kind does by namespace (list the
//! namespaces that hold rows, scan one, drop one).

use std::collections::BTreeSet;

use rocksdb::{ColumnFamily, DB, ReadOptions, WriteBatch, WriteOptions};

use crate::state::keyed_state_backend::StateError;
use crate::state::state_key::{PREFIX_LEN, key_group_of, namespace_bounds, namespace_of, time_bytes};

#[derive(Clone, Copy)]
pub struct StateTable<'a> {
    pub(crate) db: &'a DB,
    pub(crate) cf: &'a ColumnFamily,
    pub(crate) write: &'a WriteOptions,
    pub(crate) operator: &'a str,
    pub(crate) state: &'a str,
}

impl<'a> StateTable<'a> {
    pub(crate) fn err(&self, source: rocksdb::Error) -> StateError {
        StateError::Access {
            operator: self.operator.to_string(),
            state: self.state.to_string(),
            source,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get_cf(self.cf, key).map_err(|e| self.err(e))
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.db
            .put_cf_opt(self.cf, key, value, self.write)
            .map_err(|e| self.err(e))
    }

    pub fn merge(&self, key: &[u8], operand: &[u8]) -> Result<(), StateError> {
        self.db
            .merge_cf_opt(self.cf, key, operand, self.write)
            .map_err(|e| self.err(e))
    }

    pub fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        self.db.delete_cf_opt(self.cf, key, self.write).map_err(|e| self.err(e))
    }

    /// Removes every row in `[from, to)` (`to = None`: to the end).
    pub fn delete_range(&self, from: &[u8], to: Option<&[u8]>) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        match to {
            Some(to) => batch.delete_range_cf(self.cf, from, to),
            // No key bounds the end of the key space: the rows go one by one (only the
            // last namespace, i64::MAX, ever gets here).
            None => self.scan(from, None, |k, _| {
                batch.delete_cf(self.cf, k);
                true
            })?,
        }
        self.write_batch(batch)
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), StateError> {
        // Every stored key starts with 8 time bytes and 2 key-group bytes, so one range
        // below ten 0xff bytes covers all but the (never used) keys at the very top.
        const TOP: [u8; 10] = [0xff; 10];
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf, &[][..], &TOP[..]);
        self.scan(&TOP, None, |k, _| {
            batch.delete_cf(self.cf, k);
            true
        })?;
        self.write_batch(batch)
    }

    pub fn write_batch(&self, batch: WriteBatch) -> Result<(), StateError> {
        self.db.write_opt(batch, self.write).map_err(|e| self.err(e))
    }

    /// Calls `f(key, value)` for every row in `[from, to)` in key order until `f` returns
    /// false.
    pub fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(from.to_vec());
        if let Some(to) = to {
            read.set_iterate_upper_bound(to.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf, read);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !f(k, v) {
                break;
            }
            it.next();
        }
        it.status().map_err(|e| self.err(e))
    }

    /// Calls `f(key group, key, value)` for every row of namespace `ns`, in key order.
    pub fn scan_namespace(&self, ns: i64, mut f: impl FnMut(u32, &[u8], &[u8])) -> Result<(), StateError> {
        let (from, to) = namespace_bounds(ns);
        self.scan(&from, to.as_deref(), |k, v| {
            f(key_group_of(k), &k[PREFIX_LEN..], v);
            true
        })
    }

    /// Removes every row of namespace `ns`.
    pub fn delete_namespace(&self, ns: i64) -> Result<(), StateError> {
        let (from, to) = namespace_bounds(ns);
        self.delete_range(&from, to.as_deref())
    }

    /// The namespaces that hold rows (one seek per namespace, not a full scan).
    pub fn namespaces(&self) -> Result<BTreeSet<i64>, StateError> {
        let mut out = BTreeSet::new();
        let mut it = self.db.raw_iterator_cf(self.cf);
        it.seek_to_first();
        while let Some(k) = it.key() {
            let ns = namespace_of(k);
            out.insert(ns);
            let Some(next) = ns.checked_add(1) else { break };
            it.seek(time_bytes(next));
        }
        it.status().map_err(|e| self.err(e))?;
        Ok(out)
    }
}
