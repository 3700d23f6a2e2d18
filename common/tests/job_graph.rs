//! How specs become graphs: chaining, edge partitioning, propagated schemas.

use weir_common::graph::{EdgePartitioning, VertexKind};
use weir_common::spec_loader::parse_spec;
use weir_common::validation::validate;

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn w2_chains_into_one_task() {
    let g = validate(&parse_spec(&example("w2-hourly-etl.json"), &[]).unwrap()).unwrap();
    assert_eq!(g.tasks.len(), 1);
    assert_eq!(g.tasks[0].vertices.len(), 3);
    assert_eq!(g.tasks[0].parallelism, 2);
    assert_eq!(g.task_edges().count(), 0);
}

#[test]
fn w3_shuffles_by_key_into_the_window_and_chains_the_sink() {
    let g = validate(&parse_spec(&example("w3-window-count.json"), &[]).unwrap()).unwrap();
    assert_eq!(g.tasks.len(), 2);
    let edges: Vec<_> = g.task_edges().collect();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].partitioning, EdgePartitioning::Hash { key_columns: vec![0] });
    let window = g
        .vertices
        .iter()
        .find(|v| matches!(v.kind, VertexKind::WindowAggregate(_)))
        .unwrap();
    let names: Vec<&str> = window.schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["key", "window_start", "window_end", "window_time", "count"]);
    assert_eq!(window.event_time_column, "window_time");
}

#[test]
fn key_by_then_window_on_the_same_keys_shuffles_once() {
    let text = example("w3-window-count.json").replace(
        r#""operators": ["#,
        r#""operators": [{"id": "keyed", "input": "events", "key_by": ["key"]},"#,
    );
    let text = text.replace(
        r#""input": "events",
      "window_aggregate""#,
        r#""input": "keyed",
      "window_aggregate""#,
    );
    let g = validate(&parse_spec(&text, &[]).unwrap()).unwrap();
    let hashes = g
        .edges
        .iter()
        .filter(|e| matches!(e.partitioning, EdgePartitioning::Hash { .. }))
        .count();
    assert_eq!(hashes, 1, "{:?}", g.edges);
}

#[test]
fn overrides_change_parallelism_and_rebalance_when_it_differs() {
    let spec = parse_spec(&example("w2-hourly-etl.json"), &["sinks.0.parallelism=1".into()]).unwrap();
    let g = validate(&spec).unwrap();
    assert_eq!(g.tasks.len(), 2);
    assert_eq!(g.task_edges().next().unwrap().partitioning, EdgePartitioning::Rebalance);
}

#[test]
fn a_window_join_heads_its_task_and_both_inputs_are_hashed_by_their_keys() {
    let g = validate(&parse_spec(&example("w1-window-join.json"), &[]).unwrap()).unwrap();
    let join = g
        .vertices
        .iter()
        .find(|v| matches!(v.kind, VertexKind::WindowJoin(_)))
        .unwrap();
    let inputs: Vec<&str> = join.inputs.iter().map(|i| g.vertex(*i).name.as_str()).collect();
    assert_eq!(inputs, ["impressions", "clicks"]);
    let task = g.task_of(join.id);
    assert_eq!(task.head(), join.id);
    let chained: Vec<&str> = task.vertices.iter().map(|v| g.vertex(*v).name.as_str()).collect();
    assert_eq!(chained, ["samples", "counted", "discard"]);
    let into_join: Vec<_> = g.task_edges().filter(|e| e.to == join.id).collect();
    assert_eq!(into_join.len(), 2);
    for e in into_join {
        assert_eq!(e.partitioning, EdgePartitioning::Hash { key_columns: vec![0] });
    }
    let names: Vec<&str> = join.schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "request_id",
            "ts",
            "user_id",
            "ad_id",
            "campaign_id",
            "click_ts",
            "label"
        ]
    );
    assert!(join.schema.field(5).is_nullable(), "no click: null");
    assert_eq!(join.event_time_column, "ts");
}

/// The W1 example with its join's fields changed; returns the refusal's text.
fn refused_join(change: impl Fn(&mut serde_json::Value)) -> String {
    refused("w1-window-join.json", |spec| change(&mut spec["operators"][0]))
}

/// Example `name` changed by `change`; returns the refusal's text.
fn refused(name: &str, change: impl Fn(&mut serde_json::Value)) -> String {
    let mut spec: serde_json::Value = serde_json::from_str(&example(name)).unwrap();
    change(&mut spec);
    let text = serde_json::to_string(&spec).unwrap();
    match parse_spec(&text, &[])
        .map_err(|e| e.to_string())
        .and_then(|s| validate(&s).map_err(|e| e.to_string()))
    {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

#[test]
fn bad_window_join_fields_are_refused_by_name() {
    use serde_json::json;
    let cases: Vec<(&[&str], serde_json::Value, &str)> = vec![
        (
            &["window_join", "right"],
            json!("click"),
            "operators[0].window_join.right: unknown input 'click'",
        ),
        (
            &["window_join", "right"],
            json!("impressions"),
            "operators[0].window_join.right: 'impressions' is already the input",
        ),
        (&["window_join", "right"], json!("counted"), "cycle: "),
        (
            &["window_join", "right_key"],
            json!(["ts"]),
            "operators[0].window_join.right_key[0]: 'ts' is Timestamp(ms, \"UTC\") but left_key[0] 'request_id' is UInt64",
        ),
        (
            &["window_join", "right_key"],
            json!(["request_id", "ts"]),
            "operators[0].window_join.right_key: has 2 columns but left_key has 1",
        ),
        (
            &["window_join", "left_key"],
            json!(["nope"]),
            "operators[0].window_join.left_key[0]: unknown column 'nope'",
        ),
        (
            &["window_join", "window_ms"],
            json!(0),
            "operators[0].window_join.window_ms: must be positive",
        ),
        (
            &["window_join", "right_columns"],
            json!(["ts"]),
            "operators[0].window_join.right_columns[0]: output column 'ts' already exists",
        ),
        (
            &["window_join", "right_columns"],
            json!(["tss"]),
            "operators[0].window_join.right_columns[0]: unknown column 'tss' of 'clicks'",
        ),
        (
            &["window_join", "label_column"],
            json!("user_id"),
            "operators[0].window_join.label_column: output column 'user_id' already exists",
        ),
        (&["window_join", "matches"], json!("last"), "unknown variant `last`"),
        (
            &["window_aggregate"],
            json!({"key_by": ["ts"], "tumbling_ms": 1, "aggregates": []}),
            "operators[0]: needs exactly one of: filter, project, key_by, window_aggregate, window_join, lookup_join",
        ),
        (
            &["window_join", "state"],
            json!({"redis": {"url": "http://localhost:6379"}}),
            "operators[0].window_join.state.redis.url: 'http://localhost:6379': the scheme must be redis:// (not http://)",
        ),
        (
            &["window_join", "state"],
            json!({"redis": {"url": "redis://localhost", "ttl_ms": 60000}}),
            "operators[0].window_join.state.redis.ttl_ms: 60000 ms would expire rows before the join is done with them",
        ),
        (
            &["window_join", "state"],
            json!({"redis": {"host": "localhost"}}),
            "unknown field `host`",
        ),
    ];
    for (path, value, expected) in cases {
        let message = refused_join(|op| {
            let field = path.iter().fold(op, |v, k| &mut v[*k]);
            *field = value.clone();
        });
        assert!(message.contains(expected), "expected {expected:?} in:\n{message}");
    }
}

/// The ad joiner example with its user lookup's fields changed; returns the refusal.
fn refused_lookup(change: impl Fn(&mut serde_json::Value)) -> String {
    refused("ad-joiner.json", |spec| {
        change(&mut spec["operators"][1]["lookup_join"])
    })
}

#[test]
fn the_ad_joiner_chains_its_lookups_after_the_join() {
    let graph = validate(&parse_spec(&example("ad-joiner.json"), &[]).unwrap()).unwrap();
    let task = |name: &str| {
        let v = graph.vertices.iter().find(|v| v.name == name).unwrap();
        graph.tasks.iter().position(|t| t.vertices.contains(&v.id)).unwrap()
    };
    assert_eq!(task("samples"), task("with_user"));
    assert_eq!(task("with_user"), task("with_ad"));
    let out = &graph.vertices.iter().find(|v| v.name == "with_ad").unwrap().schema;
    let user_segment = out.field_with_name("user_segment").unwrap();
    assert_eq!(
        (user_segment.data_type(), user_segment.is_nullable()),
        (&arrow_schema::DataType::Int32, true)
    );
}

#[test]
fn bad_lookup_join_fields_are_refused_by_name() {
    use serde_json::json;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "key",
            json!(["nobody"]),
            "operators[1].lookup_join.key[0]: unknown column 'nobody'",
        ),
        (
            "from",
            json!({"redis": {"url": "localhost:6379"}}),
            "operators[1].lookup_join.from.redis.url: 'localhost:6379' is not a redis://host:port URL",
        ),
        (
            "from",
            json!({"parquet": {"path": "/dims/users", "key_column": "id"}}),
            "operators[1].lookup_join.from.parquet.path: '/dims/users' has no %H",
        ),
        (
            "columns",
            json!([{"name": "label", "type": "int32"}]),
            "operators[1].lookup_join.columns[0].name: output column 'label' already exists",
        ),
        (
            "columns",
            json!([]),
            "operators[1].lookup_join.columns: needs at least one column",
        ),
        ("on_failure", json!("drop"), "unknown variant `drop`"),
        (
            "timeout_ms",
            json!(0),
            "operators[1].lookup_join.timeout_ms: must be positive",
        ),
    ];
    for (field, value, expected) in cases {
        let message = refused_lookup(|l| l[field] = value.clone());
        assert!(message.contains(expected), "expected {expected:?} in:\n{message}");
    }
}
