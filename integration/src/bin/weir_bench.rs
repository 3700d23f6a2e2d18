//! Benchmarks of Weir's hot paths on the reference workloads (`shared/bench/flink`): runs
//! the real `coordinator local` binary as a child process on the example job, times it
//! (wall clock, process start included), reads its peak RSS from the kernel, and checks
//! the result against the workload's verification counters.
//!
//! Prints `weir <workload> <events> <seconds> <events_per_s> <peak_rss_mb>` and an
//! `INFO` line with the counters and `ok=true|false`.
//!
//! `w3-cluster` runs W3 on a real cluster instead (one coordinator, N task managers as
//! processes): time from `submit` until the job is reported finished, and the sum of the
//! task managers' peak RSS. Comparing 2 task managers x 1 slot with 1 x 2 slots prices the
//! network exchange, since W3's `key_by` then sends half of the events across it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use weir_integration::ad_joiner_dims::AdJoinerDims;
use weir_integration::cluster::{ClusterSandbox, vertex_records_in};
use weir_integration::kafka_broker::{KafkaBroker, produce};
use weir_integration::redis_server::RedisServer;
use weir_integration::{binary, column_sum, parquet_rows_by_partition, workspace_root};
use weir_taskmanager::connectors::generator::datagen::{w1, w2};

const BASE: i128 = 1_704_067_200_000;

#[derive(Parser)]
#[command(about = "Run Weir on the reference workloads")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// W2: JSON logs -> filter -> hourly Parquet.
    W2 {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
        #[arg(long, default_value = "zstd")]
        compression: String,
    },
    /// W1: impressions and clicks through the window join into a blackhole that checks
    /// the counters. `--trace-secs` prints resident memory and the
    /// bytes under the work directory (the join's RocksDB state) as the run goes.
    W1 {
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
        #[arg(long, default_value_t = 60_000)]
        window_ms: u64,
        /// The join's state: rocksdb, memory, or redis (a redis-server started for the
        /// run, with an append-only file; its peak memory is printed on its own line).
        #[arg(long, default_value = "rocksdb")]
        state: String,
        #[arg(long)]
        trace_secs: Option<u64>,
    },
    /// The ad joiner example: W1 through the window join (RocksDB state), then a user
    /// lookup in Redis (`users` of W1's 10M users loaded; the cache holds 200,000) and
    /// an ad lookup in a Parquet snapshot, into hourly Parquet.
    AdJoiner {
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
    },
    /// W3: keyed 10 s tumbling count.
    W3 {
        #[arg(long, default_value_t = 50_000_000)]
        events: u64,
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
    },
    /// W2 at parallelism 2 on a cluster of task-manager processes, with or without
    /// checkpoints (two-phase Parquet commit).
    W2Cluster {
        #[arg(long, default_value_t = 20_000_000)]
        events: u64,
        #[arg(long, default_value_t = 2)]
        task_managers: usize,
        #[arg(long, default_value_t = 1)]
        slots: u32,
        /// Checkpoint interval; none when absent.
        #[arg(long)]
        checkpoint_ms: Option<u64>,
    },
    /// W3 at parallelism 2 on a cluster of task-manager processes, with or without
    /// checkpoints (window state in RocksDB, uploaded to checkpoint storage).
    W3Cluster {
        #[arg(long, default_value_t = 100_000_000)]
        events: u64,
        #[arg(long, default_value_t = 2)]
        task_managers: usize,
        #[arg(long, default_value_t = 1)]
        slots: u32,
        /// Checkpoint interval; none when absent.
        #[arg(long)]
        checkpoint_ms: Option<u64>,
    },
    /// Large keyed state: W1 impressions counted per request id (every event a new key)
    /// in one-day windows, so RocksDB state grows by every event; checkpoints every
    /// `checkpoint_ms`. Prints each checkpoint's duration and state size.
    StateCluster {
        #[arg(long, default_value_t = 30_000_000)]
        events: u64,
        #[arg(long, default_value_t = 10_000)]
        checkpoint_ms: u64,
    },
    /// Time from SIGKILL of a task manager until the job runs again from its checkpoint
    /// and reads input: W3 (rate limited) on 3 task managers x 1 slot, checkpoints every
    /// second; one task manager running the job is killed after a few checkpoints.
    Recovery {
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Kafka -> JSON parse -> filter -> hourly Parquet (W2's job with a Kafka source) from
    /// a pre-filled 8-partition topic on a local tansu broker, next to the ceiling: one
    /// rdkafka consumer alone reading the same topic to its end.
    ///
    /// `--broker mock` serves the topic from librdkafka's mock cluster inside this process
    /// instead (much faster than tansu on sqlite, so the source's own cost shows).
    /// `--commit` runs the job on a cluster (one coordinator, one task manager with
    /// `parallelism` slots) with checkpoints every second and partition commit
    /// (compaction, `_SUCCESS`), and also reports when the last partition was committed.
    Kafka {
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1)]
        parallelism: u32,
        #[arg(long, value_enum, default_value_t = BrokerKind::Tansu)]
        broker: BrokerKind,
        #[arg(long)]
        commit: bool,
    },
    /// The ceiling's reader on its own: one rdkafka consumer reads `topic` to its end and
    /// prints `read <records> <seconds>` (run as a child process by `kafka`, so that it
    /// reaches the broker across processes, as Weir does). `--batch`: takes messages off
    /// librdkafka's queue in batches, as Weir's source does, instead of one poll each.
    #[command(hide = true)]
    ReadTopic {
        #[arg(long)]
        bootstrap_servers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partitions: i32,
        #[arg(long)]
        batch: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BrokerKind {
    Tansu,
    Mock,
}

/// The broker a Kafka benchmark reads from; kept alive for the run.
enum Broker {
    Tansu(KafkaBroker),
    Mock(rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
}

impl Broker {
    fn start(kind: BrokerKind, work: &Path) -> Result<Self> {
        Ok(match kind {
            BrokerKind::Tansu => Broker::Tansu(KafkaBroker::start(&work.join("broker"))?),
            BrokerKind::Mock => Broker::Mock(rdkafka::mocking::MockCluster::new(1)?),
        })
    }

    fn address(&self) -> String {
        match self {
            Broker::Tansu(b) => b.address.clone(),
            Broker::Mock(m) => m.bootstrap_servers(),
        }
    }

    fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        match self {
            Broker::Tansu(b) => b.create_topic(name, partitions),
            Broker::Mock(m) => Ok(m.create_topic(name, partitions as i32, 1)?),
        }
    }
}

/// See [`Workload::Kafka`].
fn kafka(events: u64, parallelism: u32, kind: BrokerKind, commit: bool, work: &Path) -> Result<()> {
    // The mock cluster keeps about 5 MB per partition (older records are dropped), so it
    // gets enough partitions to hold the whole topic.
    let partitions: u64 = match kind {
        BrokerKind::Tansu => 8,
        BrokerKind::Mock => 8.max(events.div_ceil(20_000)),
    };
    let broker = Broker::start(kind, work)?;
    let address = broker.address();
    broker.create_topic("logs", partitions as u32)?;
    let fill = Instant::now();
    let mut records = Vec::with_capacity(events as usize);
    for g in 0..events {
        let mut buf = Vec::with_capacity(200);
        w2::json_into(g, &mut buf);
        records.push(((g % partitions) as i32, buf));
    }
    let bytes: u64 = records.iter().map(|(_, r)| r.len() as u64).sum();
    produce(&address, "logs", &records)?;
    drop(records);
    println!(
        "INFO topic filled: {events} records in {partitions} partitions, {bytes} bytes in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    let mut ceilings = [0.0; 2];
    for (batch, seconds) in [false, true].into_iter().zip(ceilings.iter_mut()) {
        let (consumed, took) = read_topic_in_child(&address, "logs", partitions as i32, batch)?;
        if consumed != events {
            bail!("the raw consumer (batch reads: {batch}) read {consumed} of {events} records");
        }
        let name = if batch {
            "rdkafka_consumer_batch"
        } else {
            "rdkafka_consumer"
        };
        println!(
            "ceiling {name} {events} {took:.3} {:.0} {:.1}",
            events as f64 / took,
            bytes as f64 / took / 1e6
        );
        *seconds = took;
    }
    let [seconds, batch_seconds] = ceilings;

    let mut spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        workspace_root().join("examples").join("w2-hourly-etl.json"),
    )?)?;
    spec["sources"][0]["generator"] = serde_json::Value::Null;
    spec["sources"][0]["kafka"] = serde_json::json!({
        "bootstrap_servers": address,
        "topics": ["logs"],
        "start": "earliest",
        "bounded": true
    });
    let out = work.join("kafka-out");
    spec["sinks"][0]["parquet"]["path"] = serde_json::json!(out);
    spec["parallelism"] = serde_json::json!(parallelism);
    if commit {
        spec["checkpoint"] = serde_json::json!({"interval_ms": 1000});
        spec["sinks"][0]["parquet"]["commit"] = serde_json::json!({});
    }
    let spec_path = work.join("w2-kafka.json");
    std::fs::write(&spec_path, serde_json::to_string(&strip_nulls(spec))?)?;
    let broker_name = match kind {
        BrokerKind::Tansu => "tansu",
        BrokerKind::Mock => "mock",
    };
    let mut job_seconds = 0.0;
    let (weir_seconds, rss_mb, read, kept) = if commit {
        let run = run_on_cluster(spec_path.to_str().context("spec path")?, &[], 1, parallelism)?;
        let partitions = parquet_rows_by_partition(&out)?;
        let committed = partitions
            .keys()
            .filter(|p| out.join(p).join("_SUCCESS").exists())
            .count();
        println!(
            "INFO kafka commit: {committed} of {} partitions committed when the job finished; cpu {:.1} s",
            partitions.len(),
            run.cpu_seconds
        );
        (
            run.seconds,
            run.rss_mb,
            vertex_records_in(&run.status, "logs"),
            partitions.values().sum(),
        )
    } else {
        let m = run(spec_path.to_str().context("spec path")?, vec![], work)?;
        job_seconds = m.summary["seconds"].as_f64().unwrap_or(0.0);
        (
            m.seconds,
            m.peak_rss_mb,
            m.summary["records_read"].as_u64().unwrap_or(0),
            m.summary["sinks"][0]["rows"].as_u64().unwrap_or(0),
        )
    };
    let label = if commit { "_commit" } else { "" };
    println!(
        "weir kafka_w2_{broker_name}_p{parallelism}{label} {events} {weir_seconds:.3} {:.0} {rss_mb} {:.1}",
        events as f64 / weir_seconds,
        bytes as f64 / weir_seconds / 1e6
    );
    println!(
        "INFO kafka records_read={read} kept={kept} job_seconds={job_seconds:.3} weir/ceiling={:.2} weir/batch_ceiling={:.2} ok={}",
        seconds / weir_seconds,
        batch_seconds / weir_seconds,
        read == events
    );
    Ok(())
}

/// [`read_topic_to_end`] in a child process (`weir-bench read-topic`).
fn read_topic_in_child(address: &str, topic: &str, partitions: i32, batch: bool) -> Result<(u64, f64)> {
    let out = Command::new(std::env::current_exe()?)
        .args(["read-topic", "--bootstrap-servers", address, "--topic", topic])
        .arg("--partitions")
        .arg(partitions.to_string())
        .args(batch.then_some("--batch"))
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("the ceiling's reader failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace().skip(1);
    match (
        words.next().and_then(|w| w.parse().ok()),
        words.next().and_then(|w| w.parse().ok()),
    ) {
        (Some(read), Some(seconds)) => Ok((read, seconds)),
        _ => bail!("unexpected output of the ceiling's reader: {text}"),
    }
}

/// Reads every partition of `topic` from the beginning to its end with one consumer:
/// (records, seconds).
fn read_topic_to_end(address: &str, topic: &str, partitions: i32, batch: bool) -> Result<(u64, f64)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", "weir-bench-ceiling")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut ends = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        ends.push(consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?.1);
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let total: i64 = ends.iter().sum();
    let started = Instant::now();
    let mut read = 0u64;
    if batch {
        use weir_taskmanager::connectors::kafka::message_batch::{MessageBatch, MessageQueue, Queued};
        let queue = MessageQueue::new(&consumer).context("the consumer has no queue")?;
        let mut messages = MessageBatch::with_capacity(1024);
        let mut last_message = Instant::now();
        while (read as i64) < total {
            // A call waits its whole timeout unless the batch fills: short ones, or the
            // last partial batch would cost the timeout.
            queue.consume(Duration::from_millis(5), &mut messages);
            if !messages.is_empty() {
                last_message = Instant::now();
            } else if last_message.elapsed() > Duration::from_secs(10) {
                bail!("raw batch consumer: nothing for 10 s after {read} records");
            }
            for m in messages.iter() {
                match m.kind() {
                    Queued::Record { payload, .. } => {
                        std::hint::black_box(payload);
                        read += 1;
                    }
                    Queued::End => {}
                    Queued::Error(e) => bail!("raw batch consumer: {e}"),
                }
            }
        }
        return Ok((read, started.elapsed().as_secs_f64()));
    }
    while (read as i64) < total {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                std::hint::black_box(rdkafka::Message::payload(&m));
                read += 1;
            }
            Some(Err(e)) => bail!("raw consumer: {e}"),
            None => bail!("raw consumer: nothing for 10 s after {read} records"),
        }
    }
    Ok((read, started.elapsed().as_secs_f64()))
}

/// The spec without the `null` fields left by replacing the connector.
fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => m
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, strip_nulls(v)))
            .collect(),
        serde_json::Value::Array(a) => a.into_iter().map(strip_nulls).collect(),
        v => v,
    }
}

/// A kB figure of a live process's /proc status (`VmHWM`: peak resident, `VmRSS`: now).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident set size of a live process.
fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

/// CPU seconds (user + system) a live process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// What one job run on a cluster measured.
struct ClusterRun {
    status: String,
    seconds: f64,
    rss_mb: u64,
    cpu_seconds: f64,
}

/// Runs `spec` with `overrides` on a fresh cluster (one coordinator, `task_managers`
/// processes) from `submit` until `status` reports it finished.
fn run_on_cluster(spec: &str, overrides: &[String], task_managers: usize, slots: u32) -> Result<ClusterRun> {
    let mut cluster = ClusterSandbox::start(1);
    for _ in 0..task_managers {
        cluster.start_task_manager(slots);
    }
    cluster.wait_for_task_managers(task_managers, std::time::Duration::from_secs(60));
    let addresses = cluster.addresses();
    let spec = workspace_root().join("examples").join(spec);
    let mut args = vec!["submit".to_string(), spec.to_str().context("spec path")?.to_string()];
    for o in overrides {
        args.push("--set".into());
        args.push(o.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = cluster.cli(&args, &addresses);
    if !out.status.success() {
        bail!("submit failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let status = loop {
        let out = cluster.cli(&["status", &job], &addresses);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let first = text.lines().next().unwrap_or_default();
        if first.contains("Finished") {
            break text;
        }
        if first.contains("Failed") || first.contains("Cancelled") || first.contains("Restarting") {
            bail!("job did not run through:\n{text}\n{}", cluster.all_logs());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let seconds = started.elapsed().as_secs_f64();
    Ok(ClusterRun {
        status,
        seconds,
        rss_mb: cluster.task_manager_pids().into_iter().map(peak_rss_kb).sum::<u64>() / 1024,
        cpu_seconds: cluster.task_manager_pids().into_iter().map(cpu_seconds).sum(),
    })
}

impl ClusterRun {
    /// The benchmark line: name, events, seconds, events/s, peak RSS MB.
    fn print(&self, name: &str, events: u64) {
        println!(
            "weir {name} {events} {:.3} {:.0} {}",
            self.seconds,
            events as f64 / self.seconds,
            self.rss_mb
        );
    }
}

/// Adds the checkpoint interval (if any) to `overrides`; returns the label for the
/// benchmark line.
fn with_checkpoints(overrides: &mut Vec<String>, checkpoint_ms: Option<u64>) -> String {
    match checkpoint_ms {
        Some(ms) => {
            overrides.push(format!("checkpoint.interval_ms={ms}"));
            format!("{ms}ms")
        }
        None => "none".into(),
    }
}

/// How many checkpoints `status` lists as completed (it keeps the last 10).
fn checkpoints_completed(status: &str) -> usize {
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix("checkpoints: "))
        .and_then(|l| l.rsplit_once("recent: "))
        .map(|(_, ids)| ids.split_whitespace().count())
        .unwrap_or(0)
}

fn w3_cluster(events: u64, task_managers: usize, slots: u32, checkpoint_ms: Option<u64>) -> Result<()> {
    let mut overrides = vec![format!("sources.0.generator.events={events}"), "parallelism=2".into()];
    let label = with_checkpoints(&mut overrides, checkpoint_ms);
    let run = run_on_cluster("w3-window-count.json", &overrides, task_managers, slots)?;
    let counted = vertex_records_in(&run.status, "count");
    let windows = vertex_records_in(&run.status, "discard");
    let ok = counted == events && windows > 0 && (events != 50_000_000 || windows == 5_038_774);
    run.print(&format!("w3_cluster_{task_managers}x{slots}_ckpt_{label}"), events);
    println!(
        "INFO w3-cluster events={events} task_managers={task_managers} slots={slots} counted={counted} windows={windows} checkpoints_completed={} task_manager_cpu_s={:.1} ok={ok}",
        checkpoints_completed(&run.status),
        run.cpu_seconds
    );
    Ok(())
}

fn state_cluster(events: u64, checkpoint_ms: u64) -> Result<()> {
    let spec = serde_json::json!({
        "name": "state-bench",
        "parallelism": 2,
        "sources": [{
            "id": "impressions",
            "generator": { "workload": "w1_impressions", "events": events },
            "event_time": { "column": "ts", "max_out_of_orderness_ms": 1000 }
        }],
        "operators": [{
            "id": "per_request",
            "input": "impressions",
            "window_aggregate": {
                "key_by": ["request_id"],
                "tumbling_ms": 86_400_000u64,
                "aggregates": [{ "function": "count", "as": "n" }]
            }
        }],
        "sinks": [{ "id": "discard", "input": "per_request", "blackhole": {} }],
        "checkpoint": { "interval_ms": checkpoint_ms }
    });
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state-bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&spec)?)?;
    let run = run_on_cluster(path.to_str().context("spec path")?, &[], 2, 1)?;
    run.print(&format!("state_cluster_ckpt_{checkpoint_ms}ms"), events);
    for line in run.status.lines().filter(|l| l.contains("checkpoint")) {
        println!("INFO {}", line.trim());
    }
    Ok(())
}

/// Kills a task manager of a running W3 job and measures, from the kill, when the job
/// runs again and when its source has read again.
fn recovery(runs: usize) -> Result<()> {
    for run in 0..runs {
        let mut cluster = ClusterSandbox::start(1);
        for _ in 0..3 {
            cluster.start_task_manager(1);
        }
        cluster.wait_for_task_managers(3, Duration::from_secs(60));
        let addresses = cluster.addresses();
        let spec = workspace_root().join("examples/w3-window-count.json");
        let out = cluster.cli(
            &[
                "submit",
                spec.to_str().context("spec path")?,
                "--set",
                "sources.0.generator.events=40000000",
                "--set",
                "sources.0.generator.events_per_second=1000000",
                "--set",
                "checkpoint.interval_ms=1000",
            ],
            &addresses,
        );
        if !out.status.success() {
            bail!("submit failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let status = |cluster: &ClusterSandbox| {
            String::from_utf8_lossy(&cluster.cli(&["status", &job], &addresses).stdout).into_owned()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let before = loop {
            let s = status(&cluster);
            if s.contains("checkpoints: last 3") || s.contains("checkpoints: last 4") {
                break s;
            }
            if Instant::now() > deadline {
                bail!(
                    "no checkpoints:
{s}
{}",
                    cluster.all_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let victim = before
            .lines()
            .find_map(|l| l.split("0@").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|tm| tm.strip_prefix("tm-"))
            .and_then(|i| i.parse::<usize>().ok())
            .context("where subtask 0 runs")?;
        let killed = Instant::now();
        cluster.kill_task_manager(victim);
        let mut running = None;
        let reading = loop {
            let s = status(&cluster);
            let first = s.lines().next().unwrap_or_default();
            if first.contains("Running") && !first.contains("attempt 0") {
                running.get_or_insert_with(|| killed.elapsed());
                if vertex_records_in(&s, "events") > 0 {
                    break killed.elapsed();
                }
            }
            if killed.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the job did not recover:
{s}
{}",
                    cluster.all_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let running = running.unwrap_or(reading);
        println!(
            "INFO recovery run={run} kill_to_running_ms={} kill_to_reading_ms={}",
            running.as_millis(),
            reading.as_millis()
        );
    }
    Ok(())
}

fn w2_cluster(events: u64, task_managers: usize, slots: u32, checkpoint_ms: Option<u64>) -> Result<()> {
    let out = tempfile::tempdir()?;
    let mut overrides = vec![
        format!("sources.0.generator.events={events}"),
        "parallelism=2".into(),
        format!("sinks.0.parquet.path={}", out.path().display()),
    ];
    let label = with_checkpoints(&mut overrides, checkpoint_ms);
    let run = run_on_cluster("w2-hourly-etl.json", &overrides, task_managers, slots)?;
    let kept = vertex_records_in(&run.status, "hourly");
    let footer_rows: u64 = parquet_rows_by_partition(out.path())?.values().sum();
    let ok = kept == footer_rows && (events != 10_000_000 || kept == 8_550_639);
    run.print(&format!("w2_cluster_{task_managers}x{slots}_ckpt_{label}"), events);
    println!(
        "INFO w2-cluster events={events} checkpoint={label} kept={kept} footer_rows={footer_rows} checkpoints_completed={} task_manager_cpu_s={:.1} ok={ok}",
        checkpoints_completed(&run.status),
        run.cpu_seconds
    );
    Ok(())
}

struct Measured {
    seconds: f64,
    peak_rss_mb: u64,
    summary: serde_json::Value,
}

fn run(spec: &str, overrides: Vec<String>, work: &Path) -> Result<Measured> {
    run_traced(spec, overrides, work, None)
}

/// Bytes in the files below `dir`.
fn bytes_below(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_below(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// [`run`], printing `trace` lines (seconds, resident MB, MB under `work`) every `trace`.
fn run_traced(spec: &str, overrides: Vec<String>, work: &Path, trace: Option<Duration>) -> Result<Measured> {
    let summary_path = work.join("summary.json");
    let mut cmd = Command::new(binary("coordinator"));
    cmd.arg("local")
        .arg(workspace_root().join("examples").join(spec))
        .args(["--progress-ms", "0", "--summary-json"])
        .arg(&summary_path)
        .arg("--work-dir")
        .arg(work)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for o in overrides {
        cmd.arg("--set").arg(o);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting coordinator")?;
    let pid = child.id();
    // The peak is read from the child's own high-water mark while it runs, not from
    // wait4's rusage: a child's ru_maxrss starts at its parent's resident size at fork, and this
    // process may hold a whole topic in its mock broker.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let work = work.to_path_buf();
        std::thread::spawn(move || {
            let mut peak = 0;
            let mut next_trace = trace.map(|t| started + t);
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(peak_rss_kb(pid));
                if let (Some(at), Some(every)) = (next_trace, trace)
                    && Instant::now() >= at
                {
                    eprintln!(
                        "trace {:>5.0} s  rss {:>5} MB  state on disk {:>6} MB",
                        started.elapsed().as_secs_f64(),
                        status_kb(pid, "VmRSS:") / 1024,
                        bytes_below(&work) >> 20
                    );
                    next_trace = Some(at + every);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let status = child.wait()?;
    done.store(true, Ordering::Relaxed);
    let maxrss_kb = sampler.join().unwrap_or(0);
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("coordinator exited with {status}");
    }
    let summary = serde_json::from_str(&std::fs::read_to_string(&summary_path)?)?;
    Ok(Measured {
        seconds,
        peak_rss_mb: maxrss_kb / 1024,
        summary,
    })
}

fn main() -> Result<()> {
    let work = tempfile::tempdir()?;
    match Cli::parse().workload {
        Workload::W2Cluster {
            events,
            task_managers,
            slots,
            checkpoint_ms,
        } => w2_cluster(events, task_managers, slots, checkpoint_ms)?,
        Workload::W3Cluster {
            events,
            task_managers,
            slots,
            checkpoint_ms,
        } => w3_cluster(events, task_managers, slots, checkpoint_ms)?,
        Workload::StateCluster { events, checkpoint_ms } => state_cluster(events, checkpoint_ms)?,
        Workload::Recovery { runs } => recovery(runs)?,
        Workload::Kafka {
            events,
            parallelism,
            broker,
            commit,
        } => kafka(events, parallelism, broker, commit, work.path())?,
        Workload::ReadTopic {
            bootstrap_servers,
            topic,
            partitions,
            batch,
        } => {
            let (read, seconds) = read_topic_to_end(&bootstrap_servers, &topic, partitions, batch)?;
            println!("read {read} {seconds}");
        }
        Workload::W2 {
            events,
            parallelism,
            compression,
        } => {
            let out = work.path().join("w2-out");
            let m = run(
                "w2-hourly-etl.json",
                vec![
                    format!("sources.0.generator.events={events}"),
                    format!("parallelism={parallelism}"),
                    format!("sinks.0.parquet.path={}", out.display()),
                    format!("sinks.0.parquet.compression={compression}"),
                ],
                work.path(),
            )?;
            let sink = &m.summary["sinks"][0];
            let rows = parquet_rows_by_partition(&out)?;
            let footer_rows: u64 = rows.values().sum();
            let kept = sink["rows"].as_u64().unwrap_or(0);
            let ok = kept == footer_rows
                && rows.len() as u64 == sink["partitions"].as_u64().unwrap_or(0)
                && (events != 10_000_000 || (kept == 8_550_639 && rows.len() == 29));
            println!(
                "weir w2_etl {events} {:.3} {:.0} {}",
                m.seconds,
                events as f64 / m.seconds,
                m.peak_rss_mb
            );
            println!(
                "INFO w2 events={events} parallelism={parallelism} compression={compression} kept={kept} footer_rows={footer_rows} hour_buckets={} files={} parquet_bytes={} job_seconds={:.3} ok={ok}",
                rows.len(),
                sink["files"],
                sink["bytes"],
                m.summary["seconds"].as_f64().unwrap_or(0.0),
            );
        }
        Workload::W1 {
            events,
            parallelism,
            window_ms,
            state,
            trace_secs,
        } => {
            let redis = match state.as_str() {
                "redis" => Some(RedisServer::start(&work.path().join("redis"))?),
                _ => None,
            };
            let state_spec = match &redis {
                Some(r) => format!(r#"{{"redis": {{"url": "{}"}}}}"#, r.url()),
                None => state.clone(),
            };
            let m = run_traced(
                "w1-window-join.json",
                vec![
                    format!("sources.0.generator.events={events}"),
                    format!("sources.1.generator.events={events}"),
                    format!("parallelism={parallelism}"),
                    format!("operators.0.window_join.window_ms={window_ms}"),
                    format!("operators.0.window_join.state={state_spec}"),
                ],
                work.path(),
                trace_secs.map(Duration::from_secs),
            )?;
            let sink = &m.summary["sinks"][0];
            let rows = sink["rows"].as_u64().unwrap_or(0);
            let sum = |c: &str| column_sum(sink, c).unwrap_or(0);
            let (label1, delay_sum) = (sum("label"), sum("click_delay_ms"));
            // Every click lies within 30 s of its impression: inside any window of 30 s or more.
            let clicked: Vec<u64> = (0..events).filter(|g| w1::clicked(*g)).collect();
            let expected_delay: i128 = clicked
                .iter()
                .map(|g| (w1::click_ts(*g) - w1::imp_ts(*g)) as i128)
                .sum();
            let mut ok = rows == events
                && label1 == clicked.len() as i128
                && delay_sum == expected_delay
                && window_ms >= 30_000
                && m.summary["late_records"] == 0;
            if let Some(r) = &redis {
                let info = r.cli(&["INFO", "memory"])?;
                let peak: u64 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("used_memory_peak:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let left = r.keys()?;
                ok &= left == 0;
                println!("INFO redis peak_memory_mb={} keys_left={left}", peak >> 20);
            }
            let input = events + clicked.len() as u64;
            println!(
                "weir w1_{state} {input} {:.3} {:.0} {}",
                m.seconds,
                input as f64 / m.seconds,
                m.peak_rss_mb
            );
            println!(
                "INFO w1 impressions={events} window_ms={window_ms} state={state} parallelism={parallelism} outputs={rows} label1={label1} click_delay_sum={delay_sum} job_seconds={:.3} ok={ok}",
                m.summary["seconds"].as_f64().unwrap_or(0.0),
            );
        }
        Workload::AdJoiner { events, users } => {
            let dims = AdJoinerDims::create(work.path(), users)?;
            let mut overrides = dims.overrides();
            overrides.extend([
                format!("sources.0.generator.events={events}"),
                format!("sources.1.generator.events={events}"),
                format!("sinks.0.parquet.path={}", work.path().join("samples").display()),
            ]);
            let m = run("ad-joiner.json", overrides, work.path())?;
            let rows = m.summary["sinks"][0]["rows"].as_u64().unwrap_or(0);
            let clicked = (0..events).filter(|g| w1::clicked(*g)).count() as u64;
            let input = events + clicked;
            println!(
                "weir ad_joiner {input} {:.3} {:.0} {}",
                m.seconds,
                input as f64 / m.seconds,
                m.peak_rss_mb
            );
            println!(
                "INFO ad_joiner impressions={events} users_in_redis={users} outputs={rows} ok={}",
                rows == events
            );
        }
        Workload::W3 { events, parallelism } => {
            let m = run(
                "w3-window-count.json",
                vec![
                    format!("sources.0.generator.events={events}"),
                    format!("parallelism={parallelism}"),
                ],
                work.path(),
            )?;
            let sink = &m.summary["sinks"][0];
            let rows = sink["rows"].as_u64().unwrap_or(0) as i128;
            let sum = |c: &str| column_sum(sink, c).unwrap_or(0);
            let count_sum = sum("count");
            let window_index_sum = (sum("window_start") - rows * BASE) / 10_000;
            let ok = count_sum == events as i128
                && (events != 50_000_000 || (rows == 5_038_774 && window_index_sum == 122_454_870));
            println!(
                "weir w3_tumbling {events} {:.3} {:.0} {}",
                m.seconds,
                events as f64 / m.seconds,
                m.peak_rss_mb
            );
            println!(
                "INFO w3 events={events} parallelism={parallelism} output_rows={rows} count_sum={count_sum} window_index_sum={window_index_sum} job_seconds={:.3} ok={ok}",
                m.summary["seconds"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(())
}
