//! One stateful operator subtask's keyed state in its own RocksDB instance: one column
//! family per declared state (see `state_descriptor`), every key laid out as
//! `state_key` describes, so a restore can copy any state's key groups without knowing
//! its kind.
//!
//! Writes skip the write-ahead log: a checkpoint flushes the memtables into SST files
//! before it links them, and after a crash the state comes back from the last
//! checkpoint, never from this directory. RocksDB calls run on the subtask's slot thread,
//! which only that slot's subtasks share (as a Flink task thread does).

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};
use weir_common::key_groups::KeyGroupRange;

use crate::state::list_state::ListState;
use crate::state::map_state::MapState;
use crate::state::merging_state::MergingState;
use crate::state::state_descriptor::{KindTag, StateDescriptor, TIMERS, plain_column_family_options};
use crate::state::state_key::{PREFIX_LEN, key_group_of};
use crate::state::state_table::StateTable;
use crate::state::timer_service::{EarliestTimer, TimerService};
use crate::state::value_state::ValueState;

/// Rows written per batch when a restore copies state between instances.
const RESTORE_BATCH: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state of {operator} in {}: {source}", dir.display())]
    RocksDb {
        operator: String,
        dir: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("state {state:?} of {operator}: {source}")]
    Access {
        operator: String,
        state: String,
        #[source]
        source: rocksdb::Error,
    },
    #[error("state of {operator} in {}: {source}", dir.display())]
    Io {
        operator: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{operator} has no {kind} state named {state:?}")]
    Undeclared {
        operator: String,
        state: String,
        kind: KindTag,
    },
    /// State kept outside the task manager (Redis) could not be reached for good.
    #[error("state of {operator} in {store}: {message}")]
    External {
        operator: String,
        store: String,
        message: String,
    },
}

fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_max_background_jobs(2);
    o
}

/// The column families to open `path` with: the declared states, and any other a
/// restored snapshot holds (so nothing it carries is refused or lost).
fn column_families(path: &Path, states: &[StateDescriptor]) -> Vec<ColumnFamilyDescriptor> {
    let mut cfs: Vec<ColumnFamilyDescriptor> = states
        .iter()
        .map(|s| ColumnFamilyDescriptor::new(&s.name, s.column_family_options()))
        .collect();
    for name in DB::list_cf(&Options::default(), path).unwrap_or_default() {
        if name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !states.iter().any(|s| s.name == name) {
            cfs.push(ColumnFamilyDescriptor::new(name, plain_column_family_options()));
        }
    }
    cfs
}

pub struct KeyedStateBackend {
    operator: String,
    dir: PathBuf,
    db: Option<DB>,
    write: WriteOptions,
    kinds: HashMap<String, KindTag>,
    earliest_timer: Cell<EarliestTimer>,
}

impl KeyedStateBackend {
    /// Opens the instance in `dir` with the column families of `states` (created empty,
    /// or found as a restore put them); with `merge_from`, first copies into it the keys
    /// of `key_groups` held by those snapshots (a rescale: several old subtasks' state,
    /// or part of one).
    pub fn open(
        operator: &str,
        dir: &Path,
        states: &[StateDescriptor],
        merge_from: &[PathBuf],
        key_groups: KeyGroupRange,
    ) -> Result<Self, StateError> {
        let rocks = |source| StateError::RocksDb {
            operator: operator.to_string(),
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            operator: operator.to_string(),
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("db");
        let mut db = DB::open_cf_descriptors(&db_options(), &path, column_families(&path, states)).map_err(rocks)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        for from in merge_from {
            let old = DB::open_cf_descriptors_read_only(&db_options(), from, column_families(from, states), false)
                .map_err(rocks)?;
            for name in DB::list_cf(&Options::default(), from).map_err(rocks)? {
                let Some(old_cf) = old.cf_handle(&name) else { continue };
                if db.cf_handle(&name).is_none() {
                    db.create_cf(&name, &plain_column_family_options()).map_err(rocks)?;
                }
                let cf = db.cf_handle(&name).expect("just created");
                let mut batch = WriteBatch::default();
                for item in old.iterator_cf(old_cf, IteratorMode::Start) {
                    let (k, v) = item.map_err(rocks)?;
                    if k.len() >= PREFIX_LEN && key_groups.contains(key_group_of(&k)) {
                        batch.put_cf(cf, k, v);
                    }
                    if batch.len() >= RESTORE_BATCH {
                        db.write_opt(std::mem::take(&mut batch), &write).map_err(rocks)?;
                    }
                }
                db.write_opt(batch, &write).map_err(rocks)?;
            }
            drop(old);
            let _ = std::fs::remove_dir_all(from);
        }
        Ok(Self {
            operator: operator.to_string(),
            dir: dir.to_path_buf(),
            db: Some(db),
            write,
            kinds: states.iter().map(|s| (s.name.clone(), s.kind.tag())).collect(),
            earliest_timer: Cell::default(),
        })
    }

    fn db(&self) -> &DB {
        self.db.as_ref().expect("open until dropped")
    }

    fn rocks(&self) -> impl Fn(rocksdb::Error) -> StateError + '_ {
        |source| StateError::RocksDb {
            operator: self.operator.clone(),
            dir: self.dir.clone(),
            source,
        }
    }

    fn table<'a>(&'a self, name: &'a str, kind: KindTag) -> Result<StateTable<'a>, StateError> {
        let undeclared = || StateError::Undeclared {
            operator: self.operator.clone(),
            state: name.to_string(),
            kind,
        };
        if self.kinds.get(name) != Some(&kind) {
            return Err(undeclared());
        }
        Ok(StateTable {
            db: self.db(),
            cf: self.db().cf_handle(name).ok_or_else(undeclared)?,
            write: &self.write,
            operator: &self.operator,
            state: name,
        })
    }

    pub fn value<'a>(&'a self, name: &'a str) -> Result<ValueState<'a>, StateError> {
        self.table(name, KindTag::Value).map(ValueState)
    }

    pub fn list<'a>(&'a self, name: &'a str) -> Result<ListState<'a>, StateError> {
        self.table(name, KindTag::List).map(ListState)
    }

    pub fn map<'a>(&'a self, name: &'a str) -> Result<MapState<'a>, StateError> {
        self.table(name, KindTag::Map).map(MapState)
    }

    pub fn merging<'a>(&'a self, name: &'a str) -> Result<MergingState<'a>, StateError> {
        self.table(name, KindTag::Merging).map(MergingState)
    }

    pub fn timers(&self) -> Result<TimerService<'_>, StateError> {
        Ok(TimerService {
            table: self.table(TIMERS, KindTag::Timers)?,
            earliest: &self.earliest_timer,
        })
    }

    /// Takes a RocksDB checkpoint (memtables flushed, SST files hard-linked) into a new
    /// directory under this instance and returns it; the caller uploads and removes it.
    pub fn snapshot(&self, checkpoint: u64) -> Result<PathBuf, StateError> {
        let path = self.dir.join("snapshots").join(format!("chk-{checkpoint}"));
        if path.exists() {
            // Left by an abandoned attempt at the same id; RocksDB wants a fresh path.
            std::fs::remove_dir_all(&path).map_err(|source| StateError::Io {
                operator: self.operator.clone(),
                dir: path.clone(),
                source,
            })?;
        }
        std::fs::create_dir_all(self.dir.join("snapshots")).map_err(|source| StateError::Io {
            operator: self.operator.clone(),
            dir: self.dir.clone(),
            source,
        })?;
        Checkpoint::new(self.db())
            .and_then(|c| c.create_checkpoint(&path))
            .map_err(self.rocks())?;
        Ok(path)
    }
}

impl Drop for KeyedStateBackend {
    fn drop(&mut self) {
        drop(self.db.take());
        // The instance lives only as long as its subtask: a restore always starts from
        // checkpoint storage.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::state_key::Timer;

    fn add_merge(_: &[u8], existing: Option<&[u8]>, ops: &rocksdb::merge_operator::MergeOperands) -> Option<Vec<u8>> {
        let mut sum = existing.map_or(0, |e| i64::from_le_bytes(e.try_into().unwrap()));
        for op in ops {
            sum += i64::from_le_bytes(op.try_into().unwrap());
        }
        Some(sum.to_le_bytes().to_vec())
    }

    fn states() -> Vec<StateDescriptor> {
        vec![
            StateDescriptor::merging("counts", "add", Arc::new(add_merge)),
            StateDescriptor::value("last"),
            StateDescriptor::list("rows"),
            StateDescriptor::map("clicks"),
            StateDescriptor::timers(),
        ]
    }

    fn open(dir: &Path, merge_from: &[PathBuf], range: KeyGroupRange) -> KeyedStateBackend {
        KeyedStateBackend::open("join", dir, &states(), merge_from, range).unwrap()
    }

    fn counts(b: &KeyedStateBackend, ns: i64) -> Vec<(u32, Vec<u8>, i64)> {
        let mut out = Vec::new();
        b.merging("counts")
            .unwrap()
            .table()
            .scan_namespace(ns, |kg, k, v| {
                out.push((kg, k.to_vec(), i64::from_le_bytes(v.try_into().unwrap())))
            })
            .unwrap();
        out
    }

    fn timer(time: i64, key_group: u32, key: &[u8]) -> Timer {
        Timer {
            time,
            key_group,
            namespace: 0,
            key: key.to_vec(),
        }
    }

    #[test]
    fn merging_state_scans_by_namespace_in_time_order() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(&tmp.path().join("a"), &[], KeyGroupRange { start: 0, end: 128 });
        let one = 1i64.to_le_bytes().to_vec();
        let counts_state = b.merging("counts").unwrap();
        counts_state
            .merge_all(
                [
                    (-10, 5, &b"x"[..], one.clone()),
                    (20, 100, &b"y"[..], one.clone()),
                    (-10, 5, &b"x"[..], one.clone()),
                ]
                .into_iter(),
            )
            .unwrap();
        counts_state
            .merge_all([(-10, 70, &b"z"[..], one.clone())].into_iter())
            .unwrap();
        let namespaces = || -> Vec<i64> { counts_state.table().namespaces().unwrap().into_iter().collect() };
        assert_eq!(namespaces(), [-10, 20]);
        assert_eq!(counts(&b, -10), [(5, b"x".to_vec(), 2), (70, b"z".to_vec(), 1)]);
        counts_state.table().delete_namespace(-10).unwrap();
        assert!(counts(&b, -10).is_empty());
        assert_eq!(namespaces(), [20]);
    }

    #[test]
    fn value_list_and_map_state_per_namespace_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(&tmp.path().join("a"), &[], KeyGroupRange { start: 0, end: 128 });

        let last = b.value("last").unwrap();
        assert_eq!(last.get(1, 3, b"u1").unwrap(), None);
        last.put(1, 3, b"u1", b"a").unwrap();
        last.put(1, 3, b"u1", b"b").unwrap();
        last.put(2, 3, b"u1", b"other namespace").unwrap();
        assert_eq!(last.get(1, 3, b"u1").unwrap().as_deref(), Some(&b"b"[..]));
        last.clear(1, 3, b"u1").unwrap();
        assert_eq!(last.get(1, 3, b"u1").unwrap(), None);
        assert_eq!(last.get(2, 3, b"u1").unwrap().as_deref(), Some(&b"other namespace"[..]));

        let rows = b.list("rows").unwrap();
        assert!(rows.get(0, 9, b"imp").unwrap().is_empty());
        for e in [&b"first"[..], b"", b"third"] {
            rows.add(0, 9, b"imp", e).unwrap();
        }
        rows.add(0, 9, b"imp2", b"elsewhere").unwrap();
        assert_eq!(
            rows.get(0, 9, b"imp").unwrap(),
            [b"first".to_vec(), vec![], b"third".to_vec()]
        );
        rows.clear(0, 9, b"imp").unwrap();
        assert!(rows.get(0, 9, b"imp").unwrap().is_empty());
        assert_eq!(rows.get(0, 9, b"imp2").unwrap(), [b"elsewhere".to_vec()]);

        let clicks = b.map("clicks").unwrap();
        clicks.put(0, 4, b"a", b"k2", b"v2").unwrap();
        clicks.put(0, 4, b"a", b"k1", b"v1").unwrap();
        clicks.put(0, 4, b"ab", b"k1", b"not a's").unwrap();
        clicks.put(0, 4, b"a", b"k1", b"v1'").unwrap();
        assert_eq!(clicks.get(0, 4, b"a", b"k1").unwrap().as_deref(), Some(&b"v1'"[..]));
        assert_eq!(
            clicks.entries(0, 4, b"a").unwrap(),
            [(b"k1".to_vec(), b"v1'".to_vec()), (b"k2".to_vec(), b"v2".to_vec())]
        );
        clicks.remove(0, 4, b"a", b"k2").unwrap();
        assert_eq!(clicks.entries(0, 4, b"a").unwrap().len(), 1);
        clicks.clear(0, 4, b"a").unwrap();
        assert!(clicks.entries(0, 4, b"a").unwrap().is_empty());
        assert_eq!(clicks.entries(0, 4, b"ab").unwrap().len(), 1);

        // A state is reached only as the kind it was declared.
        assert!(matches!(b.list("last"), Err(StateError::Undeclared { .. })));
        assert!(matches!(b.value("nope"), Err(StateError::Undeclared { .. })));
    }

    #[test]
    fn timers_fire_in_time_order_once_and_in_bounded_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(&tmp.path().join("a"), &[], KeyGroupRange { start: 0, end: 128 });
        let timers = b.timers().unwrap();
        assert_eq!(timers.earliest().unwrap(), None);
        assert!(timers.pop_due(i64::MAX, 10).unwrap().is_empty());
        for (t, kg, k) in [(30, 1, "c"), (-5, 2, "a"), (10, 1, "b"), (10, 0, "b"), (30, 1, "c")] {
            timers.register(&timer(t, kg, k.as_bytes())).unwrap();
        }
        timers.register(&timer(50, 3, b"gone")).unwrap();
        timers.delete(&timer(50, 3, b"gone")).unwrap();
        assert_eq!(timers.earliest().unwrap(), Some(-5));
        assert!(timers.pop_due(-6, 10).unwrap().is_empty());

        let first = timers.pop_due(10, 2).unwrap();
        assert_eq!(first, [timer(-5, 2, b"a"), timer(10, 0, b"b")]);
        // A timer registered while firing comes out of a later call if it is due.
        timers.register(&timer(7, 5, b"late")).unwrap();
        assert_eq!(
            timers.pop_due(10, 2).unwrap(),
            [timer(7, 5, b"late"), timer(10, 1, b"b")]
        );
        assert!(timers.pop_due(10, 2).unwrap().is_empty());
        assert_eq!(timers.earliest().unwrap(), Some(30));
        assert_eq!(timers.pop_due(i64::MAX, 10).unwrap(), [timer(30, 1, b"c")]);
        assert_eq!(timers.earliest().unwrap(), None);
    }

    #[test]
    fn every_state_survives_a_snapshot_and_rescales_by_key_group() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(&tmp.path().join("a"), &[], KeyGroupRange { start: 0, end: 128 });
        for kg in [10u32, 100] {
            let key = format!("key{kg}");
            let key = key.as_bytes();
            b.merging("counts")
                .unwrap()
                .merge_all([(0, kg, key, 5i64.to_le_bytes().to_vec())].into_iter())
                .unwrap();
            b.value("last").unwrap().put(0, kg, key, b"v").unwrap();
            b.list("rows").unwrap().add(0, kg, key, b"row").unwrap();
            b.map("clicks").unwrap().put(0, kg, key, b"ad", b"1").unwrap();
            b.timers().unwrap().register(&timer(60, kg, key)).unwrap();
        }
        let snap = b.snapshot(1).unwrap();
        b.value("last")
            .unwrap()
            .put(0, 10, b"key10", b"after the snapshot")
            .unwrap();

        // Same parallelism: the snapshot directory is the instance.
        let same = tmp.path().join("same");
        std::fs::create_dir_all(&same).unwrap();
        copy_dir(&snap, &same.join("db"));
        let r = open(&same, &[], KeyGroupRange { start: 0, end: 128 });
        assert_eq!(
            r.value("last").unwrap().get(0, 10, b"key10").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(r.timers().unwrap().earliest().unwrap(), Some(60));
        drop(r);

        // Rescale: a subtask owning key groups [64, 128) takes only its keys, of every state.
        let r = open(
            &tmp.path().join("r"),
            std::slice::from_ref(&snap),
            KeyGroupRange { start: 64, end: 128 },
        );
        assert_eq!(counts(&r, 0), [(100, b"key100".to_vec(), 5)]);
        assert_eq!(
            r.value("last").unwrap().get(0, 100, b"key100").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(r.value("last").unwrap().get(0, 10, b"key10").unwrap(), None);
        assert_eq!(
            r.list("rows").unwrap().get(0, 100, b"key100").unwrap(),
            [b"row".to_vec()]
        );
        assert!(r.list("rows").unwrap().get(0, 10, b"key10").unwrap().is_empty());
        assert_eq!(r.map("clicks").unwrap().entries(0, 100, b"key100").unwrap().len(), 1);
        assert!(r.map("clicks").unwrap().entries(0, 10, b"key10").unwrap().is_empty());
        assert_eq!(
            r.timers().unwrap().pop_due(60, 10).unwrap(),
            [timer(60, 100, b"key100")]
        );
        drop(r);
        assert!(!tmp.path().join("r").exists(), "an instance removes its directory");
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
