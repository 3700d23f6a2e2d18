//! The W2 generator: log records as the exact JSON text of the workload definition, handed
//! to the source's format like any other raw input.

use std::sync::Arc;

use futures::future::BoxFuture;
use weir_common::source_position::SourcePosition;

use super::IndexRange;
use super::datagen::w2;
use crate::error::TaskError;
use crate::runtime::source::{RawRecords, SourceOutput, SourceReader};

pub struct W2Reader {
    range: IndexRange,
    batch_size: usize,
    origin: Arc<str>,
}

impl W2Reader {
    pub fn new(range: IndexRange, batch_size: usize) -> Self {
        Self {
            range,
            batch_size,
            origin: Arc::from("generator:w2_logs"),
        }
    }
}

impl SourceReader for W2Reader {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<SourceOutput>, TaskError>> {
        let r = &mut self.range;
        let out = if r.next >= r.end {
            None
        } else {
            let mut raw = RawRecords {
                data: Vec::with_capacity(self.batch_size * 170),
                origin: self.origin.clone(),
                ..Default::default()
            };
            while raw.len() < self.batch_size && r.next < r.end {
                w2::json_into(r.next, &mut raw.data);
                raw.end_record(r.next);
                r.next += r.step;
            }
            Some(SourceOutput::Raw(raw))
        };
        Box::pin(async move { Ok(out) })
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Generator {
            next_index: self.range.next,
        }
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), TaskError> {
        self.range.seek(position)
    }
}
