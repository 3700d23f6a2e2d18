//! Arrow IPC framing of the batches on one channel: the schema goes once, in the first
//! frame, and every frame after carries one record batch message.

use arrow::buffer::Buffer;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

#[derive(Default)]
pub struct BatchEncoder {
    writer: Option<StreamWriter<Vec<u8>>>,
}

impl BatchEncoder {
    /// The bytes of `batch`, preceded by the schema on the first call.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(StreamWriter::try_new(Vec::new(), &batch.schema())?),
        };
        writer.write(batch)?;
        Ok(std::mem::take(writer.get_mut()))
    }
}

#[derive(Default)]
pub struct BatchDecoder {
    decoder: StreamDecoder,
}

impl BatchDecoder {
    /// The batch in one frame produced by [`BatchEncoder::encode`].
    pub fn decode(&mut self, frame: Vec<u8>) -> Result<RecordBatch, ArrowError> {
        let mut buf = Buffer::from_vec(frame);
        let mut batch = None;
        while !buf.is_empty() {
            if let Some(b) = self.decoder.decode(&mut buf)? {
                batch = Some(b);
            }
        }
        batch.ok_or_else(|| ArrowError::IpcError("exchange frame without a record batch".into()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn batches_round_trip_with_the_schema_sent_once() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = |n: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![n, n + 1])),
                    Arc::new(StringArray::from(vec![Some("a"), None])),
                ],
            )
            .unwrap()
        };
        let mut enc = BatchEncoder::default();
        let mut dec = BatchDecoder::default();
        let first = enc.encode(&batch(1)).unwrap();
        let second = enc.encode(&batch(10)).unwrap();
        assert!(first.len() > second.len(), "only the first frame carries the schema");
        assert_eq!(dec.decode(first).unwrap(), batch(1));
        assert_eq!(dec.decode(second).unwrap(), batch(10));
    }
}
