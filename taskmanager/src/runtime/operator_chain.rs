//! A chain of operators joined by forward edges, run back to back inside one actor so that
//! chained operators cost a function call, not a message.

use std::sync::Arc;

use crate::error::TaskError;
use crate::runtime::operator::Operator;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

pub struct ChainedOperator {
    pub operator: Box<dyn Operator>,
    pub metrics: Arc<SubtaskMetrics>,
}

#[derive(Default)]
pub struct OperatorChain {
    operators: Vec<ChainedOperator>,
}

impl OperatorChain {
    pub fn new(operators: Vec<ChainedOperator>) -> Self {
        Self { operators }
    }

    /// Runs events through every operator in turn.
    pub fn process(&mut self, mut events: Vec<StreamEvent>) -> Result<Vec<StreamEvent>, TaskError> {
        for op in &mut self.operators {
            let mut out = Vec::with_capacity(events.len());
            for event in events {
                let before = out.len();
                match event {
                    StreamEvent::Data(batch) => {
                        SubtaskMetrics::add(&op.metrics.records_in, batch.num_rows() as u64);
                        op.operator.on_batch(batch, &mut out)?;
                    }
                    StreamEvent::Watermark(wm) => {
                        op.metrics.set_watermark(wm);
                        op.operator.on_watermark(wm, &mut out)?;
                    }
                    StreamEvent::Barrier(id) => op.operator.on_barrier(id, &mut out)?,
                    StreamEvent::EndOfStream => out.push(StreamEvent::EndOfStream),
                }
                SubtaskMetrics::add(&op.metrics.records_out, rows(&out[before..]));
            }
            events = out;
        }
        Ok(events)
    }
}

fn rows(events: &[StreamEvent]) -> u64 {
    events
        .iter()
        .map(|e| match e {
            StreamEvent::Data(b) => b.num_rows() as u64,
            _ => 0,
        })
        .sum()
}
