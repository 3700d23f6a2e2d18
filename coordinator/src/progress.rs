//! Live progress on the terminal while a job runs: records in and out per second, dead
//! letters, and the watermark of the sinks. On a terminal the line is redrawn in place;
//! otherwise one line is printed per interval (for logs).

use std::io::{IsTerminal, Write};
use std::time::Instant;

use chrono::DateTime;
use weir_common::JobGraph;
use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN};
use weir_common::graph::VertexKind;
use weir_taskmanager::runtime::subtask_metrics::JobMetrics;

use crate::job_summary::group;

pub struct Progress {
    sources: Vec<usize>,
    sinks: Vec<usize>,
    started: Instant,
    last: Option<(Instant, u64, u64)>,
    tty: bool,
}

impl Progress {
    pub fn new(graph: &JobGraph) -> Self {
        let of = |want: fn(&VertexKind) -> bool| -> Vec<usize> {
            graph
                .vertices
                .iter()
                .filter(|v| want(&v.kind))
                .map(|v| v.id.0)
                .collect()
        };
        Self {
            sources: of(|k| matches!(k, VertexKind::Source { .. })),
            sinks: of(|k| matches!(k, VertexKind::Sink(_))),
            started: Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn show(&mut self, metrics: &JobMetrics) {
        let read: u64 = self.sources.iter().map(|v| metrics.sum(*v, |m| &m.records_in)).sum();
        let dead: u64 = self.sources.iter().map(|v| metrics.sum(*v, |m| &m.dead_letters)).sum();
        let written: u64 = self.sinks.iter().map(|v| metrics.sum(*v, |m| &m.records_in)).sum();
        let wm = self
            .sinks
            .iter()
            .map(|v| metrics.watermark(*v))
            .min()
            .unwrap_or(WATERMARK_MIN);
        let now = Instant::now();
        let (rin, rout) = match self.last {
            Some((t, r, w)) => {
                let dt = now.duration_since(t).as_secs_f64().max(1e-3);
                ((read - r) as f64 / dt, (written - w) as f64 / dt)
            }
            None => {
                let dt = now.duration_since(self.started).as_secs_f64().max(1e-3);
                (read as f64 / dt, written as f64 / dt)
            }
        };
        self.last = Some((now, read, written));
        let line = format!(
            "[{:>6.1}s] in {} ({:.0}/s)  out {} ({:.0}/s)  dead-lettered {}  watermark {}",
            now.duration_since(self.started).as_secs_f64(),
            group(read),
            rin,
            group(written),
            rout,
            group(dead),
            show_watermark(wm)
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn show_watermark(wm: i64) -> String {
    match wm {
        WATERMARK_MIN => "-".into(),
        WATERMARK_MAX => "end".into(),
        ms => DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| ms.to_string()),
    }
}
