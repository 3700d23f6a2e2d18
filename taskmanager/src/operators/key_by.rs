//! `key_by`: the repartitioning happens on the edge into this vertex (by key group); the
//! operator itself passes rows through untouched.

use arrow::record_batch::RecordBatch;

use crate::error::TaskError;
use crate::runtime::operator::Operator;
use crate::runtime::stream_event::StreamEvent;

pub struct KeyBy;

impl Operator for KeyBy {
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        out.push(StreamEvent::Data(batch));
        Ok(())
    }
}
