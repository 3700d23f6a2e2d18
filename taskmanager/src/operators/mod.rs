//! The operators, one file each, and the one place that builds them from a graph vertex.

pub mod filter;
pub mod heap_join_store;
pub mod join_state;
pub mod join_store;
pub mod key_by;
pub mod lookup_join;
pub mod lookup_table;
pub mod project;
pub mod redis_connection;
pub mod redis_join_store;
pub mod redis_lookup;
pub mod redis_rows;
pub mod window_aggregate;
pub mod window_join;
pub mod window_state;
pub mod window_store;

use std::path::Path;
use std::sync::Arc;

use weir_common::graph::{JobGraph, Vertex, VertexKind};

use crate::dead_letter::DeadLetterQueue;
use crate::error::TaskError;
use crate::runtime::operator::Operator;
use crate::runtime::subtask_metrics::SubtaskMetrics;
use crate::state::OperatorStateContext;

/// Builds subtask `subtask`'s operator of `vertex`; an operator that sends rows to the
/// dead-letter output (a failed lookup) does so through `dead_letters`, and one that keeps
/// files of its own (a lookup table) keeps them under `local_root` (the attempt's
/// directory on this task manager).
pub fn build_operator(
    graph: &JobGraph,
    vertex: &Vertex,
    (subtask, dead_letters, local_root): (u32, &DeadLetterQueue, &Path),
    metrics: Arc<SubtaskMetrics>,
    state: Option<OperatorStateContext>,
) -> Result<Box<dyn Operator>, TaskError> {
    let input = vertex
        .inputs
        .first()
        .map(|i| graph.vertex(*i))
        .ok_or_else(|| TaskError::Invalid {
            vertex: vertex.name.clone(),
            message: "an operator needs an input".into(),
        })?;
    let state = || {
        state.ok_or_else(|| TaskError::Invalid {
            vertex: vertex.name.clone(),
            message: "a stateful operator was deployed without its state".into(),
        })
    };
    Ok(match &vertex.kind {
        VertexKind::Filter { predicate } => Box::new(filter::Filter::new(&vertex.name, predicate, &input.schema)?),
        VertexKind::Project { columns } => Box::new(project::Project::new(
            &vertex.name,
            columns,
            &input.schema,
            vertex.schema.clone(),
        )?),
        VertexKind::KeyBy { .. } => Box::new(key_by::KeyBy),
        VertexKind::WindowAggregate(spec) => Box::new(window_aggregate::WindowAggregate::new(
            &vertex.name,
            spec,
            &input.schema,
            &input.event_time_column,
            vertex.schema.clone(),
            metrics,
            state()?,
        )?),
        VertexKind::WindowJoin(spec) => {
            let right = vertex
                .inputs
                .get(1)
                .map(|i| graph.vertex(*i))
                .ok_or_else(|| TaskError::Invalid {
                    vertex: vertex.name.clone(),
                    message: "a join needs a right input".into(),
                })?;
            Box::new(window_join::WindowJoin::from_spec(
                &graph.name,
                vertex,
                spec,
                (input, right),
                metrics,
                state()?,
            )?)
        }
        VertexKind::LookupJoin(spec) => Box::new(lookup_join::LookupJoin::from_spec(
            vertex,
            subtask,
            spec,
            input,
            (
                dead_letters.clone(),
                local_root.join(format!("{}-lookup", crate::state::instance_name(vertex, subtask))),
            ),
            metrics,
        )?),
        VertexKind::Source { .. } | VertexKind::Sink(_) => {
            return Err(TaskError::Invalid {
                vertex: vertex.name.clone(),
                message: format!("a {} is not an operator", vertex.kind.label()),
            });
        }
    })
}
