//! The exactly-once Kafka sink on a cluster (1 coordinator, 2 task managers): W1
//! impressions from the rate-limited generator → Kafka with transactions. No broker here
//! implements transactions, so the output goes
//! to librdkafka's mock cluster in a process of its own (`weir-mock-kafka`), which accepts
//! every transaction call but keeps aborted records visible and drops transactional
//! offset commits. What this shows is the machinery around the transactions: checkpoints
//! complete with the sink subtasks' write-ahead logs in checkpoint storage, a task
//! manager SIGKILLed mid-run leaves the restored attempt to settle the restored
//! checkpoint's transactions from that log (on the mock no commit marker is ever visible,
//! so it writes them again), and no input record is missing from the output. Isolation
//! (that a `read_committed` reader sees each record once) cannot be observed here.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use weir_integration::cluster::{ClusterSandbox, first_line, last_checkpoint, vertex_records_in};
use weir_integration::files_below;
use weir_integration::mock_kafka::MockKafka;
use weir_taskmanager::connectors::generator::datagen::w1;

const EVENTS: u64 = 200_000;
/// The mock keeps about 5 MB per partition: enough partitions for every copy written.
const OUT_PARTITIONS: i32 = 16;

/// The log text without ANSI colour codes (`\x1b[…m`).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// The state size of the last completed checkpoint in `coordinator status`.
fn last_state_bytes(status: &str) -> u64 {
    status
        .split("checkpoints: last ")
        .nth(1)
        .and_then(|rest| rest.split("state ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_restored_attempt_settles_the_transactions_of_its_checkpoint_from_the_write_ahead_log() {
    let mut cluster = ClusterSandbox::start(1);
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));
    let out = MockKafka::start(&[("out", OUT_PARTITIONS as u32)]).unwrap();
    let spec = serde_json::json!({
        "name": "transactional-sink",
        "parallelism": 2,
        "sources": [{
            "id": "impressions",
            // About ten seconds of input, so that checkpoints complete while it runs.
            "generator": {"workload": "w1_impressions", "events": EVENTS, "events_per_second": 20000},
            "event_time": {"column": "ts", "max_out_of_orderness_ms": 1000}
        }],
        "sinks": [{
            "id": "out",
            "input": "impressions",
            "kafka": {
                "bootstrap_servers": out.address,
                "topic": "out",
                "key": "request_id",
                "delivery": "exactly_once"
            }
        }],
        "checkpoint": {"interval_ms": 1000}
    });
    let path = cluster.dir.path().join("job.json");
    fs::write(&path, spec.to_string()).unwrap();
    let job = cluster.submit(&path);
    // Killed once the last completed checkpoint holds write-ahead segments (checkpoints a
    // second apart, so the next one rarely completes between the look and the kill).
    let all = cluster.addresses();
    let before = cluster.wait_for_job(&all, &job, Duration::from_secs(120), |s| {
        first_line(s).contains("Running")
            && vertex_records_in(s, "impressions") > EVENTS / 10
            && last_state_bytes(s) > 0
    });
    cluster.kill_task_manager(1);

    // The last completed checkpoint's segments are in checkpoint storage, under the sink
    // subtasks that had records in flight (tansu may serve one source subtask first).
    let last = last_checkpoint(&before);
    let segments: Vec<String> = files_below(&cluster.dir.path().join("checkpoints"))
        .iter()
        .map(|f| f.display().to_string())
        .filter(|f| f.contains("kafka-wal-c"))
        .collect();
    assert!(
        segments
            .iter()
            .any(|f| f.contains("/out-") && f.contains(&format!("-a0/chk-{last}/kafka-wal-c{last}"))),
        "checkpoint {last} holds the write-ahead log of its transactions: {segments:?}\n{before}"
    );

    let s = cluster.wait_for_job(&all, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert!(!first_line(&s).contains("attempt 0"), "the job was restarted:\n{s}");
    let logs: String = (0..2)
        .map(|i| fs::read_to_string(cluster.dir.path().join(format!("taskmanager-{i}.log"))).unwrap_or_default())
        .collect();
    let replayed: u64 = without_colours(&logs)
        .lines()
        .filter(|l| l.contains("wrote again a transaction"))
        .filter_map(|l| {
            l.split("records=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        replayed > 0,
        "the restored attempt wrote the restored checkpoint's transactions again (the mock shows no commit marker)\n{}",
        cluster.all_logs()
    );

    let mut seen = BTreeSet::new();
    let mut written = 0u64;
    for p in 0..OUT_PARTITIONS {
        for payload in out.read_partition("out", p).unwrap() {
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            seen.insert(v["request_id"].as_u64().unwrap());
            written += 1;
        }
    }
    let expected: BTreeSet<u64> = (0..EVENTS).map(w1::request_id).collect();
    assert_eq!(
        seen.len(),
        expected.len(),
        "every input record reached the output ({written} written)\n{s}"
    );
    assert_eq!(seen, expected);
    println!(
        "transactional sink with a task manager killed: {EVENTS} records in, {written} written to the mock (which keeps aborted records), {replayed} written again from the write-ahead log"
    );
}
