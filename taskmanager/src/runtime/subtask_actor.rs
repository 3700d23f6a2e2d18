//! One parallel subtask of a task (a chain of operators) as an actix actor.
//!
//! The actor pumps: take the next events from its input (a source or an input gate), run
//! them through the chain on the actor's thread, hand the results to its tail (an output
//! gate or a sink) and only then pump again. Data travels through bounded channels, not
//! the mailbox, so a full downstream channel stops the pump: backpressure with bounded
//! memory. The mailbox (bounded too) carries control messages such as `Cancel` and
//! `TriggerCheckpoint`, which are handled between pumps.
//!
//! Checkpoints: a source subtask told to trigger checkpoint n emits `Barrier(n)` before
//! its next read; every subtask records, once its tail has passed a barrier on, that it
//! acknowledged that checkpoint (the task manager reports it to the leader).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::error::TaskError;
use crate::runtime::input_gate::InputGate;
use crate::runtime::operator_chain::OperatorChain;
use crate::runtime::output_gate::OutputGate;
use crate::runtime::sink::{Sink, SinkReport};
use crate::runtime::source_driver::SourceDriver;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::{CheckpointProgress, SubtaskMetrics};

/// Control messages are few; a small mailbox is plenty and keeps it bounded.
const MAILBOX_CAPACITY: usize = 16;

pub enum TaskInput {
    Source(SourceDriver),
    Gate(InputGate),
}

impl TaskInput {
    async fn next(&mut self) -> Result<Option<Vec<StreamEvent>>, TaskError> {
        match self {
            TaskInput::Source(s) => s.next().await,
            TaskInput::Gate(g) => {
                let events = g.next().await?;
                Ok((!events.is_empty()).then_some(events))
            }
        }
    }
}

pub enum ChainTail {
    Output(OutputGate),
    /// A sink and its vertex's counters (its `busy_ns` counts the time spent writing).
    Sink(Box<dyn Sink>, Arc<SubtaskMetrics>),
}

enum Step {
    Continue,
    Finished(Option<SinkReport>),
}

impl ChainTail {
    async fn deliver(&mut self, events: Vec<StreamEvent>) -> Result<Step, TaskError> {
        let ended = events.iter().any(|e| matches!(e, StreamEvent::EndOfStream));
        match self {
            ChainTail::Output(gate) => {
                gate.emit(events).await?;
                Ok(if ended { Step::Finished(None) } else { Step::Continue })
            }
            ChainTail::Sink(sink, metrics) => {
                let since = Instant::now();
                sink.write(events).await?;
                SubtaskMetrics::add_elapsed(&metrics.busy_ns, since);
                if ended {
                    Ok(Step::Finished(Some(sink.finish().await?)))
                } else {
                    Ok(Step::Continue)
                }
            }
        }
    }
}

/// Identifies a subtask in reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubtaskId {
    pub task: usize,
    pub subtask: u32,
    /// The chain's vertex names, `source -> filter -> sink`.
    pub label: String,
}

/// Sent once when a subtask ends, successfully or not.
#[derive(Debug)]
pub struct SubtaskDone {
    pub id: SubtaskId,
    pub result: Result<Option<SinkReport>, TaskError>,
}

pub struct SubtaskIo {
    pub input: TaskInput,
    pub tail: ChainTail,
}

pub struct SubtaskActor {
    id: SubtaskId,
    chain: OperatorChain,
    io: Option<SubtaskIo>,
    done: mpsc::Sender<SubtaskDone>,
    /// The checkpoint a source should start before its next read.
    triggered: Option<u64>,
    checkpoints: Arc<CheckpointProgress>,
}

impl SubtaskActor {
    pub fn new(
        id: SubtaskId,
        chain: OperatorChain,
        io: SubtaskIo,
        done: mpsc::Sender<SubtaskDone>,
        checkpoints: Arc<CheckpointProgress>,
    ) -> Self {
        Self {
            id,
            chain,
            io: Some(io),
            done,
            triggered: None,
            checkpoints,
        }
    }

    fn report(&self, result: Result<Option<SinkReport>, TaskError>) {
        if let Err(e) = &result {
            tracing::error!(task = self.id.task, subtask = self.id.subtask, chain = %self.id.label, error = %e, "subtask failed");
        }
        // The channel holds one slot per subtask, so this never finds it full; if the job
        // master is gone there is nobody left to tell.
        let _ = self.done.try_send(SubtaskDone {
            id: self.id.clone(),
            result,
        });
    }
}

impl Actor for SubtaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.notify(Pump);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Pump;

/// Stops the subtask where it is (the job was cancelled or failed elsewhere).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel;

/// Starts checkpoint `0` at a source subtask: it emits the barrier before its next read.
/// Subtasks that are not sources get their barriers from their inputs and ignore this.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TriggerCheckpoint(pub u64);

impl Handler<TriggerCheckpoint> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, msg: TriggerCheckpoint, _: &mut Self::Context) {
        self.triggered = Some(self.triggered.map_or(msg.0, |t| t.max(msg.0)));
    }
}

impl Handler<Pump> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, _: Pump, ctx: &mut Self::Context) {
        let Some(mut io) = self.io.take() else {
            return;
        };
        // An operator still producing deferred output (a large firing) runs its next
        // step before anything more is read: its output goes downstream first.
        let resume = self.chain.has_work();
        // An operator waiting on I/O is awaited here, off the slot's thread.
        let io_wait = if resume { self.chain.io_wait() } else { None };
        let barrier = match (&io.input, if resume { None } else { self.triggered.take() }) {
            (TaskInput::Source(source), Some(id)) => {
                // Everything read so far goes before the barrier: this is where a restore
                // from this checkpoint resumes.
                *self.checkpoints.source_position.lock().expect("position lock") = Some((id, source.position()));
                Some(id)
            }
            _ => None,
        };
        let step = async move {
            let input = match barrier {
                _ if resume => {
                    if let Some(wait) = io_wait {
                        wait.await;
                    }
                    Ok(Some(Vec::new()))
                }
                Some(id) => Ok(Some(vec![StreamEvent::Barrier(id)])),
                None => io.input.next().await,
            };
            (io, input)
        }
        .into_actor(self)
        .then(|(mut io, input), act, _| {
            let from = match &io.input {
                TaskInput::Gate(gate) => gate.batch_input(),
                TaskInput::Source(_) => 0,
            };
            let processed = input.and_then(|events| match events {
                Some(events) => act.chain.process(events, from).map(Some),
                None => Ok(None),
            });
            let passed = processed
                .as_ref()
                .ok()
                .and_then(Option::as_ref)
                .and_then(|events| newest_barrier(events));
            let checkpoints = act.checkpoints.clone();
            if let (Some(id), TaskInput::Gate(gate)) = (passed, &io.input)
                && let Some((aligned, took)) = gate.last_alignment()
                && aligned == id
            {
                *checkpoints.alignment_ms.lock().expect("alignment lock") = Some((id, took.as_millis() as u64));
            }
            async move {
                let step = match processed {
                    Ok(Some(events)) => io.tail.deliver(events).await,
                    Ok(None) => Ok(Step::Finished(None)),
                    Err(e) => Err(e),
                };
                if let (Ok(_), Some(id)) = (&step, passed) {
                    checkpoints.acknowledged.fetch_max(id, Ordering::Release);
                }
                (io, step)
            }
            .into_actor(act)
        })
        .map(|(io, step), act, ctx| match step {
            Ok(Step::Continue) => {
                act.io = Some(io);
                ctx.notify(Pump);
            }
            Ok(Step::Finished(report)) => {
                act.report(Ok(report));
                ctx.stop();
            }
            Err(e) => {
                act.report(Err(e));
                ctx.stop();
            }
        });
        ctx.spawn(step);
    }
}

fn newest_barrier(events: &[StreamEvent]) -> Option<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Barrier(id) => Some(*id),
            _ => None,
        })
        .max()
}

impl Handler<Cancel> for SubtaskActor {
    type Result = ();

    fn handle(&mut self, _: Cancel, ctx: &mut Self::Context) {
        self.io = None;
        ctx.stop();
    }
}
