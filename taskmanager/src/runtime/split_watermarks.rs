//! The watermark of a source subtask that reads several splits (Kafka partitions), as
//! Flink's per-partition watermarks: each split's watermark follows its own greatest
//! event time (bounded out-of-orderness), and the subtask's is the least over the splits
//! that are not idle, so a partition running ahead never lets the watermark pass records
//! a slower one has still to deliver. A split that delivered nothing for the idle timeout
//! stops holding the watermark back until it delivers again; a split that never
//! delivered holds it at the start until then.
//!
//! A split paused by watermark alignment is not idle (it is silent because it waits, and
//! it still holds the watermark); it counts as active from when it resumes. Nor is a split
//! the reader knows to be behind (a Kafka partition that has not reached its end): it is
//! slow, not idle, and letting the watermark pass it would make its records late.

use std::time::{Duration, Instant};

use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN, bounded_out_of_orderness};

#[derive(Debug, Clone, Copy)]
struct SplitClock {
    max_ts: i64,
    last_active: Instant,
    paused: bool,
    behind: bool,
}

#[derive(Debug)]
pub struct SplitWatermarks {
    clocks: Vec<SplitClock>,
    max_out_of_orderness_ms: u64,
    idle_timeout: Option<Duration>,
}

impl SplitWatermarks {
    pub fn new(max_out_of_orderness_ms: u64, idle_timeout: Option<Duration>) -> Self {
        Self {
            clocks: Vec::new(),
            max_out_of_orderness_ms,
            idle_timeout,
        }
    }

    /// The reader reads `n` splits; new ones count as active from `now`.
    pub fn set_splits(&mut self, n: usize, now: Instant) {
        self.clocks.resize(
            n,
            SplitClock {
                max_ts: WATERMARK_MIN,
                last_active: now,
                paused: false,
                behind: false,
            },
        );
    }

    /// Split `split` delivered records, the latest event time among them `max_ts` (none
    /// when every record was rejected).
    pub fn observe(&mut self, split: usize, max_ts: Option<i64>, now: Instant) {
        if split >= self.clocks.len() {
            self.set_splits(split + 1, now);
        }
        let c = &mut self.clocks[split];
        c.last_active = now;
        if let Some(t) = max_ts {
            c.max_ts = c.max_ts.max(t);
        }
    }

    /// The watermark of split `split` alone.
    pub fn split_watermark(&self, split: usize) -> i64 {
        self.clocks
            .get(split)
            .map_or(WATERMARK_MIN, |c| self.watermark_of(c.max_ts))
    }

    /// The watermark a split whose greatest event time is `max_ts` has.
    pub fn watermark_of(&self, max_ts: i64) -> i64 {
        bounded_out_of_orderness(max_ts, self.max_out_of_orderness_ms)
    }

    /// Alignment paused (or resumed) split `split`.
    pub fn set_paused(&mut self, split: usize, paused: bool, now: Instant) {
        if let Some(c) = self.clocks.get_mut(split) {
            c.paused = paused;
            c.last_active = now;
        }
    }

    /// The reader says whether split `split` has records it has not delivered yet.
    pub fn set_behind(&mut self, split: usize, behind: bool) {
        if let Some(c) = self.clocks.get_mut(split) {
            c.behind = behind;
        }
    }

    /// The subtask's watermark at `now`; `None` while every split is idle (the watermark
    /// then stays where it was). A reader without splits (more subtasks than partitions)
    /// has nothing to wait for.
    pub fn watermark(&self, now: Instant) -> Option<i64> {
        if self.clocks.is_empty() {
            return Some(WATERMARK_MAX);
        }
        self.clocks
            .iter()
            .filter(|c| c.paused || c.behind || self.idle_timeout.is_none_or(|t| now.duration_since(c.last_active) < t))
            .map(|c| c.max_ts)
            .min()
            .map(|t| bounded_out_of_orderness(t, self.max_out_of_orderness_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_active_split_holds_the_watermark_and_idle_ones_do_not() {
        let t0 = Instant::now();
        let secs = |s| t0 + Duration::from_secs(s);
        let mut w = SplitWatermarks::new(0, Some(Duration::from_secs(10)));
        w.set_splits(3, t0);
        w.observe(0, Some(5_000), t0);
        w.observe(1, Some(1_000), t0);
        assert_eq!(
            w.watermark(t0),
            Some(WATERMARK_MIN),
            "split 2 has delivered nothing yet"
        );
        w.observe(2, Some(9_000), secs(1));
        assert_eq!(w.watermark(secs(1)), Some(bounded_out_of_orderness(1_000, 0)));
        // Split 1 goes quiet: after the idle timeout it no longer holds the others back.
        w.observe(0, Some(6_000), secs(9));
        w.observe(2, Some(9_500), secs(9));
        assert_eq!(w.watermark(secs(10)), Some(bounded_out_of_orderness(6_000, 0)));
        // It delivers again: it holds the watermark again.
        w.observe(1, Some(2_000), secs(11));
        assert_eq!(w.watermark(secs(11)), Some(bounded_out_of_orderness(2_000, 0)));
        // Everything idle: no new watermark.
        assert_eq!(w.watermark(secs(30)), None);
    }

    #[test]
    fn a_paused_split_is_never_idle_and_is_active_again_from_its_resume() {
        let t0 = Instant::now();
        let secs = |s| t0 + Duration::from_secs(s);
        let mut w = SplitWatermarks::new(0, Some(Duration::from_secs(10)));
        w.set_splits(2, t0);
        w.observe(0, Some(9_000), t0);
        w.observe(1, Some(1_000), t0);
        w.set_paused(0, true, t0);
        assert_eq!(w.split_watermark(0), 9_000 - 1);
        // Both silent for 20 s: split 1 is idle, paused split 0 is not.
        assert_eq!(w.watermark(secs(20)), Some(9_000 - 1));
        w.set_paused(0, false, secs(25));
        assert_eq!(w.watermark(secs(34)), Some(9_000 - 1), "resumed 9 s ago: still active");
        assert_eq!(w.watermark(secs(36)), None, "silent 11 s since its resume: idle");
        // A split known to be behind is slow, not idle.
        w.set_behind(1, true);
        assert_eq!(w.watermark(secs(60)), Some(1_000 - 1));
    }

    #[test]
    fn without_idle_timeout_a_quiet_split_holds_forever_and_no_splits_hold_nothing() {
        let t0 = Instant::now();
        let mut w = SplitWatermarks::new(100, None);
        w.set_splits(2, t0);
        w.observe(0, Some(5_000), t0);
        assert_eq!(w.watermark(t0 + Duration::from_secs(3600)), Some(WATERMARK_MIN));
        assert_eq!(SplitWatermarks::new(0, None).watermark(t0), Some(WATERMARK_MAX));
    }
}
