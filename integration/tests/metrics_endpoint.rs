//! `/metrics` on a running cluster (3 coordinators, 2 task managers, a real broker): a
//! Kafka job with watermark alignment (one partition runs ahead), malformed and late
//! records, a lookup against a Redis that is down, an hour-partitioned Parquet sink that
//! commits partitions, a keyed window (checkpointed state), and a second, generated
//! stream feeding one slow subtask (backpressure). Records keep arriving while the test scrapes every process
//! once a second; a third of the way in, the coordinator leader is SIGKILLed (and started
//! again later) so the Raft term and leader change. Each metric of the core set must be seen moving: a
//! counter rising between two scrapes, a gauge taking different values (or, for the
//! paused flag and queue fill, being seen set).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir_integration::cluster::{ClusterSandbox, first_line};
use weir_integration::http_get::{Sample, scrape};
use weir_integration::kafka_broker::{KafkaBroker, produce};

const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const MINUTE: i64 = 60_000;
/// Event time between two records of a partition: an hour is 7,200 records.
const STEP: i64 = 500;
/// Partition 0 runs this far ahead in event time; alignment holds it to `MAX_DRIFT`.
const AHEAD: i64 = 180 * MINUTE;
const MAX_DRIFT: i64 = 120 * MINUTE;
const BACKLOG: i64 = 300_000;
const PER_TICK: i64 = 2_000;

fn record(partition: i32, i: i64) -> Vec<u8> {
    let mut ts = T0 + i * STEP + if partition == 0 { AHEAD } else { 0 };
    if i % 300 == 7 {
        return format!(r#"{{"id":{i},"ts":{ts},"user_id":"#).into_bytes();
    }
    if partition == 1 && i % 500 == 11 {
        // Three hours behind: late once the sink committed that hour.
        ts -= 180 * MINUTE;
    }
    format!(r#"{{"id":{i},"ts":{ts},"user_id":{}}}"#, i % 1000).into_bytes()
}

fn records(from: i64, to: i64) -> Vec<(i32, Vec<u8>)> {
    (from..to)
        .flat_map(|i| [(0, record(0, i)), (1, record(1, i))])
        .collect()
}

fn spec(broker: &str, out: &std::path::Path, dead_redis: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "metered",
        "parallelism": 2,
        "sources": [{
            "id": "events",
            "kafka": {
                "bootstrap_servers": broker,
                "topics": ["events"],
                "start": "earliest",
                "batch_size": 1000,
                "idle_timeout_ms": 3000
            },
            "format": {"type": "json"},
            "schema": [
                {"name": "id", "type": "int64"},
                {"name": "ts", "type": "timestamp_ms"},
                {"name": "user_id", "type": "int64"}
            ],
            "event_time": {
                "column": "ts",
                "max_out_of_orderness_ms": 1000,
                "alignment": {"group": "events", "max_drift_ms": MAX_DRIFT}
            }
        }, {
            // A second stream as fast as the machine goes, into one slow subtask (every
            // lookup fails): its input queue fills and the generator waits on it.
            "id": "bulk",
            "generator": {"workload": "w2_logs", "events": 500_000_000u64},
            "format": {"type": "json"},
            "schema": [
                {"name": "ts", "type": "timestamp_ms"},
                {"name": "level", "type": "string"},
                {"name": "service", "type": "string"},
                {"name": "host", "type": "string"},
                {"name": "user_id", "type": "int64"},
                {"name": "status", "type": "int32"},
                {"name": "latency_ms", "type": "int32"},
                {"name": "path", "type": "string"}
            ],
            "event_time": {"column": "ts", "max_out_of_orderness_ms": 1000}
        }],
        "operators": [{
            "id": "per_user",
            "input": "events",
            "window_aggregate": {
                "key_by": ["user_id"],
                "tumbling_ms": 3_600_000,
                "aggregates": [{"function": "count", "as": "n"}]
            }
        }, {
            "id": "bulk_users",
            "input": "bulk",
            "parallelism": 1,
            "lookup_join": {
                "key": ["user_id"],
                "from": {"redis": {"url": dead_redis, "key_prefix": "user:"}},
                "columns": [{"name": "segment", "type": "int32"}],
                "timeout_ms": 200,
                "on_failure": "null"
            }
        }, {
            "id": "users",
            "input": "events",
            "lookup_join": {
                "key": ["user_id"],
                "from": {"redis": {"url": dead_redis, "key_prefix": "user:"}},
                "columns": [{"name": "segment", "type": "int32"}],
                "timeout_ms": 200,
                "on_failure": "null"
            }
        }],
        "sinks": [
            {"id": "counts", "input": "per_user", "blackhole": {}},
            {"id": "bulk_out", "input": "bulk_users", "blackhole": {}},
            {
            "id": "hourly",
            "input": "users",
            "parallelism": 1,
            "parquet": {
                "path": out,
                "partition": "dt=%Y-%m-%d/hour=%H",
                "commit": {"target_file_bytes": 0}
            }
        }
        ],
        "checkpoint": {"interval_ms": 500}
    })
}

/// The samples of one family in one scrape, summed (`None` when absent).
fn total(scrape: &[Sample], name: &str) -> Option<f64> {
    let values: Vec<f64> = scrape.iter().filter(|s| s.name == name).map(|s| s.value).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Every value a series of one family took, by its labels, over the scrapes.
fn series(scrapes: &[Vec<Sample>], name: &str) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in scrapes {
        for sample in s.iter().filter(|x| x.name == name) {
            out.entry(format!("{:?}", sample.labels))
                .or_default()
                .push(sample.value);
        }
    }
    out
}

/// A counter rose between two consecutive scrapes (summed over its series).
fn rose(scrapes: &[Vec<Sample>], name: &str) -> bool {
    let totals: Vec<f64> = scrapes.iter().filter_map(|s| total(s, name)).collect();
    totals.windows(2).any(|w| w[1] > w[0])
}

/// Some series of a gauge took two different values.
fn changed(scrapes: &[Vec<Sample>], name: &str) -> bool {
    series(scrapes, name)
        .values()
        .any(|v| v.iter().any(|x| (*x - v[0]).abs() > f64::EPSILON))
}

fn seen_above_zero(scrapes: &[Vec<Sample>], name: &str) -> bool {
    series(scrapes, name).values().flatten().any(|v| *v > 0.0)
}

#[test]
fn every_core_metric_moves_while_a_job_runs() {
    let mut cluster = ClusterSandbox::start(3);
    let broker = KafkaBroker::start(&cluster.dir.path().join("kafka")).unwrap();
    broker.create_topic("events", 2).unwrap();
    broker.produce("events", &records(0, BACKLOG)).unwrap();
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, address) = (stop.clone(), broker.address.clone());
        std::thread::spawn(move || {
            let mut next = BACKLOG;
            while !stop.load(Ordering::Relaxed) {
                produce(&address, "events", &records(next, next + PER_TICK)).unwrap();
                next += PER_TICK;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let dead_redis = format!(
        "redis://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let spec_path = cluster.dir.path().join("metered.json");
    let out = cluster.dir.path().join("out");
    std::fs::write(&spec_path, spec(&broker.address, &out, &dead_redis).to_string()).unwrap();
    let all = cluster.addresses();
    let job = cluster.submit(&spec_path);
    cluster.wait_for_job(&all, &job, Duration::from_secs(60), |s| {
        first_line(s).contains("Running")
    });

    let mut task_managers: Vec<Vec<Sample>> = Vec::new();
    let mut coordinators: Vec<Vec<Sample>> = Vec::new();
    let mut leaders = Vec::new();
    let mut killed = None;
    for round in 0..30 {
        if round == 12 {
            let leader = cluster.leader(&all);
            let i = cluster.index_of(&leader).expect("the leader is a coordinator");
            cluster.kill(i);
            killed = Some(i);
        }
        if round == 20
            && let Some(i) = killed.take()
        {
            cluster.start_coordinator(i);
        }
        let mut tm = Vec::new();
        for address in &cluster.task_manager_metrics {
            tm.extend(scrape(address).unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs())));
        }
        task_managers.push(tm);
        // Every coordinator that answers (the one just killed may still be starting).
        let mut coordinator = Vec::new();
        for c in &cluster.coordinators {
            if let Ok(s) = scrape(&c.http_address) {
                if let Some(l) = s.iter().find(|x| x.name == "weir_raft_is_leader" && x.value == 1.0) {
                    leaders.push(l.labels["coordinator"].clone());
                }
                coordinator.extend(s.into_iter().filter(|x| x.name != "weir_raft_is_leader"));
            }
        }
        coordinators.push(coordinator);
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    let status = cluster.job_status(&all, &job);
    let cancel = cluster.cli(&["cancel", &job], &all);
    assert!(cancel.status.success(), "{}", String::from_utf8_lossy(&cancel.stderr));

    type Check = fn(&[Vec<Sample>], &str) -> bool;
    let task_manager_checks: [(Check, &[&str]); 3] = [
        (
            rose,
            &[
                "weir_records_in_total",
                "weir_records_out_total",
                "weir_bytes_in_total",
                "weir_bytes_out_total",
                "weir_errors_total",
                "weir_dead_letters_total",
                "weir_late_records_total",
                "weir_processing_seconds_total",
                "weir_backpressured_seconds_total",
                "process_cpu_seconds_total",
            ],
        ),
        (
            changed,
            &[
                "weir_watermark_milliseconds",
                "weir_watermark_lag_seconds",
                "weir_source_partition_lag_records",
                "weir_source_partition_watermark_milliseconds",
                "weir_checkpoint_acknowledged_id",
                "weir_sink_open_parts",
                "process_resident_memory_bytes",
            ],
        ),
        (
            seen_above_zero,
            &[
                "weir_source_partition_paused",
                "weir_input_queue_fill_ratio",
                "weir_checkpoint_alignment_seconds",
            ],
        ),
    ];
    let coordinator_checks: [(Check, &[&str]); 3] = [
        (
            rose,
            &[
                "weir_checkpoints_completed_total",
                "weir_sink_committed_partitions_total",
                "weir_sink_committed_rows_total",
            ],
        ),
        (
            changed,
            &[
                "weir_checkpoint_last_id",
                "weir_checkpoint_last_duration_seconds",
                "weir_checkpoint_last_completed_timestamp_seconds",
                "weir_sink_commit_watermark_milliseconds",
                "weir_raft_commit_index",
                "weir_raft_last_log_index",
                "weir_raft_term",
                "weir_raft_leader",
            ],
        ),
        (
            seen_above_zero,
            &["weir_checkpoint_last_size_bytes", "weir_task_managers_alive"],
        ),
    ];
    let missing: Vec<&str> = task_manager_checks
        .iter()
        .map(|check| (check, &task_managers))
        .chain(coordinator_checks.iter().map(|check| (check, &coordinators)))
        .flat_map(|((moved, names), scrapes)| names.iter().filter(|n| !moved(scrapes, n)).copied())
        .collect();
    leaders.dedup();
    let last_tm = task_managers.last().unwrap();
    assert!(
        missing.is_empty(),
        "not seen moving: {missing:?}\n{status}\nlast task manager scrape: {:#?}\nlast coordinator scrape: {:#?}\n{}",
        last_tm
            .iter()
            .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
            .collect::<Vec<_>>(),
        coordinators
            .last()
            .unwrap()
            .iter()
            .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
            .collect::<Vec<_>>(),
        cluster.all_logs()
    );
    assert!(leaders.len() >= 2, "the leadership moved: {leaders:?}");
}
