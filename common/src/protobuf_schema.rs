//! Protobuf records: the message type named in a spec, loaded from a compiled descriptor
//! set (`protoc --include_imports --descriptor_set_out=FILE`), and which protobuf field
//! kinds each column type of a stream accepts. Shared by validation (refusing a spec whose
//! columns do not match the message) and the task managers' decoder.

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

use crate::spec::{FieldSpec, FieldType};

/// The full name of the well-known timestamp message, accepted for `timestamp_ms`.
pub const TIMESTAMP_MESSAGE: &str = "google.protobuf.Timestamp";

/// Why a message could not be loaded, and which spec field is to blame.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufSchemaError {
    #[error("cannot read descriptor set {path}: {message}")]
    DescriptorSet { path: String, message: String },
    #[error("no message {message:?} in {path} (messages: {known})")]
    UnknownMessage {
        path: String,
        message: String,
        known: String,
    },
}

/// Loads `message` from the descriptor set file at `path`.
pub fn load_message(path: &str, message: &str) -> Result<MessageDescriptor, ProtobufSchemaError> {
    let bytes = std::fs::read(path).map_err(|e| ProtobufSchemaError::DescriptorSet {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let pool = DescriptorPool::decode(bytes.as_slice()).map_err(|e| ProtobufSchemaError::DescriptorSet {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    pool.get_message_by_name(message)
        .ok_or_else(|| ProtobufSchemaError::UnknownMessage {
            path: path.to_string(),
            message: message.to_string(),
            known: pool
                .all_messages()
                .map(|m| m.full_name().to_string())
                .filter(|n| !n.starts_with("google.protobuf."))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The message field a column reads, if its kind fits the column's type.
pub fn field_for(message: &MessageDescriptor, column: &FieldSpec) -> Result<FieldDescriptor, String> {
    let field = singular_field(message, &column.name).map_err(|missing| match missing {
        Missing::Field(names) => format!(
            "{} has no field '{}' (fields: {names})",
            message.full_name(),
            column.name
        ),
        Missing::Singular => format!("'{}' is repeated; only singular fields can be columns", column.name),
    })?;
    let kind = field.kind();
    let fits = match column.data_type {
        FieldType::Boolean => matches!(kind, Kind::Bool),
        FieldType::Int32 => matches!(kind, Kind::Int32 | Kind::Sint32 | Kind::Sfixed32),
        FieldType::Int64 => matches!(
            kind,
            Kind::Int64
                | Kind::Sint64
                | Kind::Sfixed64
                | Kind::Int32
                | Kind::Sint32
                | Kind::Sfixed32
                | Kind::Uint32
                | Kind::Fixed32
        ),
        FieldType::Uint64 => matches!(kind, Kind::Uint64 | Kind::Fixed64 | Kind::Uint32 | Kind::Fixed32),
        FieldType::Float32 => matches!(kind, Kind::Float),
        FieldType::Float64 => matches!(kind, Kind::Double | Kind::Float),
        FieldType::String => matches!(kind, Kind::String | Kind::Enum(_)),
        FieldType::TimestampMs => holds_epoch_ms(&kind),
    };
    if fits {
        Ok(field)
    } else {
        Err(format!(
            "'{}' is a protobuf {}, which does not fit the column type {}",
            column.name,
            kind_name(&kind),
            type_name(column.data_type)
        ))
    }
}

/// The message field an output column is written to, if the field can hold every value of
/// the column's type (no narrowing; an enum field takes its values' names).
pub fn output_field_for(message: &MessageDescriptor, column: &str, t: FieldType) -> Result<FieldDescriptor, String> {
    let field = singular_field(message, column).map_err(|missing| match missing {
        Missing::Field(names) => format!(
            "column '{column}' has no field in {} (fields: {names})",
            message.full_name()
        ),
        Missing::Singular => format!("field '{column}' is repeated; only singular fields are written"),
    })?;
    let kind = field.kind();
    let fits = match t {
        FieldType::Boolean => matches!(kind, Kind::Bool),
        FieldType::Int32 => matches!(
            kind,
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Int64 | Kind::Sint64 | Kind::Sfixed64
        ),
        FieldType::Int64 => matches!(kind, Kind::Int64 | Kind::Sint64 | Kind::Sfixed64),
        FieldType::Uint64 => matches!(kind, Kind::Uint64 | Kind::Fixed64),
        FieldType::Float32 => matches!(kind, Kind::Float | Kind::Double),
        FieldType::Float64 => matches!(kind, Kind::Double),
        FieldType::String => matches!(kind, Kind::String | Kind::Enum(_)),
        FieldType::TimestampMs => holds_epoch_ms(&kind),
    };
    if fits {
        Ok(field)
    } else {
        Err(format!(
            "column type {} cannot be written to '{column}', a protobuf {}",
            type_name(t),
            kind_name(&kind)
        ))
    }
}

/// The type's name as specs spell it.
fn type_name(t: FieldType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

/// Why a column has no field to read or write.
enum Missing {
    /// No field of that name; the message's field names.
    Field(String),
    /// The field is repeated or a map.
    Singular,
}

/// The singular field named `name`.
fn singular_field(message: &MessageDescriptor, name: &str) -> Result<FieldDescriptor, Missing> {
    let field = message.get_field_by_name(name).ok_or_else(|| {
        Missing::Field(
            message
                .fields()
                .map(|f| f.name().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )
    })?;
    if field.is_list() || field.is_map() {
        return Err(Missing::Singular);
    }
    Ok(field)
}

/// Whether a field of this kind holds an event time: an int64 of epoch ms or a
/// `google.protobuf.Timestamp`.
fn holds_epoch_ms(kind: &Kind) -> bool {
    match kind {
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => true,
        Kind::Message(m) => m.full_name() == TIMESTAMP_MESSAGE,
        _ => false,
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        other => format!("{other:?}").to_lowercase(),
    }
}
