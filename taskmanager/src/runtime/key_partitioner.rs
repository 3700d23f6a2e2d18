//! Hash partitioning by key group: hashes a batch's key columns row by row (a stable hash,
//! so every process agrees), maps each row to the subtask owning its key group, and splits
//! the batch into one batch per target.

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{
    DataType, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use weir_common::key_groups::{combine, hash_i64, key_group, subtask_for_key_group};
use xxhash_rust::xxh3::xxh3_64;

#[derive(Debug, Clone)]
pub struct KeyPartitioner {
    pub key_columns: Vec<usize>,
    pub max_parallelism: u32,
    pub parallelism: u32,
}

/// A null key hashes to this fixed value, so null keys also share one key group.
const NULL_HASH: u64 = 0x5bd1_e995;

impl KeyPartitioner {
    /// The stable hash of every row's key.
    pub fn hash_rows(&self, batch: &RecordBatch) -> Result<Vec<u64>, ArrowError> {
        let cols: Vec<ArrayRef> = self.key_columns.iter().map(|&c| batch.column(c).clone()).collect();
        hash_keys(&cols, batch.num_rows())
    }

    /// Splits `batch` into `(target subtask, rows)` parts, skipping empty ones.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<(usize, RecordBatch)>, ArrowError> {
        let hashes = self.hash_rows(batch)?;
        let p = self.parallelism as usize;
        let mut indices: Vec<Vec<u32>> = vec![Vec::with_capacity(batch.num_rows() / p + 16); p];
        for (row, h) in hashes.iter().enumerate() {
            let target = subtask_for_key_group(
                key_group(*h, self.max_parallelism),
                self.max_parallelism,
                self.parallelism,
            );
            indices[target as usize].push(row as u32);
        }
        let mut parts = Vec::with_capacity(p);
        for (target, idx) in indices.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            if idx.len() == batch.num_rows() {
                parts.push((target, batch.clone()));
                continue;
            }
            let idx = UInt32Array::from(idx);
            parts.push((target, take_record_batch(batch, &idx)?));
        }
        Ok(parts)
    }
}

/// The stable hash of every row of some key columns (what routes the row to a subtask
/// and gives it its key group).
pub fn hash_keys(cols: &[ArrayRef], rows: usize) -> Result<Vec<u64>, ArrowError> {
    let mut hashes = vec![0u64; rows];
    for (n, col) in cols.iter().enumerate() {
        hash_column(col, &mut hashes, n == 0)?;
    }
    Ok(hashes)
}

fn hash_ints<T: arrow::datatypes::ArrowPrimitiveType>(
    col: &ArrayRef,
    out: &mut [u64],
    first: bool,
    to_i64: impl Fn(T::Native) -> i64,
) {
    let arr = col.as_primitive::<T>();
    for (i, h) in out.iter_mut().enumerate() {
        let v = if arr.is_null(i) {
            NULL_HASH
        } else {
            hash_i64(to_i64(arr.value(i)))
        };
        *h = if first { v } else { combine(*h, v) };
    }
}

fn hash_column(col: &ArrayRef, out: &mut [u64], first: bool) -> Result<(), ArrowError> {
    match col.data_type() {
        DataType::Int8 => hash_ints::<Int8Type>(col, out, first, |v| v as i64),
        DataType::Int16 => hash_ints::<Int16Type>(col, out, first, |v| v as i64),
        DataType::Int32 => hash_ints::<Int32Type>(col, out, first, |v| v as i64),
        DataType::Int64 => hash_ints::<Int64Type>(col, out, first, |v| v),
        DataType::UInt8 => hash_ints::<UInt8Type>(col, out, first, |v| v as i64),
        DataType::UInt16 => hash_ints::<UInt16Type>(col, out, first, |v| v as i64),
        DataType::UInt32 => hash_ints::<UInt32Type>(col, out, first, |v| v as i64),
        DataType::UInt64 => hash_ints::<UInt64Type>(col, out, first, |v| v as i64),
        DataType::Timestamp(TimeUnit::Second, _) => hash_ints::<TimestampSecondType>(col, out, first, |v| v),
        DataType::Timestamp(TimeUnit::Millisecond, _) => hash_ints::<TimestampMillisecondType>(col, out, first, |v| v),
        DataType::Timestamp(TimeUnit::Microsecond, _) => hash_ints::<TimestampMicrosecondType>(col, out, first, |v| v),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => hash_ints::<TimestampNanosecondType>(col, out, first, |v| v),
        DataType::Boolean => {
            let arr = col.as_boolean();
            for (i, h) in out.iter_mut().enumerate() {
                let v = if arr.is_null(i) {
                    NULL_HASH
                } else {
                    hash_i64(arr.value(i) as i64)
                };
                *h = if first { v } else { combine(*h, v) };
            }
        }
        DataType::Utf8 => {
            let arr = col.as_string::<i32>();
            for (i, h) in out.iter_mut().enumerate() {
                let v = if arr.is_null(i) {
                    NULL_HASH
                } else {
                    xxh3_64(arr.value(i).as_bytes())
                };
                *h = if first { v } else { combine(*h, v) };
            }
        }
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "cannot partition by a {other} column"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn every_row_lands_in_exactly_one_part_and_equal_keys_together() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, false)]));
        let keys: Vec<i32> = (0..1000).map(|i| i % 37).collect();
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(keys))]).unwrap();
        let p = KeyPartitioner {
            key_columns: vec![0],
            max_parallelism: 128,
            parallelism: 3,
        };
        let parts = p.split(&batch).unwrap();
        assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 1000);
        let mut owner = std::collections::HashMap::new();
        for (t, b) in &parts {
            for k in b.column(0).as_primitive::<Int32Type>().values() {
                assert_eq!(*owner.entry(*k).or_insert(*t), *t, "key {k} split over subtasks");
            }
        }
        assert!(parts.len() > 1);
    }
}
