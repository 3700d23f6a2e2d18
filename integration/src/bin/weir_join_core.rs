//! Benchmark of the window join's operator core on W1 (`shared/bench/flink/README.md`,
//! the ad joiner): impressions and clicks generated bit for bit, fed in batches straight
//! into one `WindowJoin` with its RocksDB state (no sources, network or sink), the
//! watermark following the clicks' 31 s disorder bound. Measures what the state layout
//! costs before the job around it exists; checks the counters against ones computed from
//! the workload's definition (for N = 5,000,000 those are the README's: 5,000,000 outputs,
//! 650,181 with label 1, Σ(click_ts − imp_ts) = 9,753,684,532).
//!
//! Prints `weir w1_core <events> <seconds> <events_per_s> <peak_rss_mb>` and an `INFO`
//! line with the counters and `ok=true|false`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use arrow::array::{AsArray, RecordBatch, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use clap::Parser;
use weir_taskmanager::connectors::generator::datagen::{below, w1};
use weir_taskmanager::operators::join_store::JoinStore;
use weir_taskmanager::operators::window_join::{JoinMatches, JoinOptions, JoinSide, WindowJoin};
use weir_taskmanager::runtime::operator::Operator;
use weir_taskmanager::runtime::stream_event::StreamEvent;
use weir_taskmanager::state::OperatorStateContext;

#[derive(Parser)]
#[command(about = "W1 through the window join's operator core")]
struct Args {
    /// Impressions (N).
    #[arg(long, default_value_t = 5_000_000)]
    events: u64,
    /// Rows per input batch.
    #[arg(long, default_value_t = 4096)]
    batch: u64,
}

fn clicked(g: u64) -> bool {
    below(g, 5, 10_000) < 1300
}

fn click_ts(g: u64) -> i64 {
    w1::imp_ts(g) + below(g, 6, 30_001) as i64
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

#[derive(Default)]
struct Counters {
    outputs: u64,
    label1: u64,
    delay_sum: i64,
}

impl Counters {
    fn count(&mut self, events: &mut Vec<StreamEvent>) {
        for e in events.drain(..) {
            if let StreamEvent::Data(b) = e {
                let imp = b.column(1).as_primitive::<TimestampMillisecondType>();
                let click = b.column(2).as_primitive::<TimestampMillisecondType>();
                let label = b.column(3).as_primitive::<Int32Type>();
                for i in 0..b.num_rows() {
                    self.outputs += 1;
                    if label.value(i) == 1 {
                        self.label1 += 1;
                        self.delay_sum += click.value(i) - imp.value(i);
                    }
                }
            }
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, None);
    let rows: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::UInt64, false),
        Field::new("ts", ts(), false),
    ]));
    let output: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::UInt64, false),
        Field::new("ts", ts(), false),
        Field::new("click_ts", ts(), true),
        Field::new("label", DataType::Int32, false),
    ]));
    let ctx = OperatorStateContext::standalone(dir.path().join("state"), 128);
    let options = JoinOptions {
        window_ms: 60_000,
        delay_ms: 0,
        matches: JoinMatches::First,
        inner: false,
        b_columns: vec![1],
    };
    let side = || JoinSide {
        schema: rows.clone(),
        key_columns: vec![0],
        event_time_column: 1,
    };
    let store = JoinStore::new("w1", ctx, options.window_ms, options.delay_ms);
    let mut join = WindowJoin::new(
        "w1",
        options,
        (side(), side()),
        output,
        Box::new(store),
        128,
        Arc::default(),
    )?;
    let watermark = |join: &mut WindowJoin, wm: i64, out: &mut Vec<StreamEvent>| -> Result<()> {
        join.on_watermark(wm, out)?;
        while join.has_deferred_output() {
            join.resume(out)?;
        }
        Ok(())
    };
    let batch = |gs: &[u64], t: fn(u64) -> i64| {
        RecordBatch::try_new(
            rows.clone(),
            vec![
                Arc::new(UInt64Array::from_iter_values(gs.iter().map(|g| w1::request_id(*g)))),
                Arc::new(TimestampMillisecondArray::from_iter_values(gs.iter().map(|g| t(*g)))),
            ],
        )
    };
    let started = Instant::now();
    let mut counters = Counters::default();
    let mut out = Vec::new();
    let mut clicks = 0u64;
    for first in (0..args.events).step_by(args.batch as usize) {
        let gs: Vec<u64> = (first..(first + args.batch).min(args.events)).collect();
        let clicked: Vec<u64> = gs.iter().copied().filter(|g| clicked(*g)).collect();
        clicks += clicked.len() as u64;
        join.on_a(&batch(&gs, w1::imp_ts)?)?;
        join.on_b(&batch(&clicked, click_ts)?)?;
        watermark(&mut join, w1::imp_ts(gs[gs.len() - 1]) - 31_001, &mut out)?;
        counters.count(&mut out);
    }
    watermark(&mut join, i64::MAX, &mut out)?;
    counters.count(&mut out);
    let seconds = started.elapsed().as_secs_f64();
    let events = args.events + clicks;
    let expected_delay: i64 = (0..args.events)
        .filter(|g| clicked(*g))
        .map(|g| click_ts(g) - w1::imp_ts(g))
        .sum();
    let ok = (counters.outputs, counters.label1, counters.delay_sum) == (args.events, clicks, expected_delay)
        && (join.late_a, join.late_b) == (0, 0);
    println!(
        "weir w1_core {events} {seconds:.3} {:.0} {}",
        events as f64 / seconds,
        peak_rss_mb()
    );
    println!(
        "INFO w1_core impressions={} clicks={clicks} outputs={} label1={} click_delay_sum={} late_a={} late_b={} ok={ok}",
        args.events, counters.outputs, counters.label1, counters.delay_sum, join.late_a, join.late_b
    );
    if !ok {
        anyhow::bail!("W1 counters differ from the workload's");
    }
    Ok(())
}
