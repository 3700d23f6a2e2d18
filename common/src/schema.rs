//! Stream schemas: the spec's column types as Arrow types, the fixed schemas of the typed
//! generators, and the schema a window aggregate produces.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::spec::{FieldSpec, FieldType, GeneratorWorkload};

pub const UTC: &str = "UTC";

pub fn timestamp_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
}

pub fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::Boolean => DataType::Boolean,
        FieldType::Int32 => DataType::Int32,
        FieldType::Int64 => DataType::Int64,
        FieldType::Uint64 => DataType::UInt64,
        FieldType::Float32 => DataType::Float32,
        FieldType::Float64 => DataType::Float64,
        FieldType::String => DataType::Utf8,
        FieldType::TimestampMs => timestamp_ms(),
    }
}

/// The spec's column type of an Arrow type, where there is one.
pub fn field_type(t: &DataType) -> Option<FieldType> {
    Some(match t {
        DataType::Boolean => FieldType::Boolean,
        DataType::Int32 => FieldType::Int32,
        DataType::Int64 => FieldType::Int64,
        DataType::UInt64 => FieldType::Uint64,
        DataType::Float32 => FieldType::Float32,
        DataType::Float64 => FieldType::Float64,
        DataType::Utf8 => FieldType::String,
        DataType::Timestamp(TimeUnit::Millisecond, _) => FieldType::TimestampMs,
        _ => return None,
    })
}

/// A stream's columns as the spec declares them (`None` if a type has no spec name).
pub fn fields_of(schema: &Schema) -> Option<Vec<FieldSpec>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            Some(FieldSpec {
                name: f.name().clone(),
                data_type: field_type(f.data_type())?,
                nullable: f.is_nullable(),
            })
        })
        .collect()
}

pub fn schema_from_fields(fields: &[FieldSpec]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|f| Field::new(&f.name, arrow_type(f.data_type), f.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// The schema a typed generator emits; `None` for generators that emit raw text.
pub fn generator_schema(w: GeneratorWorkload) -> Option<SchemaRef> {
    let f = |n: &str, t: DataType| Field::new(n, t, false);
    let fields = match w {
        GeneratorWorkload::W1Impressions => vec![
            f("request_id", DataType::UInt64),
            f("ts", timestamp_ms()),
            f("user_id", DataType::Int64),
            f("ad_id", DataType::Int32),
            f("campaign_id", DataType::Int32),
        ],
        GeneratorWorkload::W1Clicks => {
            vec![f("request_id", DataType::UInt64), f("ts", timestamp_ms())]
        }
        GeneratorWorkload::W3Events => vec![f("key", DataType::Int32), f("ts", timestamp_ms())],
        GeneratorWorkload::W2Logs => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

/// Whether a column can carry event time (epoch milliseconds).
pub fn is_event_time_type(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Int64)
}

/// Whether `sum`, `min` and `max` accept a column of this type.
pub fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || t.is_floating()
}

pub fn is_orderable(t: &DataType) -> bool {
    is_numeric(t) || matches!(t, DataType::Timestamp(_, _))
}

/// Whether a column can be a grouping or partitioning key.
pub fn is_key_type(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Utf8 | DataType::Boolean | DataType::Timestamp(_, _))
}
