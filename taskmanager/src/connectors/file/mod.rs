//! Sources reading local files.

pub mod jsonl_source;
