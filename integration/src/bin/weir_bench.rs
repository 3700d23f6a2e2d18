//! Benchmarks of Weir's hot paths on the reference workloads (`shared/bench/flink`): runs
//! the real `coordinator local` binary as a child process on the example job, times it
//! (wall clock, process start included), reads its peak RSS from the kernel, and checks
//! the result against the workload's verification counters.
//!
//! Prints `weir <workload> <events> <seconds> <events_per_s> <peak_rss_mb>` and an
//! `INFO` line with the counters and `ok=true|false`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use weir_integration::{binary, parquet_rows_by_partition, workspace_root};

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
    /// W3: keyed 10 s tumbling count.
    W3 {
        #[arg(long, default_value_t = 50_000_000)]
        events: u64,
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
    },
}

struct Measured {
    seconds: f64,
    peak_rss_mb: u64,
    summary: serde_json::Value,
}

fn run(spec: &str, overrides: Vec<String>, work: &Path) -> Result<Measured> {
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
    let child = cmd.spawn().context("starting coordinator")?;
    let (status, maxrss_kb) = wait_with_rusage(child.id() as libc::pid_t)?;
    let seconds = started.elapsed().as_secs_f64();
    if status != 0 {
        bail!("coordinator exited with status {status}");
    }
    let summary = serde_json::from_str(&std::fs::read_to_string(&summary_path)?)?;
    Ok(Measured {
        seconds,
        peak_rss_mb: maxrss_kb / 1024,
        summary,
    })
}

/// Reaps the child with wait4, which also reports its peak resident set size.
fn wait_with_rusage(pid: libc::pid_t) -> Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: plain syscall on our own child; rusage is a POD struct filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, usage.ru_maxrss as u64))
}

fn main() -> Result<()> {
    let work = tempfile::tempdir()?;
    match Cli::parse().workload {
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
            let sum = |c: &str| -> i128 {
                sink["column_sums"][c]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            };
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
