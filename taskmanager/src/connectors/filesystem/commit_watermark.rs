//! A committing sink subtask's commit watermark, and from it which rows are late.
//!
//! The commit watermark is the greatest of: the subtask's watermark, the floor a restore
//! brought (the sink's watermark at the restored checkpoint: partitions complete by then
//! may be committed already), and, with partition recovery, once the input is idle (the
//! sources behind it said so: every partition idle, none merely paused by alignment) and
//! has been quiet (neither rows nor a newer watermark) for the timeout, the end of the newest partition
//! the subtask wrote rows into, but no later than the wall clock: an idle stream's
//! partitions get committed (a backfill's at once, a live stream's once their hour is
//! over), and a subtask that never received a row never declares anything complete.
//! Quiet is judged at checkpoint barriers: two barrier intervals in a row without rows or
//! watermark progress, so a sink that was only busy (its input queued behind a slow
//! write) is never mistaken for an idle one. It only grows.
//!
//! The subtask reports it with every checkpoint; the leader commits a partition once the
//! least over the subtasks passed the partition's end plus the delay. Since each subtask
//! sends a row to the late output as soon as its own commit watermark passed the row's
//! partition, no row is ever written into a partition that may be committed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_common::event_time::WATERMARK_MIN;
use weir_common::partition_commit::bucket_complete;

use super::partition_path::PartitionScheme;

/// Barrier intervals without progress before the input counts as quiet.
const QUIET_BARRIERS: u32 = 2;

pub struct CommitWatermark {
    scheme: PartitionScheme,
    delay_ms: u64,
    idle_timeout: Option<Duration>,
    watermark: i64,
    /// When rows or a newer watermark last arrived; `None` before the first row.
    last_progress: Option<Instant>,
    progress_since_barrier: bool,
    quiet_barriers: u32,
    /// Every source behind the sink is idle (`StreamEvent::Idle`).
    input_idle: bool,
    /// The latest event time written.
    max_written: i64,
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
            last_progress: None,
            progress_since_barrier: false,
            quiet_barriers: 0,
            input_idle: false,
            max_written: WATERMARK_MIN,
            written: BTreeSet::new(),
        }
    }

    pub fn on_watermark(&mut self, watermark: i64, now: Instant) {
        if watermark > self.watermark {
            self.watermark = watermark;
            if self.last_progress.is_some() {
                self.last_progress = Some(now);
                self.progress_since_barrier = true;
            }
        }
    }

    pub fn set_input_idle(&mut self, idle: bool) {
        self.input_idle = idle;
    }

    /// Rows with event times up to `max_ts` were written into `buckets`.
    pub fn wrote(&mut self, buckets: impl IntoIterator<Item = i64>, max_ts: i64, now: Instant) {
        self.written.extend(buckets);
        self.max_written = self.max_written.max(max_ts);
        self.last_progress = Some(now);
        self.progress_since_barrier = true;
    }

    /// A checkpoint barrier: applies partition recovery when the input has been quiet,
    /// and returns the commit watermark to report (`wall_ms`: the wall clock, epoch ms).
    pub fn on_barrier(&mut self, now: Instant, wall_ms: i64) -> i64 {
        if self.progress_since_barrier {
            self.quiet_barriers = 0;
        } else {
            self.quiet_barriers += 1;
        }
        self.progress_since_barrier = false;
        let idle = match (self.idle_timeout, self.last_progress) {
            (Some(timeout), Some(last)) => {
                self.input_idle && self.quiet_barriers >= QUIET_BARRIERS && now.duration_since(last) >= timeout
            }
            _ => false,
        };
        if idle {
            let newest_end = self.scheme.bounds(self.scheme.bucket(self.max_written)).1;
            let complete = newest_end.saturating_sub(1).saturating_add(self.delay_ms as i64);
            let recovered = complete.min(wall_ms);
            if recovered > self.watermark {
                tracing::info!(
                    quiet_ms = self.last_progress.map(|l| now.duration_since(l).as_millis() as u64),
                    from = self.watermark,
                    to = recovered,
                    "partition recovery: the input is idle, its newest partition completes"
                );
                self.watermark = recovered;
            }
        }
        self.watermark
    }

    /// Rows with an event time before this belong to partitions that may be committed.
    pub fn late_before(&self) -> i64 {
        let wm = self.watermark;
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

    fn hourly() -> PartitionScheme {
        PartitionScheme::new("dt=%Y-%m-%d/hour=%H")
    }

    #[test]
    fn rows_of_a_complete_hour_are_late() {
        let t0 = Instant::now();
        let mut c = CommitWatermark::new(hourly(), 0, None, None);
        assert_eq!(c.late_before(), i64::MIN, "no watermark: nothing is late");
        c.on_watermark(5 * HOUR - 2, t0);
        assert_eq!(c.late_before(), 4 * HOUR, "hour 4 lacks its last millisecond");
        c.on_watermark(5 * HOUR - 1, t0);
        assert_eq!(c.late_before(), 5 * HOUR, "hour 4 is complete");

        let mut delayed = CommitWatermark::new(hourly(), 600_000, None, Some(5 * HOUR + 599_998));
        assert_eq!(delayed.late_before(), 4 * HOUR, "the floor of a restore counts");
        delayed.on_watermark(5 * HOUR + 599_999, t0);
        assert_eq!(delayed.late_before(), 5 * HOUR);
    }

    #[test]
    fn quiet_input_completes_its_newest_hour_no_later_than_the_wall_clock() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut c = CommitWatermark::new(hourly(), 0, Some(Duration::from_secs(60)), None);
        c.on_watermark(5 * HOUR - 1, t0);
        for s in [100, 200, 300] {
            assert_eq!(c.on_barrier(at(s), 9 * HOUR), 5 * HOUR - 1, "no row yet: never idle");
        }
        c.wrote([5], 5 * HOUR + 10, at(300));
        assert_eq!(c.on_barrier(at(301), 9 * HOUR), 5 * HOUR - 1);
        assert_eq!(c.on_barrier(at(302), 9 * HOUR), 5 * HOUR - 1, "one quiet interval");
        assert_eq!(
            c.on_barrier(at(303), 9 * HOUR),
            5 * HOUR - 1,
            "quiet, but not for the timeout"
        );
        assert_eq!(
            c.on_barrier(at(360), 9 * HOUR),
            5 * HOUR - 1,
            "quiet because the sources wait (alignment), not idle"
        );
        c.set_input_idle(true);
        // Idle and quiet for the timeout: hour 5 (the newest with rows) completes, no further.
        assert_eq!(c.on_barrier(at(361), 9 * HOUR), 6 * HOUR - 1);
        assert_eq!(c.late_before(), 6 * HOUR);
        // A busy sink that saw its next rows long after the last ones is not idle: rows
        // arrived in the interval.
        c.wrote([6], 6 * HOUR + 10, at(900));
        assert_eq!(c.on_barrier(at(901), 9 * HOUR), 6 * HOUR - 1);
        // A live stream: not before the wall clock says the hour is over.
        for s in [1000, 1001, 1002] {
            c.on_barrier(at(s), 6 * HOUR + 30 * 60_000);
        }
        assert_eq!(c.on_barrier(at(1003), 6 * HOUR + 30 * 60_000), 6 * HOUR + 30 * 60_000);
        assert_eq!(c.take_written(), vec![5, 6]);
        assert!(c.take_written().is_empty());
    }
}
