//! Reads a batch's event-time column as epoch milliseconds, whatever its declared type
//! (`timestamp_ms` or `int64`).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;

/// The event times of `batch` at column `idx`. Validation guarantees the type.
pub fn event_times(batch: &RecordBatch, idx: usize) -> &[i64] {
    let col = batch.column(idx);
    match col.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => col.as_primitive::<TimestampMillisecondType>().values(),
        DataType::Int64 => col.as_primitive::<Int64Type>().values(),
        other => panic!("event-time column has type {other}, which validation refuses"),
    }
}

/// The largest event time in a batch, if it has rows.
pub fn max_event_time(batch: &RecordBatch, idx: usize) -> Option<i64> {
    let col = batch.column(idx);
    debug_assert_eq!(col.null_count(), 0);
    event_times(batch, idx).iter().copied().max()
}
