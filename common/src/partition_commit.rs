//! Partition commit, the part both sides agree on: what a committing file sink reports
//! with each checkpoint (its watermark and the time buckets it wrote), and when a bucket
//! is complete (the watermark passed its end plus the configured delay).

use serde::{Deserialize, Serialize};

/// A committing sink subtask's standing at a checkpoint barrier, or at the end of its
/// input (`checkpoint` 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkCommitReport {
    pub checkpoint: u64,
    /// The subtask's commit watermark: its watermark, the floor a restore brought, or the
    /// wall clock once the subtask was idle past the partition-recovery timeout.
    pub watermark: i64,
    /// Buckets that received rows since the previous report.
    pub buckets: Vec<i64>,
}

/// Bucket `[start, end)` is complete once the watermark (no more rows at or before it)
/// reached its last millisecond plus `delay_ms`.
pub fn bucket_complete(end: i64, delay_ms: u64, watermark: i64) -> bool {
    end.saturating_sub(1).saturating_add(delay_ms as i64) <= watermark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_complete_when_the_watermark_reaches_its_last_millisecond_plus_the_delay() {
        let end = 3_600_000;
        assert!(!bucket_complete(end, 0, end - 2));
        assert!(bucket_complete(end, 0, end - 1));
        assert!(!bucket_complete(end, 60_000, end + 59_998));
        assert!(bucket_complete(end, 60_000, end + 59_999));
    }
}
