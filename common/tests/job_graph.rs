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
