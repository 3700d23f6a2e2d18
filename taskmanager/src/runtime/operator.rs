//! The operator contract: synchronous, CPU-only transformations of stream events. Anything
//! that waits (network, files) lives in sources, sinks and gates, so an operator never
//! blocks its actor's thread.

use arrow::record_batch::RecordBatch;

use crate::error::TaskError;
use crate::runtime::stream_event::StreamEvent;

pub trait Operator: Send {
    /// Transforms one batch; pushes zero or more events downstream.
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<StreamEvent>) -> Result<(), TaskError>;

    /// A batch from input `input` (0 = the first) of an operator with several inputs;
    /// only the head of a task has more than one.
    fn on_input_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), TaskError> {
        debug_assert_eq!(input, 0, "a one-input operator got a batch from input {input}");
        self.on_batch(batch, out)
    }

    /// The watermark advanced (it only ever increases). Timers fire here.
    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        out.push(StreamEvent::Watermark(watermark));
        Ok(())
    }

    /// Checkpoint `id`'s barrier reached this operator, aligned over its inputs: its state
    /// now is exactly the state after every event before the barrier. Stateful operators
    /// snapshot here; the barrier then travels on.
    fn on_barrier(&mut self, id: u64, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        out.push(StreamEvent::Barrier(id));
        Ok(())
    }

    /// Whether the operator holds back output it has still to produce: a large firing
    /// emits one bounded step at a time, so that each step goes downstream (under
    /// backpressure) before the next is built. Until it is done, the chain gives the
    /// operator no further events.
    fn has_deferred_output(&self) -> bool {
        false
    }

    /// Produces the next step of deferred output.
    fn resume(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        Ok(())
    }
}
