//! File-system sinks: hour-partitioned Parquet.

pub mod parquet_sink;
pub mod partition_path;
pub mod partitioned_writer;
