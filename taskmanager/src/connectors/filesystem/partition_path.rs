//! Partition directories from event time: the strftime pattern (`dt=%Y-%m-%d/hour=%H`) says
//! both the directory name and how long a time bucket is (the finest field it uses), so a
//! row's bucket is one integer division and the pattern is formatted once per bucket.

use chrono::DateTime;

#[derive(Debug, Clone)]
pub struct PartitionScheme {
    pattern: String,
    /// Bucket length in milliseconds.
    pub bucket_ms: i64,
}

impl PartitionScheme {
    pub fn new(pattern: &str) -> Self {
        let has = |fields: &[&str]| fields.iter().any(|f| pattern.contains(f));
        let bucket_ms = if has(&["%S", "%T", "%s"]) {
            1_000
        } else if has(&["%M", "%R"]) {
            60_000
        } else if has(&["%H", "%k", "%I", "%l"]) {
            3_600_000
        } else {
            86_400_000
        };
        Self {
            pattern: pattern.to_string(),
            bucket_ms,
        }
    }

    pub fn bucket(&self, ts: i64) -> i64 {
        ts.div_euclid(self.bucket_ms)
    }

    /// The bucket's first and one-past-last millisecond.
    pub fn bounds(&self, bucket: i64) -> (i64, i64) {
        (bucket * self.bucket_ms, (bucket + 1) * self.bucket_ms)
    }

    /// The relative directory of a bucket.
    pub fn directory(&self, bucket: i64) -> String {
        let start = bucket * self.bucket_ms;
        DateTime::from_timestamp_millis(start)
            .map(|t| t.format(&self.pattern).to_string())
            .unwrap_or_else(|| format!("out-of-range={start}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_pattern_buckets_by_hour() {
        let s = PartitionScheme::new("dt=%Y-%m-%d/hour=%H");
        assert_eq!(s.bucket_ms, 3_600_000);
        // 2024-01-01T00:00:00Z - 465 ms is still the last hour of 2023.
        let b = s.bucket(1_704_067_199_535);
        assert_eq!(s.directory(b), "dt=2023-12-31/hour=23");
        assert_eq!(s.directory(s.bucket(1_704_067_200_000)), "dt=2024-01-01/hour=00");
    }

    #[test]
    fn daily_pattern_buckets_by_day() {
        assert_eq!(PartitionScheme::new("dt=%Y-%m-%d").bucket_ms, 86_400_000);
    }
}
