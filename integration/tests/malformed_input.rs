//! JSON-lines input with malformed records (truncated JSON, wrong types, missing fields,
//! invalid UTF-8, not an object): every good row reaches the Parquet output, every bad one
//! the dead-letter output with its reason and position, and the job exits 0.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;

use arrow::array::{AsArray, RecordBatchReader};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weir_integration::{files_below, run_local};

fn good(id: i64) -> Vec<u8> {
    let ts = 1_704_067_200_000 + id * 1_000;
    format!(
        r#"{{"id":{id},"ts":{ts},"user":"u{}","amount":{}.5}}"#,
        id % 7,
        id % 100
    )
    .into_bytes()
}

#[test]
fn bad_records_go_to_dead_letters_and_good_ones_all_arrive() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    fs::create_dir_all(&input).unwrap();
    let bad_kinds: [&[u8]; 6] = [
        br#"{"id":1,"ts":17040672"#,                                    // truncated
        br#"{"id":"seven","ts":1704067200000,"user":"x"}"#,             // wrong type
        br#"{"id":9,"user":"x"}"#,                                      // missing non-nullable ts
        b"{\"id\":10,\"ts\":1704067200000,\"user\":\"\xff\xfe\"}",      // invalid UTF-8
        b"[1,2,3]",                                                     // not an object
        br#"{"id":11,"ts":1704067200000,"user":"x","amount":"a lot"}"#, // wrong type, nullable field
    ];
    let mut expected_ids = BTreeSet::new();
    let mut expected_bad: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
    let mut id = 0i64;
    for file in ["a.jsonl", "b.jsonl"] {
        let path = input.join(file);
        let mut f = fs::File::create(&path).unwrap();
        for line in 1..=3000u64 {
            let record = if line % 37 == 0 {
                bad_kinds[(line / 37) as usize % bad_kinds.len()].to_vec()
            } else {
                id += 1;
                expected_ids.insert(id);
                good(id)
            };
            if line % 37 == 0 {
                expected_bad.insert((path.display().to_string(), line), record.clone());
            }
            f.write_all(&record).unwrap();
            f.write_all(b"\n").unwrap();
        }
    }
    let spec = work.path().join("spec.json");
    let out = work.path().join("out");
    let dead = work.path().join("dead");
    fs::write(
        &spec,
        serde_json::json!({
            "name": "malformed",
            "parallelism": 2,
            "sources": [{
                "id": "events",
                "file": {"path": input, "batch_size": 500},
                "format": {"type": "json"},
                "schema": [
                    {"name": "id", "type": "int64"},
                    {"name": "ts", "type": "timestamp_ms"},
                    {"name": "user", "type": "string"},
                    {"name": "amount", "type": "float64", "nullable": true}
                ],
                "event_time": {"column": "ts", "max_out_of_orderness_ms": 0}
            }],
            "sinks": [{"id": "out", "input": "events", "parquet": {"path": out}}],
            "dead_letter": {"path": dead}
        })
        .to_string(),
    )
    .unwrap();

    let run = run_local(&spec, &[], work.path()).unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
    assert_eq!(run.summary()["dead_lettered"], expected_bad.len() as u64);
    assert_eq!(run.summary()["records_read"], 6000);

    let mut ids = BTreeSet::new();
    for rel in files_below(&out) {
        let f = fs::File::open(out.join(&rel)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
        assert_eq!(reader.schema().field(0).name(), "id");
        for batch in reader {
            let batch = batch.unwrap();
            for v in batch.column(0).as_primitive::<Int64Type>().values() {
                assert!(ids.insert(*v), "id {v} written twice");
            }
        }
    }
    assert_eq!(ids, expected_ids);

    let dead_files = files_below(&dead);
    assert_eq!(dead_files.len(), 1, "{dead_files:?}");
    let text = fs::read_to_string(dead.join(&dead_files[0])).unwrap();
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["source"], "events");
        assert!(!v["reason"].as_str().unwrap().is_empty(), "{line}");
        let raw = match v["raw_base64"].as_str() {
            Some(b64) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
            }
            None => v["raw"].as_str().unwrap().as_bytes().to_vec(),
        };
        seen.insert(
            (
                v["origin"].as_str().unwrap().to_string(),
                v["position"].as_u64().unwrap(),
            ),
            raw,
        );
    }
    assert_eq!(seen, expected_bad);
}
