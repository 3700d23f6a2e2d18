//! File-system sinks: hour-partitioned Parquet.

pub mod attempt_cleanup;
pub mod commit_watermark;
mod dictionary_choice;
pub mod file_io;
pub mod parquet_sink;
pub mod partition_files;
pub mod partition_path;
pub mod partitioned_writer;

#[cfg(test)]
mod test_files {
    use std::path::Path;

    /// The file names in `dir`, sorted.
    pub fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}
