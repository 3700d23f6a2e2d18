//! Kafka: the source (partitions spread over subtasks, offsets in checkpoints).

pub mod kafka_source;
pub mod partition_assignment;
