//! Kafka: the source (partitions spread over subtasks, offsets in checkpoints), the sink
//! (idempotent or transactional, routed per row, with a write-ahead log that finishes the
//! transactions a crash interrupted) and the publisher of partition-commit notices.

pub mod commit_notice;
pub mod kafka_sink;
pub mod kafka_source;
pub mod message_batch;
pub mod partition_assignment;
pub mod record_producer;
pub mod topic_router;
pub mod transaction_marker;
pub mod write_ahead_log;
pub mod write_ahead_store;
