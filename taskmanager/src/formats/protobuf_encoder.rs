//! Arrow rows to protobuf records: each column is written to the message field of its name
//! (checked at submit by `weir_common::protobuf_schema::output_field_for`); a null is left
//! unset. A row that cannot be encoded (a string naming no value of an enum field) is
//! returned as an error for the dead-letter output.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMillisecondType, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use weir_common::protobuf_schema::{load_message, output_field_for};
use weir_common::schema::field_type;

use crate::error::TaskError;

pub struct ProtobufEncoder {
    vertex: String,
    message: MessageDescriptor,
    /// The field each column of the input is written to.
    fields: Vec<FieldDescriptor>,
}

impl ProtobufEncoder {
    pub fn new(
        vertex: &str,
        schema: &arrow::datatypes::Schema,
        descriptor_set: &str,
        message: &str,
    ) -> Result<Self, TaskError> {
        let invalid = |message: String| TaskError::Invalid {
            vertex: vertex.to_string(),
            message,
        };
        let message = load_message(descriptor_set, message).map_err(|e| invalid(e.to_string()))?;
        let fields = schema
            .fields()
            .iter()
            .map(|f| {
                let t = field_type(f.data_type())
                    .ok_or_else(|| format!("column '{}' is {}, not supported", f.name(), f.data_type()))?;
                output_field_for(&message, f.name(), t)
            })
            .collect::<Result<_, _>>()
            .map_err(invalid)?;
        Ok(Self {
            vertex: vertex.to_string(),
            message,
            fields,
        })
    }

    /// One encoded message per row, or why the row cannot be one.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<Result<Vec<u8>, String>>, TaskError> {
        if batch.num_columns() != self.fields.len() {
            return Err(TaskError::Invalid {
                vertex: self.vertex.clone(),
                message: format!("{} columns, {} message fields", batch.num_columns(), self.fields.len()),
            });
        }
        Ok((0..batch.num_rows())
            .map(|row| {
                let mut m = DynamicMessage::new(self.message.clone());
                for (column, field) in batch.columns().iter().zip(&self.fields) {
                    if let Some(v) = value(column, row, field)? {
                        m.set_field(field, v);
                    }
                }
                Ok(m.encode_to_vec())
            })
            .collect())
    }
}

/// The value of `column` at `row` as `field` holds it (`None` for a null).
fn value(column: &ArrayRef, row: usize, field: &FieldDescriptor) -> Result<Option<Value>, String> {
    if column.is_null(row) {
        return Ok(None);
    }
    let kind = field.kind();
    let wide = |x: i64| match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(x as i32),
        _ => Value::I64(x),
    };
    Ok(Some(match column.data_type() {
        DataType::Boolean => Value::Bool(column.as_boolean().value(row)),
        DataType::Int32 => wide(column.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Value::I64(column.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => Value::U64(column.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => {
            let x = column.as_primitive::<Float32Type>().value(row);
            match kind {
                Kind::Double => Value::F64(x.into()),
                _ => Value::F32(x),
            }
        }
        DataType::Float64 => Value::F64(column.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => {
            let s = column.as_string::<i32>().value(row);
            match &kind {
                Kind::Enum(e) => Value::EnumNumber(
                    e.get_value_by_name(s)
                        .ok_or_else(|| {
                            format!("'{s}' is no value of enum {} (field '{}')", e.full_name(), field.name())
                        })?
                        .number(),
                ),
                _ => Value::String(s.to_string()),
            }
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let ms = column.as_primitive::<TimestampMillisecondType>().value(row);
            match &kind {
                Kind::Message(ts) => {
                    let mut m = DynamicMessage::new(ts.clone());
                    m.set_field_by_name("seconds", Value::I64(ms.div_euclid(1000)));
                    m.set_field_by_name("nanos", Value::I32((ms.rem_euclid(1000) * 1_000_000) as i32));
                    Value::Message(m)
                }
                _ => Value::I64(ms),
            }
        }
        other => return Err(format!("column type {other} is not supported")),
    }))
}
