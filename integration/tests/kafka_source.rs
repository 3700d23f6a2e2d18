//! The Kafka source against a real Kafka-protocol broker (tansu): an 8-partition topic
//! read by 3 source subtasks (uneven shares), malformed records among good ones. Every
//! good record reaches the Parquet output exactly once, every bad one the dead letters.

use std::collections::BTreeSet;
use std::fs;

use weir_integration::kafka_broker::KafkaBroker;
use weir_integration::{files_below, int64_values, run_local};

const PARTITIONS: i32 = 8;
const PER_PARTITION: i64 = 2_000;

#[test]
fn a_bounded_read_of_every_partition_delivers_each_good_record_once() {
    let work = tempfile::tempdir().unwrap();
    let broker = KafkaBroker::start(&work.path().join("broker")).unwrap();
    broker.create_topic("events", PARTITIONS as u32).unwrap();
    let mut records = Vec::new();
    let mut expected = BTreeSet::new();
    let mut bad = BTreeSet::new();
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let id = p as i64 * PER_PARTITION + i;
            let payload = if i % 97 == 13 {
                bad.insert((format!("events/{p}"), i as u64));
                br#"{"id": "not a number", "ts": 1}"#.to_vec()
            } else {
                expected.insert(id);
                // Partitions run at different event times, hours apart.
                let ts = 1_704_067_200_000 + p as i64 * 3_600_000 + i * 1_000;
                format!(r#"{{"id":{id},"ts":{ts},"partition":{p}}}"#).into_bytes()
            };
            records.push((p, payload));
        }
    }
    broker.produce("events", &records).unwrap();

    let spec = work.path().join("spec.json");
    let out = work.path().join("out");
    let dead = work.path().join("dead");
    fs::write(
        &spec,
        serde_json::json!({
            "name": "kafka-in",
            "parallelism": 3,
            "sources": [{
                "id": "events",
                "kafka": {
                    "bootstrap_servers": broker.address,
                    "topics": ["events"],
                    "start": "earliest",
                    "bounded": true,
                    "batch_size": 500
                },
                "format": {"type": "json"},
                "schema": [
                    {"name": "id", "type": "int64"},
                    {"name": "ts", "type": "timestamp_ms"},
                    {"name": "partition", "type": "int64"}
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
    assert!(run.output.status.success(), "{}", run.stderr());

    let ids = int64_values(&out, "id").unwrap();
    let got: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), got.len(), "no record twice");
    assert_eq!(got, expected, "every good record once");
    assert_eq!(run.summary()["dead_lettered"], bad.len() as u64);
    // Each dead letter names its partition and offset.
    let mut seen = BTreeSet::new();
    for f in files_below(&dead) {
        for line in fs::read_to_string(dead.join(f)).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            seen.insert((
                v["origin"].as_str().unwrap().to_string(),
                v["position"].as_u64().unwrap(),
            ));
        }
    }
    assert_eq!(seen, bad);
}
