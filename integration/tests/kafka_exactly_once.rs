//! Kafka → hourly Parquet on a cluster (3 coordinators, 2 task managers) with checkpoints,
//! reading a real broker (tansu): a task manager is SIGKILLed mid-job and the restarted
//! attempt resumes every partition at the offset its checkpoint recorded, so each record
//! lands in the committed output exactly once, no hidden file is left, and every hour is
//! committed (`_SUCCESS`) by the time the job reports Finished. Then the same
//! job is stopped with a savepoint mid-way and submitted again from it with its source at
//! parallelism 3: the new subtasks take the offsets of the partitions they are assigned,
//! and the two jobs' output together is every record once.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use weir_integration::cluster::{ClusterSandbox, first_line, vertex_records_in};
use weir_integration::kafka_broker::KafkaBroker;
use weir_integration::{files_below, int64_values};

const PARTITIONS: i32 = 8;
const PER_PARTITION: i64 = 50_000;

#[test]
fn after_a_task_manager_loss_every_kafka_record_is_committed_once() {
    let mut cluster = ClusterSandbox::start(3);
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));
    let broker = KafkaBroker::start(&cluster.dir.path().join("broker")).unwrap();
    broker.create_topic("events", PARTITIONS as u32).unwrap();
    let mut records = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let id = p as i64 * PER_PARTITION + i;
            // Event time advances 100 ms per record: each partition covers ~1.4 hours.
            let ts = 1_704_067_200_000 + i * 100;
            records.push((
                p,
                format!(r#"{{"id":{id},"ts":{ts},"pad":"{}"}}"#, "x".repeat(64)).into_bytes(),
            ));
        }
    }
    broker.produce("events", &records).unwrap();

    let out = cluster.dir.path().join("out");
    let spec = cluster.dir.path().join("kafka.json");
    fs::write(
        &spec,
        serde_json::json!({
            "name": "kafka-exactly-once",
            "parallelism": 2,
            "sources": [{
                "id": "events",
                "kafka": {
                    "bootstrap_servers": broker.address,
                    "topics": ["events"],
                    "start": "earliest",
                    "bounded": true,
                    "batch_size": 256
                },
                "format": {"type": "json"},
                "schema": [
                    {"name": "id", "type": "int64"},
                    {"name": "ts", "type": "timestamp_ms"},
                    {"name": "pad", "type": "string"}
                ],
                "event_time": {"column": "ts", "max_out_of_orderness_ms": 1000}
            }],
            "sinks": [{
                "id": "out",
                "input": "events",
                "parquet": {"path": out, "partition": "dt=%Y-%m-%d/hour=%H", "commit": {}}
            }],
            "checkpoint": {"interval_ms": 200}
        })
        .to_string(),
    )
    .unwrap();
    let all = cluster.addresses();
    let run = cluster.cli(&["submit", spec.to_str().unwrap()], &all);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let job = String::from_utf8_lossy(&run.stdout).trim().to_string();
    let total = (PARTITIONS as i64 * PER_PARTITION) as u64;
    // The first checkpoints may have recorded empty offsets: kill after one that holds a
    // tenth of the records.
    cluster.kill_after_checkpoint_past(&job, "events", total / 10, 1);
    let s = cluster.wait_for_job(&all, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert!(!first_line(&s).contains("attempt 0"), "the job was restarted:\n{s}");
    // A bounded job reports Finished once its last partitions are committed.
    let hours: Vec<_> = fs::read_dir(out.join("dt=2024-01-01")).unwrap().flatten().collect();
    assert_eq!(hours.len(), 2, "{hours:?}");
    for h in &hours {
        assert!(
            h.path().join("_SUCCESS").exists(),
            "{} is not committed:\n{s}",
            h.path().display()
        );
    }

    for f in files_below(&out) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.starts_with('.') && !name.ends_with(".pending"),
            "left behind: {}",
            f.display()
        );
    }
    let ids = int64_values(&out, "id").unwrap();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "no record committed twice");
    assert_eq!(unique.len() as u64, total, "no record lost");
    assert!(
        vertex_records_in(&s, "events") < total,
        "the restart resumed from checkpointed offsets, not from the beginning:\n{s}"
    );

    // Rescaling the source from a savepoint (a replacement task manager brings the slots
    // for parallelism 3).
    cluster.start_task_manager(2);
    let rescaled_out = cluster.dir.path().join("rescaled");
    let mut rescaled: serde_json::Value = serde_json::from_str(&fs::read_to_string(&spec).unwrap()).unwrap();
    rescaled["name"] = "kafka-rescaled".into();
    rescaled["sinks"][0]["parquet"]["path"] = serde_json::json!(rescaled_out);
    rescaled["sinks"][0]["parquet"]["commit"] = serde_json::Value::Null;
    let rescaled_spec = cluster.dir.path().join("rescaled.json");
    fs::write(&rescaled_spec, rescaled.to_string()).unwrap();
    let run = cluster.cli(&["submit", rescaled_spec.to_str().unwrap()], &all);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let first = String::from_utf8_lossy(&run.stdout).trim().to_string();
    cluster.wait_for_job(&all, &first, Duration::from_secs(120), |s| {
        first_line(s).contains("Running") && vertex_records_in(s, "events") > total / 4
    });
    let taken = cluster.cli(&["cancel", &first, "--savepoint"], &all);
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    let savepoint = String::from_utf8_lossy(&taken.stdout).trim().to_string();
    let run = cluster.cli(
        &[
            "submit",
            rescaled_spec.to_str().unwrap(),
            "--set",
            "sources.0.parallelism=3",
            "--from-savepoint",
            &savepoint,
        ],
        &all,
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let second = String::from_utf8_lossy(&run.stdout).trim().to_string();
    let done = cluster.wait_for_job(&all, &second, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert!(done.contains("events           p=3"), "{done}");
    let resumed = vertex_records_in(&done, "events");
    assert!(
        resumed < total - total / 4,
        "the rescaled job resumed where the savepoint stood, it read {resumed}:\n{done}"
    );
    let ids = int64_values(&rescaled_out, "id").unwrap();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "no record committed twice across the rescale");
    assert_eq!(unique.len() as u64, total, "no record lost across the rescale");
}
