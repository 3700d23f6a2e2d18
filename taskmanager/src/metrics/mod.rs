//! Metrics in the Prometheus exposition format: what a task manager shows of its subtasks
//! (`task_manager_metrics`), the sample builder both processes share (`metric_families`),
//! and the HTTP endpoint that serves `/metrics` (`http_endpoint`). Everything is read at
//! scrape time from the counters the subtasks keep anyway: nothing is registered per job.

pub mod http_endpoint;
pub mod metric_families;
pub mod process_metrics;
pub mod task_manager_metrics;
