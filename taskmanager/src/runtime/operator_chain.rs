//! A chain of operators joined by forward edges, run back to back inside one actor so that
//! chained operators cost a function call, not a message.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;

use crate::error::TaskError;
use crate::runtime::operator::Operator;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

pub struct ChainedOperator {
    operator: Box<dyn Operator>,
    metrics: Arc<SubtaskMetrics>,
    /// Events that reached the operator while it was producing deferred output, with the
    /// input their batch came from; they go in, in order, once it is done.
    backlog: VecDeque<(usize, StreamEvent)>,
}

impl ChainedOperator {
    pub fn new(operator: Box<dyn Operator>, metrics: Arc<SubtaskMetrics>) -> Self {
        Self {
            operator,
            metrics,
            backlog: VecDeque::new(),
        }
    }
}

#[derive(Default)]
pub struct OperatorChain {
    operators: Vec<ChainedOperator>,
}

impl OperatorChain {
    pub fn new(operators: Vec<ChainedOperator>) -> Self {
        Self { operators }
    }

    /// Whether an operator still has deferred output or a backlog: then the subtask calls
    /// [`OperatorChain::process`] with no new events before it reads more input.
    pub fn has_work(&self) -> bool {
        self.operators
            .iter()
            .any(|op| op.operator.has_deferred_output() || !op.backlog.is_empty())
    }

    /// What the first operator with deferred output waits on, if anything: the subtask
    /// awaits it before it calls [`OperatorChain::process`] again.
    pub fn io_wait(&mut self) -> Option<BoxFuture<'static, ()>> {
        self.operators
            .iter_mut()
            .find(|op| op.operator.has_deferred_output())
            .and_then(|op| op.operator.io_wait())
    }

    /// Runs events through every operator in turn; an operator with deferred output
    /// first produces its next step and takes new events only once it is done. A batch
    /// in `events` came from input `input` of the head operator.
    pub fn process(&mut self, mut events: Vec<StreamEvent>, input: usize) -> Result<Vec<StreamEvent>, TaskError> {
        let mut input = input;
        for op in &mut self.operators {
            let started = Instant::now();
            let mut out = Vec::with_capacity(events.len());
            if op.operator.has_deferred_output() {
                op.operator.resume(&mut out)?;
            }
            op.backlog.extend(events.into_iter().map(|e| (input, e)));
            input = 0;
            while !op.operator.has_deferred_output() {
                let Some((from, event)) = op.backlog.pop_front() else {
                    break;
                };
                match event {
                    StreamEvent::Data(batch) => {
                        SubtaskMetrics::add(&op.metrics.records_in, batch.num_rows() as u64);
                        SubtaskMetrics::add(&op.metrics.bytes_in, batch.get_array_memory_size() as u64);
                        op.operator.on_input_batch(from, batch, &mut out)?;
                    }
                    StreamEvent::Watermark(wm) => {
                        op.metrics.set_watermark(wm);
                        op.operator.on_watermark(wm, &mut out)?;
                    }
                    StreamEvent::Barrier(id) => op.operator.on_barrier(id, &mut out)?,
                    StreamEvent::EndOfStream => out.push(StreamEvent::EndOfStream),
                    StreamEvent::Idle(idle) => out.push(StreamEvent::Idle(idle)),
                }
            }
            for event in &out {
                if let StreamEvent::Data(b) = event {
                    SubtaskMetrics::add(&op.metrics.records_out, b.num_rows() as u64);
                    SubtaskMetrics::add(&op.metrics.bytes_out, b.get_array_memory_size() as u64);
                }
            }
            SubtaskMetrics::add_elapsed(&op.metrics.busy_ns, started);
            events = out;
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    /// Emits `steps` one-row batches for each watermark, one per step, then the watermark.
    struct Burst {
        steps: i64,
        left: i64,
        watermark: i64,
    }

    fn batch(v: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v]))]).unwrap()
    }

    impl Operator for Burst {
        fn on_batch(&mut self, b: RecordBatch, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
            out.push(StreamEvent::Data(b));
            Ok(())
        }

        fn on_watermark(&mut self, wm: i64, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
            self.watermark = wm;
            self.left = self.steps;
            self.resume(out)
        }

        fn has_deferred_output(&self) -> bool {
            self.left > 0
        }

        fn resume(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
            out.push(StreamEvent::Data(batch(self.left)));
            self.left -= 1;
            if self.left == 0 {
                out.push(StreamEvent::Watermark(self.watermark));
            }
            Ok(())
        }
    }

    struct Forward;

    impl Operator for Forward {
        fn on_batch(&mut self, b: RecordBatch, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
            out.push(StreamEvent::Data(b));
            Ok(())
        }
    }

    fn label(e: &StreamEvent) -> String {
        match e {
            StreamEvent::Data(b) => {
                format!(
                    "d{}",
                    b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0)
                )
            }
            StreamEvent::Watermark(w) => format!("w{w}"),
            StreamEvent::Barrier(id) => format!("b{id}"),
            StreamEvent::EndOfStream => "end".into(),
            StreamEvent::Idle(idle) => format!("i{idle}"),
        }
    }

    #[test]
    fn deferred_output_goes_downstream_step_by_step_before_later_events() {
        let metrics = || Arc::new(SubtaskMetrics::default());
        let mut chain = OperatorChain::new(vec![
            ChainedOperator::new(
                Box::new(Burst {
                    steps: 3,
                    left: 0,
                    watermark: 0,
                }),
                metrics(),
            ),
            ChainedOperator::new(Box::new(Forward), metrics()),
        ]);
        let step = |chain: &mut OperatorChain, events| -> Vec<String> {
            chain.process(events, 0).unwrap().iter().map(label).collect()
        };
        let input = vec![
            StreamEvent::Data(batch(100)),
            StreamEvent::Watermark(7),
            StreamEvent::Barrier(1),
            StreamEvent::Data(batch(200)),
            StreamEvent::EndOfStream,
        ];
        assert_eq!(step(&mut chain, input), ["d100", "d3"]);
        assert!(chain.has_work());
        assert_eq!(step(&mut chain, Vec::new()), ["d2"]);
        assert_eq!(step(&mut chain, Vec::new()), ["d1", "w7", "b1", "d200", "end"]);
        assert!(!chain.has_work());
    }
}
