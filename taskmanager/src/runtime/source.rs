//! The source contract: a reader yields either typed Arrow rows or raw records (bytes with
//! their positions) that a format decodes. Readers do their own I/O asynchronously.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

use weir_common::source_position::SourcePosition;

use crate::error::TaskError;
use crate::runtime::subtask_metrics::OnSourceCheckpointComplete;

/// Raw records in one buffer, each followed by a newline (so a decoder never reads two
/// records as one token), with where each came from.
#[derive(Debug, Default)]
pub struct RawRecords {
    pub data: Vec<u8>,
    /// End offset of each record in `data` (its start is the previous end).
    pub ends: Vec<usize>,
    /// The file, topic or generator the records came from.
    pub origin: Arc<str>,
    /// Each record's position within `origin` (line number, offset, index).
    pub positions: Vec<u64>,
    /// Which of the reader's splits (e.g. Kafka partitions) the records came from; each
    /// split has its own watermark.
    pub split: usize,
}

impl RawRecords {
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// Record `i` without its newline.
    pub fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i] - 1]
    }
    pub fn push(&mut self, record: &[u8], position: u64) {
        self.data.extend_from_slice(record);
        self.end_record(position);
    }
    /// Ends the record written directly into `data` since the previous one.
    pub fn end_record(&mut self, position: u64) {
        self.data.push(b'\n');
        self.ends.push(self.data.len());
        self.positions.push(position);
    }
}

pub enum SourceOutput {
    Rows(RecordBatch),
    Raw(RawRecords),
}

pub trait SourceReader: Send {
    /// The next chunk of input, or `None` at the end of a bounded input.
    fn next(&mut self) -> BoxFuture<'_, Result<Option<SourceOutput>, TaskError>>;

    /// Where the reader stands: everything returned so far lies before it.
    fn position(&self) -> SourcePosition;

    /// Watermark alignment keeps back rows of some splits that were already read: the
    /// position as if each listed split's next record were the one at the given record
    /// position (`RawRecords::positions`). `None` for readers that cannot say; alignment
    /// then only pauses them, and emits what was read before the pause.
    fn position_before(&self, _held: &[(usize, u64)]) -> Option<SourcePosition> {
        None
    }

    /// Before the first read: continue from `position` (taken from a reader of the same
    /// source and subtask), so that the records before it are not read again.
    fn seek(&mut self, position: &SourcePosition) -> Result<(), TaskError>;

    /// How many splits the reader reads, each with its own watermark (the subtask's is
    /// the least over the splits not idle). Known after the first `next`.
    fn splits(&self) -> usize {
        1
    }

    /// Watermark alignment: stop reading split `split` (or read it again). Records read
    /// before the pause may still arrive. Only readers that validation lets be aligned
    /// need to implement it.
    fn set_paused(&mut self, _split: usize, _paused: bool) {}

    /// Whether split `split` has records the reader has not delivered yet (then it is not
    /// idle however long it is quiet). Readers that cannot tell say no.
    fn split_behind(&self, _split: usize) -> bool {
        false
    }

    /// What to do with the position of a completed checkpoint (see
    /// `CheckpointProgress::on_source_complete`); most readers need nothing.
    fn on_checkpoint_complete(&self) -> Option<OnSourceCheckpointComplete> {
        None
    }

    /// How many records of split `split` wait to be read (a Kafka partition's lag behind
    /// its high watermark), where the reader knows.
    fn split_lag(&self, _split: usize) -> Option<i64> {
        None
    }

    /// How status names split `split` (a Kafka reader: `topic/partition`).
    fn split_name(&self, split: usize) -> String {
        split.to_string()
    }
}

/// The error for a position that belongs to another kind of source.
pub fn foreign_position(source: &str, position: &SourcePosition) -> TaskError {
    TaskError::Invalid {
        vertex: source.to_string(),
        message: format!("cannot resume from {position:?}: it was recorded by another kind of source"),
    }
}
