//! The operator contract: synchronous transformations of stream events. An operator never
//! blocks its actor's thread: one that needs I/O (state kept in Redis) starts it, says so
//! through [`Operator::has_deferred_output`], and hands the subtask a future to await
//! ([`Operator::io_wait`]) before it is called again.

use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;

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

    /// Produces the next step of deferred output (possibly none, while I/O is on its way).
    fn resume(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        Ok(())
    }

    /// While the operator has deferred output: what it waits on before `resume` can make
    /// progress, if anything.
    fn io_wait(&mut self) -> Option<BoxFuture<'static, ()>> {
        None
    }
}
