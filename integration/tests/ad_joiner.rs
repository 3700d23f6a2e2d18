//! The ad joiner example (`examples/ad-joiner.json`) end to end through `coordinator
//! local`: W1 impressions and clicks through the window join, users looked up in a real
//! Redis (1M of W1's 10M users loaded, the rest unknown), ads looked up in a Parquet
//! snapshot loaded into a local RocksDB table, training samples as hourly Parquet (and,
//! with a Kafka broker there, on an instance topic too). DuckDB checks the output against
//! the inputs independently.

use weir_integration::ad_joiner_dims::AdJoinerDims;
use weir_integration::kafka_broker::KafkaBroker;
use weir_integration::{python, run_local, workspace_root};
use weir_taskmanager::connectors::generator::datagen::w1;

const IMPRESSIONS: u64 = 300_000;
const USERS: u64 = 1_000_000;

#[test]
fn samples_carry_their_label_user_and_ad() {
    let work = tempfile::tempdir().unwrap();
    let dims = AdJoinerDims::create(work.path(), USERS).unwrap();
    let out = work.path().join("samples");
    let mut overrides = dims.overrides();
    overrides.extend([
        format!("sources.0.generator.events={IMPRESSIONS}"),
        format!("sources.1.generator.events={IMPRESSIONS}"),
        format!("sinks.0.parquet.path={}", out.display()),
    ]);
    let run = run_local(
        &workspace_root().join("examples/ad-joiner.json"),
        &overrides,
        work.path(),
    )
    .unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());

    let clicked = (0..IMPRESSIONS).filter(|g| w1::clicked(*g)).count();
    let known_users = (0..IMPRESSIONS).filter(|g| (w1::user_id(*g) as u64) < USERS).count();
    let checks = python(
        r#"
import duckdb, sys
out, ads = sys.argv[1], sys.argv[2]
s = f"read_parquet('{out}/**/*.parquet')"
print(*duckdb.sql(f"""select count(*), count(distinct request_id), sum(label),
    count(user_country), count(*) filter (where user_id < 1000000),
    count(*) filter (where user_segment between 0 and 15) from {s}""").fetchall()[0])
print(*duckdb.sql(f"""select count(*) from {s} o join read_parquet('{ads}') a using (ad_id)
    where o.advertiser_id = a.advertiser_id and o.ad_category = a.category""").fetchall()[0])
print(*duckdb.sql(f"select user_id, user_segment, user_country from {s} where user_country is not null order by request_id limit 3").fetchall())
"#,
        &[out.to_str().unwrap(), dims.ads.to_str().unwrap()],
    )
    .unwrap();
    let mut lines = checks.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("{IMPRESSIONS} {IMPRESSIONS} {clicked} {known_users} {known_users} {known_users}"),
        "rows, distinct request_ids, labels, rows with a user country, rows whose user is in Redis, rows with a segment"
    );
    assert_eq!(
        lines.next().unwrap(),
        IMPRESSIONS.to_string(),
        "every row's ad columns are the snapshot's"
    );
    // A few rows' user columns against Redis itself.
    let sample = lines.next().unwrap();
    for row in sample.split(") (") {
        let fields: Vec<&str> = row
            .trim_matches(|c| c == '(' || c == ')')
            .split(", ")
            .map(|f| f.trim_matches('\''))
            .collect();
        let stored = dims
            .redis
            .cli(&["HMGET", &format!("user:{}", fields[0]), "segment", "country"])
            .unwrap();
        assert_eq!(
            stored.split_whitespace().collect::<Vec<_>>(),
            vec![fields[1], fields[2]],
            "user {}",
            fields[0]
        );
    }
}

/// With Kafka there, the samples also go to an instance topic (JSON, keyed by
/// request_id): every impression once.
#[test]
fn samples_also_go_to_a_kafka_instance_topic() {
    let work = tempfile::tempdir().unwrap();
    let dims = AdJoinerDims::create(work.path(), 10_000).unwrap();
    let broker = KafkaBroker::start(&work.path().join("kafka")).unwrap();
    broker.create_topic("training-instances", 2).unwrap();
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("examples/ad-joiner.json")).unwrap())
            .unwrap();
    spec["sinks"].as_array_mut().unwrap().push(serde_json::json!({
        "id": "instances",
        "input": "training_rows",
        "kafka": {"bootstrap_servers": broker.address, "topic": "training-instances", "key": "request_id"}
    }));
    let path = work.path().join("ad-joiner-kafka.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let events = 100_000u64;
    let mut overrides = dims.overrides();
    overrides.extend([
        format!("sources.0.generator.events={events}"),
        format!("sources.1.generator.events={events}"),
        format!("sinks.0.parquet.path={}", work.path().join("samples").display()),
    ]);
    let run = run_local(&path, &overrides, work.path()).unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
    let mut ids = std::collections::BTreeSet::new();
    let mut records = 0;
    let mut labels = 0;
    for p in 0..2 {
        for r in broker.read_partition("training-instances", p).unwrap() {
            let row: serde_json::Value = serde_json::from_slice(&r).unwrap();
            ids.insert(row["request_id"].as_u64().unwrap());
            labels += row["label"].as_i64().unwrap();
            records += 1;
        }
    }
    let clicked = (0..events).filter(|g| w1::clicked(*g)).count() as i64;
    assert_eq!((records, ids.len() as u64, labels), (events, events, clicked));
}
