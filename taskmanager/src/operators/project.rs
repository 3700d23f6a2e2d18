//! `project`: computes each output column from a SQL expression over the input row.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_common::expr::{self, CompiledExpr};
use weir_common::spec::ProjectColumn;

use crate::error::TaskError;
use crate::runtime::operator::Operator;
use crate::runtime::stream_event::StreamEvent;

pub struct Project {
    name: String,
    columns: Vec<CompiledExpr>,
    output: SchemaRef,
}

impl Project {
    pub fn new(name: &str, columns: &[ProjectColumn], input: &SchemaRef, output: SchemaRef) -> Result<Self, TaskError> {
        let columns = columns
            .iter()
            .map(|c| {
                expr::compile(&c.sql(), input).map_err(|message| TaskError::Expression {
                    vertex: name.to_string(),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: name.to_string(),
            columns,
            output,
        })
    }
}

impl Operator for Project {
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        let arrays = self
            .columns
            .iter()
            .map(|c| c.expr.evaluate(&batch).and_then(|v| v.into_array(batch.num_rows())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TaskError::Expression {
                vertex: self.name.clone(),
                message: e.to_string(),
            })?;
        let projected =
            RecordBatch::try_new(self.output.clone(), arrays).map_err(|e| TaskError::arrow(&self.name, e))?;
        out.push(StreamEvent::Data(projected));
        Ok(())
    }
}
