//! One stateful operator subtask's keyed state in its own RocksDB instance.
//!
//! Key layout (fixed, so restore and rescaling can read any operator's state):
//! `namespace (8 bytes, big-endian, sign bit flipped) | key group (2 bytes, big-endian) |
//! key`. The namespace is a time (a window's start, a timer's time): RocksDB's key order
//! is then time order, so everything due at a time is one range scan and firing needs no
//! separate timer index. The key group sits where a restore can filter on it without
//! knowing the operator.
//!
//! Writes skip the write-ahead log: a checkpoint flushes the memtable into SST files
//! before it links them, and after a crash the state comes back from the last
//! checkpoint, never from this directory. RocksDB calls run on the subtask's slot thread,
//! which only that slot's subtasks share (as a Flink task thread does).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{DB, DBCompressionType, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions};
use weir_common::key_groups::KeyGroupRange;

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
    #[error("state of {operator} in {}: {source}", dir.display())]
    Io {
        operator: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The bytes of a namespace (the sign bit flipped so that negative times sort first).
pub fn namespace_bytes(ns: i64) -> [u8; 8] {
    ((ns as u64) ^ (1 << 63)).to_be_bytes()
}

fn namespace_of(key: &[u8]) -> i64 {
    (u64::from_be_bytes(key[..8].try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

fn key_group_of(key: &[u8]) -> u32 {
    u16::from_be_bytes([key[8], key[9]]) as u32
}

pub fn state_key(ns: i64, key_group: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + key.len());
    k.extend_from_slice(&namespace_bytes(ns));
    k.extend_from_slice(&(key_group as u16).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// RocksDB options for an operator's state: its merge operator, no compression above the
/// bottom level (state churns; compressing short-lived files costs CPU for nothing).
pub fn state_options(merge_name: &str, merge: impl rocksdb::merge_operator::MergeFn + Clone) -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_compression_type(DBCompressionType::None);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    o.set_merge_operator_associative(merge_name, merge);
    o.set_max_background_jobs(2);
    o
}

pub struct KeyedStateBackend {
    operator: String,
    dir: PathBuf,
    db: Option<DB>,
    write: WriteOptions,
}

impl KeyedStateBackend {
    /// Opens the instance in `dir` (created empty, or found as a restore put it); with
    /// `merge_from`, first copies into it the keys of `key_groups` held by those
    /// snapshots (a rescale: several old subtasks' state, or part of one).
    pub fn open(
        operator: &str,
        dir: &Path,
        options: Options,
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
        let db = DB::open(&options, dir.join("db")).map_err(rocks)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        for from in merge_from {
            let old = DB::open_for_read_only(&options, from, false).map_err(rocks)?;
            let mut batch = WriteBatch::default();
            for item in old.iterator(IteratorMode::Start) {
                let (k, v) = item.map_err(rocks)?;
                if k.len() >= 10 && key_groups.contains(key_group_of(&k)) {
                    batch.put(k, v);
                }
                if batch.len() >= RESTORE_BATCH {
                    db.write_opt(std::mem::take(&mut batch), &write).map_err(rocks)?;
                }
            }
            db.write_opt(batch, &write).map_err(rocks)?;
            drop(old);
            let _ = std::fs::remove_dir_all(from);
        }
        Ok(Self {
            operator: operator.to_string(),
            dir: dir.to_path_buf(),
            db: Some(db),
            write,
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

    /// Merges `(namespace, key group, key, operand)` rows in one atomic batch.
    pub fn merge_all<K: AsRef<[u8]>>(
        &self,
        rows: impl Iterator<Item = (i64, u32, K, Vec<u8>)>,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for (ns, kg, key, value) in rows {
            batch.merge(state_key(ns, kg, key.as_ref()), value);
        }
        self.db().write_opt(batch, &self.write).map_err(self.rocks())
    }

    /// Calls `f(key group, key, value)` for every row of namespace `ns`, in key order.
    pub fn scan(&self, ns: i64, mut f: impl FnMut(u32, &[u8], &[u8])) -> Result<(), StateError> {
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(namespace_bytes(ns).to_vec());
        read.set_iterate_upper_bound(namespace_bytes(ns + 1).to_vec());
        let mut it = self.db().raw_iterator_opt(read);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            f(key_group_of(k), &k[10..], v);
            it.next();
        }
        it.status().map_err(self.rocks())
    }

    /// Removes every row of namespace `ns`.
    pub fn delete_namespace(&self, ns: i64) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        batch.delete_range(namespace_bytes(ns), namespace_bytes(ns + 1));
        self.db().write_opt(batch, &self.write).map_err(self.rocks())
    }

    /// The namespaces that hold rows (one seek per namespace, not a full scan).
    pub fn namespaces(&self) -> Result<BTreeSet<i64>, StateError> {
        let mut out = BTreeSet::new();
        let mut it = self.db().raw_iterator();
        it.seek_to_first();
        while let Some(k) = it.key() {
            let ns = namespace_of(k);
            out.insert(ns);
            if ns == i64::MAX {
                break;
            }
            it.seek(namespace_bytes(ns + 1));
        }
        it.status().map_err(self.rocks())?;
        Ok(out)
    }

    /// Takes a RocksDB checkpoint (memtable flushed, SST files hard-linked) into a new
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

    /// On-disk size of the live instance (SST files), for metrics and benchmarks.
    pub fn live_bytes(&self) -> u64 {
        self.db()
            .property_int_value("rocksdb.total-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
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
    use super::*;

    fn add_merge(_: &[u8], existing: Option<&[u8]>, ops: &rocksdb::merge_operator::MergeOperands) -> Option<Vec<u8>> {
        let mut sum = existing.map_or(0, |e| i64::from_le_bytes(e.try_into().unwrap()));
        for op in ops {
            sum += i64::from_le_bytes(op.try_into().unwrap());
        }
        Some(sum.to_le_bytes().to_vec())
    }

    fn open(dir: &Path, merge_from: &[PathBuf], range: KeyGroupRange) -> KeyedStateBackend {
        KeyedStateBackend::open("count", dir, state_options("add", add_merge), merge_from, range).unwrap()
    }

    fn rows(b: &KeyedStateBackend, ns: i64) -> Vec<(u32, Vec<u8>, i64)> {
        let mut out = Vec::new();
        b.scan(ns, |kg, k, v| {
            out.push((kg, k.to_vec(), i64::from_le_bytes(v.try_into().unwrap())))
        })
        .unwrap();
        out
    }

    #[test]
    fn merges_scan_by_namespace_in_time_order_and_restore_by_key_group() {
        let tmp = tempfile::tempdir().unwrap();
        let all = KeyGroupRange { start: 0, end: 128 };
        let b = open(&tmp.path().join("a"), &[], all);
        let one = 1i64.to_le_bytes().to_vec();
        b.merge_all(
            [
                (-10, 5, &b"x"[..], one.clone()),
                (20, 100, &b"y"[..], one.clone()),
                (-10, 5, &b"x"[..], one.clone()),
            ]
            .into_iter(),
        )
        .unwrap();
        b.merge_all([(-10, 70, &b"z"[..], one.clone())].into_iter()).unwrap();
        assert_eq!(b.namespaces().unwrap().into_iter().collect::<Vec<_>>(), [-10, 20]);
        assert_eq!(rows(&b, -10), [(5, b"x".to_vec(), 2), (70, b"z".to_vec(), 1)]);

        let snap = b.snapshot(1).unwrap();
        b.delete_namespace(-10).unwrap();
        assert!(rows(&b, -10).is_empty());
        assert_eq!(b.namespaces().unwrap().into_iter().collect::<Vec<_>>(), [20]);

        // Rescale: a subtask owning key groups [64, 128) takes only its keys.
        let r = open(
            &tmp.path().join("r"),
            std::slice::from_ref(&snap),
            KeyGroupRange { start: 64, end: 128 },
        );
        assert_eq!(rows(&r, -10), [(70, b"z".to_vec(), 1)]);
        assert_eq!(rows(&r, 20), [(100, b"y".to_vec(), 1)]);
        drop(r);
        assert!(!tmp.path().join("r").exists(), "an instance removes its directory");
    }
}
