//! The task manager as a member of a cluster: the job attempts it runs for the
//! coordinator leader, the gRPC service the leader and the other task managers call, and
//! the heartbeat that registers it and reports its subtasks.

pub mod deployed_jobs;
pub mod heartbeat;
pub mod task_manager_service;
pub mod watermark_reporter;
