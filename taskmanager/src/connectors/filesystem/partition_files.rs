//! The file side of committing one partition directory, run by the leader's partition
//! committer on a blocking thread. Every step can be repeated after a crash:
//!
//! 1. Publish the parts the sink subtasks sealed for completed checkpoints and may not
//!    have renamed yet (`.<name>_c<n>.parquet.pending` of the checkpoint's attempt, `n` up
//!    to the checkpoint): the subtasks publish them too, whoever is first wins.
//! 2. Compact: small parts are merged, in name order, into files of about the target
//!    size. The merged files are written hidden, then a plan (`.compaction-plan.json`,
//!    written by rename) names each merged file and the parts it replaces; only then are
//!    merged files renamed into place and their parts deleted. A plan found on a repeat is
//!    carried out; hidden merged files without a plan are deleted. Readers that wait for
//!    `_SUCCESS` never see both a part and the file that replaced it.
//! 3. Write `_SUCCESS`, and report the partition's files, rows and bytes.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::{Deserialize, Serialize};
use weir_common::spec::Compression;

use super::file_io::sync_dir;
use super::partitioned_writer::parquet_compression;
use crate::error::TaskError;

const PLAN: &str = ".compaction-plan.json";
pub const SUCCESS: &str = "_SUCCESS";

/// What to commit: the partition directory and the checkpoint whose parts it holds.
pub struct PartitionToCommit<'a> {
    pub dir: &'a Path,
    pub job_id: &'a str,
    /// The latest completed checkpoint: (attempt, id).
    pub checkpoint: Option<(u32, u64)>,
    /// 0: no compaction.
    pub target_file_bytes: u64,
    pub compression: Compression,
}

/// A committed partition's files (names within the directory), rows and bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CommittedFiles {
    pub files: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Merge {
    hidden: String,
    name: String,
    parts: Vec<String>,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TaskError + 'a {
    move |e| TaskError::io(what, path, e)
}

pub fn commit_partition(p: &PartitionToCommit<'_>) -> Result<CommittedFiles, TaskError> {
    fs::create_dir_all(p.dir).map_err(io("creating partition directory", p.dir))?;
    publish_pending(p)?;
    finish_plan(p.dir)?;
    if p.target_file_bytes > 0 {
        compact(p)?;
    }
    let success = p.dir.join(SUCCESS);
    File::create(&success)
        .and_then(|f| f.sync_all())
        .map_err(io("writing", &success))?;
    sync_dir(p.dir)?;
    let mut out = CommittedFiles::default();
    for (name, path) in visible_parquet(p.dir)? {
        let file = File::open(&path).map_err(io("opening", &path))?;
        out.bytes += file.metadata().map_err(io("reading size of", &path))?.len();
        let reader = SerializedFileReader::new(file).map_err(|source| TaskError::Parquet {
            path: path.clone(),
            source,
        })?;
        out.rows += reader.metadata().file_metadata().num_rows() as u64;
        out.files.push(name);
    }
    Ok(out)
}

/// Visible Parquet files of `dir`, by name.
fn visible_parquet(dir: &Path) -> Result<Vec<(String, PathBuf)>, TaskError> {
    let mut files: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map_err(io("listing", dir))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with('.') && name.ends_with(".parquet")).then(|| (name, e.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn publish_pending(p: &PartitionToCommit<'_>) -> Result<(), TaskError> {
    let Some((attempt, checkpoint)) = p.checkpoint else {
        return Ok(());
    };
    let prefix = format!(".part-{}.{attempt}-", p.job_id);
    let mut published = 0;
    for e in fs::read_dir(p.dir).map_err(io("listing", p.dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name
            .strip_prefix(&prefix)
            .and_then(|_| name.strip_suffix(".parquet.pending"))
        else {
            continue;
        };
        let id = stem.rsplit_once("_c").and_then(|(_, n)| n.parse::<u64>().ok());
        if id.is_none_or(|n| n > checkpoint) {
            continue;
        }
        let to = p.dir.join(&name[1..name.len() - ".pending".len()]);
        match fs::rename(e.path(), &to) {
            Ok(()) => published += 1,
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(TaskError::io("publishing part file", e.path(), err)),
        }
    }
    if published > 0 {
        sync_dir(p.dir)?;
    }
    Ok(())
}

/// Carries out a plan a crash interrupted; drops hidden merged files that never made it
/// into a plan.
fn finish_plan(dir: &Path) -> Result<(), TaskError> {
    let plan_path = dir.join(PLAN);
    let merges: Vec<Merge> = match fs::read(&plan_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TaskError::Invalid {
            vertex: "partition committer".into(),
            message: format!("{}: {e}", plan_path.display()),
        })?,
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(TaskError::io("reading", &plan_path, e)),
    };
    for m in &merges {
        match fs::rename(dir.join(&m.hidden), dir.join(&m.name)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(TaskError::io("publishing merged file", dir.join(&m.hidden), e)),
        }
        for part in &m.parts {
            match fs::remove_file(dir.join(part)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(TaskError::io("removing merged part", dir.join(part), e)),
            }
        }
    }
    sync_dir(dir)?;
    match fs::remove_file(&plan_path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(TaskError::io("removing", &plan_path, e)),
    }
    for e in fs::read_dir(dir).map_err(io("listing", dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".compacted-") {
            fs::remove_file(e.path()).map_err(io("removing stale merged file", &e.path()))?;
        }
    }
    Ok(())
}

fn compact(p: &PartitionToCommit<'_>) -> Result<(), TaskError> {
    let mut groups: Vec<Vec<(String, PathBuf)>> = Vec::new();
    let mut size = 0;
    for (name, path) in visible_parquet(p.dir)? {
        let len = fs::metadata(&path).map_err(io("reading size of", &path))?.len();
        if len >= p.target_file_bytes / 2 {
            continue;
        }
        if groups.is_empty() || size + len > p.target_file_bytes {
            groups.push(Vec::new());
            size = 0;
        }
        size += len;
        groups.last_mut().expect("pushed above").push((name, path));
    }
    groups.retain(|g| g.len() > 1);
    if groups.is_empty() {
        return Ok(());
    }
    let stamp = chrono::Utc::now().timestamp_millis();
    let mut merges = Vec::with_capacity(groups.len());
    for (k, group) in groups.iter().enumerate() {
        let name = format!("compacted-{stamp}-{k:03}.parquet");
        let hidden = format!(".{name}.inprogress");
        merge(
            &group.iter().map(|(_, path)| path.as_path()).collect::<Vec<_>>(),
            &p.dir.join(&hidden),
            p.compression,
        )?;
        merges.push(Merge {
            hidden,
            name,
            parts: group.iter().map(|(n, _)| n.clone()).collect(),
        });
    }
    let tmp = p.dir.join(format!("{PLAN}.tmp"));
    let json = serde_json::to_vec(&merges).expect("plans serialize");
    fs::write(&tmp, json)
        .and_then(|()| File::open(&tmp)?.sync_all())
        .map_err(io("writing", &tmp))?;
    fs::rename(&tmp, p.dir.join(PLAN)).map_err(io("placing", &tmp))?;
    sync_dir(p.dir)?;
    finish_plan(p.dir)
}

/// Writes the rows of `parts`, in order, into one file at `to` (durable when it returns).
fn merge(parts: &[&Path], to: &Path, compression: Compression) -> Result<(), TaskError> {
    let parquet_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TaskError::Parquet { path, source }
    };
    let props = WriterProperties::builder()
        .set_compression(parquet_compression(compression))
        .build();
    let out = File::create(to).map_err(io("creating", to))?;
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut out = Some(out);
    for part in parts {
        let file = File::open(part).map_err(io("opening", part))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(parquet_err(part))?
            .with_batch_size(8192)
            .build()
            .map_err(parquet_err(part))?;
        for batch in reader {
            let batch = batch.map_err(|e| TaskError::arrow("partition compaction", e))?;
            if writer.is_none() {
                let file = out.take().expect("one writer");
                writer =
                    Some(ArrowWriter::try_new(file, batch.schema(), Some(props.clone())).map_err(parquet_err(to))?);
            }
            writer
                .as_mut()
                .expect("created above")
                .write(&batch)
                .map_err(parquet_err(to))?;
        }
    }
    match writer {
        Some(w) => {
            let file = w.into_inner().map_err(parquet_err(to))?;
            file.sync_all().map_err(io("syncing", to))?;
        }
        None => {
            drop(out);
            fs::remove_file(to).map_err(io("removing", to))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn write_part(path: &Path, values: std::ops::Range<i64>) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(values))]).unwrap();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn values(dir: &Path) -> Vec<i64> {
        let mut all = Vec::new();
        for (_, path) in visible_parquet(dir).unwrap() {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for b in reader {
                let b = b.unwrap();
                let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                all.extend(col.values().iter().copied());
            }
        }
        all.sort();
        all
    }

    #[test]
    fn pending_parts_of_completed_checkpoints_are_published_and_small_parts_merged() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        write_part(&dir.join("part-j.1-0-00000_1_2_c3.parquet"), 0..100);
        write_part(&dir.join(".part-j.1-1-00000_1_2_c4.parquet.pending"), 100..200);
        // A later checkpoint's part and an older attempt's stay as they are.
        write_part(&dir.join(".part-j.1-1-00001_1_2_c5.parquet.pending"), 200..300);
        write_part(&dir.join(".part-j.0-1-00001_1_2_c4.parquet.pending"), 300..400);
        let commit = PartitionToCommit {
            dir,
            job_id: "j",
            checkpoint: Some((1, 4)),
            target_file_bytes: 1 << 20,
            compression: Compression::Zstd,
        };
        let done = commit_partition(&commit).unwrap();
        assert_eq!(done.rows, 200);
        assert_eq!(done.files.len(), 1, "two small parts became one file: {:?}", names(dir));
        assert!(done.files[0].starts_with("compacted-"));
        assert_eq!(values(dir), (0..200).collect::<Vec<_>>());
        assert!(dir.join(SUCCESS).exists());
        assert!(dir.join(".part-j.1-1-00001_1_2_c5.parquet.pending").exists());
        assert!(dir.join(".part-j.0-1-00001_1_2_c4.parquet.pending").exists());
        // Committing again (a repeat after a crash) changes nothing.
        assert_eq!(commit_partition(&commit).unwrap(), done);
    }

    #[test]
    fn an_interrupted_plan_is_carried_out_and_unplanned_merges_are_dropped() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        write_part(&dir.join("a.parquet"), 0..10);
        write_part(&dir.join("b.parquet"), 10..20);
        write_part(&dir.join("c.parquet"), 20..30);
        // Crash 1: a, b merged and planned; the merged file is in place, b not yet removed.
        write_part(&dir.join("compacted-1-000.parquet"), 0..20);
        fs::remove_file(dir.join("a.parquet")).unwrap();
        let plan = vec![Merge {
            hidden: ".compacted-1-000.parquet.inprogress".into(),
            name: "compacted-1-000.parquet".into(),
            parts: vec!["a.parquet".into(), "b.parquet".into()],
        }];
        fs::write(dir.join(PLAN), serde_json::to_vec(&plan).unwrap()).unwrap();
        // Crash 2 (earlier, other run): a merged file that never made it into a plan.
        write_part(&dir.join(".compacted-0-000.parquet.inprogress"), 0..30);
        let done = commit_partition(&PartitionToCommit {
            dir,
            job_id: "j",
            checkpoint: None,
            target_file_bytes: 0,
            compression: Compression::Zstd,
        })
        .unwrap();
        assert_eq!(values(dir), (0..30).collect::<Vec<_>>());
        assert_eq!(
            done.files,
            vec!["c.parquet".to_string(), "compacted-1-000.parquet".to_string()]
        );
        assert_eq!(names(dir), vec!["_SUCCESS", "c.parquet", "compacted-1-000.parquet"]);
    }
}
