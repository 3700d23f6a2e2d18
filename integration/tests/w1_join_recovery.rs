//! W1 (the ad joiner) on a cluster, checkpointing every 2 s, while task managers are
//! SIGKILLed at random moments and replaced: the join's pending impressions and clicks
//! come back from RocksDB snapshots in checkpoint storage, and the committed hourly
//! Parquet output must hold every impression exactly once with the label and click delay
//! the workload defines (no request_id twice, none missing).
//!
//! Run with each state store: RocksDB (incremental snapshots), memory (full snapshots
//! in the same layout, loaded back onto the heap by the restored attempt) and Redis (rows
//! in a real Redis, which is also restarted once mid-run: the join waits and retries).
//!
//! `WEIR_CHAOS_SEED` replays one run's kill timing.

use std::path::Path;
use std::time::Duration;

use weir_integration::cluster::{ClusterSandbox, first_line};
use weir_integration::redis_server::RedisServer;
use weir_integration::{files_below, python, workspace_root};
use weir_taskmanager::connectors::generator::datagen::w1;

const IMPRESSIONS: u64 = 1_000_000;
/// How long a crash-free run takes (the sources are rate limited).
const RUN_SECONDS: u64 = 16;

fn spec(dir: &Path, out: &Path, name: &str, state: serde_json::Value) -> std::path::PathBuf {
    let text = std::fs::read_to_string(workspace_root().join("examples/w1-window-join.json")).unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    spec["name"] = format!("w1-recovery-{name}").into();
    spec["operators"][0]["window_join"]["state"] = state;
    for s in 0..2 {
        let g = &mut spec["sources"][s]["generator"];
        g["events"] = IMPRESSIONS.into();
        g["batch_size"] = 2048.into();
        g["events_per_second"] = (IMPRESSIONS / RUN_SECONDS).into();
    }
    spec["checkpoint"] = serde_json::json!({ "interval_ms": 2000 });
    spec["sinks"] = serde_json::json!([{
        "id": "samples_out",
        "input": "counted",
        "parquet": { "path": out.to_str().unwrap(), "partition": "dt=%Y-%m-%d/hour=%H" }
    }]);
    let path = dir.join("w1.json");
    std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    path
}

/// rows, distinct request_ids, Σ label, Σ click delay over the committed output.
fn committed(out: &Path) -> String {
    python(
        r#"
import duckdb, sys
r = duckdb.sql(f"""select count(*), count(distinct request_id), sum(label)::varchar,
  sum(click_delay_ms)::varchar from read_parquet('{sys.argv[1]}/**/*.parquet')""").fetchall()[0]
print(*r)
"#,
        &[out.to_str().unwrap()],
    )
    .unwrap()
    .trim()
    .to_string()
}

fn expected() -> String {
    let clicked: Vec<u64> = (0..IMPRESSIONS).filter(|g| w1::clicked(*g)).collect();
    let delay: i64 = clicked.iter().map(|g| w1::click_ts(*g) - w1::imp_ts(*g)).sum();
    format!("{IMPRESSIONS} {IMPRESSIONS} {} {delay}", clicked.len())
}

#[test]
fn with_rocksdb_state_every_impression_is_committed_once_across_task_manager_kills() {
    kills_during_w1("rocksdb", None);
}

#[test]
fn with_memory_state_every_impression_is_committed_once_across_task_manager_kills() {
    kills_during_w1("memory", None);
}

#[test]
fn with_redis_state_every_impression_is_committed_once_across_task_manager_kills_and_a_redis_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path()).unwrap();
    kills_during_w1("redis", Some(&mut redis));
}

/// `redis`: the join keeps its rows there, and it is restarted after the first kill.
fn kills_during_w1(state: &str, mut redis: Option<&mut RedisServer>) {
    let seed = weir_integration::chaos_seed();
    let mut cluster = ClusterSandbox::start(1);
    for _ in 0..2 {
        cluster.start_task_manager(2);
    }
    cluster.wait_for_task_managers(2, Duration::from_secs(30));
    let out = cluster.dir.path().join("out");
    let state_spec = match &redis {
        Some(r) => serde_json::json!({ "redis": { "url": r.url(), "timeout_ms": 1000 } }),
        None => state.into(),
    };
    let spec = spec(cluster.dir.path(), &out, state, state_spec);
    let job = cluster.submit(&spec);
    let all = cluster.addresses();
    let mut live = vec![0, 1];
    let mut killed = Vec::new();
    let mut pause = seed;
    for _ in 0..2 {
        // Between 3 and 7 s after the job (or the last recovery) runs: past a checkpoint or two.
        pause = pause
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        cluster.wait_for_job(&all, &job, Duration::from_secs(120), |s| {
            first_line(s).contains("Running") || first_line(s).contains("Finished")
        });
        std::thread::sleep(Duration::from_millis(3000 + (pause >> 33) % 4000));
        if first_line(&cluster.job_status(&all, &job)).contains("Finished") {
            break;
        }
        let tm = live.remove(((pause >> 20) % 2) as usize);
        cluster.kill_task_manager(tm);
        killed.push(tm);
        let (replacement, _) = cluster.start_task_manager(2);
        live.push(replacement);
        if let Some(r) = redis.take() {
            std::thread::sleep(Duration::from_millis(1000 + (pause >> 40) % 2000));
            let status = cluster.job_status(&all, &job);
            assert!(
                !first_line(&status).contains("Finished"),
                "seed {seed}: the job ended before Redis restarted:\n{status}"
            );
            r.restart(Duration::from_millis(500)).unwrap();
        }
    }
    let status = cluster.wait_for_job(&all, &job, Duration::from_secs(300), |s| {
        first_line(s).contains("Finished")
    });
    assert!(
        killed.len() == 2,
        "seed {seed}: the job finished before the kills ({killed:?}):\n{status}"
    );
    assert!(
        status.lines().next().is_some_and(|l| !l.contains("attempt 0")),
        "seed {seed}: no restart happened:\n{status}"
    );
    let left: Vec<_> = files_below(&out)
        .into_iter()
        .filter(|f| f.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "seed {seed}: in-progress files left: {left:?}");
    assert_eq!(
        committed(&out),
        expected(),
        "{state} state, seed {seed}, killed task managers {killed:?}: rows, distinct request_ids, Σ label, Σ click delay\n{status}"
    );
}
