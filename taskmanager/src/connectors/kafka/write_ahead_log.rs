//! The exactly-once Kafka sink's write-ahead log: a copy of every record of one
//! transaction, so that a transaction whose checkpoint completed but that was never
//! committed (the process died in between, and the next attempt's initialisation aborted
//! it) can be written again. librdkafka cannot resume a prepared transaction the way
//! Flink's Java client does, so the records themselves are kept instead, as Flink's
//! `GenericWriteAheadSink` does.
//!
//! One segment per transaction, spooled to a local file as records are sent and uploaded
//! with the checkpoint that prepares the transaction:
//! `[record]* trailer-json u32-trailer-length`, each record
//! `u16 topic-length, topic, i32 key-length (-1: none), key, u32 payload-length, payload`.
//! The trailer comes last because the transaction's marker topic (its first record's
//! topic) is known only once records arrive.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::record_producer::OutgoingRecord;

/// What a segment says about its transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentTrailer {
    /// The checkpoint that prepared the transaction.
    pub checkpoint: u64,
    /// The transactional ids of the subtask that wrote it: a restore initialises them
    /// (fencing that subtask and settling its open transactions) before it asks whether
    /// the transaction committed.
    pub transactional_ids: Vec<String>,
    /// The transaction committed offset `checkpoint` for (`marker_topic`, partition 0) to
    /// this consumer group: the committed offset tells a restore whether it committed.
    pub marker_group: String,
    pub marker_topic: String,
    pub records: u64,
}

/// The records of the open transaction, on their way to a local segment file.
pub struct SpoolWriter {
    path: PathBuf,
    out: BufWriter<File>,
    records: u64,
    first_topic: Option<Arc<str>>,
}

impl SpoolWriter {
    pub fn create(path: PathBuf) -> io::Result<Self> {
        let out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        Ok(Self {
            path,
            out,
            records: 0,
            first_topic: None,
        })
    }

    pub fn append(&mut self, record: &OutgoingRecord) -> io::Result<()> {
        let topic = record.topic.as_bytes();
        let topic_len = u16::try_from(topic.len()).map_err(|_| invalid("topic name longer than 65535 bytes"))?;
        self.out.write_all(&topic_len.to_le_bytes())?;
        self.out.write_all(topic)?;
        match &record.key {
            Some(k) => {
                let len = i32::try_from(k.len()).map_err(|_| invalid("record key of 2 GiB or more"))?;
                self.out.write_all(&len.to_le_bytes())?;
                self.out.write_all(k)?;
            }
            None => self.out.write_all(&(-1i32).to_le_bytes())?,
        }
        let len = u32::try_from(record.payload.len()).map_err(|_| invalid("record payload of 4 GiB or more"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&record.payload)?;
        self.records += 1;
        if self.first_topic.is_none() {
            self.first_topic = Some(record.topic.clone());
        }
        Ok(())
    }

    /// The topic of the first record, `None` while the transaction is empty.
    pub fn first_topic(&self) -> Option<&Arc<str>> {
        self.first_topic.as_ref()
    }

    /// Ends the segment with its trailer. An empty transaction leaves no segment.
    pub fn seal(
        mut self,
        checkpoint: u64,
        transactional_ids: &[String],
        marker_group: &str,
    ) -> io::Result<Option<SealedSegment>> {
        let Some(topic) = self.first_topic.take() else {
            drop(self.out);
            std::fs::remove_file(&self.path)?;
            return Ok(None);
        };
        let trailer = SegmentTrailer {
            checkpoint,
            transactional_ids: transactional_ids.to_vec(),
            marker_group: marker_group.to_string(),
            marker_topic: topic.to_string(),
            records: self.records,
        };
        let json = serde_json::to_vec(&trailer).map_err(io::Error::other)?;
        self.out.write_all(&json)?;
        self.out.write_all(&(json.len() as u32).to_le_bytes())?;
        self.out.flush()?;
        Ok(Some(SealedSegment {
            path: self.path,
            checkpoint,
        }))
    }
}

/// A finished segment in the local spool directory.
#[derive(Debug)]
pub struct SealedSegment {
    pub path: PathBuf,
    pub checkpoint: u64,
}

/// Reads a segment's trailer, then its records in order.
pub struct SegmentReader {
    pub trailer: SegmentTrailer,
    input: io::Take<BufReader<File>>,
    left: u64,
}

impl SegmentReader {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        if size < 4 {
            return Err(invalid("shorter than its trailer length"));
        }
        file.seek(SeekFrom::End(-4))?;
        let mut len = [0u8; 4];
        file.read_exact(&mut len)?;
        let trailer_len = u64::from(u32::from_le_bytes(len));
        let records_end = size
            .checked_sub(4 + trailer_len)
            .ok_or_else(|| invalid("trailer length past the start of the file"))?;
        file.seek(SeekFrom::Start(records_end))?;
        let mut json = vec![0u8; trailer_len as usize];
        file.read_exact(&mut json)?;
        let trailer: SegmentTrailer = serde_json::from_slice(&json).map_err(|e| invalid(&format!("trailer: {e}")))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Self {
            left: trailer.records,
            trailer,
            input: BufReader::with_capacity(1 << 20, file).take(records_end),
        })
    }

    fn read_record(&mut self) -> io::Result<OutgoingRecord> {
        let mut u16_buf = [0u8; 2];
        self.input.read_exact(&mut u16_buf)?;
        let mut topic = vec![0u8; u16::from_le_bytes(u16_buf) as usize];
        self.input.read_exact(&mut topic)?;
        let topic = String::from_utf8(topic).map_err(|_| invalid("topic is not UTF-8"))?;
        let mut u32_buf = [0u8; 4];
        self.input.read_exact(&mut u32_buf)?;
        let key = match i32::from_le_bytes(u32_buf) {
            -1 => None,
            n if n >= 0 => {
                let mut k = vec![0u8; n as usize];
                self.input.read_exact(&mut k)?;
                Some(k)
            }
            _ => return Err(invalid("negative key length")),
        };
        self.input.read_exact(&mut u32_buf)?;
        let mut payload = vec![0u8; u32::from_le_bytes(u32_buf) as usize];
        self.input.read_exact(&mut payload)?;
        Ok(OutgoingRecord {
            topic: Arc::from(topic),
            key,
            payload,
        })
    }
}

impl Iterator for SegmentReader {
    type Item = io::Result<OutgoingRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.read_record())
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("write-ahead segment: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, key: Option<&str>, payload: &str) -> OutgoingRecord {
        OutgoingRecord {
            topic: Arc::from(topic),
            key: key.map(|k| k.as_bytes().to_vec()),
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_sealed_segment_reads_back_every_record_in_order_with_its_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = SpoolWriter::create(dir.path().join("seg")).unwrap();
        let written = vec![
            record("clicks-de", Some("u1"), r#"{"id":1}"#),
            record("clicks-fr", None, ""),
            record("clicks-de", Some(""), r#"{"id":3}"#),
        ];
        for r in &written {
            spool.append(r).unwrap();
        }
        let ids = vec!["p-0-0".to_string(), "p-0-1".to_string(), "p-0-2".to_string()];
        let sealed = spool.seal(7, &ids, "p-0").unwrap().expect("three records");
        assert_eq!(sealed.checkpoint, 7);
        let reader = SegmentReader::open(&sealed.path).unwrap();
        assert_eq!(
            reader.trailer,
            SegmentTrailer {
                checkpoint: 7,
                transactional_ids: ids,
                marker_group: "p-0".into(),
                marker_topic: "clicks-de".into(),
                records: 3,
            }
        );
        let read: Vec<(String, Option<Vec<u8>>, Vec<u8>)> = reader
            .map(|r| r.map(|r| (r.topic.to_string(), r.key, r.payload)).unwrap())
            .collect();
        let expected: Vec<(String, Option<Vec<u8>>, Vec<u8>)> = written
            .into_iter()
            .map(|r| (r.topic.to_string(), r.key, r.payload))
            .collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn an_empty_transaction_leaves_no_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let spool = SpoolWriter::create(path.clone()).unwrap();
        assert!(spool.seal(1, &[], "g").unwrap().is_none());
        assert!(!path.exists());
    }

    #[test]
    fn a_truncated_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = SpoolWriter::create(dir.path().join("seg")).unwrap();
        spool.append(&record("t", None, "x")).unwrap();
        let sealed = spool.seal(1, &[], "g").unwrap().unwrap();
        let bytes = std::fs::read(&sealed.path).unwrap();
        std::fs::write(&sealed.path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(SegmentReader::open(&sealed.path).is_err());
    }
}
