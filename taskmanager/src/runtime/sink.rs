//! The sink contract: the last link of a chain, which may wait (on a writer thread, a
//! network peer) and reports what it committed when the stream ends.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::error::TaskError;
use crate::runtime::stream_event::StreamEvent;

/// What a sink subtask wrote, for the job summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkReport {
    pub rows: u64,
    /// Committed files, relative to the sink's root.
    pub files: Vec<String>,
    pub bytes: u64,
    /// Per requested column, the sum over all rows (blackhole sinks).
    pub column_sums: BTreeMap<String, i128>,
}

impl SinkReport {
    pub fn merge(&mut self, other: SinkReport) {
        self.rows += other.rows;
        self.files.extend(other.files);
        self.bytes += other.bytes;
        for (k, v) in other.column_sums {
            *self.column_sums.entry(k).or_default() += v;
        }
    }
}

pub trait Sink: Send {
    /// Accepts events; the future completes when the sink can take more.
    fn write(&mut self, events: Vec<StreamEvent>) -> BoxFuture<'_, Result<(), TaskError>>;
    /// Called after `EndOfStream`: flushes and commits everything.
    fn finish(&mut self) -> BoxFuture<'_, Result<SinkReport, TaskError>>;
}
