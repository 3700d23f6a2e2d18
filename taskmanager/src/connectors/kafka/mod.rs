//! Kafka: the source (partitions spread over subtasks, offsets in checkpoints) and the
//! publisher of partition-commit notices.

pub mod commit_notice;
pub mod kafka_source;
pub mod partition_assignment;
