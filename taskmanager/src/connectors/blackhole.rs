//! The blackhole sink: discards rows after counting them and summing the requested
//! integer columns, so a benchmark can verify its result without paying for output.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use futures::future::BoxFuture;
use weir_common::graph::Vertex;
use weir_common::spec::BlackholeSinkSpec;

use crate::error::TaskError;
use crate::runtime::sink::{Sink, SinkReport};
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

pub struct BlackholeSink {
    name: String,
    columns: Vec<(String, usize)>,
    report: SinkReport,
    metrics: Arc<SubtaskMetrics>,
}

impl BlackholeSink {
    pub fn new(vertex: &Vertex, spec: &BlackholeSinkSpec, metrics: Arc<SubtaskMetrics>) -> Result<Self, TaskError> {
        let columns = spec
            .sum_columns
            .iter()
            .map(|c| vertex.schema.index_of(c).map(|i| (c.clone(), i)))
            .collect::<Result<_, _>>()
            .map_err(|e| TaskError::arrow(&vertex.name, e))?;
        Ok(Self {
            name: vertex.name.clone(),
            columns,
            report: SinkReport::default(),
            metrics,
        })
    }
}

impl Sink for BlackholeSink {
    fn write(&mut self, events: Vec<StreamEvent>) -> BoxFuture<'_, Result<(), TaskError>> {
        let mut result = Ok(());
        for event in events {
            match event {
                StreamEvent::Data(batch) => {
                    let rows = batch.num_rows() as u64;
                    SubtaskMetrics::add(&self.metrics.records_in, rows);
                    SubtaskMetrics::add(&self.metrics.records_out, rows);
                    self.report.rows += rows;
                    for (name, idx) in &self.columns {
                        let col = batch.column(*idx);
                        let s: i128 = if col.data_type() == &DataType::UInt64 {
                            col.as_primitive::<UInt64Type>()
                                .iter()
                                .flatten()
                                .map(|v| v as i128)
                                .sum()
                        } else {
                            match cast(col, &DataType::Int64) {
                                Ok(c) => c.as_primitive::<Int64Type>().iter().flatten().map(|v| v as i128).sum(),
                                Err(e) => {
                                    result = Err(TaskError::arrow(&self.name, e));
                                    0
                                }
                            }
                        };
                        *self.report.column_sums.entry(name.clone()).or_default() += s;
                    }
                }
                StreamEvent::Watermark(wm) => self.metrics.set_watermark(wm),
                StreamEvent::Barrier(_) | StreamEvent::EndOfStream | StreamEvent::Idle(_) => {}
            }
        }
        Box::pin(async move { result })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<SinkReport, TaskError>> {
        let report = std::mem::take(&mut self.report);
        Box::pin(async move { Ok(report) })
    }
}
