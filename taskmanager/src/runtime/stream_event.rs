//! What flows through a channel: Arrow batches interleaved, in order, with control events.

use arrow::record_batch::RecordBatch;

#[derive(Debug, Clone)]
pub enum StreamEvent {
    Data(RecordBatch),
    /// No later event on this channel has an event time at or below this.
    Watermark(i64),
    /// Checkpoint `n`: everything before it on this channel belongs to checkpoint n,
    /// everything after it to later ones.
    Barrier(u64),
    /// The producer finished; nothing follows.
    EndOfStream,
    /// Watermark status (Flink's `WatermarkStatus`): `true` when the producer has gone idle
    /// (every source partition behind it is idle) and its watermark should not hold
    /// consumers back; `false` when it is active again. Data always means active.
    Idle(bool),
}
