//! The decoder a source's `format` names: raw records in, Arrow rows and rejected records
//! (for the dead-letter output) out.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_common::spec::FormatSpec;

use super::json_decoder::{JsonDecoder, Rejected};
use super::protobuf_decoder::ProtobufDecoder;
use crate::error::TaskError;
use crate::runtime::source::RawRecords;

pub enum RecordDecoder {
    Json(JsonDecoder),
    Protobuf(Box<ProtobufDecoder>),
}

impl RecordDecoder {
    /// `batch_size`: the most records a chunk will hold.
    pub fn new(format: &FormatSpec, schema: SchemaRef, vertex: &str, batch_size: usize) -> Result<Self, TaskError> {
        Ok(match format {
            FormatSpec::Json => RecordDecoder::Json(JsonDecoder::new(schema, vertex, batch_size)),
            FormatSpec::Protobuf {
                descriptor_set,
                message,
            } => RecordDecoder::Protobuf(Box::new(ProtobufDecoder::new(schema, vertex, descriptor_set, message)?)),
        })
    }

    pub fn decode(&mut self, raw: &RawRecords) -> Result<(RecordBatch, Rejected), TaskError> {
        match self {
            RecordDecoder::Json(d) => d.decode(raw),
            RecordDecoder::Protobuf(d) => d.decode(raw),
        }
    }
}
