//! Protobuf records from Kafka (tansu) to Parquet: the message type comes from a
//! descriptor set compiled by protoc from `examples/protobuf/click.proto` (a
//! `google.protobuf.Timestamp` event time, an enum read as its name, an `optional` field as
//! a nullable column, a field outside the schema ignored). Records that are not such a
//! message go to the dead-letter output; every other record lands once with its values,
//! in Parquet and, through a protobuf Kafka sink, as Click messages again.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use weir_integration::kafka_broker::KafkaBroker;
use weir_integration::{python, run_local, workspace_root};

const PARTITIONS: i32 = 3;
const RECORDS: i64 = 3_000;
const BASE_MS: i64 = 1_704_067_200_000;

fn compile_descriptor_set(out: &std::path::Path) {
    let proto_dir = workspace_root().join("examples/protobuf");
    let status = Command::new(protoc_bin_vendored::protoc_bin_path().unwrap())
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg("-I")
        .arg(&proto_dir)
        .arg("-I")
        .arg(protoc_bin_vendored::include_path().unwrap())
        .arg(proto_dir.join("click.proto"))
        .status()
        .unwrap();
    assert!(status.success(), "protoc failed");
}

#[test]
fn protobuf_records_land_with_their_values_and_bad_ones_are_dead_lettered() {
    let work = tempfile::tempdir().unwrap();
    let desc = work.path().join("click.desc");
    compile_descriptor_set(&desc);
    let pool = DescriptorPool::decode(fs::read(&desc).unwrap().as_slice()).unwrap();
    let click = pool.get_message_by_name("weir.example.v1.Click").unwrap();
    let timestamp = pool.get_message_by_name("google.protobuf.Timestamp").unwrap();

    let broker = KafkaBroker::start(&work.path().join("broker")).unwrap();
    broker.create_topic("clicks", PARTITIONS as u32).unwrap();
    broker.create_topic("clicks-copy", 1).unwrap();
    let regions = ["EU", "US", "APAC"];
    let mut expected = BTreeMap::new();
    let mut records = Vec::new();
    let mut malformed = 0;
    for id in 0..RECORDS {
        let partition = (id % PARTITIONS as i64) as i32;
        if id % 101 == 7 {
            malformed += 1;
            records.push((partition, b"\xff\xff\xff not protobuf".to_vec()));
            continue;
        }
        let ts_ms = BASE_MS + id * 1_000 + 123;
        let mut ts = DynamicMessage::new(timestamp.clone());
        ts.set_field_by_name("seconds", Value::I64(ts_ms / 1000));
        ts.set_field_by_name("nanos", Value::I32(((ts_ms % 1000) * 1_000_000) as i32));
        let mut m = DynamicMessage::new(click.clone());
        m.set_field_by_name("id", Value::I64(id));
        m.set_field_by_name("ts", Value::Message(ts));
        m.set_field_by_name("region", Value::EnumNumber(1 + (id % 3) as i32));
        m.set_field_by_name("page", Value::String(format!("/p/{}", id % 17)));
        m.set_field_by_name("user_agent", Value::String("ignored".into()));
        let score = (id % 4 != 0).then(|| id as f64 / 8.0);
        if let Some(s) = score {
            m.set_field_by_name("score", Value::F64(s));
        }
        expected.insert(
            id,
            (
                ts_ms,
                regions[(id % 3) as usize].to_string(),
                format!("/p/{}", id % 17),
                score,
            ),
        );
        records.push((partition, m.encode_to_vec()));
    }
    broker.produce("clicks", &records).unwrap();

    let spec = work.path().join("spec.json");
    let out = work.path().join("out");
    fs::write(
        &spec,
        serde_json::json!({
            "name": "protobuf-in",
            "parallelism": 2,
            "sources": [{
                "id": "clicks",
                "kafka": {
                    "bootstrap_servers": broker.address,
                    "topics": ["clicks"],
                    "start": "earliest",
                    "bounded": true
                },
                "format": {"type": "protobuf", "descriptor_set": desc, "message": "weir.example.v1.Click"},
                "schema": [
                    {"name": "id", "type": "int64"},
                    {"name": "ts", "type": "timestamp_ms"},
                    {"name": "region", "type": "string"},
                    {"name": "page", "type": "string"},
                    {"name": "score", "type": "float64", "nullable": true}
                ],
                "event_time": {"column": "ts"}
            }],
            "sinks": [
                {"id": "out", "input": "clicks", "parquet": {"path": out}},
                {"id": "copy", "input": "clicks", "kafka": {
                    "bootstrap_servers": broker.address,
                    "topic": "clicks-copy",
                    "key": "region",
                    "format": {"type": "protobuf", "descriptor_set": desc, "message": "weir.example.v1.Click"}
                }}
            ],
            "dead_letter": {"path": work.path().join("dead")}
        })
        .to_string(),
    )
    .unwrap();
    let run = run_local(&spec, &[], work.path()).unwrap();
    assert!(run.output.status.success(), "{}", run.stderr());
    assert_eq!(run.summary()["dead_lettered"], malformed);

    // Read back independently (pyarrow), one JSON row per line.
    let rows = python(
        r#"
import sys, json, pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning=None).to_table()
for r in t.to_pylist():
    r["ts"] = int(r["ts"].timestamp() * 1000)
    print(json.dumps(r))
"#,
        &[out.to_str().unwrap()],
    )
    .unwrap();
    let mut got = BTreeMap::new();
    for line in rows.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let previous = got.insert(
            v["id"].as_i64().unwrap(),
            (
                v["ts"].as_i64().unwrap(),
                v["region"].as_str().unwrap().to_string(),
                v["page"].as_str().unwrap().to_string(),
                v["score"].as_f64(),
            ),
        );
        assert!(previous.is_none(), "row {} twice", v["id"]);
    }
    assert_eq!(got, expected, "every good record once, with its values");

    // The Kafka sink wrote the same rows back as Click messages (the ignored field unset).
    let mut copied = BTreeMap::new();
    let payloads = broker.read_partition("clicks-copy", 0).unwrap();
    assert_eq!(payloads.len(), expected.len(), "one record per row");
    for payload in payloads {
        let m = DynamicMessage::decode(click.clone(), payload.as_slice()).unwrap();
        let ts = m.get_field_by_name("ts").unwrap();
        let ts = ts.as_message().unwrap();
        let ms = ts.get_field_by_name("seconds").unwrap().as_i64().unwrap() * 1000
            + i64::from(ts.get_field_by_name("nanos").unwrap().as_i32().unwrap()) / 1_000_000;
        let region = m.get_field_by_name("region").unwrap().as_enum_number().unwrap();
        let score_field = click.get_field_by_name("score").unwrap();
        copied.insert(
            m.get_field_by_name("id").unwrap().as_i64().unwrap(),
            (
                ms,
                regions[(region - 1) as usize].to_string(),
                m.get_field_by_name("page").unwrap().as_str().unwrap().to_string(),
                m.has_field(&score_field)
                    .then(|| m.get_field(&score_field).as_f64().unwrap()),
            ),
        );
        assert_eq!(m.get_field_by_name("user_agent").unwrap().as_str(), Some(""));
    }
    assert_eq!(
        copied, expected,
        "the protobuf Kafka sink wrote every row once, with its values"
    );
}

#[test]
fn columns_that_do_not_fit_the_message_are_refused_at_submit() {
    let work = tempfile::tempdir().unwrap();
    let desc = work.path().join("click.desc");
    compile_descriptor_set(&desc);
    let spec = work.path().join("spec.json");
    let format = serde_json::json!({"type": "protobuf", "descriptor_set": desc, "message": "weir.example.v1.Click"});
    fs::write(
        &spec,
        serde_json::json!({
            "name": "protobuf-bad",
            "sources": [{
                "id": "clicks",
                "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topics": ["clicks"]},
                "format": format,
                "schema": [
                    {"name": "ts", "type": "timestamp_ms"},
                    {"name": "id", "type": "int32"},
                    {"name": "country", "type": "string"}
                ],
                "event_time": {"column": "ts"}
            }, {
                "id": "other",
                "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topics": ["x"]},
                "format": {"type": "protobuf", "descriptor_set": desc, "message": "weir.example.v1.Klick"},
                "schema": [{"name": "ts", "type": "timestamp_ms"}],
                "event_time": {"column": "ts"}
            }],
            "sinks": [
                {"id": "out", "input": "clicks", "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topic": "t", "format": format}},
                {"id": "out2", "input": "other", "blackhole": {}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new(weir_integration::binary("coordinator"))
        .arg("validate")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "sources[0].schema[1]: 'id' is a protobuf int64, which does not fit the column type int32",
        "sources[0].schema[2]: weir.example.v1.Click has no field 'country'",
        "sources[1].format.message: no message \"weir.example.v1.Klick\"",
        "sinks[0].kafka.format: column 'country' has no field in weir.example.v1.Click",
    ] {
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
}
