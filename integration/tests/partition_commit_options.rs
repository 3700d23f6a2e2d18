//! Partition commit's `delay_ms` and `empty_partitions` on a cluster (1 coordinator, 1
//! task manager) fed by a live (unbounded) Kafka topic on a real broker (tansu). The topic
//! is filled in three steps while the job runs:
//! 1. hours 00, 01 and 03 (nothing in hour 02), up to 03:59: hours 00–02 are committed,
//!    hour 02 empty (`_SUCCESS`, no files, a notice with no rows), in hour order;
//! 2. up to 04:25: hour 03 has ended, but not 30 minutes ago (`delay_ms`), so it stays
//!    uncommitted while the sink's commit watermark stands at 04:25;
//! 3. up to 04:40: hour 03 is committed with every one of its rows, hour 04 is not.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use weir_integration::cluster::{ClusterSandbox, first_line};
use weir_integration::kafka_broker::KafkaBroker;
use weir_integration::parquet_rows_by_partition;

const PARTITIONS: i32 = 2;
/// 2024-01-01T00:00:00Z.
const MIDNIGHT: i64 = 1_704_067_200_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DELAY_MS: i64 = 30 * MINUTE;

/// One record per partition per minute, for the minutes `minutes` after midnight.
fn records(minutes: impl Iterator<Item = i64>) -> Vec<(i32, Vec<u8>)> {
    let mut out = Vec::new();
    for m in minutes {
        for p in 0..PARTITIONS {
            let id = p as i64 * 1_000_000 + m;
            out.push((
                p,
                format!(r#"{{"id":{id},"ts":{}}}"#, MIDNIGHT + m * MINUTE).into_bytes(),
            ));
        }
    }
    out
}

/// The notices on the notice topic once there are at least `n` (fails after a minute).
fn notices(broker: &KafkaBroker, n: usize, cluster: &ClusterSandbox, job: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found: Vec<serde_json::Value> = broker
            .read_partition("notices", 0)
            .unwrap()
            .iter()
            .map(|n| serde_json::from_slice(n).unwrap())
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} notices after a minute: {found:?}\n{}",
            found.len(),
            cluster.job_status(&cluster.addresses(), job)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn committed(out: &Path, hour: &str) -> bool {
    out.join("dt=2024-01-01")
        .join(format!("hour={hour}"))
        .join("_SUCCESS")
        .exists()
}

#[test]
fn hours_commit_after_the_delay_and_an_hour_without_rows_commits_empty() {
    let mut cluster = ClusterSandbox::start(1);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(1, Duration::from_secs(30));
    let broker = KafkaBroker::start(&cluster.dir.path().join("broker")).unwrap();
    broker.create_topic("events", PARTITIONS as u32).unwrap();
    broker.create_topic("notices", 1).unwrap();
    broker
        .produce("events", &records((0..2 * 60).chain(3 * 60..4 * 60)))
        .unwrap();

    let out = cluster.dir.path().join("out");
    let spec = cluster.dir.path().join("job.json");
    fs::write(
        &spec,
        serde_json::json!({
            "name": "commit-options",
            "parallelism": 2,
            "sources": [{
                "id": "events",
                "kafka": {"bootstrap_servers": broker.address, "topics": ["events"], "start": "earliest"},
                "format": {"type": "json"},
                "schema": [{"name": "id", "type": "int64"}, {"name": "ts", "type": "timestamp_ms"}],
                "event_time": {"column": "ts", "max_out_of_orderness_ms": 0}
            }],
            "sinks": [{
                "id": "out",
                "input": "events",
                "parquet": {
                    "path": out,
                    "partition": "dt=%Y-%m-%d/hour=%H",
                    "commit": {
                        "delay_ms": DELAY_MS,
                        "empty_partitions": true,
                        "notice": {"bootstrap_servers": broker.address, "topic": "notices", "table": "logs"}
                    }
                }
            }],
            "checkpoint": {"interval_ms": 200}
        })
        .to_string(),
    )
    .unwrap();
    let all = cluster.addresses();
    let job = cluster.submit(&spec);

    // Step 1: hours 00–02 are committed, 02 without files.
    let first = notices(&broker, 3, &cluster, &job);
    let hours: Vec<&str> = first.iter().map(|n| n["partition"].as_str().unwrap()).collect();
    assert_eq!(
        hours,
        [
            "dt=2024-01-01/hour=00",
            "dt=2024-01-01/hour=01",
            "dt=2024-01-01/hour=02"
        ],
        "one notice per hour, in hour order, the empty hour included"
    );
    let rows: Vec<u64> = first.iter().map(|n| n["rows"].as_u64().unwrap()).collect();
    assert_eq!(rows, [120, 120, 0]);
    assert_eq!(first[2]["files"], serde_json::json!([]), "{}", first[2]);
    let empty_hour: Vec<String> = fs::read_dir(out.join("dt=2024-01-01/hour=02"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(empty_hour, ["_SUCCESS"], "the empty hour holds only its marker");

    // Step 2: hour 03 ended 25 minutes ago in event time; the delay holds it back.
    broker.produce("events", &records(4 * 60..4 * 60 + 26)).unwrap();
    let status = cluster.wait_for_job(&all, &job, Duration::from_secs(60), |s| {
        s.contains("commit watermark 2024-01-01T04:24:59.999Z")
    });
    // Several checkpoints at that watermark, each an occasion to commit.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !committed(&out, "03"),
        "hour 03 committed before its delay was over:\n{status}"
    );
    assert_eq!(notices(&broker, 3, &cluster, &job).len(), 3);

    // Step 3: past 04:30 hour 03 is committed with all of its rows; hour 04 waits.
    broker.produce("events", &records(4 * 60 + 26..4 * 60 + 41)).unwrap();
    let all_notices = notices(&broker, 4, &cluster, &job);
    assert_eq!(all_notices.len(), 4, "{all_notices:?}");
    let last = &all_notices[3];
    assert_eq!(last["partition"], "dt=2024-01-01/hour=03");
    assert_eq!(last["rows"], 120);
    assert!(committed(&out, "03"));
    for (hour, n) in all_notices.iter().enumerate() {
        let end = MIDNIGHT + (hour as i64 + 1) * HOUR;
        let watermark = n["watermark"].as_i64().unwrap();
        assert!(
            watermark >= end - 1 + DELAY_MS,
            "hour {hour} was announced at watermark {watermark}, before its end plus the delay: {n}"
        );
    }
    assert!(!committed(&out, "04"), "hour 04 ends at 05:00, its delay at 05:30");
    let rows = parquet_rows_by_partition(&out).unwrap();
    for hour in ["00", "01", "03"] {
        assert_eq!(rows.get(&format!("dt=2024-01-01/hour={hour}")), Some(&120), "{rows:?}");
    }

    let cancelled = cluster.cli(&["cancel", &job], &all);
    assert!(
        cancelled.status.success(),
        "{}",
        String::from_utf8_lossy(&cancelled.stderr)
    );
    let status = cluster.job_status(&all, &job);
    assert!(!first_line(&status).contains("Failed"), "{status}");
}
