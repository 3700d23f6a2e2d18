//! Savepoints on a real cluster: the W3 window count (keyed state in RocksDB) runs with
//! its window operator at parallelism 2, is stopped with `cancel --savepoint`, and is
//! submitted again from the savepoint with the window operator at parallelism 3 (its
//! state rescaled by key groups). The Parquet output of both jobs together must be
//! exactly that of one undisturbed run (`coordinator local`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_integration::cluster::{ClusterSandbox, vertex_records_in};
use weir_integration::{partition_fingerprint, run_local, workspace_root};

const EVENTS: u64 = 12_000_000;

fn w3_spec(dir: &Path, out: &Path) -> PathBuf {
    let text = std::fs::read_to_string(workspace_root().join("examples/w3-window-count.json")).unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    spec["sources"][0]["generator"]["events"] = EVENTS.into();
    spec["sources"][0]["generator"]["events_per_second"] = (EVENTS / 20).into();
    spec["checkpoint"] = serde_json::json!({ "interval_ms": 1000 });
    spec["sinks"] = serde_json::json!([{
        "id": "counts",
        "input": "count",
        "parquet": { "path": out.to_str().unwrap(), "partition": "dt=%Y-%m-%d/hour=%H" }
    }]);
    let path = dir.join("w3.json");
    std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    path
}

/// Per hour partition: rows and the sum of a hash over every column.
fn fingerprint(root: &Path) -> String {
    partition_fingerprint(root, "key, window_start, window_end, window_time, count").unwrap()
}

fn status(cluster: &ClusterSandbox, job: &str) -> String {
    String::from_utf8_lossy(&cluster.cli(&["status", job], &cluster.addresses()).stdout).into_owned()
}

fn wait_for(cluster: &ClusterSandbox, job: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = status(cluster, job);
        if done(&s) {
            return s;
        }
        assert!(
            !s.lines().next().unwrap_or_default().contains("Failed") && Instant::now() < deadline,
            "{s}\n{}",
            cluster.all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rescaling_the_window_count_from_a_savepoint_gives_the_same_result() {
    let mut cluster = ClusterSandbox::start(3);
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));
    let out = cluster.dir.path().join("out");
    let spec = w3_spec(cluster.dir.path(), &out);
    let spec_arg = spec.to_str().unwrap();

    let run = cluster.cli(&["submit", spec_arg], &cluster.addresses());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let first = String::from_utf8_lossy(&run.stdout).trim().to_string();
    wait_for(&cluster, &first, |s| {
        s.contains("checkpoints: last") && vertex_records_in(s, "events") > EVENTS / 4
    });
    let taken = cluster.cli(&["cancel", &first, "--savepoint"], &cluster.addresses());
    assert!(
        taken.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&taken.stderr),
        cluster.all_logs()
    );
    let savepoint = String::from_utf8_lossy(&taken.stdout).trim().to_string();
    assert!(savepoint.starts_with("file://"), "{savepoint}");
    let stopped = wait_for(&cluster, &first, |s| {
        s.lines().next().unwrap_or_default().contains("Cancelled")
    });
    let read_before = vertex_records_in(&stopped, "events");
    assert!(read_before < EVENTS, "the first job was stopped mid-way: {stopped}");

    // A job whose sources would run with another parallelism is refused.
    let refused = cluster.cli(
        &[
            "submit",
            spec_arg,
            "--set",
            "parallelism=3",
            "--from-savepoint",
            &savepoint,
        ],
        &cluster.addresses(),
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("only Kafka sources can be rescaled"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let run = cluster.cli(
        &[
            "submit",
            spec_arg,
            "--set",
            "operators.0.parallelism=3",
            "--from-savepoint",
            &savepoint,
        ],
        &cluster.addresses(),
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let second = String::from_utf8_lossy(&run.stdout).trim().to_string();
    let done = wait_for(&cluster, &second, |s| {
        s.lines().next().unwrap_or_default().contains("Finished")
    });
    assert!(done.contains("count            p=3"), "{done}");
    assert!(
        vertex_records_in(&done, "events") < EVENTS,
        "the second job resumed where the savepoint stood: {done}"
    );

    let local_dir = tempfile::tempdir().unwrap();
    let local_out = local_dir.path().join("out");
    run_local(&w3_spec(local_dir.path(), &local_out), &[], local_dir.path()).unwrap();
    let expected = fingerprint(&local_out);
    assert_eq!(fingerprint(&out), expected, "{}", cluster.all_logs());
}
