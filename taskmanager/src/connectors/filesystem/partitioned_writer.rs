//! The Parquet encoder of a file sink: splits batches by time bucket, keeps one open part
//! per bucket, and publishes a part by renaming it from a hidden in-progress name once it
//! is complete, so readers never see a partial file.
//!
//! It runs on the subtask's thread (encoding is CPU work, like any operator's, and keeping
//! it there avoids a second busy thread per subtask evicting the first one's caches). It
//! performs no I/O itself: it queues [`FileCommand`]s, which the sink hands to its I/O
//! thread.
//!
//! A part is rolled (closed and published) when it reaches the size limit, when it has
//! been open longer than the rollover interval, when the watermark passes the end of its
//! bucket (the hour is complete: nothing more will arrive for it), and at end of input.
//! Published names carry the run, the subtask, a sequence number and the event-time range
//! the file holds: `part-<run>-<subtask>-<seq>_<min ts>_<max ts>.parquet`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use weir_common::spec::{Compression, ParquetSinkSpec};

use super::dictionary_choice::mostly_distinct_columns;
use super::file_io::FileCommand;
use super::partition_path::PartitionScheme;
use crate::error::TaskError;
use crate::runtime::event_time_column::event_times;
use crate::runtime::sink::SinkReport;

pub struct PartitionedWriter {
    root: PathBuf,
    scheme: PartitionScheme,
    schema: SchemaRef,
    event_time_column: usize,
    props: WriterProperties,
    /// Whether `props` already leaves out the dictionaries of mostly distinct columns.
    dictionaries_chosen: bool,
    max_file_bytes: u64,
    rollover: Duration,
    file_prefix: String,
    next_seq: u64,
    open: BTreeMap<i64, OpenPart>,
    report: SinkReport,
    commands: Vec<FileCommand>,
    /// Two-phase commit (the job checkpoints): rolled parts are sealed, not published.
    two_phase: bool,
}

/// Bytes are handed to the I/O thread in chunks of about this size.
const CHUNK_BYTES: usize = 1 << 20;

/// The encoder's output: bytes collected into chunks for the I/O thread.
#[derive(Default)]
struct ChunkedBytes {
    current: Vec<u8>,
    full: Vec<Vec<u8>>,
    total: u64,
}

impl Write for ChunkedBytes {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.current.extend_from_slice(data);
        self.total += data.len() as u64;
        if self.current.len() >= CHUNK_BYTES {
            self.full.push(std::mem::take(&mut self.current));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct OpenPart {
    writer: ArrowWriter<ChunkedBytes>,
    dir: PathBuf,
    tmp_path: PathBuf,
    seq: u64,
    rows: u64,
    min_ts: i64,
    max_ts: i64,
    opened: Instant,
}

/// The Parquet codec of a sink's `compression` (zstd at level 1: most of zstd's ratio at
/// a fraction of its higher levels' CPU).
pub(super) fn parquet_compression(compression: Compression) -> ParquetCompression {
    match compression {
        Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1")),
        Compression::Snappy => ParquetCompression::SNAPPY,
        Compression::None => ParquetCompression::UNCOMPRESSED,
    }
}

impl PartitionedWriter {
    pub fn new(
        spec: &ParquetSinkSpec,
        schema: SchemaRef,
        event_time_column: usize,
        run_id: &str,
        subtask: u32,
    ) -> Self {
        let compression = parquet_compression(spec.compression);
        let event_time_name = schema.field(event_time_column).name().clone();
        Self {
            root: PathBuf::from(&spec.path),
            scheme: PartitionScheme::new(&spec.partition),
            schema,
            event_time_column,
            // Event times are nearly unique, so a dictionary for them only costs hashing
            // until the writer gives up on it at the dictionary size limit; other such
            // columns are found in the first batch big enough to tell (`dictionary_choice`).
            props: writer_properties(compression, std::iter::once(event_time_name)),
            dictionaries_chosen: false,
            max_file_bytes: spec.max_file_bytes,
            rollover: Duration::from_millis(spec.rollover_ms),
            file_prefix: format!("part-{run_id}-{subtask}"),
            next_seq: 0,
            open: BTreeMap::new(),
            report: SinkReport::default(),
            commands: Vec::new(),
            two_phase: false,
        }
    }

    /// Seal rolled parts instead of publishing them; a checkpoint publishes them.
    pub fn with_two_phase_commit(mut self) -> Self {
        self.two_phase = true;
        self
    }

    /// The file operations queued since the last call, in order.
    pub fn take_commands(&mut self) -> Vec<FileCommand> {
        for part in self.open.values_mut() {
            let bytes = part.writer.inner_mut();
            for data in bytes.full.drain(..) {
                self.commands.push(FileCommand::Append { id: part.seq, data });
            }
        }
        std::mem::take(&mut self.commands)
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        if !self.dictionaries_chosen
            && let Some(distinct) = mostly_distinct_columns(batch)
        {
            let event_time = self.schema.field(self.event_time_column).name().clone();
            self.props = writer_properties(
                self.props.compression(&ColumnPath::from(event_time.as_str())),
                distinct.into_iter().chain(std::iter::once(event_time)),
            );
            self.dictionaries_chosen = true;
        }
        let ts = event_times(batch, self.event_time_column);
        let Some(&first) = ts.first() else { return Ok(()) };
        let b0 = self.scheme.bucket(first);
        if ts.iter().all(|t| self.scheme.bucket(*t) == b0) {
            return self.write_bucket(b0, batch, ts);
        }
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, t) in ts.iter().enumerate() {
            rows.entry(self.scheme.bucket(*t)).or_default().push(i as u32);
        }
        for (bucket, idx) in rows {
            let part =
                take_record_batch(batch, &UInt32Array::from(idx)).map_err(|e| TaskError::arrow("parquet sink", e))?;
            let part_ts = event_times(&part, self.event_time_column);
            self.write_bucket(bucket, &part, part_ts)?;
        }
        Ok(())
    }

    fn write_bucket(&mut self, bucket: i64, batch: &RecordBatch, ts: &[i64]) -> Result<(), TaskError> {
        let (min, max) = ts
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        if !self.open.contains_key(&bucket) {
            let part = self.open_part(bucket)?;
            self.open.insert(bucket, part);
        }
        let part = self.open.get_mut(&bucket).expect("opened above");
        part.writer.write(batch).map_err(|source| TaskError::Parquet {
            path: part.tmp_path.clone(),
            source,
        })?;
        part.rows += batch.num_rows() as u64;
        part.min_ts = part.min_ts.min(min);
        part.max_ts = part.max_ts.max(max);
        let size = part.writer.bytes_written() + part.writer.in_progress_size();
        if size as u64 >= self.max_file_bytes {
            self.roll(bucket)?;
        }
        Ok(())
    }

    fn open_part(&mut self, bucket: i64) -> Result<OpenPart, TaskError> {
        let dir = self.root.join(self.scheme.directory(bucket));
        let seq = self.next_seq;
        self.next_seq += 1;
        let tmp_path = dir.join(format!(".{}-{seq:05}.parquet.inprogress", self.file_prefix));
        self.commands.push(FileCommand::Create {
            id: seq,
            path: tmp_path.clone(),
        });
        let writer = ArrowWriter::try_new(ChunkedBytes::default(), self.schema.clone(), Some(self.props.clone()))
            .map_err(|source| TaskError::Parquet {
                path: tmp_path.clone(),
                source,
            })?;
        Ok(OpenPart {
            writer,
            dir,
            tmp_path,
            seq,
            rows: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            opened: Instant::now(),
        })
    }

    /// Finishes the bucket's part and queues its publication under its final name.
    fn roll(&mut self, bucket: i64) -> Result<(), TaskError> {
        let Some(part) = self.open.remove(&bucket) else {
            return Ok(());
        };
        let tmp = part.tmp_path.clone();
        let mut bytes = part.writer.into_inner().map_err(|source| TaskError::Parquet {
            path: tmp.clone(),
            source,
        })?;
        bytes.full.push(std::mem::take(&mut bytes.current));
        for data in bytes.full {
            self.commands.push(FileCommand::Append { id: part.seq, data });
        }
        let name = format!(
            "{}-{:05}_{}_{}.parquet",
            self.file_prefix, part.seq, part.min_ts, part.max_ts
        );
        let final_path = part.dir.join(&name);
        self.commands.push(if self.two_phase {
            FileCommand::Seal {
                id: part.seq,
                from: tmp,
                to: final_path.clone(),
            }
        } else {
            FileCommand::Publish {
                id: part.seq,
                from: tmp,
                to: final_path.clone(),
            }
        });
        let rel = final_path
            .strip_prefix(&self.root)
            .unwrap_or(&final_path)
            .display()
            .to_string();
        self.report.files.push(rel);
        self.report.rows += part.rows;
        self.report.bytes += bytes.total;
        Ok(())
    }

    /// Publishes every part whose bucket the watermark has passed.
    pub fn on_watermark(&mut self, watermark: i64) -> Result<(), TaskError> {
        let done: Vec<i64> = self
            .open
            .keys()
            .copied()
            .filter(|b| watermark >= self.scheme.bounds(*b).1 - 1)
            .collect();
        for b in done {
            self.roll(b)?;
        }
        Ok(())
    }

    /// Publishes parts open longer than the rollover interval.
    pub fn on_timer(&mut self) -> Result<(), TaskError> {
        let now = Instant::now();
        let stale: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, p)| now.duration_since(p.opened) >= self.rollover)
            .map(|(b, _)| *b)
            .collect();
        for b in stale {
            self.roll(b)?;
        }
        Ok(())
    }

    /// Rolls every open part (on a checkpoint barrier: what came before it goes into
    /// parts of that checkpoint).
    pub fn roll_all(&mut self) -> Result<(), TaskError> {
        let buckets: Vec<i64> = self.open.keys().copied().collect();
        for b in buckets {
            self.roll(b)?;
        }
        Ok(())
    }

    /// Rows and bytes in the parts finished so far, and how many parts are open.
    pub fn progress(&self) -> (u64, u64, usize) {
        (self.report.rows, self.report.bytes, self.open.len())
    }

    /// Rolls every open part; the report counts what the queued commands publish.
    pub fn finish(&mut self) -> Result<SinkReport, TaskError> {
        self.roll_all()?;
        Ok(std::mem::take(&mut self.report))
    }
}

/// Writer settings: `compression`, and no dictionary for the columns named.
fn writer_properties(
    compression: ParquetCompression,
    no_dictionary: impl IntoIterator<Item = String>,
) -> WriterProperties {
    no_dictionary
        .into_iter()
        .fold(WriterProperties::builder().set_compression(compression), |b, column| {
            b.set_column_dictionary_enabled(ColumnPath::from(column.as_str()), false)
        })
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use weir_common::schema::{UTC, timestamp_ms};

    use super::super::file_io::FileIo;
    use super::*;
    use std::fs;
    use std::path::Path;

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_704_067_200_000;

    fn spec(root: &Path, max_file_bytes: u64) -> ParquetSinkSpec {
        serde_json::from_value(serde_json::json!({"path": root, "max_file_bytes": max_file_bytes})).unwrap()
    }

    fn batch(ts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", timestamp_ms(), false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMillisecondArray::from(ts.to_vec()).with_timezone(UTC)),
                Arc::new(Int64Array::from(ts.to_vec())),
            ],
        )
        .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn parts_stay_hidden_until_the_watermark_closes_their_hour() {
        let root = tempfile::tempdir().unwrap();
        let b = batch(&[T0 + 10, T0 + HOUR + 5, T0 + 20]);
        let mut w = PartitionedWriter::new(&spec(root.path(), 1 << 30), b.schema(), 0, "r1", 3);
        let mut io = FileIo::default();
        let mut step = |w: &mut PartitionedWriter| {
            for c in w.take_commands() {
                io.apply(c).unwrap();
            }
        };
        w.write(&b).unwrap();
        step(&mut w);
        let h0 = root.path().join("dt=2024-01-01/hour=00");
        let h1 = root.path().join("dt=2024-01-01/hour=01");
        assert!(
            names(&h0)
                .iter()
                .all(|n| n.starts_with('.') && n.ends_with(".inprogress"))
        );

        w.on_watermark(T0 + HOUR - 2).unwrap();
        step(&mut w);
        assert!(names(&h0)[0].starts_with('.'), "hour 0 is not complete yet");
        w.on_watermark(T0 + HOUR - 1).unwrap();
        step(&mut w);
        assert_eq!(
            names(&h0),
            vec![format!("part-r1-3-00000_{}_{}.parquet", T0 + 10, T0 + 20)]
        );
        assert!(names(&h1)[0].starts_with('.'));

        let report = w.finish().unwrap();
        step(&mut w);
        assert_eq!(report.rows, 3);
        assert_eq!(report.files.len(), 2);
        assert_eq!(
            names(&h1),
            vec![format!("part-r1-3-00001_{}_{}.parquet", T0 + HOUR + 5, T0 + HOUR + 5)]
        );
    }

    #[test]
    fn mostly_distinct_columns_are_written_without_a_dictionary() {
        let root = tempfile::tempdir().unwrap();
        let rows: Vec<i64> = (0..4096).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", timestamp_ms(), false),
            Field::new("id", DataType::Int64, false),
            Field::new("kind", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|i| T0 + i)).with_timezone(UTC)),
                Arc::new(Int64Array::from(rows.clone())),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|i| i % 4))),
            ],
        )
        .unwrap();
        let mut w = PartitionedWriter::new(&spec(root.path(), 1 << 30), schema, 0, "r1", 0);
        let mut io = FileIo::default();
        w.write(&b).unwrap();
        w.finish().unwrap();
        for c in w.take_commands() {
            io.apply(c).unwrap();
        }
        let h0 = root.path().join("dt=2024-01-01/hour=00");
        let file = fs::File::open(h0.join(&names(&h0)[0])).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        let group = parquet::file::reader::FileReader::metadata(&reader)
            .row_group(0)
            .clone();
        let has_dictionary: Vec<bool> = group
            .columns()
            .iter()
            .map(|c| c.dictionary_page_offset().is_some())
            .collect();
        assert_eq!(has_dictionary, vec![false, false, true], "ts, id, kind");
    }

    #[test]
    fn parts_roll_when_they_reach_the_size_limit() {
        let root = tempfile::tempdir().unwrap();
        let b = batch(&(0..1000).map(|i| T0 + i).collect::<Vec<_>>());
        let mut w = PartitionedWriter::new(&spec(root.path(), 1), b.schema(), 0, "r1", 0);
        let mut io = FileIo::default();
        w.write(&b).unwrap();
        w.write(&b).unwrap();
        for c in w.take_commands() {
            io.apply(c).unwrap();
        }
        let h0 = root.path().join("dt=2024-01-01/hour=00");
        assert_eq!(names(&h0).len(), 2);
        assert!(
            names(&h0)
                .iter()
                .all(|n| n.ends_with(".parquet") && !n.starts_with('.'))
        );
        assert_eq!(w.finish().unwrap().rows, 2000);
    }
}
