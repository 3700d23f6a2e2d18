//! Record formats: raw bytes in, Arrow rows out, with every undecodable record set aside;
//! and rows back to JSON.

pub mod json_decoder;
pub mod json_rows;
pub mod protobuf_decoder;
pub mod protobuf_encoder;
pub mod record_decoder;
