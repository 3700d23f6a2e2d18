//! The end-of-job report: what was read, written and set aside, printed for people and
//! serialized as JSON for scripts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::PathBuf;

use serde::Serialize;
use weir_taskmanager::runtime::sink::SinkReport;

#[derive(Debug, Clone, Serialize)]
pub struct SinkSummary {
    pub name: String,
    /// Output root, for file sinks.
    pub path: Option<String>,
    pub rows: u64,
    pub files: usize,
    pub partitions: usize,
    pub bytes: u64,
    pub column_sums: BTreeMap<String, String>,
}

impl SinkSummary {
    pub fn new(name: String, path: Option<String>, report: SinkReport) -> Self {
        let partitions: BTreeSet<&str> = report
            .files
            .iter()
            .map(|f| f.rsplit_once('/').map(|(dir, _)| dir).unwrap_or(""))
            .collect();
        Self {
            name,
            path,
            rows: report.rows,
            files: report.files.len(),
            partitions: partitions.len(),
            bytes: report.bytes,
            // As strings: the sums can exceed what JSON readers hold in a double.
            column_sums: report
                .column_sums
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub job: String,
    pub seconds: f64,
    pub records_read: u64,
    pub records_written: u64,
    pub dead_lettered: u64,
    pub late_records: u64,
    pub dead_letter_file: Option<PathBuf>,
    pub sinks: Vec<SinkSummary>,
}

impl JobSummary {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let rate = |n: u64| {
            if self.seconds > 0.0 {
                n as f64 / self.seconds
            } else {
                0.0
            }
        };
        let _ = writeln!(s, "job '{}' finished in {:.2} s", self.job, self.seconds);
        let _ = writeln!(
            s,
            "  records read      {:>14}  ({:.0}/s)",
            group(self.records_read),
            rate(self.records_read)
        );
        let _ = writeln!(s, "  records written   {:>14}", group(self.records_written));
        let _ = writeln!(s, "  dead-lettered     {:>14}", group(self.dead_lettered));
        if self.late_records > 0 {
            let _ = writeln!(s, "  late (dropped)    {:>14}", group(self.late_records));
        }
        if let Some(f) = &self.dead_letter_file {
            let _ = writeln!(s, "  dead letters in   {}", f.display());
        }
        for sink in &self.sinks {
            let _ = write!(s, "  sink '{}': {} rows", sink.name, group(sink.rows));
            if let Some(p) = &sink.path {
                let _ = write!(
                    s,
                    " in {} files, {} partitions, {:.1} MB under {p}",
                    sink.files,
                    sink.partitions,
                    sink.bytes as f64 / 1e6
                );
            }
            for (c, v) in &sink.column_sums {
                let _ = write!(s, ", sum({c}) = {v}");
            }
            s.push('\n');
        }
        s
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("summary serializes")
    }
}

/// 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(8_550_639), "8,550,639");
    }
}
