//! JSON records to Arrow by the declared schema, with arrow-json's vectorized decoder.
//!
//! The whole chunk is decoded in one go. If that fails, the chunk is split in halves and
//! each half retried, down to single records, so k bad records among n cost O(k log n)
//! decodes and every good record still arrives. A decode whose row count differs from its
//! record count (a truncated record swallowing its neighbour) counts as a failure too.
//!
//! The decoder of the whole-chunk path is kept between chunks so that its buffers keep
//! their capacity; a decoder that saw an error is replaced, as its state is then unknown.

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_json::ReaderBuilder;
use arrow_json::reader::Decoder;

use crate::error::TaskError;
use crate::runtime::source::RawRecords;

pub struct JsonDecoder {
    schema: SchemaRef,
    vertex: String,
    batch_size: usize,
    reusable: Option<Decoder>,
}

/// Records that failed, by index into the chunk, with the reason.
pub type Rejected = Vec<(usize, String)>;

impl JsonDecoder {
    /// `batch_size`: the most records a chunk will hold.
    pub fn new(schema: SchemaRef, vertex: &str, batch_size: usize) -> Self {
        Self {
            schema,
            vertex: vertex.to_string(),
            batch_size,
            reusable: None,
        }
    }

    pub fn decode(&mut self, raw: &RawRecords) -> Result<(RecordBatch, Rejected), TaskError> {
        if raw.is_empty() {
            return Ok((RecordBatch::new_empty(self.schema.clone()), Vec::new()));
        }
        if raw.len() <= self.batch_size {
            let mut decoder = match self.reusable.take() {
                Some(d) => d,
                None => self
                    .new_decoder(self.batch_size)
                    .map_err(|e| TaskError::arrow(&self.vertex, e))?,
            };
            if let Ok(batch) = decode_into(&mut decoder, &raw.data)
                && batch.num_rows() == raw.len()
            {
                self.reusable = Some(decoder);
                return Ok((batch, Vec::new()));
            }
        }
        let mut good = Vec::new();
        let mut bad = Vec::new();
        self.decode_range(raw, 0, raw.len(), &mut good, &mut bad);
        let batch = match good.len() {
            0 => RecordBatch::new_empty(self.schema.clone()),
            1 => good.pop().expect("one batch"),
            _ => concat_batches(&self.schema, &good).map_err(|e| TaskError::arrow(&self.vertex, e))?,
        };
        Ok((batch, bad))
    }

    fn decode_range(&self, raw: &RawRecords, lo: usize, hi: usize, good: &mut Vec<RecordBatch>, bad: &mut Rejected) {
        match self.try_decode(raw, lo, hi) {
            Ok(batch) if batch.num_rows() == hi - lo => good.push(batch),
            result if hi - lo == 1 => {
                let reason = match result {
                    Err(e) => e,
                    Ok(b) => format!("decoded to {} rows instead of one", b.num_rows()),
                };
                bad.push((lo, reason));
            }
            _ => {
                let mid = lo + (hi - lo) / 2;
                self.decode_range(raw, lo, mid, good, bad);
                self.decode_range(raw, mid, hi, good, bad);
            }
        }
    }

    fn try_decode(&self, raw: &RawRecords, lo: usize, hi: usize) -> Result<RecordBatch, String> {
        let start = if lo == 0 { 0 } else { raw.ends[lo - 1] };
        let bytes = &raw.data[start..raw.ends[hi - 1]];
        let mut decoder = self.new_decoder(hi - lo + 1).map_err(|e| e.to_string())?;
        decode_into(&mut decoder, bytes)
    }

    fn new_decoder(&self, batch_size: usize) -> Result<Decoder, arrow::error::ArrowError> {
        ReaderBuilder::new(self.schema.clone())
            .with_batch_size(batch_size)
            .build_decoder()
    }
}

fn decode_into(decoder: &mut Decoder, bytes: &[u8]) -> Result<RecordBatch, String> {
    let consumed = decoder.decode(bytes).map_err(clean)?;
    if consumed < bytes.len() {
        return Err("more JSON values than records".into());
    }
    match decoder.flush().map_err(clean)? {
        Some(b) => Ok(b),
        None => Err("no JSON value".into()),
    }
}

fn clean(e: arrow::error::ArrowError) -> String {
    e.to_string().trim_start_matches("Json error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    fn decoder() -> JsonDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", weir_common::schema::timestamp_ms(), false),
            Field::new("level", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        JsonDecoder::new(schema, "test", 4)
    }

    fn raw(lines: &[&[u8]]) -> RawRecords {
        let mut r = RawRecords::default();
        for (i, l) in lines.iter().enumerate() {
            r.push(l, i as u64 + 1);
        }
        r
    }

    #[test]
    fn good_records_survive_bad_neighbours() {
        let input = raw(&[
            br#"{"ts":1,"level":"INFO","n":1}"#,
            br#"{"ts":2,"level":"INF"#,
            br#"{"ts":3,"level":"WARN"}"#,
            br#"{"ts":"soon","level":"WARN"}"#,
            br#"{"level":"WARN"}"#,
            b"{\"ts\":6,\"level\":\"\xff\xfe\"}",
            br#"{"ts":7,"level":"ERROR","n":7}"#,
            br#"{"ts":8,"level":5}"#,
        ]);
        let mut decoder = decoder();
        let (batch, bad) = decoder.decode(&input).unwrap();
        let ts: Vec<i64> = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
            .values()
            .to_vec();
        assert_eq!(ts, vec![1, 3, 7]);
        assert_eq!(batch.column(2).as_primitive::<Int64Type>().value(2), 7);
        let bad_idx: Vec<usize> = bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad_idx, vec![1, 3, 4, 5, 7]);
        assert!(bad.iter().all(|(_, reason)| !reason.is_empty()));

        // The kept decoder starts clean after a failed chunk.
        let (batch, bad) = decoder.decode(&raw(&[br#"{"ts":9,"level":"INFO"}"#])).unwrap();
        assert_eq!((batch.num_rows(), bad.len()), (1, 0));
    }
}
