//! Which columns a Parquet sink writes without a dictionary, judged from a sample of the
//! rows: a column whose values are mostly distinct (ids, counters) gains nothing from one,
//! but the writer would hash every value into it until the dictionary outgrows its page
//! limit, which measured as the largest single cost of writing W2's `user_id` column.
//! Low-cardinality columns (levels, hosts, paths) keep their dictionary.

use std::collections::HashSet;
use std::hash::Hash;

use arrow::array::{Array, ArrowPrimitiveType, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;

/// Rows a sample needs before it is trusted (a small batch looks all-distinct).
const SAMPLE_ROWS: usize = 1024;
/// A column with more distinct values than this share of the sample gets no dictionary.
const DISTINCT_SHARE: f64 = 0.5;

/// The names of the columns of `sample` that are mostly distinct, or `None` when the sample
/// is too small to tell.
pub fn mostly_distinct_columns(sample: &RecordBatch) -> Option<Vec<String>> {
    let rows = sample.num_rows().min(4 * SAMPLE_ROWS);
    if rows < SAMPLE_ROWS {
        return None;
    }
    let limit = (rows as f64 * DISTINCT_SHARE) as usize;
    let schema = sample.schema();
    Some(
        sample
            .columns()
            .iter()
            .zip(schema.fields())
            .filter(|(column, _)| distinct_values(column.slice(0, rows).as_ref()).is_some_and(|d| d > limit))
            .map(|(_, field)| field.name().clone())
            .collect(),
    )
}

/// Distinct non-null values of the column kinds a dictionary applies to.
fn distinct_values(column: &dyn Array) -> Option<usize> {
    Some(match column.data_type() {
        DataType::Utf8 => distinct(column.as_string::<i32>().iter().flatten()),
        DataType::LargeUtf8 => distinct(column.as_string::<i64>().iter().flatten()),
        DataType::Int32 => primitive::<Int32Type>(column),
        DataType::Int64 => primitive::<Int64Type>(column),
        DataType::UInt32 => primitive::<UInt32Type>(column),
        DataType::UInt64 => primitive::<UInt64Type>(column),
        _ => return None,
    })
}

fn primitive<T: ArrowPrimitiveType>(column: &dyn Array) -> usize
where
    T::Native: Hash + Eq,
{
    distinct(column.as_primitive::<T>().iter().flatten())
}

fn distinct<T: Hash + Eq>(values: impl Iterator<Item = T>) -> usize {
    values.collect::<HashSet<T>>().len()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(rows: i64) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("level", DataType::Utf8, false),
            Field::new("code", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| ["INFO", "WARN"][i as usize % 2]),
                )),
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i % 700))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn ids_lose_their_dictionary_levels_keep_it() {
        assert_eq!(mostly_distinct_columns(&batch(4096)), Some(vec!["user_id".to_string()]));
        // 700 distinct codes are over half of a 1024-row sample, well under half of 4096.
        assert_eq!(
            mostly_distinct_columns(&batch(1024)),
            Some(vec!["user_id".to_string(), "code".to_string()])
        );
    }

    #[test]
    fn a_small_sample_decides_nothing() {
        assert_eq!(mostly_distinct_columns(&batch(100)), None);
    }
}
