//! A dimension table loaded from a Parquet snapshot into a local RocksDB instance, for
//! `lookup_join` with `from: {"parquet": ..}`: the key column's value (as text) → the
//! looked-up fields (as text, a JSON array). Lookups are point reads with bloom filters,
//! so a table far larger than memory costs disk, not heap. A table is built once,
//! read-only afterwards, and removed from disk when dropped; a newer snapshot is loaded
//! into a new instance beside it and swapped in whole.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rocksdb::{BlockBasedOptions, DB, Options, WriteBatch, WriteOptions};

const HOUR_MS: i64 = 3_600_000;
/// How far back the first snapshot is looked for when the hour of the first row has none.
const HOURS_BACK: i64 = 24;

#[derive(Debug, thiserror::Error)]
pub enum LookupTableError {
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{}: {message}", path.display())]
    Content { path: PathBuf, message: String },
    #[error("the lookup table in {}: {source}", path.display())]
    RocksDb {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
}

/// One row's looked-up fields, as text (`None`: null).
pub type Fields = Vec<Option<String>>;

pub struct LookupTable {
    /// The hour (start, epoch ms) whose snapshot this is.
    pub hour: i64,
    db: Option<DB>,
    dir: PathBuf,
}

/// The start of the hour holding `t` (epoch ms).
pub fn hour_of(t: i64) -> i64 {
    t.div_euclid(HOUR_MS) * HOUR_MS
}

/// The snapshot directory of the hour starting at `hour`: `pattern` formatted in UTC.
pub fn snapshot_dir(pattern: &str, hour: i64) -> PathBuf {
    let t = DateTime::<Utc>::from_timestamp_millis(hour).unwrap_or_default();
    PathBuf::from(t.format(pattern).to_string())
}

/// The newest hour at or before `hour` (at most a day back) that has a snapshot.
pub fn newest_snapshot(pattern: &str, hour: i64) -> Option<i64> {
    (0..=HOURS_BACK)
        .map(|back| hour - back * HOUR_MS)
        .find(|h| snapshot_dir(pattern, *h).is_dir())
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LookupTableError> {
    let io = |source| LookupTableError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if path.is_dir() {
            parquet_files(&path, out)?;
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

impl LookupTable {
    /// Loads every Parquet file under the snapshot of `hour` (hidden and `_` files
    /// skipped) into a new instance in `local`. Later files win for a key found twice.
    pub fn load(
        pattern: &str,
        hour: i64,
        local: &Path,
        key_column: &str,
        fields: &[String],
    ) -> Result<Self, LookupTableError> {
        let snapshot = snapshot_dir(pattern, hour);
        let rocks = |source| LookupTableError::RocksDb {
            path: local.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        parquet_files(&snapshot, &mut files)?;
        std::fs::create_dir_all(local).map_err(|source| LookupTableError::Io {
            path: local.to_path_buf(),
            source,
        })?;
        files.sort();
        let mut options = Options::default();
        options.create_if_missing(true);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        options.set_block_based_table_factory(&table);
        let db = DB::open(&options, local).map_err(rocks)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        let mut this = Self {
            hour,
            db: None,
            dir: local.to_path_buf(),
        };
        for file in &files {
            let content = |message: String| LookupTableError::Content {
                path: file.clone(),
                message,
            };
            let parquet = |source| LookupTableError::Parquet {
                path: file.clone(),
                source,
            };
            let f = std::fs::File::open(file).map_err(|source| LookupTableError::Io {
                path: file.clone(),
                source,
            })?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(parquet)?
                .build()
                .map_err(parquet)?;
            for batch in reader {
                let batch = batch.map_err(|e| parquet(e.into()))?;
                let text = |name: &str| -> Result<_, LookupTableError> {
                    let column = batch
                        .column_by_name(name)
                        .ok_or_else(|| content(format!("has no column '{name}'")))?;
                    cast(column, &DataType::Utf8).map_err(|e| content(format!("column '{name}' as text: {e}")))
                };
                let keys = text(key_column)?;
                let keys = keys.as_string::<i32>();
                let columns = fields.iter().map(|f| text(f)).collect::<Result<Vec<_>, _>>()?;
                let columns: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
                let mut wb = WriteBatch::default();
                for row in 0..batch.num_rows() {
                    if keys.is_null(row) {
                        continue;
                    }
                    let values: Fields = columns
                        .iter()
                        .map(|c| (!c.is_null(row)).then(|| c.value(row).to_string()))
                        .collect();
                    let value = serde_json::to_vec(&values).expect("strings serialize");
                    wb.put(keys.value(row).as_bytes(), value);
                }
                db.write_opt(wb, &write).map_err(rocks)?;
            }
        }
        db.flush().map_err(rocks)?;
        this.db = Some(db);
        tracing::info!(snapshot = %snapshot.display(), files = files.len(), "lookup table loaded");
        Ok(this)
    }

    /// The fields of each key; `None` for a key the table lacks.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Fields>>, LookupTableError> {
        let db = self.db.as_ref().expect("open until dropped");
        db.multi_get(keys.iter().map(|k| k.as_bytes()))
            .into_iter()
            .map(|r| {
                let bytes = r.map_err(|source| LookupTableError::RocksDb {
                    path: self.dir.clone(),
                    source,
                })?;
                Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
            })
            .collect()
    }
}

impl Drop for LookupTable {
    fn drop(&mut self) {
        drop(self.db.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;

    use super::*;

    pub fn write_snapshot(dir: &Path, rows: &[(i64, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("country", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(dir.join("part-0.parquet")).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn a_snapshot_is_found_by_its_hour_and_answers_point_lookups() {
        let root = tempfile::tempdir().unwrap();
        let pattern = format!("{}/users/dt=%Y-%m-%d/hour=%H", root.path().display());
        let h = 1_704_067_200_000 + 5 * HOUR_MS;
        write_snapshot(&snapshot_dir(&pattern, h), &[(1, "fr"), (2, "de")]);
        assert!(snapshot_dir(&pattern, h).ends_with("users/dt=2024-01-01/hour=05"));
        assert_eq!(
            newest_snapshot(&pattern, h + 3 * HOUR_MS),
            Some(h),
            "the newest earlier hour"
        );
        assert_eq!(newest_snapshot(&pattern, h - HOUR_MS), None);
        let local = root.path().join("local");
        let t = LookupTable::load(&pattern, h, &local, "user_id", &["country".into()]).unwrap();
        assert_eq!(
            t.get_many(&["2", "3", "1"]).unwrap(),
            vec![Some(vec![Some("de".into())]), None, Some(vec![Some("fr".into())])]
        );
        drop(t);
        assert!(!local.exists(), "a dropped table leaves nothing on disk");
        let missing = LookupTable::load(&pattern, h, &local, "user", &["country".into()]);
        assert!(
            missing.err().unwrap().to_string().contains("has no column 'user'"),
            "the error names the column"
        );
    }
}
