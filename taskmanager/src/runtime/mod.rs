//! The operator runtime: stream events, the operator chain each actor runs, the input and
//! output gates that connect chains through bounded channels, and deployment onto slots.

pub mod event_time_column;
pub mod held_rows;
pub mod input_gate;
pub mod io_reply;
pub mod job_deployment;
pub mod key_partitioner;
pub mod operator;
pub mod operator_chain;
pub mod output_gate;
pub mod sink;
pub mod slot_pool;
pub mod source;
pub mod source_driver;
pub mod split_watermarks;
pub mod stream_event;
pub mod subtask_actor;
pub mod subtask_metrics;
pub mod watermark_alignment;
