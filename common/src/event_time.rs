//! Event time and watermarks: epoch milliseconds, the bounded-out-of-orderness rule and
//! time buckets (hours, days) used to partition output.

/// A watermark that has passed every possible event: what a finished input reports.
pub const WATERMARK_MAX: i64 = i64::MAX;
/// The watermark before any event was seen.
pub const WATERMARK_MIN: i64 = i64::MIN;

/// Flink's `forBoundedOutOfOrderness` rule: after seeing `max_ts`, no event older than
/// `max_ts - out_of_orderness` is expected, so the watermark is one below that.
pub fn bounded_out_of_orderness(max_ts: i64, out_of_orderness_ms: u64) -> i64 {
    if max_ts == WATERMARK_MIN {
        return WATERMARK_MIN;
    }
    max_ts.saturating_sub(out_of_orderness_ms as i64).saturating_sub(1)
}

/// Start of the tumbling window of `size_ms` (aligned to the epoch) that holds `ts`.
pub fn window_start(ts: i64, size_ms: i64) -> i64 {
    ts - ts.rem_euclid(size_ms)
}

/// A window `[start, start + size)` is complete once the watermark reaches its last
/// millisecond (Flink's `maxTimestamp` rule).
pub fn window_is_complete(window_end: i64, watermark: i64) -> bool {
    watermark >= window_end - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_rule_matches_flink() {
        assert_eq!(bounded_out_of_orderness(10_000, 1_000), 8_999);
        assert_eq!(bounded_out_of_orderness(WATERMARK_MIN, 1_000), WATERMARK_MIN);
    }

    #[test]
    fn windows_align_to_epoch_including_negative_times() {
        assert_eq!(window_start(12_345, 10_000), 10_000);
        assert_eq!(window_start(-1, 10_000), -10_000);
        assert!(!window_is_complete(20_000, 19_998));
        assert!(window_is_complete(20_000, 19_999));
    }
}
