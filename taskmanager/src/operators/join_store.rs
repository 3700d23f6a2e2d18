//! The window join's state in RocksDB (`A LEFT JOIN B WITHIN window DELAY delay ON key`),
//! laid out so that the timer order and the row store are one key order:
//!
//! - `waiting` (list state): namespace = the time an A row is due (`t_A + window + delay`),
//!   then the key, then the A rows of that key due then. The rows *are* the timers: all
//!   that is due at a watermark is one range scan from the start of the column family,
//!   with no timer column family and no second lookup per timer.
//! - `matches` (list state): namespace 0, then the key, then its B rows with their event
//!   time. A firing A row reads its key's list with one point read (misses, the common
//!   case for impressions without a click, are answered by the bloom filter).
//! - `expiring` (list state): namespace = `t_B + window + delay`, then the key: when no A
//!   row can match that key's B rows of that time any more. Expiry rewrites the key's
//!   `matches` list without them.
//!
//! Appends are RocksDB merges (no read before a write), and every list tolerates repeats
//! of the same element, so nothing depends on a counter that a restore would have to
//! bring back. An A row and a B row are due together when `t_B = t_A + window`; firing runs
//! before expiry at every watermark, so such a pair still meets.

use crate::operators::join_state::{Fired, JoinState, matches_in_window};
use crate::state::OperatorStateContext;
use crate::state::keyed_state_backend::StateError;
use crate::state::list_state::decode_elements;
use crate::state::operator_state::OperatorState;
use crate::state::state_descriptor::StateDescriptor;
use crate::state::state_key::{PREFIX_LEN, key_group_of, namespace_of, time_bytes};

const WAITING: &str = "waiting";
const MATCHES: &str = "matches";
const EXPIRING: &str = "expiring";
/// The namespace of `matches`.
const ALL: i64 = 0;

pub struct JoinStore {
    state: OperatorState,
    window: i64,
    delay: i64,
    /// No `waiting` (and no `expiring`) row is due before this: scans start here rather
    /// than at the start of the column family, where the tombstones of everything fired
    /// so far lie (skipping them made each scan cost all earlier firings).
    waiting_floor: i64,
    expiring_floor: i64,
}

/// An element of `waiting` or `matches`: the row's event time, then the row.
fn timed(t: i64, row: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(8 + row.len());
    e.extend_from_slice(&t.to_le_bytes());
    e.extend_from_slice(row);
    e
}

fn untimed(element: &[u8]) -> (i64, &[u8]) {
    let (t, row) = element.split_at(8);
    (i64::from_le_bytes(t.try_into().expect("8 bytes")), row)
}

impl JoinStore {
    pub fn new(name: &str, ctx: OperatorStateContext, window: i64, delay: i64) -> Self {
        let states = vec![
            StateDescriptor::list(WAITING),
            StateDescriptor::list(MATCHES).with_point_lookups(),
            StateDescriptor::list(EXPIRING),
        ];
        Self {
            state: OperatorState::new(name, ctx, states),
            window,
            delay,
            waiting_floor: i64::MIN,
            expiring_floor: i64::MIN,
        }
    }

    /// When an A row at `t_a` is due.
    fn due(&self, t_a: i64) -> i64 {
        t_a.saturating_add(self.window).saturating_add(self.delay)
    }

    /// Whether the store was opened from a checkpoint's snapshot.
    pub fn restored(&self) -> bool {
        self.state.restored()
    }

    /// Whether the job checkpoints.
    pub fn checkpoints(&self) -> bool {
        self.state.checkpoints()
    }

    /// A local snapshot of the instance, as a checkpoint takes it.
    #[cfg(test)]
    pub fn snapshot(&mut self, id: u64) -> Result<std::path::PathBuf, StateError> {
        self.state.backend()?.snapshot(id)
    }

    /// Replaces everything stored with `waiting` (due time, key group, key, the key's A
    /// rows due then) and `matches` (key group, key, its B rows): how a store that keeps
    /// its state elsewhere writes a snapshot in this layout.
    pub fn overwrite<'r>(
        &mut self,
        waiting: impl Iterator<Item = (i64, u32, &'r [u8], &'r [(i64, Vec<u8>)])>,
        matches: impl Iterator<Item = (u32, &'r [u8], &'r [(i64, Vec<u8>)])>,
    ) -> Result<(), StateError> {
        let window_and_delay = self.window.saturating_add(self.delay);
        let backend = self.state.backend()?;
        for name in [WAITING, MATCHES, EXPIRING] {
            backend.list(name)?.table().clear()?;
        }
        let list = backend.list(WAITING)?;
        for (due, key_group, key, rows) in waiting {
            let elements: Vec<Vec<u8>> = rows.iter().map(|(t, row)| timed(*t, row)).collect();
            list.replace(due, key_group, key, elements.iter().map(Vec::as_slice))?;
        }
        let (list, expiring) = (backend.list(MATCHES)?, backend.list(EXPIRING)?);
        for (key_group, key, rows) in matches {
            let elements: Vec<Vec<u8>> = rows.iter().map(|(t, row)| timed(*t, row)).collect();
            list.replace(ALL, key_group, key, elements.iter().map(Vec::as_slice))?;
            let mut expiries: Vec<i64> = rows.iter().map(|(t, _)| t.saturating_add(window_and_delay)).collect();
            expiries.sort_unstable();
            expiries.dedup();
            for expiry in expiries {
                expiring.replace(expiry, key_group, key, std::iter::empty())?;
            }
        }
        self.waiting_floor = i64::MIN;
        self.expiring_floor = i64::MIN;
        Ok(())
    }

    /// Calls `a(key group, key, t_A, row)` for every waiting A row and `b(key group, key,
    /// t_B, row)` for every B row held.
    pub fn load(
        &mut self,
        mut a: impl FnMut(u32, &[u8], i64, &[u8]),
        mut b: impl FnMut(u32, &[u8], i64, &[u8]),
    ) -> Result<(), StateError> {
        let backend = self.state.backend()?;
        for (name, f) in [
            (WAITING, &mut a as &mut dyn FnMut(u32, &[u8], i64, &[u8])),
            (MATCHES, &mut b),
        ] {
            backend.list(name)?.table().scan(&[], None, |k, v| {
                for element in decode_elements(v) {
                    let (t, row) = untimed(element);
                    f(key_group_of(k), &k[PREFIX_LEN..], t, row);
                }
                true
            })?;
        }
        Ok(())
    }

    /// The earliest time an A row is due, if any waits.
    #[cfg(test)]
    pub fn next_due(&mut self) -> Result<Option<i64>, StateError> {
        let mut first = None;
        let from = time_bytes(self.waiting_floor);
        self.state.backend()?.list(WAITING)?.table().scan(&from, None, |k, _| {
            first = Some(namespace_of(k));
            false
        })?;
        Ok(first)
    }
}

impl JoinState for JoinStore {
    fn add_a(&mut self, key_group: u32, key: &[u8], t_a: i64, row: &[u8]) -> Result<(), StateError> {
        let due = self.due(t_a);
        self.waiting_floor = self.waiting_floor.min(due);
        self.state
            .backend()?
            .list(WAITING)?
            .add(due, key_group, key, &timed(t_a, row))
    }

    fn add_b(&mut self, key_group: u32, key: &[u8], t_b: i64, row: &[u8]) -> Result<(), StateError> {
        let expiry = self.due(t_b);
        self.expiring_floor = self.expiring_floor.min(expiry);
        let backend = self.state.backend()?;
        backend.list(MATCHES)?.add(ALL, key_group, key, &timed(t_b, row))?;
        backend.list(EXPIRING)?.add(expiry, key_group, key, &[])
    }

    fn fire(&mut self, watermark: i64, limit: usize, out: &mut Vec<Fired>) -> Result<bool, StateError> {
        let end = watermark.checked_add(1).map(|t| time_bytes(t).to_vec());
        let window = self.window;
        let from = time_bytes(self.waiting_floor);
        let backend = self.state.backend()?;
        let waiting = backend.list(WAITING)?;
        let matches = backend.list(MATCHES)?;
        let mut due: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut next: Option<Vec<u8>> = None;
        waiting.table().scan(&from, end.as_deref(), |k, v| {
            if due.len() == limit {
                next = Some(k.to_vec());
                return false;
            }
            due.push((k.to_vec(), v.to_vec()));
            true
        })?;
        for (k, v) in &due {
            let key_group = key_group_of(k);
            let key = &k[PREFIX_LEN..];
            let b_rows = matches.get(ALL, key_group, key)?;
            for element in decode_elements(v) {
                let (t_a, row) = untimed(element);
                out.push(Fired {
                    key_group,
                    key: key.to_vec(),
                    t_a,
                    row: row.to_vec(),
                    matches: matches_in_window(b_rows.iter().map(|e| untimed(e)), t_a, window),
                });
            }
        }
        // One range tombstone for everything fired.
        let fired_end = next.clone().or(end);
        waiting.table().delete_range(&from, fired_end.as_deref())?;
        self.waiting_floor = match &next {
            Some(k) => namespace_of(k),
            None => watermark.saturating_add(1),
        };
        Ok(next.is_some())
    }

    fn expire(&mut self, watermark: i64) -> Result<u64, StateError> {
        self.expire_with(watermark, |_| {})
    }

    fn checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        self.state.checkpoint(id)
    }
}

impl JoinStore {
    /// [`JoinState::expire`], calling `dropped` with each B row that goes.
    pub fn expire_with(&mut self, watermark: i64, mut dropped: impl FnMut(&[u8])) -> Result<u64, StateError> {
        let end = watermark.checked_add(1).map(|t| time_bytes(t).to_vec());
        let window_and_delay = self.window.saturating_add(self.delay);
        let from = time_bytes(self.expiring_floor);
        let backend = self.state.backend()?;
        let expiring = backend.list(EXPIRING)?;
        let matches = backend.list(MATCHES)?;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        expiring.table().scan(&from, end.as_deref(), |k, _| {
            keys.push(k.to_vec());
            true
        })?;
        let mut count = 0;
        for k in &keys {
            let (key_group, key) = (key_group_of(k), &k[PREFIX_LEN..]);
            let rows = matches.get(ALL, key_group, key)?;
            let (keep, gone): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = rows
                .iter()
                .partition(|e| untimed(e).0.saturating_add(window_and_delay) > watermark);
            gone.iter().for_each(|e| dropped(untimed(e).1));
            count += gone.len() as u64;
            if keep.is_empty() {
                matches.clear(ALL, key_group, key)?;
            } else if keep.len() < rows.len() {
                matches.replace(ALL, key_group, key, keep.into_iter().map(Vec::as_slice))?;
            }
        }
        expiring.table().delete_range(&from, end.as_deref())?;
        self.expiring_floor = watermark.saturating_add(1);
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use weir_common::key_groups::KeyGroupRange;

    use super::*;

    fn store(dir: &std::path::Path) -> JoinStore {
        restored(dir, KeyGroupRange { start: 0, end: 128 }, Vec::new())
    }

    /// A 60 s window, emitted 5 s after it closes; `merge_from`: snapshots to restore.
    fn restored(dir: &std::path::Path, key_groups: KeyGroupRange, merge_from: Vec<std::path::PathBuf>) -> JoinStore {
        let ctx = OperatorStateContext {
            key_groups,
            restored: !merge_from.is_empty(),
            merge_from,
            ..OperatorStateContext::standalone(dir.to_path_buf(), 128)
        };
        JoinStore::new("join", ctx, 60_000, 5_000)
    }

    /// What waits survives a snapshot, and a rescaled restore keeps exactly the key
    /// groups of the new subtask: its A rows fire with their B rows, none of the others'.
    #[test]
    fn pending_rows_survive_a_snapshot_and_split_by_key_group_on_rescale() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(&dir.path().join("old"));
        for kg in [3u32, 70] {
            let key = format!("k{kg}");
            s.add_a(kg, key.as_bytes(), 1_000, b"a").unwrap();
            s.add_b(kg, key.as_bytes(), 2_000, b"b").unwrap();
        }
        let mut early = Vec::new();
        s.fire(0, 10, &mut early).unwrap();
        assert!(early.is_empty());
        // Moved out of the instance's directory, which goes with the instance.
        let snapshot = dir.path().join("chk-1");
        std::fs::rename(s.snapshot(1).unwrap(), &snapshot).unwrap();
        drop(s);
        let mut low = restored(
            &dir.path().join("new"),
            KeyGroupRange { start: 0, end: 64 },
            vec![snapshot],
        );
        let fired = fire_all(&mut low, i64::MAX);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].key_group, fired[0].key.as_slice(), fired[0].matches.len()),
            (3, &b"k3"[..], 1)
        );
    }

    fn fire_all(s: &mut JoinStore, watermark: i64) -> Vec<Fired> {
        let mut out = Vec::new();
        while s.fire(watermark, 2, &mut out).unwrap() {}
        out
    }

    #[test]
    fn an_a_row_fires_once_after_its_window_and_delay_with_the_b_rows_inside_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        s.add_a(7, b"req-1", 1_000, b"imp-1").unwrap();
        s.add_a(9, b"req-2", 2_000, b"imp-2").unwrap();
        s.add_b(7, b"req-1", 999, b"too early").unwrap();
        s.add_b(7, b"req-1", 30_000, b"click-b").unwrap();
        s.add_b(7, b"req-1", 1_500, b"click-a").unwrap();
        s.add_b(7, b"req-1", 61_000, b"last ms").unwrap();
        s.add_b(7, b"req-1", 61_001, b"too late").unwrap();
        assert_eq!(s.next_due().unwrap(), Some(66_000));
        assert!(fire_all(&mut s, 65_999).is_empty(), "not before t_A + window + delay");
        let fired = fire_all(&mut s, 66_000);
        assert_eq!(
            fired,
            vec![Fired {
                key_group: 7,
                key: b"req-1".to_vec(),
                t_a: 1_000,
                row: b"imp-1".to_vec(),
                matches: vec![
                    (1_500, b"click-a".to_vec()),
                    (30_000, b"click-b".to_vec()),
                    (61_000, b"last ms".to_vec())
                ],
            }]
        );
        assert!(fire_all(&mut s, 66_000).is_empty(), "emitted once");
        let fired = fire_all(&mut s, i64::MAX);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].t_a, fired[0].matches.clone()),
            (2_000, vec![]),
            "no click: label 0"
        );
        assert_eq!(s.next_due().unwrap(), None);
    }

    #[test]
    fn firing_takes_bounded_steps_in_due_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        for i in (0..5i64).rev() {
            s.add_a(i as u32, format!("k{i}").as_bytes(), i * 1_000, b"a").unwrap();
        }
        let mut out = Vec::new();
        assert!(s.fire(i64::MAX, 2, &mut out).unwrap(), "more after two");
        assert_eq!(out.iter().map(|f| f.t_a).collect::<Vec<_>>(), vec![0, 1_000]);
        assert!(s.fire(i64::MAX, 2, &mut out).unwrap());
        assert!(!s.fire(i64::MAX, 2, &mut out).unwrap());
        assert_eq!(
            out.iter().map(|f| f.t_a).collect::<Vec<_>>(),
            vec![0, 1_000, 2_000, 3_000, 4_000]
        );
    }

    /// Scans start past what was fired (the tombstones before it are not walked again),
    /// but a row added later for an earlier time is still found.
    #[test]
    fn a_row_due_before_what_was_already_fired_still_fires() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        s.add_a(1, b"k1", 100_000, b"on time").unwrap();
        assert_eq!(fire_all(&mut s, 200_000).len(), 1);
        s.add_a(2, b"k2", 1_000, b"late").unwrap();
        s.add_b(2, b"k2", 2_000, b"click").unwrap();
        let fired = fire_all(&mut s, 200_001);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].row.as_slice(), fired[0].matches.len()), (&b"late"[..], 1));
        assert_eq!(s.expire(200_001).unwrap(), 1);
    }

    #[test]
    fn b_rows_expire_only_once_no_a_row_can_match_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path());
        s.add_b(1, b"k", 10_000, b"old").unwrap();
        s.add_b(1, b"k", 20_000, b"new").unwrap();
        assert_eq!(s.expire(74_999).unwrap(), 0);
        // An A row at 10 000 is due at 75 000 and still meets the B row at 10 000.
        s.add_a(1, b"k", 10_000, b"a").unwrap();
        let fired = fire_all(&mut s, 75_000);
        assert_eq!(fired[0].matches.len(), 2);
        assert_eq!(s.expire(75_000).unwrap(), 1, "the B row at 10 000 is past every window");
        s.add_a(1, b"k", 20_000, b"a2").unwrap();
        let fired = fire_all(&mut s, 85_000);
        assert_eq!(fired[0].matches, vec![(20_000, b"new".to_vec())]);
        assert_eq!(s.expire(85_000).unwrap(), 1);
        assert_eq!(s.expire(i64::MAX).unwrap(), 0, "nothing left");
    }
}
