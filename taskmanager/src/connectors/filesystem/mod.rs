//! File-system sinks: hour-partitioned Parquet.

pub mod attempt_cleanup;
pub mod file_io;
pub mod parquet_sink;
pub mod partition_path;
pub mod partitioned_writer;
