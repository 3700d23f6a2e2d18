//! Who may use a cluster, and where its jobs may write. With a token file, the job API,
//! the console's API and `/metrics` refuse callers without a valid token (each refusal
//! checked by its message), while the task managers, which present the same token, run
//! jobs as before; specs naming paths outside `--allowed-storage-root` are refused at
//! submit, naming the field. With mutual TLS (no token), every connection (Raft between
//! three coordinators, heartbeats, deployments, the data exchange between task managers,
//! the CLI) is TLS, and a client without a certificate from the cluster's CA is refused.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use weir_integration::cluster::{ClusterSandbox, first_line};
use weir_integration::http_get::http_get;
use weir_integration::test_certs::TestCa;
use weir_integration::{binary, keyed_w2_spec, parquet_rows_by_partition};

const EVENTS: u64 = 60_000;
/// Rows of the W2 job that pass its filter (`status <> 3` over the generator's statuses).
fn expected_rows(out: &Path) -> u64 {
    parquet_rows_by_partition(out).unwrap().values().sum()
}

/// Runs the CLI with exactly `env` (the sandbox's own environment left out).
fn cli_with(cluster: &ClusterSandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary("coordinator"))
        .args(args)
        .args(["--coordinators", &cluster.addresses()])
        .env_remove("WEIR_TOKEN_FILE")
        .env_remove("WEIR_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run coordinator cli")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn write_spec(dir: &Path, name: &str, spec: &serde_json::Value) -> String {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, spec.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Submits `spec` and waits until the job finished; returns its status.
fn run_to_the_end(cluster: &ClusterSandbox, spec: &str) -> String {
    let run = cluster.cli(&["submit", spec, "--wait"], &cluster.addresses());
    assert!(run.status.success(), "{}\n{}", stderr(&run), cluster.all_logs());
    let job = String::from_utf8_lossy(&run.stdout).trim().to_string();
    cluster.job_status(&cluster.addresses(), &job)
}

#[test]
fn tokens_guard_the_api_and_specs_stay_inside_the_storage_roots() {
    let secrets = tempfile::tempdir().unwrap();
    let tokens = secrets.path().join("tokens");
    std::fs::write(&tokens, "# the cluster's tokens\nt0ken-new\nt0ken-old\n").unwrap();
    let allowed = secrets.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let mut cluster = ClusterSandbox::start_with_env(
        1,
        &["--allowed-storage-root", allowed.to_str().unwrap()],
        &[("WEIR_TOKEN_FILE", tokens.to_str().unwrap())],
    );
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    // The task managers present the token with every heartbeat: they register.
    cluster.wait_for_task_managers(2, Duration::from_secs(30));

    let out = allowed.join("out");
    let good = write_spec(cluster.dir.path(), "good", &keyed_w2_spec(EVENTS, &out).unwrap());

    let no_token = cli_with(&cluster, &["submit", &good], &[]);
    assert!(!no_token.status.success());
    assert!(
        stderr(&no_token).contains("authentication required: no bearer token"),
        "{}",
        stderr(&no_token)
    );
    let wrong = cli_with(&cluster, &["submit", &good], &[("WEIR_TOKEN", "t0ken-guess")]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("authentication failed: the bearer token is not valid"),
        "{}",
        stderr(&wrong)
    );
    let listed = cluster.cli(&["list"], &cluster.addresses());
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        1,
        "nothing was submitted: {}",
        String::from_utf8_lossy(&listed.stdout)
    );

    // Outside the roots: the sink, the dead letters, and a way out through '..'.
    let mut outside = keyed_w2_spec(EVENTS, &cluster.dir.path().join("elsewhere")).unwrap();
    outside["dead_letter"] = serde_json::json!({"path": "/tmp/weir-dead-letters"});
    let outside = write_spec(cluster.dir.path(), "outside", &outside);
    let refused = cluster.cli(&["submit", &outside], &cluster.addresses());
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    for expected in [
        "sinks.0.parquet.path",
        "dead_letter.path",
        "is outside the storage roots this cluster allows",
    ] {
        assert!(stderr(&refused).contains(expected), "{expected}: {}", stderr(&refused));
    }
    let escape = keyed_w2_spec(EVENTS, &allowed.join("../escaped")).unwrap();
    let escape = write_spec(cluster.dir.path(), "escape", &escape);
    let refused = cluster.cli(&["submit", &escape], &cluster.addresses());
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("must not contain '..'"),
        "{}",
        stderr(&refused)
    );
    assert!(!allowed.join("../escaped").exists() && !cluster.dir.path().join("elsewhere").exists());

    // Inside the roots, with the second (older) token: the job runs on both task
    // managers, which deploy, exchange data and report with the token.
    let status = run_to_the_end(&cluster, &good);
    assert!(first_line(&status).contains("Finished"), "{status}");
    assert!(expected_rows(&out) > EVENTS / 2, "{status}");

    // HTTP: the coordinator's metrics and console API, and a task manager's metrics.
    let coordinator = &cluster.coordinators[0].http_address;
    let tm = &cluster.task_manager_metrics[0];
    for (address, path) in [(coordinator, "/metrics"), (coordinator, "/api/jobs"), (tm, "/metrics")] {
        let anonymous = http_get(address, path, &[]).unwrap();
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.body);
        assert!(anonymous.body.contains("authentication required"), "{}", anonymous.body);
        let wrong = http_get(address, path, &[("Authorization", "Bearer nope")]).unwrap();
        assert_eq!(wrong.status, 401, "{path}");
        let ok = http_get(address, path, &[("Authorization", "Bearer t0ken-old")]).unwrap();
        assert_eq!(ok.status, 200, "{path}: {}", ok.body);
    }
    let cookie = http_get(coordinator, "/api/jobs", &[("Cookie", "weir_token=t0ken-new")]).unwrap();
    assert_eq!(cookie.status, 200);
    assert!(cookie.body.contains("\"state\":3"), "the finished job: {}", cookie.body);
    let page = http_get(coordinator, "/", &[]).unwrap();
    assert_eq!(page.status, 303, "a browser without the cookie goes to the login page");
    assert_eq!(page.headers.get("location").map(String::as_str), Some("/login"));
}

#[test]
fn mutual_tls_carries_every_connection_and_refuses_strangers() {
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path(), "weir-ca").unwrap();
    let (cert, key) = ca.issue("node").unwrap();
    let stranger_ca = TestCa::new(&pki.path().join("stranger"), "stranger-ca").unwrap();
    let (stranger_cert, stranger_key) = stranger_ca.issue("stranger").unwrap();
    let (cert, key, ca_cert) = (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
        ca.cert.to_str().unwrap().to_string(),
    );
    let tls = [
        ("WEIR_TLS_CERT", cert.as_str()),
        ("WEIR_TLS_KEY", key.as_str()),
        ("WEIR_TLS_CA", ca_cert.as_str()),
    ];
    // Three coordinators: Raft runs over TLS too.
    let mut cluster = ClusterSandbox::start_with_env(3, &[], &tls);
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));

    let out = cluster.dir.path().join("out");
    let spec = write_spec(cluster.dir.path(), "w2", &keyed_w2_spec(EVENTS, &out).unwrap());
    let plain = cli_with(&cluster, &["list"], &[]);
    assert!(!plain.status.success(), "plain-text gRPC is refused");
    let no_cert = cli_with(&cluster, &["list"], &[("WEIR_TLS_CA", ca_cert.as_str())]);
    assert!(!no_cert.status.success(), "TLS without a client certificate is refused");
    let stranger = cli_with(
        &cluster,
        &["list"],
        &[
            ("WEIR_TLS_CA", ca_cert.as_str()),
            ("WEIR_TLS_CERT", stranger_cert.to_str().unwrap()),
            ("WEIR_TLS_KEY", stranger_key.to_str().unwrap()),
        ],
    );
    assert!(!stranger.status.success(), "a certificate of another CA is refused");
    for refused in [&plain, &no_cert, &stranger] {
        assert!(stderr(refused).contains("no leader reachable"), "{}", stderr(refused));
        assert!(stderr(refused).contains("TLS mismatch"), "{}", stderr(refused));
    }

    let status = run_to_the_end(&cluster, &spec);
    assert!(first_line(&status).contains("Finished"), "{status}");
    let sink = status.lines().find(|l| l.trim_start().starts_with("hourly")).unwrap();
    assert!(sink.contains("@tm-0") && sink.contains("@tm-1"), "ran on both: {sink}");
    assert!(expected_rows(&out) > EVENTS / 2, "{status}");
}
