//! Malformed job specs are refused before anything runs, with exit code 2 and a message
//! that names the path of the bad field.

use std::process::Command;

use weir_integration::binary;

const SOURCE: &str = r#"{"id": "logs", "generator": {"workload": "w2_logs", "events": 100},
  "format": {"type": "json"},
  "schema": [{"name": "ts", "type": "timestamp_ms"}, {"name": "level", "type": "string"}],
  "event_time": {"column": "ts"}}"#;

fn spec(operators: &str) -> String {
    format!(
        r#"{{"name": "bad", "sources": [{SOURCE}], "operators": [{operators}],
            "sinks": [{{"id": "out", "input": "last", "blackhole": {{}}}}]}}"#
    )
}

/// Runs `coordinator <cmd> <spec file> <extra>` and returns (exit code, stderr).
fn coordinator(cmd: &str, text: &str, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.json");
    std::fs::write(&path, text).unwrap();
    let mut c = Command::new(binary("coordinator"));
    c.arg(cmd).arg(&path).args(extra);
    if cmd == "local" {
        c.args(["--progress-ms", "0", "--work-dir"]).arg(dir.path());
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(text: &str, expect: &[&str]) {
    for cmd in ["validate", "local"] {
        let (code, stderr) = coordinator(cmd, text, &[]);
        assert_eq!(code, 2, "{cmd}: expected exit 2, stderr:\n{stderr}");
        for e in expect {
            assert!(stderr.contains(e), "{cmd}: expected {e:?} in:\n{stderr}");
        }
    }
}

#[test]
fn unknown_operator_kind() {
    assert_refused(
        &spec(r#"{"id": "last", "input": "logs", "flatmap": "x"}"#),
        &["operators[0].flatmap", "unknown field `flatmap`"],
    );
}

#[test]
fn unknown_column() {
    assert_refused(
        &spec(r#"{"id": "last", "input": "logs", "filter": "levle = 'ERROR'"}"#),
        &["operators[0].filter: unknown column 'levle'"],
    );
}

#[test]
fn type_mismatch_in_an_expression() {
    assert_refused(
        &spec(r#"{"id": "last", "input": "logs", "filter": "level"}"#),
        &["operators[0].filter: must be a boolean predicate"],
    );
    assert_refused(
        &spec(r#"{"id": "last", "input": "logs", "project": ["ts", {"name": "x", "expr": "level - ts"}]}"#),
        &["operators[0].project[1]"],
    );
}

#[test]
fn cycle_in_the_dag() {
    assert_refused(
        &spec(r#"{"id": "a", "input": "last", "filter": "true"}, {"id": "last", "input": "a", "filter": "true"}"#),
        &["cycle: "],
    );
}

#[test]
fn missing_source() {
    let text = r#"{"name": "bad", "sources": [], "sinks": [{"id": "out", "input": "logs", "blackhole": {}}]}"#;
    assert_refused(
        text,
        &[
            "sources: a job needs at least one source",
            "sinks[0].input: unknown input 'logs'",
        ],
    );
}

#[test]
fn bad_override_and_bad_values() {
    let ok = spec(r#"{"id": "last", "input": "logs", "filter": "level <> 'DEBUG'"}"#);
    let (code, stderr) = coordinator("local", &ok, &["--set", "sources.0.generator.events=7"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("sources[0].generator.events: must be a positive even number"),
        "{stderr}"
    );
    let (code, stderr) = coordinator("local", &ok, &["--set", "parallelism=\"two\""]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("parallelism: invalid type"), "{stderr}");
}

#[test]
fn a_valid_spec_is_accepted() {
    let ok = spec(r#"{"id": "last", "input": "logs", "filter": "level <> 'DEBUG'"}"#);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.json");
    std::fs::write(&path, ok).unwrap();
    let out = Command::new(binary("coordinator"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("logs (source) -> last (filter) -> out (sink)"), "{plan}");
}

#[test]
fn kafka_source_fields() {
    let text = r#"{"name": "bad", "sources": [{"id": "logs",
        "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topics": ["a", "a", ""],
                  "start": "timestamp", "idle_timeout_ms": 0,
                  "properties": {"enable.auto.commit": "true"}},
        "format": {"type": "json"},
        "schema": [{"name": "ts", "type": "timestamp_ms"}],
        "event_time": {"column": "ts"}}],
      "sinks": [{"id": "out", "input": "logs", "blackhole": {}}]}"#;
    assert_refused(
        text,
        &[
            "sources[0].kafka.topics[1]",
            "sources[0].kafka.topics[2]",
            "sources[0].kafka.start_timestamp_ms: required with start: timestamp",
            "sources[0].kafka.idle_timeout_ms",
            "sources[0].kafka.properties.enable.auto.commit",
        ],
    );
}

#[test]
fn alignment_and_partition_commit_fields() {
    let text = r#"{"name": "bad", "sources": [{"id": "gen",
        "file": {"path": "/tmp/in.jsonl"}, "format": {"type": "json"},
        "schema": [{"name": "ts", "type": "timestamp_ms"}],
        "event_time": {"column": "ts", "alignment": {"group": " ", "max_drift_ms": 0}}}],
      "sinks": [{"id": "out", "input": "gen", "parquet": {"path": "/tmp/x",
        "commit": {"target_file_bytes": 1000, "idle_timeout_ms": 0,
                   "notice": {"bootstrap_servers": "", "topic": ""}}}}]}"#;
    assert_refused(
        text,
        &[
            "sources[0].event_time.alignment: only Kafka and generator sources can be aligned",
            "sources[0].event_time.alignment.group",
            "sources[0].event_time.alignment.max_drift_ms",
            "sinks[0].parquet.commit: needs checkpoints",
            "sinks[0].parquet.commit.target_file_bytes",
            "sinks[0].parquet.commit.idle_timeout_ms",
            "sinks[0].parquet.commit.notice.bootstrap_servers",
            "sinks[0].parquet.commit.notice.topic",
        ],
    );
}

#[test]
fn kafka_sink_fields() {
    let sink = |kafka: &str, checkpoint: &str| {
        format!(
            r#"{{"name": "bad", "sources": [{SOURCE}], {checkpoint}
                "sinks": [{{"id": "out", "input": "logs", "kafka": {kafka}}}]}}"#
        )
    };
    assert_refused(
        &sink(
            r#"{"bootstrap_servers": "", "topic_expr": "length(level)", "key": "user",
                "transactional_id_prefix": "p", "properties": {"enable.idempotence": "false"}}"#,
            "",
        ),
        &[
            "sinks[0].kafka.bootstrap_servers",
            "sinks[0].kafka.topic_expr: yields Int32, not a string",
            "sinks[0].kafka.key: unknown column 'user'",
            "sinks[0].kafka.properties.enable.idempotence: is set by Weir",
            "sinks[0].kafka.transactional_id_prefix: only applies with delivery: exactly_once",
        ],
    );
    assert_refused(
        &sink(
            r#"{"bootstrap_servers": "b:9092", "topic": "a b", "delivery": "exactly_once"}"#,
            "",
        ),
        &[
            "sinks[0].kafka.topic: \"a b\" is not a valid topic name",
            "sinks[0].kafka.delivery: exactly_once needs checkpoints",
        ],
    );
    assert_refused(
        &sink(
            r#"{"bootstrap_servers": "b:9092", "topic": "t", "topic_expr": "level"}"#,
            "",
        ),
        &["sinks[0].kafka: needs exactly one of: topic, topic_expr"],
    );
    assert_refused(
        &sink(
            r#"{"bootstrap_servers": "b:9092", "topic": "t", "delivery": "exactly_once",
                "transaction_timeout_ms": 60000}"#,
            r#""checkpoint": {"interval_ms": 10000, "timeout_ms": 60000},"#,
        ),
        &[
            "sinks[0].kafka.transaction_timeout_ms: 60000 ms would let the broker abort a transaction before its checkpoint completes",
        ],
    );
}

#[test]
fn protobuf_format_fields() {
    let text = r#"{"name": "bad", "sources": [
        {"id": "k", "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topics": ["a"]},
         "format": {"type": "protobuf", "descriptor_set": "/nonexistent/click.desc", "message": "x.Click"},
         "schema": [{"name": "ts", "type": "timestamp_ms"}], "event_time": {"column": "ts"}},
        {"id": "f", "file": {"path": "/tmp/in.jsonl"},
         "format": {"type": "protobuf", "descriptor_set": "/nonexistent/click.desc", "message": "x.Click"},
         "schema": [{"name": "ts", "type": "timestamp_ms"}], "event_time": {"column": "ts"}}],
      "sinks": [{"id": "out", "input": "k", "kafka": {"bootstrap_servers": "b:9092", "topic": "t",
                  "format": {"type": "protobuf", "descriptor_set": "/nonexistent/o.desc", "message": "x.Out"}}},
                {"id": "out2", "input": "f", "blackhole": {}}]}"#;
    assert_refused(
        text,
        &[
            "sources[0].format.descriptor_set: cannot read descriptor set /nonexistent/click.desc",
            "sources[1].format: protobuf records need a Kafka source",
            "sinks[0].kafka.format.descriptor_set: cannot read descriptor set /nonexistent/o.desc",
        ],
    );
}
