//! Task managers register with the coordinator leader by heartbeating it; after the
//! leader is SIGKILLed they find the new leader by themselves, and a task manager that
//! stops heartbeating is reported lost.

use std::time::{Duration, Instant};

use weir_integration::cluster::ClusterSandbox;

/// `coordinator taskmanagers`: (leader, lines "id address slots N alive|lost ...").
fn task_managers(cluster: &ClusterSandbox, addresses: &str) -> Option<(String, Vec<String>)> {
    let out = cluster.cli(&["taskmanagers"], addresses);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let leader = lines.next()?.trim_start_matches("leader ").to_string();
    Some((leader, lines.map(String::from).collect()))
}

/// Waits until the listing satisfies `ok`.
fn wait_for(
    cluster: &ClusterSandbox,
    addresses: &str,
    within: Duration,
    ok: impl Fn(&str, &[String]) -> bool,
) -> (String, Vec<String>) {
    let deadline = Instant::now() + within;
    loop {
        if let Some((leader, tms)) = task_managers(cluster, addresses)
            && ok(&leader, &tms)
        {
            return (leader, tms);
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached; last: {:?}",
            task_managers(cluster, addresses)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alive(tms: &[String], address: &str) -> bool {
    tms.iter().any(|l| l.contains(address) && l.contains(" alive "))
}

#[test]
fn task_managers_follow_the_leader_and_lost_ones_are_reported() {
    let mut cluster = ClusterSandbox::start(3);
    let (_, a) = cluster.start_task_manager(2);
    let (b_index, b) = cluster.start_task_manager(1);
    let all = cluster.addresses();
    let (leader, tms) = wait_for(&cluster, &all, Duration::from_secs(20), |_, tms| {
        alive(tms, &a) && alive(tms, &b)
    });
    assert!(tms.iter().any(|l| l.contains(&a) && l.contains("slots 2")), "{tms:?}");

    cluster.kill(cluster.index_of(&leader).unwrap());
    let survivors = cluster.addresses_except(&leader);
    let (new_leader, _) = wait_for(&cluster, &survivors, Duration::from_secs(10), |l, tms| {
        l != leader && alive(tms, &a) && alive(tms, &b)
    });
    assert_ne!(new_leader, leader);

    cluster.kill_task_manager(b_index);
    let (_, tms) = wait_for(&cluster, &survivors, Duration::from_secs(10), |_, tms| {
        tms.iter().any(|l| l.contains(&b) && l.contains(" lost "))
    });
    assert!(alive(&tms, &a), "{tms:?}");
}
