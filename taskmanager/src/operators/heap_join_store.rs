//! The window join's state on the heap (`state: "memory"`), for joins whose pending rows
//! fit in memory and that want the speed: A rows in a map ordered by due time, then key
//! group and key (firing pops its front), B rows in a hash map by key, and their expiry
//! times in an ordered set.
//!
//! Checkpoints are full snapshots, as Flink's hashmap backend takes them: at the barrier
//! everything is written into a RocksDB instance in `join_store`'s layout and that
//! instance is snapshotted and uploaded as any keyed state. The cost is a write per key
//! per checkpoint (the RocksDB store pays one per row, once); in return a restore, a
//! rescale and a switch between the two stores all read the same snapshots. A restored
//! instance loads its key groups' rows back onto the heap when it opens.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;

use crate::operators::join_state::{Fired, JoinState, matches_in_window};
use crate::operators::join_store::JoinStore;
use crate::state::OperatorStateContext;
use crate::state::keyed_state_backend::StateError;

type Rows = Vec<(i64, Vec<u8>)>;

pub struct HeapJoinStore {
    window: i64,
    window_and_delay: i64,
    /// (due time, key group, key) → the key's A rows due then.
    waiting: BTreeMap<(i64, u32, Vec<u8>), Rows>,
    /// key → (key group, its B rows).
    matches: HashMap<Vec<u8>, (u32, Rows)>,
    /// (time the B rows of a key at some time expire, key).
    expiring: BTreeSet<(i64, Vec<u8>)>,
    /// Where snapshots are written, and restored state read from.
    persisted: JoinStore,
}

impl HeapJoinStore {
    pub fn new(name: &str, ctx: OperatorStateContext, window: i64, delay: i64) -> Result<Self, StateError> {
        let mut store = Self {
            window,
            window_and_delay: window.saturating_add(delay),
            waiting: BTreeMap::new(),
            matches: HashMap::default(),
            expiring: BTreeSet::new(),
            persisted: JoinStore::new(name, ctx, window, delay),
        };
        if store.persisted.restored() {
            let (mut a_rows, mut b_rows) = (Vec::new(), Vec::new());
            store.persisted.load(
                |kg, key, t, row| a_rows.push((kg, key.to_vec(), t, row.to_vec())),
                |kg, key, t, row| b_rows.push((kg, key.to_vec(), t, row.to_vec())),
            )?;
            for (kg, key, t, row) in a_rows {
                store.push_a(kg, key, t, row);
            }
            for (kg, key, t, row) in b_rows {
                store.push_b(kg, key, t, row);
            }
        }
        Ok(store)
    }

    fn push_a(&mut self, key_group: u32, key: Vec<u8>, t_a: i64, row: Vec<u8>) {
        let due = t_a.saturating_add(self.window_and_delay);
        self.waiting.entry((due, key_group, key)).or_default().push((t_a, row));
    }

    fn push_b(&mut self, key_group: u32, key: Vec<u8>, t_b: i64, row: Vec<u8>) {
        self.expiring
            .insert((t_b.saturating_add(self.window_and_delay), key.clone()));
        self.matches
            .entry(key)
            .or_insert_with(|| (key_group, Vec::new()))
            .1
            .push((t_b, row));
    }

    /// Writes the heap into the RocksDB instance and snapshots it there, for tests that
    /// restore from it.
    #[cfg(test)]
    pub fn snapshot(&mut self, id: u64) -> Result<std::path::PathBuf, StateError> {
        self.write_through()?;
        self.persisted.snapshot(id)
    }

    fn write_through(&mut self) -> Result<(), StateError> {
        self.persisted.overwrite(
            self.waiting
                .iter()
                .map(|((due, kg, key), rows)| (*due, *kg, key.as_slice(), rows.as_slice())),
            self.matches
                .iter()
                .map(|(key, (kg, rows))| (*kg, key.as_slice(), rows.as_slice())),
        )
    }
}

impl JoinState for HeapJoinStore {
    fn add_a(&mut self, key_group: u32, key: &[u8], t_a: i64, row: &[u8]) -> Result<(), StateError> {
        self.push_a(key_group, key.to_vec(), t_a, row.to_vec());
        Ok(())
    }

    fn add_b(&mut self, key_group: u32, key: &[u8], t_b: i64, row: &[u8]) -> Result<(), StateError> {
        self.push_b(key_group, key.to_vec(), t_b, row.to_vec());
        Ok(())
    }

    fn fire(&mut self, watermark: i64, limit: usize, out: &mut Vec<Fired>) -> Result<bool, StateError> {
        for _ in 0..limit {
            let Some(entry) = self.waiting.first_entry() else {
                return Ok(false);
            };
            if entry.key().0 > watermark {
                return Ok(false);
            }
            let ((_, key_group, key), rows) = entry.remove_entry();
            let b_rows = self.matches.get(&key).map_or(&[][..], |(_, rows)| rows.as_slice());
            for (t_a, row) in rows {
                let matches = matches_in_window(b_rows.iter().map(|(t, r)| (*t, r.as_slice())), t_a, self.window);
                out.push(Fired {
                    key_group,
                    key: key.clone(),
                    t_a,
                    row,
                    matches,
                });
            }
        }
        Ok(self.waiting.first_key_value().is_some_and(|(k, _)| k.0 <= watermark))
    }

    fn expire(&mut self, watermark: i64) -> Result<u64, StateError> {
        let mut dropped = 0;
        while let Some(first) = self.expiring.first()
            && first.0 <= watermark
        {
            let (_, key) = self.expiring.pop_first().expect("a first entry");
            let Some((_, rows)) = self.matches.get_mut(&key) else {
                continue;
            };
            let before = rows.len();
            rows.retain(|(t_b, _)| t_b.saturating_add(self.window_and_delay) > watermark);
            dropped += (before - rows.len()) as u64;
            if rows.is_empty() {
                self.matches.remove(&key);
            }
        }
        Ok(dropped)
    }

    fn checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        if !self.persisted.checkpoints() {
            return Ok(());
        }
        self.write_through()?;
        self.persisted.checkpoint(id)
    }
}

#[cfg(test)]
mod tests {
    use weir_common::key_groups::KeyGroupRange;

    use super::*;

    const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 128 };

    fn ctx(
        dir: &std::path::Path,
        key_groups: KeyGroupRange,
        merge_from: Vec<std::path::PathBuf>,
    ) -> OperatorStateContext {
        OperatorStateContext {
            key_groups,
            restored: !merge_from.is_empty(),
            merge_from,
            ..OperatorStateContext::standalone(dir.to_path_buf(), 128)
        }
    }

    fn fire_all(s: &mut dyn JoinState, watermark: i64) -> Vec<Fired> {
        let mut out = Vec::new();
        while s.fire(watermark, 3, &mut out).unwrap() {}
        out
    }

    /// The same random stream of rows and watermarks through both stores: every firing
    /// step and every expiry must be identical, row for row and in order.
    #[test]
    fn behaves_exactly_as_the_rocksdb_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut heap = HeapJoinStore::new("join", ctx(&dir.path().join("heap"), ALL, Vec::new()), 1_000, 200).unwrap();
        let mut rocks = JoinStore::new("join", ctx(&dir.path().join("rocks"), ALL, Vec::new()), 1_000, 200);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut watermark = 0i64;
        for step in 0..3_000 {
            let key = format!("k{}", rnd(40));
            let kg = (key.len() as u32 * 31 + rnd(1) as u32) % 128;
            let t = watermark + rnd(3_000) as i64 - 500;
            let row = format!("row{step}").into_bytes();
            match rnd(10) {
                0..=4 => {
                    heap.add_a(kg, key.as_bytes(), t, &row).unwrap();
                    rocks.add_a(kg, key.as_bytes(), t, &row).unwrap();
                }
                5..=7 => {
                    heap.add_b(kg, key.as_bytes(), t, &row).unwrap();
                    rocks.add_b(kg, key.as_bytes(), t, &row).unwrap();
                }
                _ => {
                    watermark += rnd(400) as i64;
                    let limit = 1 + rnd(5) as usize;
                    loop {
                        let (mut h, mut r) = (Vec::new(), Vec::new());
                        let more = heap.fire(watermark, limit, &mut h).unwrap();
                        assert_eq!(more, rocks.fire(watermark, limit, &mut r).unwrap(), "step {step}");
                        assert_eq!(h, r, "step {step}");
                        if !more {
                            break;
                        }
                    }
                    assert_eq!(heap.expire(watermark).unwrap(), rocks.expire(watermark).unwrap());
                }
            }
        }
        assert_eq!(fire_all(&mut heap, i64::MAX), fire_all(&mut rocks, i64::MAX));
    }

    /// A snapshot of the heap restores onto the heap at a lower parallelism (its key
    /// groups only) and into the RocksDB store alike.
    #[test]
    fn a_snapshot_restores_by_key_group_into_either_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = HeapJoinStore::new("join", ctx(&dir.path().join("old"), ALL, Vec::new()), 60_000, 5_000).unwrap();
        for kg in [3u32, 70] {
            let key = format!("k{kg}");
            s.add_a(kg, key.as_bytes(), 1_000, b"a").unwrap();
            s.add_b(kg, key.as_bytes(), 2_000, b"b").unwrap();
            s.add_b(kg, key.as_bytes(), 90_000, b"too late").unwrap();
        }
        // A restore consumes the snapshot it opens: one for each store.
        let snapshots: Vec<_> = (1..=2)
            .map(|id| {
                let to = dir.path().join(format!("chk-{id}"));
                std::fs::rename(s.snapshot(id).unwrap(), &to).unwrap();
                to
            })
            .collect();
        drop(s);
        let low = KeyGroupRange { start: 0, end: 64 };
        let mut heap = HeapJoinStore::new(
            "join",
            ctx(&dir.path().join("heap"), low, vec![snapshots[0].clone()]),
            60_000,
            5_000,
        )
        .unwrap();
        let mut rocks = JoinStore::new(
            "join",
            ctx(&dir.path().join("rocks"), low, vec![snapshots[1].clone()]),
            60_000,
            5_000,
        );
        for fired in [fire_all(&mut heap, i64::MAX), fire_all(&mut rocks, i64::MAX)] {
            assert_eq!(
                fired,
                vec![Fired {
                    key_group: 3,
                    key: b"k3".to_vec(),
                    t_a: 1_000,
                    row: b"a".to_vec(),
                    matches: vec![(2_000, b"b".to_vec())],
                }]
            );
        }
        assert_eq!(heap.expire(i64::MAX).unwrap(), 2, "the B rows came back too");
        assert_eq!(rocks.expire(i64::MAX).unwrap(), 2);
    }
}
