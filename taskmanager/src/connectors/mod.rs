//! Connectors, one folder per system, and the one place that builds sources and sinks from
//! graph vertices.

pub mod blackhole;
pub mod file;
pub mod filesystem;
pub mod generator;
pub mod kafka;

use weir_common::graph::{SinkConnector, SourceConnector, Vertex, VertexKind};

use crate::error::TaskError;
use crate::runtime::job_deployment::JobContext;
use crate::runtime::sink::Sink;
use crate::runtime::source::SourceReader;

/// The source's reader and the most records it puts in one chunk.
pub fn build_source(job: &str, vertex: &Vertex, subtask: u32) -> Result<(Box<dyn SourceReader>, usize), TaskError> {
    let VertexKind::Source { connector, .. } = &vertex.kind else {
        return Err(TaskError::Invalid {
            vertex: vertex.name.clone(),
            message: "not a source".into(),
        });
    };
    Ok(match connector {
        SourceConnector::Generator(spec) => (generator::build(spec, subtask, vertex.parallelism), spec.batch_size),
        SourceConnector::File(spec) => (
            Box::new(file::jsonl_source::JsonLinesSource::new(
                spec,
                subtask,
                vertex.parallelism,
            )),
            spec.batch_size,
        ),
        SourceConnector::Kafka(spec) => (
            Box::new(kafka::kafka_source::KafkaSource::new(
                &vertex.name,
                job,
                spec,
                subtask,
                vertex.parallelism,
            )),
            spec.batch_size,
        ),
    })
}

/// `task` is the sink's task (for its checkpoint progress when the job checkpoints).
pub fn build_sink(
    job_name: &str,
    vertex: &Vertex,
    task: usize,
    subtask: u32,
    ctx: &JobContext,
) -> Result<Box<dyn Sink>, TaskError> {
    let VertexKind::Sink(connector) = &vertex.kind else {
        return Err(TaskError::Invalid {
            vertex: vertex.name.clone(),
            message: "not a sink".into(),
        });
    };
    let metrics = ctx.metrics.get(vertex.id.0, subtask);
    Ok(match connector {
        SinkConnector::Parquet(spec) => Box::new(filesystem::parquet_sink::ParquetSink::start(
            vertex,
            spec,
            subtask,
            ctx,
            metrics,
            ctx.checkpointing.then(|| ctx.metrics.checkpoint(task, subtask)),
        )?),
        SinkConnector::Kafka(spec) => Box::new(kafka::kafka_sink::KafkaSink::start(
            job_name,
            vertex,
            spec,
            subtask,
            ctx,
            metrics,
            ctx.checkpointing.then(|| ctx.metrics.checkpoint(task, subtask)),
        )?),
        SinkConnector::Blackhole(spec) => Box::new(blackhole::BlackholeSink::new(vertex, spec, metrics)?),
    })
}
