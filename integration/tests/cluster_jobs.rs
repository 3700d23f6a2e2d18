//! Jobs on a real cluster: 3 `coordinator serve` and 2 `taskmanager` processes on
//! 127.0.0.1. W2 with a `key_by` (so half of the rows cross between the task managers over
//! the network exchange) must produce exactly the output of `coordinator local` on the same
//! spec: per hour partition, the same row count and the same hash sum over all columns. It
//! must also do so when the leader is SIGKILLed mid-job (a new leader answers within 3 s
//! and restarts the job) and when a task manager is SIGKILLed mid-job (the job restarts on
//! the survivor), with nothing of the failed attempt left behind.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use weir_integration::cluster::{ClusterSandbox, first_line, vertex_records_in};
use weir_integration::{files_below, keyed_w2_spec, partition_fingerprint, run_local};

const EVENTS: u64 = 8_000_000;

/// The cluster tests each start five processes; one at a time is all two cores can take.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn keyed_spec(dir: &Path, out: &Path) -> PathBuf {
    let mut spec = keyed_w2_spec(EVENTS, out).unwrap();
    spec["name"] = "w2-keyed".into();
    spec["dead_letter"] = serde_json::json!({ "path": dir.join("dead").to_str().unwrap() });
    let path = dir.join(format!("spec-{}.json", out.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    path
}

/// Per partition directory: rows and the sum of a hash over every column.
fn fingerprint(root: &Path) -> String {
    partition_fingerprint(root, "ts, level, service, host, user_id, status, latency_ms, path").unwrap()
}

/// The output of `coordinator local` on the same spec, computed once.
fn expected() -> &'static str {
    static EXPECTED: OnceLock<String> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("local");
        let spec = keyed_spec(dir.path(), &out);
        run_local(&spec, &[], dir.path()).unwrap();
        fingerprint(&out)
    })
}

fn assert_output_exact(cluster: &ClusterSandbox, out: &Path) {
    let hidden: Vec<PathBuf> = files_below(out)
        .into_iter()
        .filter(|f| f.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "in-progress files left: {hidden:?}");
    let got = fingerprint(out);
    assert!(
        got == expected(),
        "cluster output differs from the local run\ncluster:\n{got}\nlocal:\n{}\n{}",
        expected(),
        cluster.all_logs()
    );
    assert!(got.lines().count() > 20, "{got}");
}

fn start_cluster() -> ClusterSandbox {
    let mut cluster = ClusterSandbox::start(3);
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));
    cluster
}

/// A cluster running the keyed W2 job, once it has read its first records: the cluster,
/// the job's output directory and its id.
fn start_keyed_job() -> (ClusterSandbox, PathBuf, String) {
    let cluster = start_cluster();
    let out = cluster.dir.path().join("out");
    let spec = keyed_spec(cluster.dir.path(), &out);
    let job = submit(&cluster, &spec);
    wait_for(&cluster, &cluster.addresses(), &job, Duration::from_secs(60), |s| {
        first_line(s).contains("Running") && records_read(s) > 0
    });
    (cluster, out, job)
}

/// Submits the keyed W2 job with checkpoints every `interval_ms` and sources slowed down
/// (small batches) so that it runs for several intervals; returns its output directory
/// and id.
fn submit_checkpointed(cluster: &ClusterSandbox, interval_ms: u64) -> (PathBuf, String) {
    let out = cluster.dir.path().join("out");
    let spec = keyed_spec(cluster.dir.path(), &out);
    let run = cluster.cli(
        &[
            "submit",
            spec.to_str().unwrap(),
            "--set",
            &format!("checkpoint.interval_ms={interval_ms}"),
            "--set",
            "sources.0.generator.batch_size=1024",
        ],
        &cluster.addresses(),
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    (out, String::from_utf8_lossy(&run.stdout).trim().to_string())
}

/// Waits until the job runs, has completed a checkpoint and has read a quarter of its input.
fn wait_for_a_checkpoint(cluster: &ClusterSandbox, job: &str) -> String {
    wait_for(cluster, &cluster.addresses(), job, Duration::from_secs(60), |s| {
        first_line(s).contains("Running") && s.contains("checkpoints: last") && records_read(s) > EVENTS / 4
    })
}

fn submit(cluster: &ClusterSandbox, spec: &Path) -> String {
    let out = cluster.cli(&["submit", spec.to_str().unwrap()], &cluster.addresses());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn status(cluster: &ClusterSandbox, addresses: &str, job: &str) -> String {
    cluster.job_status(addresses, job)
}

fn wait_for(
    cluster: &ClusterSandbox,
    addresses: &str,
    job: &str,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    cluster.wait_for_job(addresses, job, within, done)
}

/// Records read so far by the source vertex, from `status`.
fn records_read(status: &str) -> u64 {
    vertex_records_in(status, "logs")
}

#[test]
fn keyed_w2_across_two_task_managers_matches_the_local_run() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = start_cluster();
    let out = cluster.dir.path().join("out");
    let spec = keyed_spec(cluster.dir.path(), &out);
    let run = cluster.cli(&["submit", spec.to_str().unwrap(), "--wait"], &cluster.addresses());
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stderr),
        cluster.all_logs()
    );
    let job = String::from_utf8_lossy(&run.stdout).trim().to_string();
    let s = status(&cluster, &cluster.addresses(), &job);
    assert!(
        first_line(&s).contains("Finished") && first_line(&s).contains("attempt 0"),
        "{s}"
    );
    // Each vertex ran one subtask on each task manager.
    for vertex in ["logs", "by_user", "hourly"] {
        let line = s.lines().find(|l| l.trim_start().starts_with(vertex)).unwrap();
        assert!(line.contains("@tm-0") && line.contains("@tm-1"), "{line}");
    }
    assert_eq!(records_read(&s), EVENTS, "{s}");
    assert_output_exact(&cluster, &out);
}

#[test]
fn a_job_survives_the_loss_of_the_leader() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut cluster, out, job) = start_keyed_job();
    let all = cluster.addresses();

    let leader = cluster.leader(&all);
    cluster.kill(cluster.index_of(&leader).unwrap());
    let killed = Instant::now();
    let survivors = cluster.addresses_except(&leader);
    let s = wait_for(&cluster, &survivors, &job, Duration::from_secs(10), |s| !s.is_empty());
    let answered = killed.elapsed();
    assert!(
        answered < Duration::from_secs(3),
        "new leader answered after {answered:?}"
    );
    assert!(first_line(&s).starts_with(&job), "{s}");

    let s = wait_for(&cluster, &survivors, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert!(
        !first_line(&s).contains("attempt 0"),
        "the new leader restarts the job: {s}"
    );
    assert_output_exact(&cluster, &out);
}

#[test]
fn a_job_restarts_on_the_surviving_task_manager() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut cluster, out, job) = start_keyed_job();
    let all = cluster.addresses();
    cluster.kill_task_manager(1);

    let s = wait_for(&cluster, &all, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert!(!first_line(&s).contains("attempt 0"), "{s}");
    for line in s.lines().skip(1) {
        assert!(!line.contains("@tm-1"), "nothing runs on the lost task manager: {line}");
    }
    let logs: String = (1..=3).map(|id| cluster.log(id)).collect();
    assert!(
        logs.contains("task manager tm-1 lost"),
        "the restart is blamed on the lost task manager, not on its echoes"
    );
    assert_output_exact(&cluster, &out);
}

#[test]
fn a_job_waits_in_scheduling_until_enough_slots_exist() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = ClusterSandbox::start(3);
    cluster.start_task_manager(1);
    cluster.wait_for_task_managers(1, Duration::from_secs(30));
    let out = cluster.dir.path().join("out");
    let spec = keyed_spec(cluster.dir.path(), &out);
    let all = cluster.addresses();
    let run = cluster.cli(
        &[
            "submit",
            spec.to_str().unwrap(),
            "--set",
            "sources.0.generator.events=200000",
        ],
        &all,
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let job = String::from_utf8_lossy(&run.stdout).trim().to_string();
    // Parallelism 2 needs two slots; one task manager with one slot is not enough.
    std::thread::sleep(Duration::from_secs(3));
    let s = status(&cluster, &all, &job);
    assert!(first_line(&s).contains("Scheduling"), "{s}");
    assert!(!out.exists(), "nothing may run before the job is placed");

    cluster.start_task_manager(1);
    let s = wait_for(&cluster, &all, &job, Duration::from_secs(60), |s| {
        first_line(s).contains("Finished")
    });
    let sink = s.lines().find(|l| l.trim_start().starts_with("hourly")).unwrap();
    assert!(sink.contains("@tm-0") && sink.contains("@tm-1"), "{sink}");
}

#[test]
fn a_job_that_keeps_failing_fails_after_its_restarts() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = ClusterSandbox::start_with(3, &["--max-restarts", "2", "--restart-backoff-ms", "100"]);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(1, Duration::from_secs(30));
    // The sink's directory is a regular file: every attempt fails creating its parts.
    let blocker = cluster.dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"x").unwrap();
    let spec = keyed_spec(cluster.dir.path(), &blocker);
    let all = cluster.addresses();
    let job = submit(&cluster, &spec);
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = loop {
        let s = status(&cluster, &all, &job);
        if first_line(&s).contains("Failed") {
            break s;
        }
        assert!(Instant::now() < deadline, "{s}\n{}", cluster.all_logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    let line = first_line(&s);
    assert!(line.contains("attempt 2"), "two restarts, then failed: {line}");
    assert!(line.contains("not-a-directory"), "the failure names the file: {line}");
    assert!(line.contains("after 3 attempts"), "{line}");
}

#[test]
fn cancelling_a_running_job_stops_its_subtasks_and_their_files() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (cluster, out, job) = start_keyed_job();
    let all = cluster.addresses();
    let cancel = cluster.cli(&["cancel", &job], &all);
    assert!(cancel.status.success(), "{}", String::from_utf8_lossy(&cancel.stderr));
    assert!(String::from_utf8_lossy(&cancel.stdout).contains("Cancelled"));
    // The leader stops the subtasks on its next round; then nothing changes any more.
    std::thread::sleep(Duration::from_secs(2));
    let files = files_below(&out);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(files, files_below(&out), "files still change after the cancel");
    let hidden: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert!(
        hidden.is_empty(),
        "a cancelled part must not stay in progress: {hidden:?}"
    );
    let s = status(&cluster, &all, &job);
    assert!(first_line(&s).contains("Cancelled"), "{s}");
}

#[test]
fn checkpoints_complete_while_the_job_runs_and_leave_the_output_exact() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = start_cluster();
    let all = cluster.addresses();
    let (out, job) = submit_checkpointed(&cluster, 300);
    // A completed checkpoint publishes the parts it covers while the job still runs.
    let s = wait_for_a_checkpoint(&cluster, &job);
    assert!(
        records_read(&s) < EVENTS * 3 / 4,
        "the job ran too fast to look inside:\n{s}"
    );
    let published = files_below(&out)
        .into_iter()
        .any(|f| !f.file_name().unwrap().to_str().unwrap().starts_with('.'));
    assert!(published, "nothing published after a checkpoint:\n{s}");
    wait_for(&cluster, &all, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    let s = status(&cluster, &all, &job);
    let line = s
        .lines()
        .find(|l| l.trim_start().starts_with("checkpoints:"))
        .unwrap_or_else(|| panic!("no checkpoint completed:\n{s}\n{}", cluster.all_logs()));
    let ids: Vec<u64> = line
        .rsplit_once("recent: ")
        .unwrap()
        .1
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(ids.len() >= 2, "{line}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids only grow: {line}");
    // The checkpoint records where each generator subtask stood: subtask s of 2 emits the
    // indices s, s+2, ..., so its next index is s modulo 2, and inside the input.
    let positions: Vec<(u64, u64)> = s
        .lines()
        .filter_map(|l| l.trim().strip_prefix("source task 0 subtask "))
        .map(|l| {
            let (subtask, json) = l.split_once(" at ").unwrap();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            (subtask.parse().unwrap(), v["generator"]["next_index"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(positions.len(), 2, "{s}");
    for (subtask, next) in positions {
        assert_eq!(next % 2, subtask, "{s}");
        assert!(next > subtask && next < EVENTS + 2, "{s}");
    }
    assert_output_exact(&cluster, &out);
}

#[test]
fn with_checkpoints_no_part_is_published_before_a_checkpoint_covers_it() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = start_cluster();
    let all = cluster.addresses();
    // Checkpoints are on but the first one is due only after the job has ended.
    let (out, job) = submit_checkpointed(&cluster, 3_600_000);
    // Hours close and parts roll while it runs, but they stay hidden.
    let s = wait_for(&cluster, &all, &job, Duration::from_secs(60), |s| {
        first_line(s).contains("Running") && records_read(s) > EVENTS / 4
    });
    let visible: Vec<PathBuf> = files_below(&out)
        .into_iter()
        .filter(|f| !f.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert!(
        visible.is_empty(),
        "published before any checkpoint completed: {visible:?}\n{s}"
    );
    assert!(!files_below(&out).is_empty(), "parts were written (hidden)");
    // At the end of input everything is published.
    wait_for(&cluster, &all, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert_output_exact(&cluster, &out);
}

#[test]
fn after_losing_a_task_manager_the_job_resumes_from_its_checkpoint_exactly_once() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = start_cluster();
    let all = cluster.addresses();
    let (out, job) = submit_checkpointed(&cluster, 300);
    wait_for_a_checkpoint(&cluster, &job);
    cluster.kill_task_manager(1);
    let s = wait_for(&cluster, &all, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert!(!first_line(&s).contains("attempt 0"), "{s}");
    let logs: String = (1..=3).map(|id| cluster.log(id)).collect();
    assert!(
        logs.contains("restoring from checkpoint"),
        "the restart resumes from a checkpoint, not from the beginning"
    );
    // The resumed attempt read less than everything: it started at the checkpoint.
    assert!(records_read(&s) < EVENTS, "{s}");
    assert_output_exact(&cluster, &out);
}

#[test]
fn after_losing_the_leader_the_job_resumes_from_its_checkpoint_exactly_once() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = start_cluster();
    let all = cluster.addresses();
    let (out, job) = submit_checkpointed(&cluster, 300);
    wait_for_a_checkpoint(&cluster, &job);
    let leader = cluster.leader(&all);
    cluster.kill(cluster.index_of(&leader).unwrap());
    let survivors = cluster.addresses_except(&leader);
    let s = wait_for(&cluster, &survivors, &job, Duration::from_secs(180), |s| {
        first_line(s).contains("Finished")
    });
    assert!(!first_line(&s).contains("attempt 0"), "{s}");
    let logs: String = (1..=3).map(|id| cluster.log(id)).collect();
    assert!(
        logs.contains("restoring from checkpoint"),
        "the new leader resumes from a checkpoint"
    );
    assert_output_exact(&cluster, &out);
}
