//! Three `coordinator serve` processes on 127.0.0.1 form a Raft group: a job submitted to
//! any of them is listed by all; when the leader is SIGKILLed a new leader answers within
//! 3 s with the job still there; a killed coordinator restarted with the same command
//! rejoins (proved by it being needed for a quorum afterwards).

use std::time::{Duration, Instant};

use weir_integration::cluster::ClusterSandbox;
use weir_integration::workspace_root;

/// `coordinator list` against `addresses`: (leader address, job lines), once it succeeds.
fn list(cluster: &ClusterSandbox, addresses: &str, within: Duration) -> (String, Vec<String>) {
    let deadline = Instant::now() + within;
    loop {
        let out = cluster.cli(&["list"], addresses);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut lines = text.lines();
            let leader = lines
                .next()
                .unwrap_or_default()
                .trim_start_matches("leader ")
                .to_string();
            return (leader, lines.map(String::from).collect());
        }
        assert!(
            Instant::now() < deadline,
            "no answer from {addresses}: {}\nlogs:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cluster.log(1),
            cluster.log(2),
            cluster.log(3)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn submit(cluster: &ClusterSandbox, addresses: &str) -> String {
    let spec = workspace_root().join("examples/w2-hourly-etl.json");
    let out = cluster.cli(&["submit", spec.to_str().unwrap()], addresses);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_group_survives_losing_its_leader_and_a_member_rejoins() {
    let mut cluster = ClusterSandbox::start(3);
    let all = cluster.addresses();
    let (leader, jobs) = list(&cluster, &all, Duration::from_secs(20));
    assert!(jobs.is_empty());

    // Submitted through a follower, listed through every member.
    let follower = cluster
        .coordinators
        .iter()
        .find(|c| c.address != leader)
        .unwrap()
        .address
        .clone();
    let job = submit(&cluster, &follower);
    for c in &cluster.coordinators {
        let (_, jobs) = list(&cluster, &c.address, Duration::from_secs(5));
        assert!(
            jobs.iter().any(|l| l.starts_with(&job)),
            "{} does not list {job}: {jobs:?}",
            c.address
        );
    }

    // Kill the leader: a new one answers within 3 s, with the job.
    let old = cluster.index_of(&leader).unwrap();
    cluster.kill(old);
    let killed_at = Instant::now();
    let survivors = cluster.addresses_except(&leader);
    let (new_leader, jobs) = list(&cluster, &survivors, Duration::from_secs(10));
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    assert!(jobs.iter().any(|l| l.starts_with(&job)));
    assert!(
        failover < Duration::from_secs(3),
        "new leader answered after {failover:?}"
    );
    let job2 = submit(&cluster, &survivors);

    // Restart the killed member with the same command; then kill the current leader, so
    // that the group has a quorum only if the restarted member rejoined and caught up.
    cluster.start_coordinator(old);
    std::thread::sleep(Duration::from_secs(2));
    cluster.kill(cluster.index_of(&new_leader).unwrap());
    let remaining = cluster.addresses_except(&new_leader);
    let (third_leader, jobs) = list(&cluster, &remaining, Duration::from_secs(10));
    assert_ne!(third_leader, new_leader);
    for j in [&job, &job2] {
        assert!(
            jobs.iter().any(|l| l.starts_with(j.as_str())),
            "{j} missing after rejoin: {jobs:?}"
        );
    }
}

#[test]
fn the_job_api_refuses_bad_specs_and_cancels_jobs() {
    let cluster = ClusterSandbox::start(3);
    let all = cluster.addresses();
    list(&cluster, &all, Duration::from_secs(20));
    let spec = workspace_root().join("examples/w2-hourly-etl.json");
    let out = cluster.cli(
        &[
            "submit",
            spec.to_str().unwrap(),
            "--set",
            "operators.0.filter=levle = 'x'",
        ],
        &all,
    );
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("operators[0].filter: unknown column 'levle'"),
        "{stderr}"
    );

    let job = submit(&cluster, &all);
    let status = cluster.cli(&["status", &job], &all);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("Scheduling"),
        "{status:?}"
    );
    let cancel = cluster.cli(&["cancel", &job], &all);
    assert!(cancel.status.success(), "{cancel:?}");
    let status = cluster.cli(&["status", &job], &all);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("Cancelled"),
        "{status:?}"
    );
    let missing = cluster.cli(&["status", "no-such-job"], &all);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no job 'no-such-job'"),
        "{missing:?}"
    );
}
