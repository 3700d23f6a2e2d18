//! Rows back to JSON text, one object per row: how rows that cannot go where they were
//! headed (late rows of a committed partition) are written to the dead-letter output.

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// One JSON object per row of `batch`, without the trailing newline.
pub fn rows_as_json(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ArrowError> {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    let text = writer.into_inner();
    Ok(text
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn each_row_becomes_one_object() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap();
        let rows = rows_as_json(&batch).unwrap();
        assert_eq!(rows, vec![br#"{"ts":1,"s":"a"}"#.to_vec(), br#"{"ts":2}"#.to_vec()]);
    }
}
