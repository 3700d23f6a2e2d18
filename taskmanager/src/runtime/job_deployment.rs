//! Turns a validated job graph into running subtasks: creates the bounded channel for
//! every producer/consumer subtask pair of every edge between tasks, builds each subtask's
//! input, operator chain and tail, and starts it as an actor on the slot it was placed on.
//!
//! A task manager deploys only the subtasks placed on it. A channel between two of them is
//! an in-process queue; a channel to a subtask elsewhere is a network channel (the producer
//! side connects, the consumer side registers itself for the producer to find).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;
use weir_common::graph::{EdgePartitioning, JobGraph, SourceConnector, VertexKind};
use weir_common::source_position::{RestoreFrom, SourcePosition};
use weir_common::state_handle::StateHandle;

use crate::connectors::filesystem::attempt_cleanup::RestorePoint;
use crate::connectors::{build_sink, build_source};
use crate::dead_letter::DeadLetterQueue;
use crate::error::TaskError;
use crate::exchange::NETWORK_CREDITS;
use crate::exchange::channel_key::ChannelKey;
use crate::exchange::inbound_channels::InboundChannels;
use crate::exchange::remote_sender::RemoteSender;
use crate::formats::record_decoder::RecordDecoder;
use crate::operators::build_operator;
use crate::runtime::input_gate::InputGate;
use crate::runtime::key_partitioner::KeyPartitioner;
use crate::runtime::operator_chain::{ChainedOperator, OperatorChain};
use crate::runtime::output_gate::{ChannelSender, OutputEdge, OutputGate, Routing};
use crate::runtime::source_driver::SourceDriver;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_actor::{ChainTail, SubtaskActor, SubtaskDone, SubtaskId, SubtaskIo, TaskInput};
use crate::runtime::subtask_metrics::JobMetrics;
use crate::runtime::watermark_alignment::{AlignmentMember, AlignmentSlots};
use crate::state::StateServices;
use crate::transport::ClusterTransport;

/// Batches in flight per channel: enough to keep both ends busy, small enough that memory
/// stays bounded (a few MB per channel at 8192-row batches).
pub const DEFAULT_CHANNEL_CAPACITY: usize = 4;

/// What every subtask of one job run shares.
#[derive(Clone)]
pub struct JobContext {
    /// `<job id>.<attempt>`: names this attempt's files (part names, dead letters) so that a
    /// later attempt can tell them apart.
    pub run_id: String,
    pub job_id: String,
    pub attempt: u32,
    pub dead_letters: DeadLetterQueue,
    pub metrics: JobMetrics,
    pub done: mpsc::Sender<SubtaskDone>,
    pub channel_capacity: usize,
    /// The network side; `None` when every subtask is local (`coordinator local`).
    pub exchange: Option<Exchange>,
    /// The job checkpoints: sinks commit in two phases.
    pub checkpointing: bool,
    /// The checkpoint this attempt resumes from.
    pub restore: Option<Restore>,
    /// Keyed state of the stateful operators.
    pub state: StateServices,
    /// Where aligned sources report their watermarks.
    pub alignment: AlignmentSlots,
}

/// A checkpoint to resume from, as the subtasks use it.
#[derive(Debug, Clone)]
pub struct Restore {
    pub point: RestorePoint,
    pub sources: HashMap<(usize, u32), SourcePosition>,
    pub state: Vec<StateHandle>,
    /// Where the state handles' files are, when not in the job's checkpoint storage.
    pub state_storage: Option<String>,
    /// Committing sinks' watermarks at the checkpoint, by sink name.
    pub sink_watermarks: std::collections::BTreeMap<String, i64>,
}

impl From<RestoreFrom> for Restore {
    fn from(r: RestoreFrom) -> Self {
        Self {
            point: RestorePoint {
                attempt: r.attempt,
                checkpoint: r.checkpoint,
            },
            sources: r
                .sources
                .into_iter()
                .map(|s| ((s.task as usize, s.subtask), s.position))
                .collect(),
            state: r.state,
            state_storage: r.state_storage,
            sink_watermarks: r.sink_watermarks,
        }
    }
}

impl JobContext {
    pub fn run_id(job_id: &str, attempt: u32) -> String {
        format!("{job_id}.{attempt}")
    }
}

/// What a task manager needs to connect channels to other task managers.
#[derive(Clone)]
pub struct Exchange {
    pub inbound: InboundChannels,
    /// The runtime that carries the network streams.
    pub runtime: tokio::runtime::Handle,
    /// TLS and the token for connections to other task managers.
    pub transport: ClusterTransport,
}

/// Where a subtask runs.
#[derive(Clone)]
pub enum SubtaskLocation {
    /// On this task manager, on that slot.
    Local(ArbiterHandle),
    /// On the task manager serving the exchange at this address.
    Remote(String),
}

/// A consumer subtask's channel, with the input of its head operator that it feeds.
type InputChannel = (usize, mpsc::Receiver<StreamEvent>);

/// Deploys the subtasks of `graph` that `place(task, subtask)` puts on this task manager.
pub fn deploy(
    graph: &JobGraph,
    place: &dyn Fn(usize, u32) -> SubtaskLocation,
    ctx: &JobContext,
) -> Result<Vec<Addr<SubtaskActor>>, TaskError> {
    let mut outputs: HashMap<(usize, u32), Vec<OutputEdge>> = HashMap::new();
    let mut inputs: HashMap<(usize, u32), Vec<InputChannel>> = HashMap::new();
    let exchange = || {
        ctx.exchange.as_ref().ok_or_else(|| TaskError::Invalid {
            vertex: graph.name.clone(),
            message: "a subtask is placed on another task manager but this one has no network exchange".into(),
        })
    };
    let remote = |task: usize, subtask: u32| match place(task, subtask) {
        SubtaskLocation::Local(_) => None,
        SubtaskLocation::Remote(addr) => Some(addr),
    };
    for (edge_index, edge) in graph.task_edges().enumerate() {
        let from = graph.task_of(edge.from);
        let to = graph.task_of(edge.to);
        let consumer = graph.vertex(edge.to).name.clone();
        let side = graph
            .vertex(edge.to)
            .inputs
            .iter()
            .position(|v| *v == edge.from)
            .expect("an edge leads from an input");
        for i in 0..from.parallelism {
            let key = |j: u32| ChannelKey {
                job_id: ctx.job_id.clone(),
                attempt: ctx.attempt,
                edge: edge_index as u32,
                producer: i,
                consumer: j,
            };
            let (routing, targets): (Routing, Vec<u32>) = match &edge.partitioning {
                EdgePartitioning::Forward => (Routing::Forward, vec![i]),
                EdgePartitioning::Hash { key_columns } => (
                    Routing::Hash(KeyPartitioner {
                        key_columns: key_columns.clone(),
                        max_parallelism: graph.max_parallelism,
                        parallelism: to.parallelism,
                    }),
                    (0..to.parallelism).collect(),
                ),
                EdgePartitioning::Rebalance => (
                    Routing::RoundRobin {
                        next: (i % to.parallelism) as usize,
                    },
                    (0..to.parallelism).collect(),
                ),
            };
            let producer_here = remote(from.id, i).is_none();
            let mut channels = Vec::with_capacity(targets.len());
            for j in targets {
                match (producer_here, remote(to.id, j)) {
                    (true, None) => {
                        let (tx, rx) = mpsc::channel(ctx.channel_capacity);
                        channels.push(ChannelSender::Local(tx));
                        inputs.entry((to.id, j)).or_default().push((side, rx));
                    }
                    (true, Some(address)) => {
                        let ex = exchange()?;
                        channels.push(ChannelSender::Remote(Box::new(RemoteSender::connect(
                            (&ex.runtime, &ex.transport),
                            &address,
                            key(j),
                            NETWORK_CREDITS,
                        )?)));
                    }
                    (false, None) => {
                        let (tx, rx) = mpsc::channel(ctx.channel_capacity);
                        exchange()?.inbound.register(key(j), tx);
                        inputs.entry((to.id, j)).or_default().push((side, rx));
                    }
                    (false, Some(_)) => {}
                }
            }
            if !producer_here {
                continue;
            }
            outputs.entry((from.id, i)).or_default().push(OutputEdge {
                routing,
                channels,
                consumer: consumer.clone(),
            });
        }
    }

    // Everything is built before anything starts: a deployment that fails half way
    // leaves no running subtask behind.
    let mut built = Vec::new();
    for task in &graph.tasks {
        let label = task
            .vertices
            .iter()
            .map(|v| graph.vertex(*v).name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ");
        for s in 0..task.parallelism {
            let SubtaskLocation::Local(slot) = place(task.id, s) else {
                continue;
            };
            let head = graph.vertex(task.head());
            let mut chain_vertices = task.vertices.as_slice();
            let input = match &head.kind {
                VertexKind::Source {
                    connector,
                    format,
                    max_out_of_orderness_ms,
                    alignment,
                } => {
                    chain_vertices = &chain_vertices[1..];
                    let (mut reader, batch_size) = build_source(&graph.name, head, s)?;
                    let idle_timeout = match connector {
                        SourceConnector::Kafka(k) => k.idle_timeout_ms.map(Duration::from_millis),
                        SourceConnector::Generator(_) | SourceConnector::File(_) => None,
                    };
                    if let Some(position) = ctx.restore.as_ref().and_then(|r| r.sources.get(&(task.id, s))) {
                        reader.seek(position)?;
                    }
                    *ctx.metrics
                        .checkpoint(task.id, s)
                        .on_source_complete
                        .lock()
                        .expect("on_complete lock") = reader.on_checkpoint_complete();
                    let decoder = format
                        .as_ref()
                        .map(|f| RecordDecoder::new(f, head.schema.clone(), &head.name, batch_size))
                        .transpose()?;
                    let driver = SourceDriver::new(
                        Arc::from(head.name.as_str()),
                        s,
                        reader,
                        decoder,
                        head.schema
                            .index_of(&head.event_time_column)
                            .map_err(|e| TaskError::arrow(&head.name, e))?,
                        (*max_out_of_orderness_ms, idle_timeout),
                        ctx.dead_letters.clone(),
                        ctx.metrics.get(head.id.0, s),
                    );
                    TaskInput::Source(match alignment {
                        Some(a) => driver.with_alignment(ctx.alignment.register(AlignmentMember {
                            job_id: ctx.job_id.clone(),
                            attempt: ctx.attempt,
                            group: a.group.clone(),
                            group_size: alignment_group_size(graph, &a.group),
                            max_drift_ms: a.max_drift_ms,
                            task: task.id as u32,
                            subtask: s,
                        })),
                        None => driver,
                    })
                }
                _ => {
                    let (sides, channels) = inputs.remove(&(task.id, s)).unwrap_or_default().into_iter().unzip();
                    TaskInput::Gate(InputGate::with_inputs(channels, sides).with_metrics(ctx.metrics.get(head.id.0, s)))
                }
            };
            let tail_vertex = graph.vertex(task.tail());
            let tail = if matches!(tail_vertex.kind, VertexKind::Sink(_)) && !chain_vertices.is_empty() {
                chain_vertices = &chain_vertices[..chain_vertices.len() - 1];
                ChainTail::Sink(
                    build_sink(&graph.name, tail_vertex, task.id, s, ctx)?,
                    ctx.metrics.get(tail_vertex.id.0, s),
                )
            } else {
                ChainTail::Output(OutputGate {
                    edges: outputs.remove(&(task.id, s)).unwrap_or_default(),
                    metrics: ctx.metrics.get(tail_vertex.id.0, s),
                })
            };
            let mut operators = Vec::with_capacity(chain_vertices.len());
            for v in chain_vertices {
                let vertex = graph.vertex(*v);
                let metrics = ctx.metrics.get(v.0, s);
                let state = vertex.kind.has_keyed_state().then(|| {
                    ctx.state.for_operator(
                        (&ctx.job_id, ctx.attempt),
                        vertex,
                        s,
                        graph.max_parallelism,
                        ctx.metrics.checkpoint(task.id, s),
                    )
                });
                operators.push(ChainedOperator::new(
                    build_operator(
                        graph,
                        vertex,
                        (s, &ctx.dead_letters, &ctx.state.local_root),
                        metrics.clone(),
                        state,
                    )?,
                    metrics,
                ));
            }
            let id = SubtaskId {
                task: task.id,
                subtask: s,
                label: label.clone(),
            };
            let actor = SubtaskActor::new(
                id,
                OperatorChain::new(operators),
                SubtaskIo { input, tail },
                ctx.done.clone(),
                ctx.metrics.checkpoint(task.id, s),
            );
            built.push((slot, actor));
        }
    }
    Ok(built
        .into_iter()
        .map(|(slot, actor)| SubtaskActor::start_in_arbiter(&slot, move |_| actor))
        .collect())
}

/// How many source subtasks of the job belong to alignment group `group`.
fn alignment_group_size(graph: &JobGraph, group: &str) -> u32 {
    graph
        .vertices
        .iter()
        .filter(|v| matches!(&v.kind, VertexKind::Source { alignment: Some(a), .. } if a.group == group))
        .map(|v| v.parallelism)
        .sum()
}
