//! The incremental-landing job end to end on a cluster (3 coordinators, 2 task managers)
//! and a real broker (tansu): Kafka → JSON parse → filter → hour-partitioned Parquet with
//! partition commit, on an event-time-skewed 8-partition topic: partitions 0 and 1 run two
//! hours behind the others, partition 7 has ten minutes of event time without records,
//! and some records are malformed.
//!
//! With watermark alignment (and a task manager SIGKILLed mid-run) no row reaches the sink
//! further behind the greatest event time it had seen than `max_drift + out_of_orderness`
//! plus a small slack for rows in flight to the sink; every hour is committed
//! once, in hour order, compacted, with `_SUCCESS` and one notice; every row is in the
//! output once. Without alignment the same workload arrives about two hours out of order,
//! which is what the mechanism prevents. A third run SIGKILLs the coordinator leader (which
//! commits partitions and sends notices) after the first hour was announced: every hour is
//! still committed once, and a notice repeats only identically, with the same id. The last
//! hour is committed by partition recovery (the stream goes idle at the end; it is never
//! bounded).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use weir_integration::cluster::{ClusterSandbox, first_line, vertex_figure};
use weir_integration::int64_values;
use weir_integration::kafka_broker::KafkaBroker;

const PARTITIONS: i32 = 8;
const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;
/// Event time between two records of one partition.
const STEP: i64 = 200;
/// Event time each partition covers.
const SPAN: i64 = 150 * MINUTE;
const MAX_DRIFT: i64 = 30 * MINUTE;
const OUT_OF_ORDERNESS: i64 = MINUTE;
/// What alignment cannot hold back, in event time: sources never emit a row past their
/// allowance (rows read past it wait in the source), so what remains is rows of the
/// slowest partition still in flight to the sink when the allowance they raised lets fast
/// rows through. This workload has only 5 records per partition per second of event time
/// and is read at ~10,000 records per second per partition, so 0.1 s of flight is about
/// 3 minutes of event time. Measured with alignment and a task-manager kill (both attempts):
/// 29 minutes in three runs, i.e. within `MAX_DRIFT + OUT_OF_ORDERNESS`; without alignment
/// 2.5–4.5 hours.
const SLACK: i64 = 5 * MINUTE;

struct Workload {
    records: Vec<(i32, Vec<u8>)>,
    /// Ids of the records the job must land (valid JSON, passing the filter).
    expected: BTreeSet<i64>,
    malformed: u64,
}

fn workload() -> Workload {
    let mut w = Workload {
        records: Vec::new(),
        expected: BTreeSet::new(),
        malformed: 0,
    };
    for p in 0..PARTITIONS {
        let start = if p < 2 { T0 } else { T0 + 2 * HOUR };
        for i in 0..SPAN / STEP {
            let ts = start + i * STEP;
            if p == 7 && (T0 + 3 * HOUR..T0 + 3 * HOUR + 10 * MINUTE).contains(&ts) {
                continue;
            }
            let id = i64::from(p) * 1_000_000 + i;
            if id % 997 == 0 {
                w.records
                    .push((p, format!(r#"{{"id":{id},"ts":{ts},"status":"#).into_bytes()));
                w.malformed += 1;
                continue;
            }
            let status = id % 7;
            if status != 3 {
                w.expected.insert(id);
            }
            w.records.push((
                p,
                format!(
                    r#"{{"id":{id},"ts":{ts},"status":{status},"path":"/a/b/{}"}}"#,
                    id % 100
                )
                .into_bytes(),
            ));
        }
    }
    w
}

fn spec(broker: &str, name: &str, out: &Path, aligned: bool) -> serde_json::Value {
    let mut event_time = serde_json::json!({"column": "ts", "max_out_of_orderness_ms": OUT_OF_ORDERNESS});
    if aligned {
        event_time["alignment"] = serde_json::json!({"group": "logs", "max_drift_ms": MAX_DRIFT});
    }
    serde_json::json!({
        "name": name,
        "parallelism": 2,
        "sources": [{
            "id": "logs",
            "kafka": {
                "bootstrap_servers": broker,
                "topics": ["logs"],
                "group_id": name,
                "start": "earliest",
                "batch_size": 500,
                "idle_timeout_ms": 3000
            },
            "format": {"type": "json"},
            "schema": [
                {"name": "id", "type": "int64"},
                {"name": "ts", "type": "timestamp_ms"},
                {"name": "status", "type": "int64"},
                {"name": "path", "type": "string", "nullable": true}
            ],
            "event_time": event_time
        }],
        "operators": [{"id": "clean", "input": "logs", "filter": "status <> 3"}],
        "sinks": [{
            "id": "hourly",
            "input": "clean",
            "parquet": {
                "path": out,
                "partition": "dt=%Y-%m-%d/hour=%H",
                "commit": {
                    "target_file_bytes": 1_048_576,
                    "idle_timeout_ms": 4000,
                    "notice": {"bootstrap_servers": broker, "topic": format!("{name}-notices"), "table": "logs"}
                }
            }
        }],
        "checkpoint": {"interval_ms": 500}
    })
}

fn notified_commits(status: &str) -> usize {
    status
        .lines()
        .filter(|l| l.trim_start().starts_with("committed ") && l.contains("notice sent"))
        .count()
}

struct Landed {
    status: String,
    disorder_ms: i64,
}

/// What fails during a run.
#[derive(PartialEq, Eq)]
enum Crash {
    None,
    /// A task manager is SIGKILLed after a checkpoint (a replacement starts).
    TaskManager,
    /// The coordinator leader, which commits partitions and sends notices, is SIGKILLed
    /// once the first hour was announced (and started again).
    Leader,
}

/// Runs the job until all five hours are committed and announced, then cancels it.
fn land(cluster: &mut ClusterSandbox, broker: &KafkaBroker, name: &str, aligned: bool, crash: Crash) -> Landed {
    let out = cluster.dir.path().join(name);
    let spec_path = cluster.dir.path().join(format!("{name}.json"));
    broker.create_topic(&format!("{name}-notices"), 1).unwrap();
    fs::write(&spec_path, spec(&broker.address, name, &out, aligned).to_string()).unwrap();
    let all = cluster.addresses();
    let run = cluster.cli(&["submit", spec_path.to_str().unwrap()], &all);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let job = String::from_utf8_lossy(&run.stdout).trim().to_string();
    // The disorder figure is per attempt: the killed attempt's counts too, as far as its
    // last status before the kill saw.
    let mut disorder_before_kill = 0;
    match crash {
        Crash::None => {}
        Crash::TaskManager => {
            let s = cluster.kill_after_checkpoint_past(&job, "logs", 40_000, 1);
            disorder_before_kill = vertex_figure(&s, "hourly", "disorder ms");
            cluster.start_task_manager(2);
        }
        Crash::Leader => {
            let s = cluster.wait_for_job(&all, &job, Duration::from_secs(120), |s| notified_commits(s) >= 1);
            disorder_before_kill = vertex_figure(&s, "hourly", "disorder ms");
            let leader = cluster.leader(&all);
            let i = cluster
                .index_of(&leader)
                .expect("the leader is one of the coordinators");
            cluster.kill(i);
            eprintln!(
                "killed the leader {leader} after {} of 5 hours were announced",
                notified_commits(&s)
            );
            cluster.start_coordinator(i);
        }
    }
    let status = cluster.wait_for_job(&all, &job, Duration::from_secs(300), |s| notified_commits(s) >= 5);
    let cancel = cluster.cli(&["cancel", &job], &all);
    assert!(cancel.status.success(), "{}", String::from_utf8_lossy(&cancel.stderr));
    if crash == Crash::TaskManager {
        assert!(
            !first_line(&status).contains("attempt 0"),
            "the job was restarted:\n{status}"
        );
    }
    Landed {
        disorder_ms: vertex_figure(&status, "hourly", "disorder ms").max(disorder_before_kill),
        status,
    }
}

/// Every hour is committed once, compacted, with `_SUCCESS` and one notice, in order,
/// and the rows are exactly the expected ones. After a leader crash a notice may repeat,
/// identical and with the same id.
fn check_output(broker: &KafkaBroker, root: &Path, name: &str, w: &Workload, status: &str, repeats_allowed: bool) {
    let hours: Vec<String> = (0..5).map(|h| format!("dt=2024-01-01/hour={h:02}")).collect();
    let mut dirs: Vec<String> = fs::read_dir(root.join("dt=2024-01-01"))
        .unwrap()
        .flatten()
        .map(|e| format!("dt=2024-01-01/{}", e.file_name().to_string_lossy()))
        .collect();
    dirs.sort();
    assert_eq!(dirs, hours, "{status}");
    for h in &hours {
        let names: Vec<String> = fs::read_dir(root.join(h))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"_SUCCESS".to_string()), "{h}: {names:?}");
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "{h} holds hidden files after its commit: {names:?}"
        );
        let parquet = names.iter().filter(|n| n.ends_with(".parquet")).count();
        assert!(
            (1..=2).contains(&parquet),
            "{h}: compaction leaves one or two files, not {names:?}"
        );
    }
    let ids = int64_values(root, "id").unwrap();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "no row landed twice");
    let missing: Vec<&i64> = w.expected.difference(&unique).take(10).collect();
    let extra: Vec<&i64> = unique.difference(&w.expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} rows landed, {} expected; missing {missing:?}…, unexpected {extra:?}…\n{status}",
        unique.len(),
        w.expected.len()
    );

    let notices: Vec<serde_json::Value> = broker
        .read_partition(&format!("{name}-notices"), 0)
        .unwrap()
        .iter()
        .map(|n| serde_json::from_slice(n).unwrap())
        .collect();
    let mut first_by_id: Vec<&serde_json::Value> = Vec::new();
    for n in &notices {
        match first_by_id.iter().find(|f| f["notice_id"] == n["notice_id"]) {
            Some(first) => {
                assert!(repeats_allowed, "a notice repeated without a crash: {n}");
                assert_eq!(*first, n, "a repeated notice is the same notice");
            }
            None => first_by_id.push(n),
        }
    }
    eprintln!("{name}: {} notices, {} distinct", notices.len(), first_by_id.len());
    let notices = first_by_id;
    let partitions: Vec<&str> = notices.iter().map(|n| n["partition"].as_str().unwrap()).collect();
    assert_eq!(partitions, hours, "one notice per hour, in hour order");
    let rows: u64 = notices.iter().map(|n| n["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows, w.expected.len() as u64, "the notices count every row");
    assert!(notices.iter().all(|n| n["table"] == "logs"));
}

#[test]
fn skewed_partitions_land_hour_by_hour_with_alignment_and_out_of_order_without() {
    let mut cluster = ClusterSandbox::start(3);
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));
    let broker = KafkaBroker::start(&cluster.dir.path().join("broker")).unwrap();
    broker.create_topic("logs", PARTITIONS as u32).unwrap();
    let w = workload();
    broker.produce("logs", &w.records).unwrap();

    let unaligned = land(&mut cluster, &broker, "unaligned", false, Crash::None);
    check_output(
        &broker,
        &cluster.dir.path().join("unaligned"),
        "unaligned",
        &w,
        &unaligned.status,
        false,
    );
    assert_eq!(
        vertex_figure(&unaligned.status, "logs", "dead letters") as u64,
        w.malformed,
        "{}",
        unaligned.status
    );
    assert_eq!(
        vertex_figure(&unaligned.status, "hourly", "late"),
        0,
        "{}",
        unaligned.status
    );
    // Completed checkpoints committed their offsets to the job's group (for lag monitors):
    // every partition was read to its end.
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|p| w.records.iter().filter(|(q, _)| *q == p).count() as i64)
        .collect();
    assert_eq!(broker.committed_offsets("unaligned", "logs", PARTITIONS).unwrap(), ends);

    let aligned = land(&mut cluster, &broker, "aligned", true, Crash::TaskManager);
    check_output(
        &broker,
        &cluster.dir.path().join("aligned"),
        "aligned",
        &w,
        &aligned.status,
        false,
    );
    assert!(aligned.status.contains("alignment group logs:"), "{}", aligned.status);

    eprintln!(
        "event-time disorder at the sink: {} min without alignment, {} min with (bound {} min)",
        unaligned.disorder_ms / MINUTE,
        aligned.disorder_ms / MINUTE,
        (MAX_DRIFT + OUT_OF_ORDERNESS + SLACK) / MINUTE
    );
    assert!(
        aligned.disorder_ms <= MAX_DRIFT + OUT_OF_ORDERNESS + SLACK,
        "aligned disorder {} ms:\n{}",
        aligned.disorder_ms,
        aligned.status
    );
    assert!(
        unaligned.disorder_ms > 90 * MINUTE,
        "without alignment the two-hour skew shows: {} ms",
        unaligned.disorder_ms
    );

    // The leader commits partitions and sends the notices: killed mid-way, the next leader
    // carries on from the Raft ledger; an hour is still committed once, and a notice whose
    // sending was not recorded before the crash goes out again with the same id.
    let leader_crash = land(&mut cluster, &broker, "leader-crash", true, Crash::Leader);
    check_output(
        &broker,
        &cluster.dir.path().join("leader-crash"),
        "leader-crash",
        &w,
        &leader_crash.status,
        true,
    );
    assert!(
        leader_crash.disorder_ms <= MAX_DRIFT + OUT_OF_ORDERNESS + SLACK,
        "aligned disorder after a leader crash {} ms:\n{}",
        leader_crash.disorder_ms,
        leader_crash.status
    );
}
