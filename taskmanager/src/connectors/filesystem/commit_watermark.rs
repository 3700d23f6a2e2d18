//! A committing sink subtask's commit watermark, and from it which rows are late.
//!
//! The commit watermark is the greatest of: the subtask's watermark, the floor a restore
//! brought (the sink's watermark at the restored checkpoint: partitions complete by then
//! may be committed already), and, once the subtask has seen neither rows nor a newer
//! watermark for the partition-recovery timeout, the wall clock. It only grows. The
//! subtask reports it with every checkpoint; the leader commits a partition once the
//! least over the subtasks passed the partition's end plus the delay. Since each subtask
//! sends a row to the late output as soon as its own commit watermark passed the row's
//! partition, no row is ever written into a partition that may be committed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_common::event_time::WATERMARK_MIN;
use weir_common::partition_commit::bucket_complete;

use super::partition_path::PartitionScheme;

pub struct CommitWatermark {
    scheme: PartitionScheme,
    delay_ms: u64,
    idle_timeout: Option<Duration>,
    watermark: i64,
    last_progress: Instant,
    /// Buckets written since the last report.
    written: BTreeSet<i64>,
}

impl CommitWatermark {
    pub fn new(scheme: PartitionScheme, delay_ms: u64, idle_timeout: Option<Duration>, floor: Option<i64>) -> Self {
        Self {
            scheme,
            delay_ms,
            idle_timeout,
            watermark: floor.unwrap_or(WATERMARK_MIN),
            last_progress: Instant::now(),
            written: BTreeSet::new(),
        }
    }

    pub fn on_watermark(&mut self, watermark: i64, now: Instant) {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.last_progress = now;
        }
    }

    /// The commit watermark at `now` (`wall_ms`: the wall clock, epoch ms).
    pub fn current(&mut self, now: Instant, wall_ms: i64) -> i64 {
        if self
            .idle_timeout
            .is_some_and(|t| now.duration_since(self.last_progress) >= t)
        {
            self.watermark = self.watermark.max(wall_ms);
        }
        self.watermark
    }

    /// Rows with an event time before this belong to partitions that may be committed.
    pub fn late_before(&mut self, now: Instant, wall_ms: i64) -> i64 {
        let wm = self.current(now, wall_ms);
        // Far ends (no watermark yet, end of input) stay clear of overflow in the buckets.
        if wm == WATERMARK_MIN {
            return i64::MIN;
        }
        if wm > i64::MAX / 2 {
            return i64::MAX;
        }
        // The first bucket not complete: the one holding `wm - delay + 1`, or a later one.
        let mut bucket = self
            .scheme
            .bucket(wm.saturating_sub(self.delay_ms as i64).saturating_add(1));
        while bucket_complete(self.scheme.bounds(bucket).1, self.delay_ms, wm) {
            bucket += 1;
        }
        self.scheme.bounds(bucket).0
    }

    /// Rows were written into `buckets`.
    pub fn wrote(&mut self, buckets: impl IntoIterator<Item = i64>, now: Instant) {
        self.written.extend(buckets);
        self.last_progress = now;
    }

    /// The buckets written since the last call.
    pub fn take_written(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.written).into_iter().collect()
    }

    pub fn scheme(&self) -> &PartitionScheme {
        &self.scheme
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn rows_of_a_complete_hour_are_late_and_idleness_lets_the_wall_clock_in() {
        let t0 = Instant::now();
        let hourly = || PartitionScheme::new("dt=%Y-%m-%d/hour=%H");
        let mut c = CommitWatermark::new(hourly(), 0, Some(Duration::from_secs(60)), None);
        assert_eq!(c.late_before(t0, 0), i64::MIN, "no watermark: nothing is late");
        c.on_watermark(5 * HOUR - 2, t0);
        assert_eq!(c.late_before(t0, 0), 4 * HOUR, "hour 4 lacks its last millisecond");
        c.on_watermark(5 * HOUR - 1, t0);
        assert_eq!(c.late_before(t0, 0), 5 * HOUR, "hour 4 is complete");

        let mut delayed = CommitWatermark::new(hourly(), 600_000, None, Some(5 * HOUR + 599_998));
        assert_eq!(delayed.late_before(t0, 0), 4 * HOUR, "the floor of a restore counts");
        delayed.on_watermark(5 * HOUR + 599_999, t0);
        assert_eq!(delayed.late_before(t0, 0), 5 * HOUR);

        c.wrote([5], t0);
        let wall = 9 * HOUR + 10;
        assert_eq!(c.current(t0 + Duration::from_secs(59), wall), 5 * HOUR - 1);
        assert_eq!(
            c.current(t0 + Duration::from_secs(60), wall),
            wall,
            "idle for the timeout"
        );
        assert_eq!(c.late_before(t0 + Duration::from_secs(60), wall), 9 * HOUR);
        assert_eq!(c.take_written(), vec![5]);
        assert!(c.take_written().is_empty());
    }
}
