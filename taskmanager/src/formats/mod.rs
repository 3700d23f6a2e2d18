//! Record formats: raw bytes in, Arrow rows out, with every undecodable record set aside.

pub mod json_decoder;
pub mod json_rows;
