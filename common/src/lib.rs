//! What the coordinator and the task managers must agree on: the job spec and its
//! validation, the logical and physical job graph, stream schemas, event time, and the
//! SQL expressions that operators evaluate. No I/O lives here, apart from reading the
//! protobuf descriptor sets specs name.

pub mod event_time;
pub mod expr;
pub mod graph;
pub mod key_groups;
pub mod partition_commit;
pub mod protobuf_schema;
pub mod schema;
pub mod source_position;
pub mod spec;
pub mod spec_error;
pub mod spec_loader;
pub mod spec_overrides;
pub mod state_handle;
pub mod storage_roots;
pub mod validation;

pub use graph::{EdgePartitioning, JobGraph, Vertex, VertexId, VertexKind};
pub use spec::JobSpec;
pub use spec_error::{SpecError, SpecErrors};
