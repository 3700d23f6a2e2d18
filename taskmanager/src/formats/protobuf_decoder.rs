//! Protobuf records to Arrow by the declared schema, through prost-reflect's dynamic
//! messages: each column reads the message field of its name (checked at submit by
//! `weir_common::protobuf_schema`). A record that does not parse, or lacks a value for a
//! non-nullable column, is rejected (dead-letter output) and the others still arrive.
//! A field without presence (a proto3 scalar) always has a value, its default if unset.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use weir_common::protobuf_schema::{field_for, load_message};
use weir_common::schema::fields_of;
use weir_common::spec::FieldType;

use super::json_decoder::Rejected;
use crate::error::TaskError;
use crate::runtime::source::RawRecords;

enum Column {
    Boolean(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Uint64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    String(StringBuilder),
    TimestampMs(TimestampMillisecondBuilder),
}

pub struct ProtobufDecoder {
    schema: SchemaRef,
    vertex: String,
    message: MessageDescriptor,
    /// Per column: the field it reads and whether it may be null.
    fields: Vec<(FieldDescriptor, bool)>,
    types: Vec<FieldType>,
}

impl ProtobufDecoder {
    pub fn new(schema: SchemaRef, vertex: &str, descriptor_set: &str, message: &str) -> Result<Self, TaskError> {
        let invalid = |message: String| TaskError::Invalid {
            vertex: vertex.to_string(),
            message,
        };
        let columns = fields_of(&schema).ok_or_else(|| invalid("a column type protobuf cannot fill".into()))?;
        let message = load_message(descriptor_set, message).map_err(|e| invalid(e.to_string()))?;
        let fields = columns
            .iter()
            .map(|c| field_for(&message, c).map(|f| (f, c.nullable)))
            .collect::<Result<_, _>>()
            .map_err(invalid)?;
        Ok(Self {
            schema,
            vertex: vertex.to_string(),
            message,
            fields,
            types: columns.iter().map(|c| c.data_type).collect(),
        })
    }

    pub fn decode(&mut self, raw: &RawRecords) -> Result<(RecordBatch, Rejected), TaskError> {
        let n = raw.len();
        let mut columns: Vec<Column> = self.types.iter().map(|t| Column::new(*t, n)).collect();
        let mut rejected = Vec::new();
        let mut values: Vec<Option<Value>> = Vec::with_capacity(self.fields.len());
        for i in 0..n {
            let message = match DynamicMessage::decode(self.message.clone(), raw.record(i)) {
                Ok(m) => m,
                Err(e) => {
                    rejected.push((i, format!("not a {} message: {e}", self.message.full_name())));
                    continue;
                }
            };
            values.clear();
            let mut missing = None;
            for (field, nullable) in &self.fields {
                let value = (!field.supports_presence() || message.has_field(field))
                    .then(|| enum_as_name(field, message.get_field(field).into_owned()));
                if value.is_none() && !nullable {
                    missing = Some(field.name().to_string());
                    break;
                }
                values.push(value);
            }
            if let Some(name) = missing {
                rejected.push((i, format!("missing non-nullable field '{name}'")));
                continue;
            }
            for (column, value) in columns.iter_mut().zip(values.drain(..)) {
                column.append(value);
            }
        }
        let arrays: Vec<ArrayRef> = columns.into_iter().map(Column::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| TaskError::arrow(&self.vertex, e))?;
        Ok((batch, rejected))
    }
}

/// An enum column holds the value's name (its number when the descriptor has none).
fn enum_as_name(field: &FieldDescriptor, v: Value) -> Value {
    match (v, field.kind()) {
        (Value::EnumNumber(n), Kind::Enum(e)) => Value::String(
            e.get_value(n)
                .map(|ev| ev.name().to_string())
                .unwrap_or_else(|| n.to_string()),
        ),
        (v, _) => v,
    }
}

impl Column {
    fn new(t: FieldType, n: usize) -> Self {
        match t {
            FieldType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(n)),
            FieldType::Int32 => Column::Int32(Int32Builder::with_capacity(n)),
            FieldType::Int64 => Column::Int64(Int64Builder::with_capacity(n)),
            FieldType::Uint64 => Column::Uint64(UInt64Builder::with_capacity(n)),
            FieldType::Float32 => Column::Float32(Float32Builder::with_capacity(n)),
            FieldType::Float64 => Column::Float64(Float64Builder::with_capacity(n)),
            FieldType::String => Column::String(StringBuilder::with_capacity(n, n * 16)),
            FieldType::TimestampMs => Column::TimestampMs(TimestampMillisecondBuilder::with_capacity(n)),
        }
    }

    /// Appends a value whose kind `field_for` matched to this column's type.
    fn append(&mut self, v: Option<Value>) {
        match self {
            Column::Boolean(b) => b.append_option(v.and_then(|v| v.as_bool())),
            Column::Int32(b) => b.append_option(v.and_then(|v| v.as_i32())),
            Column::Int64(b) => b.append_option(v.and_then(|v| match v {
                Value::I64(x) => Some(x),
                Value::I32(x) => Some(x.into()),
                Value::U32(x) => Some(x.into()),
                _ => None,
            })),
            Column::Uint64(b) => b.append_option(v.and_then(|v| match v {
                Value::U64(x) => Some(x),
                Value::U32(x) => Some(x.into()),
                _ => None,
            })),
            Column::Float32(b) => b.append_option(v.and_then(|v| v.as_f32())),
            Column::Float64(b) => b.append_option(v.and_then(|v| match v {
                Value::F64(x) => Some(x),
                Value::F32(x) => Some(x.into()),
                _ => None,
            })),
            Column::String(b) => match v {
                Some(Value::String(s)) => b.append_value(s),
                _ => b.append_null(),
            },
            Column::TimestampMs(b) => b.append_option(v.and_then(|v| match v {
                Value::I64(ms) => Some(ms),
                Value::Message(ts) => {
                    let seconds = ts.get_field_by_name("seconds")?.as_i64()?;
                    let nanos = ts.get_field_by_name("nanos")?.as_i32()?;
                    Some(seconds * 1000 + i64::from(nanos) / 1_000_000)
                }
                _ => None,
            })),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Boolean(mut b) => Arc::new(b.finish()),
            Column::Int32(mut b) => Arc::new(b.finish()),
            Column::Int64(mut b) => Arc::new(b.finish()),
            Column::Uint64(mut b) => Arc::new(b.finish()),
            Column::Float32(mut b) => Arc::new(b.finish()),
            Column::Float64(mut b) => Arc::new(b.finish()),
            Column::String(mut b) => Arc::new(b.finish()),
            Column::TimestampMs(mut b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}
