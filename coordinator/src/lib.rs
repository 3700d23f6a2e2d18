//! Weir's control plane, the JobManager analogue: it validates jobs, places their subtasks
//! on task-manager slots, follows them to the end and reports. `coordinator local` runs it
//! with its task managers in one process.

pub mod cli;
pub mod cluster_cmd;
pub mod config;
pub mod job_client;
pub mod job_summary;
pub mod local_cluster;
pub mod partition_committer;
pub mod progress;
pub mod raft;
pub mod scheduler;
pub mod server;
pub mod watermark_aggregator;
