//! W1 (the ad joiner) through `coordinator local`: impressions and clicks from two
//! generator sources, hash-partitioned by request_id into the window join (RocksDB
//! state, memory state, and rows in a real Redis; parallelism 2), each impression out
//! exactly once with its click label. The counters must be the reference's
//! (`shared/bench/flink/README.md`, W1).

use weir_integration::redis_server::RedisServer;
use weir_integration::{column_sum, run_local, workspace_root};

const BASE: i128 = 1_704_067_200_000;

fn sums(run: &weir_integration::LocalRun) -> (u64, i128, i128, i128) {
    let sink = run.sink();
    let sum = |c: &str| column_sum(sink, c).unwrap_or_else(|| panic!("no sum of {c}: {sink}"));
    let rows = sink["rows"].as_u64().unwrap();
    (
        rows,
        sum("label"),
        sum("click_delay_ms"),
        sum("ts") - rows as i128 * BASE,
    )
}

#[test]
fn w1_counters_match_the_reference() {
    let work = tempfile::tempdir().unwrap();
    let run = run_local(&workspace_root().join("examples/w1-window-join.json"), &[], work.path()).unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
    assert_eq!(
        sums(&run),
        (5_000_000, 650_181, 9_753_684_532, 1_247_500_548_829),
        "outputs, label 1, Σ(click_ts − imp_ts), Σ(imp_ts − BASE)"
    );
    assert_eq!(run.summary()["late_records"], 0);
    assert_eq!(run.summary()["records_read"], 5_650_181);
}

#[test]
fn w1_counters_match_the_reference_with_memory_state() {
    let work = tempfile::tempdir().unwrap();
    let run = run_local(
        &workspace_root().join("examples/w1-window-join.json"),
        &["operators.0.window_join.state=memory".into()],
        work.path(),
    )
    .unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
    assert_eq!(sums(&run), (5_000_000, 650_181, 9_753_684_532, 1_247_500_548_829));
}

/// Rows in Redis, timers in RocksDB; with no checkpoints every row is deleted once the
/// join is done with it, so Redis is empty when the job ends.
#[test]
fn w1_counters_match_the_reference_with_redis_state() {
    let work = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&work.path().join("redis")).unwrap();
    let run = run_local(
        &workspace_root().join("examples/w1-window-join.json"),
        &[format!(
            r#"operators.0.window_join.state={{"redis": {{"url": "{}"}}}}"#,
            redis.url()
        )],
        work.path(),
    )
    .unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
    assert_eq!(sums(&run), (5_000_000, 650_181, 9_753_684_532, 1_247_500_548_829));
    assert_eq!(run.summary()["late_records"], 0);
    assert_eq!(redis.keys().unwrap(), 0, "rows left in Redis");
}

#[test]
fn w1_result_does_not_depend_on_parallelism() {
    let work = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for p in [1, 3] {
        let run = run_local(
            &workspace_root().join("examples/w1-window-join.json"),
            &[
                "sources.0.generator.events=400000".into(),
                "sources.1.generator.events=400000".into(),
                format!("parallelism={p}"),
            ],
            work.path(),
        )
        .unwrap();
        assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
        results.push(sums(&run));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].0, 400_000);
}
