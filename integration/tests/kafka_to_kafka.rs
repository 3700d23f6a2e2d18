//! Kafka → Kafka on a cluster (3 coordinators, 2 task managers) against a real broker
//! (tansu): the idempotent sink routes each record to the topic its region names
//! (`'clicks-' || region`), keyed by id; rows whose region makes no valid topic go to the
//! dead-letter output. A clean run writes every record exactly once (retries never
//! duplicate); a run whose task manager is SIGKILLed loses nothing, and the duplicates it
//! writes (replay after the crash) are counted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

use weir_integration::cluster::{ClusterSandbox, first_line, vertex_figure};
use weir_integration::kafka_broker::KafkaBroker;

const PARTITIONS: i32 = 4;
const REGIONS: [&str; 3] = ["eu", "us", "apac"];
const OUT_PARTITIONS: i32 = 2;
/// One record in this many has a region that is no topic name.
const INVALID_EVERY: i64 = 1009;

/// The input: ids `first..first + per_partition * PARTITIONS`; returns the ids by the topic
/// they must reach, and how many must be dead-lettered.
fn produce_input(
    broker: &KafkaBroker,
    topic: &str,
    first: i64,
    per_partition: i64,
) -> (BTreeMap<String, BTreeSet<i64>>, u64) {
    let mut records = Vec::new();
    let mut expected: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut invalid = 0;
    for p in 0..PARTITIONS {
        for i in 0..per_partition {
            let id = first + p as i64 * per_partition + i;
            let region = if id % INVALID_EVERY == 0 {
                invalid += 1;
                "no where"
            } else {
                expected
                    .entry(format!("clicks-{}", REGIONS[id as usize % 3]))
                    .or_default()
                    .insert(id);
                REGIONS[id as usize % 3]
            };
            let ts = 1_704_067_200_000 + i * 10;
            records.push((
                p,
                format!(r#"{{"id":{id},"ts":{ts},"region":"{region}"}}"#).into_bytes(),
            ));
        }
    }
    broker.produce(topic, &records).unwrap();
    (expected, invalid)
}

fn spec(broker: &KafkaBroker, name: &str, input: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "parallelism": 2,
        "sources": [{
            "id": "clicks",
            "kafka": {
                "bootstrap_servers": broker.address,
                "topics": [input],
                "start": "earliest",
                "bounded": true,
                "batch_size": 256
            },
            "format": {"type": "json"},
            "schema": [
                {"name": "id", "type": "int64"},
                {"name": "ts", "type": "timestamp_ms"},
                {"name": "region", "type": "string"}
            ],
            "event_time": {"column": "ts", "max_out_of_orderness_ms": 1000}
        }],
        "sinks": [{
            "id": "routed",
            "input": "clicks",
            "kafka": {
                "bootstrap_servers": broker.address,
                "topic_expr": "'clicks-' || region",
                "key": "id",
                "properties": {"linger.ms": "5"}
            }
        }],
        "checkpoint": {"interval_ms": 200}
    })
}

/// Per output topic and partition, the ids read in order (with repeats), checking that
/// each record went to the topic of its region.
fn read_output(broker: &KafkaBroker) -> BTreeMap<(String, i32), Vec<i64>> {
    let mut out = BTreeMap::new();
    for region in REGIONS {
        let topic = format!("clicks-{region}");
        for p in 0..OUT_PARTITIONS {
            let mut ids = Vec::new();
            for payload in broker.read_partition(&topic, p).unwrap() {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                assert_eq!(v["region"], region, "routed by region: {v}");
                ids.push(v["id"].as_i64().unwrap());
            }
            out.insert((topic.clone(), p), ids);
        }
    }
    out
}

/// The distinct ids per output topic.
fn by_topic(out: &BTreeMap<(String, i32), Vec<i64>>, keep: impl Fn(i64) -> bool) -> BTreeMap<String, BTreeSet<i64>> {
    let mut topics: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for ((topic, _), ids) in out {
        topics
            .entry(topic.clone())
            .or_default()
            .extend(ids.iter().copied().filter(|id| keep(*id)));
    }
    topics
}

#[test]
fn kafka_to_kafka_loses_nothing_and_duplicates_only_after_a_crash() {
    let mut cluster = ClusterSandbox::start(3);
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));
    let broker = KafkaBroker::start(&cluster.dir.path().join("broker")).unwrap();
    for region in REGIONS {
        broker
            .create_topic(&format!("clicks-{region}"), OUT_PARTITIONS as u32)
            .unwrap();
    }
    let all = cluster.addresses();
    let submit = |name: &str, input: &str| {
        let path = cluster.dir.path().join(format!("{name}.json"));
        fs::write(&path, spec(&broker, name, input).to_string()).unwrap();
        let run = cluster.cli(&["submit", path.to_str().unwrap()], &all);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        String::from_utf8_lossy(&run.stdout).trim().to_string()
    };

    // A clean run: every record once, invalid ones dead-lettered.
    broker.create_topic("clean-in", PARTITIONS as u32).unwrap();
    let (clean, invalid) = produce_input(&broker, "clean-in", 0, 10_000);
    let job = submit("kafka-to-kafka-clean", "clean-in");
    let s = cluster.wait_for_job(&all, &job, Duration::from_secs(120), |s| {
        first_line(s).contains("Finished")
    });
    assert_eq!(vertex_figure(&s, "routed", "dead letters") as u64, invalid, "{s}");
    let out = read_output(&broker);
    let written: usize = out.values().map(Vec::len).sum();
    assert_eq!(
        by_topic(&out, |_| true),
        clean,
        "every record in the topic of its region, nothing else"
    );
    assert_eq!(
        written,
        clean.values().map(BTreeSet::len).sum::<usize>(),
        "no record written twice without a crash"
    );

    // A task manager is killed mid-run, once a checkpoint triggered after a tenth of the
    // input was read has completed: the restarted attempt replays from there.
    broker.create_topic("crash-in", PARTITIONS as u32).unwrap();
    let per_partition = 200_000;
    let (crash, _) = produce_input(&broker, "crash-in", 1_000_000, per_partition);
    let total = (per_partition * PARTITIONS as i64) as u64;
    let job = submit("kafka-to-kafka-crash", "crash-in");
    cluster.kill_after_checkpoint_past(&job, "clicks", total / 10, 1);
    let s = cluster.wait_for_job(&all, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert!(!first_line(&s).contains("attempt 0"), "the job was restarted:\n{s}");
    let out = read_output(&broker);
    assert_eq!(
        by_topic(&out, |id| id >= 1_000_000),
        crash,
        "every record of the crashed run in the topic of its region, nothing else"
    );
    let crashed_written = out.values().map(Vec::len).sum::<usize>() - written;
    let duplicates = crashed_written - crash.values().map(BTreeSet::len).sum::<usize>();
    println!(
        "kafka → kafka with a task manager killed: {total} records in, {crashed_written} written, {duplicates} duplicates from the replay"
    );
    // A replay repeats, per input partition and output partition (each is in order; an
    // output partition's acknowledgements ran ahead of another's when the process died),
    // one run of records from the restored position to where the failed attempt had got;
    // a retry would repeat single records. A restart from the beginning would repeat every
    // partition from offset 0; a partition can legitimately restart at 0 when the broker
    // had served it nothing before the restored checkpoint (tansu fills a fetch with one
    // partition before the next). The restored checkpoint was triggered after a tenth of
    // the input was read, so its positions add up to more than that; an input partition
    // with no repeat was either read to its end before it or its later output was never
    // acknowledged, so it counts at most its whole length.
    let mut replay_start: BTreeMap<i64, i64> = BTreeMap::new();
    for ((topic, p), ids) in &out {
        let mut once = BTreeMap::<i64, BTreeSet<i64>>::new();
        let mut repeated = BTreeMap::<i64, BTreeSet<i64>>::new();
        for n in ids.iter().filter(|id| **id >= 1_000_000).map(|id| id - 1_000_000) {
            let (input, offset) = (n / per_partition, n % per_partition);
            if !once.entry(input).or_default().insert(offset) {
                repeated.entry(input).or_default().insert(offset);
            }
        }
        for (input, offsets) in &repeated {
            let (first, last) = (*offsets.first().unwrap(), *offsets.last().unwrap());
            let within: Vec<i64> = once[input].range(first..=last).copied().collect();
            assert_eq!(
                within.len(),
                offsets.len(),
                "{topic}/{p} from input partition {input}: the repeated offsets {first}..={last} are one run"
            );
            let start = replay_start.entry(*input).or_insert(first);
            *start = (*start).min(first);
        }
    }
    assert!(
        duplicates > 0,
        "the killed attempt had written records past the restored checkpoint"
    );
    assert!(
        replay_start.values().any(|start| *start > 0),
        "the restart resumed from the checkpoint, not from the beginning: replays start at {replay_start:?}"
    );
    let unrepeated = PARTITIONS as i64 - replay_start.len() as i64;
    assert!(
        (replay_start.values().sum::<i64>() + unrepeated * per_partition) as u64 > total / 10,
        "the restored positions hold more than a tenth of the input: replays start at {replay_start:?}"
    );
}
