//! `filter`: keeps the rows for which a SQL predicate is true (null counts as false).

use arrow::array::AsArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_common::expr::{self, CompiledExpr};

use crate::error::TaskError;
use crate::runtime::operator::Operator;
use crate::runtime::stream_event::StreamEvent;

pub struct Filter {
    name: String,
    predicate: CompiledExpr,
}

impl Filter {
    pub fn new(name: &str, sql: &str, input: &SchemaRef) -> Result<Self, TaskError> {
        let predicate = expr::compile(sql, input).map_err(|message| TaskError::Expression {
            vertex: name.to_string(),
            message,
        })?;
        Ok(Self {
            name: name.to_string(),
            predicate,
        })
    }
}

impl Operator for Filter {
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        let mask = self
            .predicate
            .expr
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| TaskError::Expression {
                vertex: self.name.clone(),
                message: e.to_string(),
            })?;
        let mask = mask.as_boolean();
        if mask.true_count() == batch.num_rows() {
            out.push(StreamEvent::Data(batch));
        } else if mask.true_count() > 0 {
            let kept = filter_record_batch(&batch, mask).map_err(|e| TaskError::arrow(&self.name, e))?;
            out.push(StreamEvent::Data(kept));
        }
        Ok(())
    }
}
