//! W3 through `coordinator local`: 50M events, keyed 10 s tumbling count with
//! parallelism 2 (hash-partitioned between subtasks); the result must match the
//! workload's counters exactly.

use weir_integration::{column_sum, run_local, workspace_root};

const BASE: i128 = 1_704_067_200_000;

#[test]
fn w3_counts_match_the_reference() {
    let work = tempfile::tempdir().unwrap();
    let run = run_local(
        &workspace_root().join("examples/w3-window-count.json"),
        &[],
        work.path(),
    )
    .unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
    let sink = run.sink();
    let rows = sink["rows"].as_u64().unwrap() as i128;
    let sum = |c: &str| column_sum(sink, c).unwrap_or_else(|| panic!("no sum of {c}: {sink}"));
    assert_eq!(rows, 5_038_774);
    assert_eq!(sum("count"), 50_000_000);
    assert_eq!((sum("window_start") - rows * BASE) / 10_000, 122_454_870);
    assert_eq!(run.summary()["late_records"], 0);
}

#[test]
fn w3_result_does_not_depend_on_parallelism() {
    let work = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for p in [1, 3] {
        let run = run_local(
            &workspace_root().join("examples/w3-window-count.json"),
            &["sources.0.generator.events=2000000".into(), format!("parallelism={p}")],
            work.path(),
        )
        .unwrap();
        assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
        let sink = run.sink().clone();
        results.push((sink["rows"].clone(), sink["column_sums"].clone()));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].1["count"], "2000000");
}
