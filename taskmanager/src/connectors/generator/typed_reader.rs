//! Generators that emit typed rows directly as Arrow columns (W1 impressions and clicks,
//! W3 events): no text, no parsing, one array per column per batch.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use weir_common::schema::{UTC, generator_schema};
use weir_common::source_position::SourcePosition;
use weir_common::spec::GeneratorWorkload;

use super::IndexRange;
use super::datagen::{w1, w3};
use crate::error::TaskError;
use crate::runtime::source::{SourceOutput, SourceReader};

pub struct TypedReader {
    workload: GeneratorWorkload,
    schema: SchemaRef,
    range: IndexRange,
    batch_size: usize,
}

impl TypedReader {
    pub fn new(workload: GeneratorWorkload, range: IndexRange, batch_size: usize) -> Self {
        Self {
            workload,
            schema: generator_schema(workload).expect("typed workload"),
            range,
            batch_size,
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, TaskError> {
        let r = &mut self.range;
        if r.next >= r.end {
            return Ok(None);
        }
        let ts_col = |v: Vec<i64>| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(v).with_timezone(UTC)) };
        let columns: Vec<ArrayRef> = match self.workload {
            GeneratorWorkload::W3Events => {
                let mut keys = Vec::with_capacity(self.batch_size);
                let mut ts = Vec::with_capacity(self.batch_size);
                while keys.len() < self.batch_size && r.next < r.end {
                    keys.push(w3::key(r.next));
                    ts.push(w3::ts(r.next));
                    r.next += r.step;
                }
                vec![Arc::new(Int32Array::from(keys)), ts_col(ts)]
            }
            GeneratorWorkload::W1Impressions => {
                let (mut id, mut ts, mut user, mut ad, mut camp) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                while id.len() < self.batch_size && r.next < r.end {
                    let g = r.next;
                    id.push(w1::request_id(g));
                    ts.push(w1::imp_ts(g));
                    user.push(w1::user_id(g));
                    ad.push(w1::ad_id(g));
                    camp.push(w1::campaign_id(g));
                    r.next += r.step;
                }
                vec![
                    Arc::new(UInt64Array::from(id)),
                    ts_col(ts),
                    Arc::new(Int64Array::from(user)),
                    Arc::new(Int32Array::from(ad)),
                    Arc::new(Int32Array::from(camp)),
                ]
            }
            GeneratorWorkload::W1Clicks => {
                let (mut id, mut ts) = (Vec::new(), Vec::new());
                while id.len() < self.batch_size && r.next < r.end {
                    let g = r.next;
                    if w1::clicked(g) {
                        id.push(w1::request_id(g));
                        ts.push(w1::click_ts(g));
                    }
                    r.next += r.step;
                }
                vec![Arc::new(UInt64Array::from(id)), ts_col(ts)]
            }
            GeneratorWorkload::W2Logs => unreachable!("W2 is generated as text"),
        };
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| TaskError::arrow("generator", e))
    }
}

impl SourceReader for TypedReader {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<SourceOutput>, TaskError>> {
        let batch = self.next_batch();
        Box::pin(async move { Ok(batch?.map(SourceOutput::Rows)) })
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
