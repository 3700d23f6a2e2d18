//! The validated job graph: one vertex per source, operator and sink with its output
//! schema and parallelism, the edges with their partitioning, and the chains (tasks) that
//! run as one actor per parallel subtask.
//!
//! The graph is built deterministically from the spec, so any process that validates the
//! same spec (a coordinator, a task manager) gets the same vertex and task numbering.

use std::collections::BTreeMap;

use arrow_schema::SchemaRef;
use serde::Serialize;

use crate::spec::{
    BlackholeSinkSpec, FileSourceSpec, FormatSpec, GeneratorSpec, KafkaDelivery, KafkaSinkSpec, KafkaSourceSpec,
    LookupJoinSpec, ParquetSinkSpec, ProjectColumn, WatermarkAlignmentSpec, WindowAggregateSpec, WindowJoinSpec,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct VertexId(pub usize);

#[derive(Debug, Clone)]
pub enum SourceConnector {
    Generator(GeneratorSpec),
    File(FileSourceSpec),
    Kafka(KafkaSourceSpec),
}

#[derive(Debug, Clone)]
pub enum SinkConnector {
    Parquet(ParquetSinkSpec),
    Kafka(KafkaSinkSpec),
    Blackhole(BlackholeSinkSpec),
}

#[derive(Debug, Clone)]
pub enum VertexKind {
    Source {
        connector: SourceConnector,
        format: Option<FormatSpec>,
        max_out_of_orderness_ms: u64,
        alignment: Option<WatermarkAlignmentSpec>,
    },
    Filter {
        predicate: String,
    },
    Project {
        columns: Vec<ProjectColumn>,
    },
    KeyBy {
        keys: Vec<String>,
    },
    WindowAggregate(WindowAggregateSpec),
    /// Inputs: the A side (`input`), then the B side (`right`).
    WindowJoin(WindowJoinSpec),
    LookupJoin(LookupJoinSpec),
    Sink(SinkConnector),
}

impl VertexKind {
    pub fn label(&self) -> &'static str {
        match self {
            VertexKind::Source { .. } => "source",
            VertexKind::Filter { .. } => "filter",
            VertexKind::Project { .. } => "project",
            VertexKind::KeyBy { .. } => "key_by",
            VertexKind::WindowAggregate(_) => "window_aggregate",
            VertexKind::WindowJoin(_) => "window_join",
            VertexKind::LookupJoin(_) => "lookup_join",
            VertexKind::Sink(_) => "sink",
        }
    }

    /// Whether the operator keeps keyed state (which checkpoints snapshot).
    pub fn has_keyed_state(&self) -> bool {
        matches!(self, VertexKind::WindowAggregate(_) | VertexKind::WindowJoin(_))
    }

    /// Whether the vertex is an exactly-once Kafka sink, which keeps the records of its
    /// uncommitted transactions in checkpoint storage (so a restore can finish them).
    pub fn keeps_write_ahead_log(&self) -> bool {
        matches!(self, VertexKind::Sink(SinkConnector::Kafka(k)) if k.delivery == KafkaDelivery::ExactlyOnce)
    }

    /// Whether every subtask reports a state handle with each checkpoint (keyed state or
    /// a write-ahead log), which needs checkpoint storage.
    pub fn has_checkpointed_state(&self) -> bool {
        self.has_keyed_state() || self.keeps_write_ahead_log()
    }
}

#[derive(Debug, Clone)]
pub struct Vertex {
    pub id: VertexId,
    /// The `id` the spec gave it.
    pub name: String,
    /// Where it sits in the spec (`operators[2]`), for messages.
    pub spec_path: String,
    pub kind: VertexKind,
    pub parallelism: u32,
    /// The vertices feeding this one: none for a source, two for a join (A, then B), one
    /// otherwise.
    pub inputs: Vec<VertexId>,
    /// Schema of the rows this vertex emits (for a sink: the rows it receives).
    pub schema: SchemaRef,
    /// The event-time column of `schema`.
    pub event_time_column: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgePartitioning {
    /// Subtask i feeds subtask i (same parallelism).
    Forward,
    /// By key group of these columns of the producer's schema.
    Hash { key_columns: Vec<usize> },
    /// Round robin, batch by batch (parallelism changes).
    Rebalance,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: VertexId,
    pub to: VertexId,
    pub partitioning: EdgePartitioning,
}

/// A chain of vertices joined by forward edges: one actor per parallel subtask runs it.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: usize,
    pub vertices: Vec<VertexId>,
    pub parallelism: u32,
}

impl Task {
    pub fn head(&self) -> VertexId {
        self.vertices[0]
    }
    pub fn tail(&self) -> VertexId {
        *self.vertices.last().expect("a task has at least one vertex")
    }
}

#[derive(Debug, Clone)]
pub struct JobGraph {
    pub name: String,
    pub max_parallelism: u32,
    /// In topological order: every vertex after its inputs.
    pub vertices: Vec<Vertex>,
    pub edges: Vec<Edge>,
    pub tasks: Vec<Task>,
    pub dead_letter_path: Option<String>,
    pub checkpoint: Option<crate::spec::CheckpointSpec>,
}

impl JobGraph {
    pub fn vertex(&self, id: VertexId) -> &Vertex {
        &self.vertices[id.0]
    }

    /// The vertices with keyed state.
    pub fn stateful_vertices(&self) -> impl Iterator<Item = &Vertex> {
        self.vertices.iter().filter(|v| v.kind.has_keyed_state())
    }

    /// The vertices whose subtasks report a state handle with each checkpoint.
    pub fn checkpointed_state_vertices(&self) -> impl Iterator<Item = &Vertex> {
        self.vertices.iter().filter(|v| v.kind.has_checkpointed_state())
    }

    /// Parquet sinks that commit partitions (`commit`).
    pub fn committing_sinks(&self) -> impl Iterator<Item = &Vertex> {
        self.vertices
            .iter()
            .filter(|v| matches!(&v.kind, VertexKind::Sink(SinkConnector::Parquet(p)) if p.commit.is_some()))
    }

    pub fn task_of(&self, v: VertexId) -> &Task {
        self.tasks
            .iter()
            .find(|t| t.vertices.contains(&v))
            .expect("every vertex belongs to a task")
    }

    /// Edges between tasks (the ones that are not chained away).
    pub fn task_edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges
            .iter()
            .filter(|e| self.task_of(e.from).id != self.task_of(e.to).id)
    }

    /// The largest parallelism of any task: the number of slots the job needs when slots
    /// are shared between tasks (as Flink's default slot-sharing group does).
    pub fn slots_needed(&self) -> u32 {
        self.tasks.iter().map(|t| t.parallelism).max().unwrap_or(1)
    }

    /// Builds the chains: a vertex joins its input's chain when it has one input, the edge
    /// is forward and the input feeds nothing else. (A join heads its own task: its input
    /// gate tells the two sides apart.)
    pub(crate) fn build_tasks(vertices: &[Vertex], edges: &[Edge]) -> Vec<Task> {
        let mut consumers: BTreeMap<VertexId, usize> = BTreeMap::new();
        for e in edges {
            *consumers.entry(e.from).or_default() += 1;
        }
        let mut task_of: BTreeMap<VertexId, usize> = BTreeMap::new();
        let mut tasks: Vec<Task> = Vec::new();
        for v in vertices {
            let single = match v.inputs[..] {
                [input] => Some(input),
                _ => None,
            };
            let chained_to = single.and_then(|input| {
                let edge = edges.iter().find(|e| e.from == input && e.to == v.id)?;
                (edge.partitioning == EdgePartitioning::Forward && consumers[&input] == 1).then(|| task_of[&input])
            });
            match chained_to {
                Some(t) => {
                    tasks[t].vertices.push(v.id);
                    task_of.insert(v.id, t);
                }
                None => {
                    task_of.insert(v.id, tasks.len());
                    tasks.push(Task {
                        id: tasks.len(),
                        vertices: vec![v.id],
                        parallelism: v.parallelism,
                    });
                }
            }
        }
        tasks
    }
}
