//! `window_join`: `A LEFT JOIN B WITHIN window DELAY delay ON key`, the joiner's operator.
//! Every A row (an impression) comes out exactly once, when the watermark reaches
//! `t_A + window + delay`, with the B rows (clicks) of its key whose event time lies in
//! `[t_A, t_A + window]`: the earliest one (`first`) or each of them (`all`), or with
//! nulls and label 0 when there is none (`inner` drops those). B rows no A row can match
//! any more are dropped after their own window. State lives in RocksDB (`join_store`), so
//! pending rows and their timers survive restarts and do not live on the heap.
//!
//! Rows are stored in Arrow's row format (the whole A or B row), so any schema works and
//! output batches are rebuilt column by column. Output columns: every A column, then the
//! chosen B columns under their output names, then the label (int32, 1 with a match).
//!
//! An A row that arrives when its time has already come is counted as late and still
//! emitted at the next watermark, with whatever B rows are still held (never dropped: the
//! sample count must not drift). A B row that arrives after its own window is dropped and
//! counted.
//!
//! The output's event time is A's, and an A row comes out `window + delay` after it: the
//! output watermark trails the input's by that much (as Flink's interval join holds its
//! watermark back), so hourly sinks downstream close an hour only once its rows are out.
//! A watermark that fires many rows emits them as deferred output, one bounded batch per
//! step, so a burst of due timers never builds up in memory.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use futures::future::BoxFuture;
use weir_common::Vertex;
use weir_common::event_time::WATERMARK_MAX;
use weir_common::key_groups::key_group;
use weir_common::spec::{JoinMatchesSpec, JoinStateSpec, WindowJoinSpec};

use crate::error::TaskError;
use crate::operators::heap_join_store::HeapJoinStore;
use crate::operators::join_state::{Fired, JoinState};
use crate::operators::join_store::JoinStore;
use crate::operators::redis_join_store::RedisJoinStore;
use crate::runtime::event_time_column::event_times;
use crate::runtime::key_partitioner::hash_keys;
use crate::runtime::operator::Operator;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;
use crate::state::OperatorStateContext;

/// A rows emitted per output batch when the watermark fires many at once.
const FIRE_CHUNK: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMatches {
    /// One output row per A row, with its earliest B row.
    First,
    /// One output row per (A row, B row) pair; one with nulls when there is none.
    All,
}

/// One side of the join: its schema, key columns and event-time column.
#[derive(Debug, Clone)]
pub struct JoinSide {
    pub schema: SchemaRef,
    pub key_columns: Vec<usize>,
    pub event_time_column: usize,
}

#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub window_ms: i64,
    pub delay_ms: i64,
    pub matches: JoinMatches,
    /// Only A rows with a match come out.
    pub inner: bool,
    /// The B columns in the output, by index into B's schema.
    pub b_columns: Vec<usize>,
}

struct Encoded {
    keys: Rows,
    groups: Vec<u32>,
    rows: Rows,
    times: Vec<i64>,
}

pub struct WindowJoin {
    name: String,
    options: JoinOptions,
    a: JoinSide,
    b: JoinSide,
    output: SchemaRef,
    keys: RowConverter,
    a_rows: RowConverter,
    b_rows: RowConverter,
    store: Box<dyn JoinState>,
    max_parallelism: u32,
    watermark: i64,
    /// Whether the last watermark's firing has more steps to emit.
    firing: bool,
    /// A fired chunk whose rows the store is still fetching, and whether more is due.
    fetching: Option<(Vec<Fired>, bool)>,
    /// A checkpoint's barrier, or the end-of-input watermark, held until the store has
    /// made its writes (and deletions) durable.
    held: Option<StreamEvent>,
    metrics: Arc<SubtaskMetrics>,
    /// A rows that came after their time (emitted anyway) and B rows dropped as late;
    /// both also count as the subtask's late records.
    pub late_a: u64,
    pub late_b: u64,
}

fn converter(schema: &SchemaRef, columns: impl Iterator<Item = usize>) -> Result<RowConverter, ArrowError> {
    RowConverter::new(
        columns
            .map(|i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )
}

impl WindowJoin {
    pub fn new(
        name: &str,
        options: JoinOptions,
        (a, b): (JoinSide, JoinSide),
        output: SchemaRef,
        store: Box<dyn JoinState>,
        max_parallelism: u32,
        metrics: Arc<SubtaskMetrics>,
    ) -> Result<Self, TaskError> {
        let err = |e| TaskError::arrow(name, e);
        let keys = converter(&a.schema, a.key_columns.iter().copied()).map_err(err)?;
        let a_rows = converter(&a.schema, 0..a.schema.fields().len()).map_err(err)?;
        let b_rows = converter(&b.schema, 0..b.schema.fields().len()).map_err(err)?;
        Ok(Self {
            name: name.to_string(),
            options,
            a,
            b,
            output,
            keys,
            a_rows,
            b_rows,
            store,
            max_parallelism,
            watermark: i64::MIN,
            firing: false,
            fetching: None,
            held: None,
            metrics,
            late_a: 0,
            late_b: 0,
        })
    }

    /// The operator of a validated `window_join` vertex of job `job`, reading `inputs`
    /// (A, B).
    pub fn from_spec(
        job: &str,
        vertex: &Vertex,
        spec: &WindowJoinSpec,
        inputs: (&Vertex, &Vertex),
        metrics: Arc<SubtaskMetrics>,
        state: OperatorStateContext,
    ) -> Result<Self, TaskError> {
        let column = |v: &Vertex, name: &str| {
            v.schema.index_of(name).map_err(|_| TaskError::Invalid {
                vertex: vertex.name.clone(),
                message: format!("'{}' has no column '{name}'", v.name),
            })
        };
        let side = |v: &Vertex, keys: &[String]| -> Result<JoinSide, TaskError> {
            Ok(JoinSide {
                schema: v.schema.clone(),
                key_columns: keys.iter().map(|k| column(v, k)).collect::<Result<_, _>>()?,
                event_time_column: column(v, &v.event_time_column)?,
            })
        };
        let (a, b) = inputs;
        let options = JoinOptions {
            window_ms: spec.window_ms as i64,
            delay_ms: spec.delay_ms as i64,
            matches: match spec.matches {
                JoinMatchesSpec::First => JoinMatches::First,
                JoinMatchesSpec::All => JoinMatches::All,
            },
            inner: spec.inner,
            b_columns: spec
                .right_columns
                .iter()
                .map(|c| column(b, c.column()))
                .collect::<Result<_, _>>()?,
        };
        let max_parallelism = state.max_parallelism;
        let progress = state.uploader.as_ref().map(|u| u.progress.clone());
        let (window, delay) = (options.window_ms, options.delay_ms);
        let store: Box<dyn JoinState> = match &spec.state {
            JoinStateSpec::Rocksdb => Box::new(JoinStore::new(&vertex.name, state, window, delay)),
            JoinStateSpec::Memory => Box::new(HeapJoinStore::new(&vertex.name, state, window, delay)?),
            JoinStateSpec::Redis(redis) => {
                let prefix = redis
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| format!("weir:{job}:{}:", vertex.name));
                Box::new(RedisJoinStore::new(
                    &vertex.name,
                    state,
                    (window, delay),
                    redis,
                    prefix,
                    progress,
                    metrics.clone(),
                )?)
            }
        };
        Self::new(
            &vertex.name,
            options,
            (side(a, &spec.left_key)?, side(b, &spec.right_key)?),
            vertex.schema.clone(),
            store,
            max_parallelism,
            metrics,
        )
    }

    fn arrow(&self, e: ArrowError) -> TaskError {
        TaskError::arrow(&self.name, e)
    }

    /// One side's batch in the store's terms: per row its key, key group, event time and
    /// whole row.
    fn encode(&self, batch: &RecordBatch, a_side: bool) -> Result<Encoded, TaskError> {
        let (side, converter) = if a_side {
            (&self.a, &self.a_rows)
        } else {
            (&self.b, &self.b_rows)
        };
        let cols: Vec<ArrayRef> = side.key_columns.iter().map(|i| batch.column(*i).clone()).collect();
        Ok(Encoded {
            keys: self.keys.convert_columns(&cols).map_err(|e| self.arrow(e))?,
            groups: hash_keys(&cols, batch.num_rows())
                .map_err(|e| self.arrow(e))?
                .into_iter()
                .map(|h| key_group(h, self.max_parallelism))
                .collect(),
            rows: converter.convert_columns(batch.columns()).map_err(|e| self.arrow(e))?,
            times: event_times(batch, side.event_time_column).to_vec(),
        })
    }

    pub fn on_a(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        let e = self.encode(batch, true)?;
        for (i, &t) in e.times.iter().enumerate() {
            if self.due(t) <= self.watermark {
                self.late_a += 1;
                SubtaskMetrics::add(&self.metrics.late_records, 1);
            }
            self.store
                .add_a(e.groups[i], e.keys.row(i).as_ref(), t, e.rows.row(i).as_ref())?;
        }
        Ok(())
    }

    pub fn on_b(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        let e = self.encode(batch, false)?;
        for (i, &t) in e.times.iter().enumerate() {
            if self.due(t) <= self.watermark {
                self.late_b += 1;
                SubtaskMetrics::add(&self.metrics.late_records, 1);
                continue;
            }
            self.store
                .add_b(e.groups[i], e.keys.row(i).as_ref(), t, e.rows.row(i).as_ref())?;
        }
        Ok(())
    }

    /// When an A row at `t_a` is due.
    fn due(&self, t_a: i64) -> i64 {
        t_a.saturating_add(self.options.window_ms)
            .saturating_add(self.options.delay_ms)
    }

    /// The output watermark for input watermark `watermark`.
    fn held_back(&self, watermark: i64) -> i64 {
        if watermark == WATERMARK_MAX {
            return WATERMARK_MAX;
        }
        watermark.saturating_sub(self.due(0))
    }

    /// One output row per fired A row (`first`), or per pair (`all`).
    fn output_batch(&self, fired: Vec<Fired>) -> Result<RecordBatch, TaskError> {
        let mut a_rows = Vec::with_capacity(fired.len());
        let mut b_rows: Vec<&[u8]> = Vec::new();
        // Per output row: the B row it carries (an index into `b_rows`), if any.
        let mut b_of: Vec<Option<u32>> = Vec::with_capacity(fired.len());
        for f in &fired {
            let chosen: &[(i64, Vec<u8>)] = match self.options.matches {
                JoinMatches::First => &f.matches[..f.matches.len().min(1)],
                JoinMatches::All => &f.matches,
            };
            if chosen.is_empty() {
                if !self.options.inner {
                    a_rows.push(f.row.as_slice());
                    b_of.push(None);
                }
                continue;
            }
            for (_, b) in chosen {
                a_rows.push(f.row.as_slice());
                b_of.push(Some(b_rows.len() as u32));
                b_rows.push(b.as_slice());
            }
        }
        let a_parser = self.a_rows.parser();
        let mut columns = self
            .a_rows
            .convert_rows(a_rows.iter().map(|r| a_parser.parse(r)))
            .map_err(|e| self.arrow(e))?;
        let b_parser = self.b_rows.parser();
        let b_columns = self
            .b_rows
            .convert_rows(b_rows.iter().map(|r| b_parser.parse(r)))
            .map_err(|e| self.arrow(e))?;
        let label = Int32Array::from_iter_values(b_of.iter().map(|b| i32::from(b.is_some())));
        let picks = UInt32Array::from(b_of);
        for i in &self.options.b_columns {
            columns.push(take(&b_columns[*i], &picks, None).map_err(|e| self.arrow(e))?);
        }
        columns.push(Arc::new(label));
        RecordBatch::try_new(self.output.clone(), columns).map_err(|e| self.arrow(e))
    }
}

impl Operator for WindowJoin {
    /// A batch of the A side.
    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.on_a(&batch)
    }

    fn on_input_batch(&mut self, input: usize, batch: RecordBatch, _: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        match input {
            0 => self.on_a(&batch),
            _ => self.on_b(&batch),
        }
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.watermark = self.watermark.max(watermark);
        self.firing = true;
        self.resume(out)
    }

    fn on_barrier(&mut self, id: u64, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.store.checkpoint(id)?;
        self.pass_when_synced(StreamEvent::Barrier(id), out)
    }

    /// While firing, while a barrier waits for the store, and while the store takes no
    /// more rows (its writes are backed up: Redis is slow or away).
    fn has_deferred_output(&self) -> bool {
        self.firing || self.held.is_some() || !self.store.accepting()
    }

    fn io_wait(&mut self) -> Option<BoxFuture<'static, ()>> {
        self.store.io_wait()
    }

    /// Emits the next batch of what is due; after the last, drops the B rows past every
    /// window and passes the watermark on. A held event goes on once the store synced.
    fn resume(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        if let Some(event) = self.held.take() {
            return self.pass_when_synced(event, out);
        }
        if !self.firing {
            // Only waiting for the store to take rows again (`io_wait` sends them on).
            return Ok(());
        }
        let (mut fired, more) = match self.fetching.take() {
            Some(chunk) => chunk,
            None => {
                let mut fired = Vec::with_capacity(FIRE_CHUNK);
                let more = self.store.fire(self.watermark, FIRE_CHUNK, &mut fired)?;
                if self.options.matches == JoinMatches::First {
                    fired.iter_mut().for_each(|f| f.matches.truncate(1));
                }
                (fired, more)
            }
        };
        if !fired.is_empty() && !self.store.resolve(&mut fired)? {
            self.fetching = Some((fired, more));
            return Ok(());
        }
        if !fired.is_empty() {
            let batch = self.output_batch(fired)?;
            if batch.num_rows() > 0 {
                out.push(StreamEvent::Data(batch));
            }
        }
        if !more {
            self.firing = false;
            self.store.expire(self.watermark)?;
            let watermark = StreamEvent::Watermark(self.held_back(self.watermark));
            if self.watermark == WATERMARK_MAX {
                // The end of the input: what the store still has to write or delete goes
                // out before the job can end.
                self.store.sync();
                return self.pass_when_synced(watermark, out);
            }
            out.push(watermark);
        }
        Ok(())
    }
}

impl WindowJoin {
    fn pass_when_synced(&mut self, event: StreamEvent, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        if self.store.synced()? {
            out.push(event);
        } else {
            self.held = Some(event);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, TimeUnit, TimestampMillisecondType};

    use super::*;
    use crate::operators::redis_rows::test_server::TestRedis;
    use weir_common::spec::RedisStateSpec;

    fn ts() -> DataType {
        DataType::Timestamp(TimeUnit::Millisecond, None)
    }

    fn impressions() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("request_id", DataType::Int64, false),
            Field::new("ts", ts(), false),
            Field::new("ad", DataType::Utf8, false),
        ]))
    }

    fn clicks() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("request_id", DataType::Int64, false),
            Field::new("ts", ts(), false),
        ]))
    }

    fn output() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("request_id", DataType::Int64, false),
            Field::new("ts", ts(), false),
            Field::new("ad", DataType::Utf8, false),
            Field::new("click_ts", ts(), true),
            Field::new("label", DataType::Int32, false),
        ]))
    }

    /// Every store, the Redis one with a server of its own (kept alive with it).
    fn stores() -> Vec<(JoinStateSpec, Option<TestRedis>)> {
        let redis = TestRedis::start();
        let spec = RedisStateSpec {
            url: redis.url(),
            key_prefix: None,
            ttl_ms: 3_600_000,
            timeout_ms: 1_000,
        };
        vec![
            (JoinStateSpec::Rocksdb, None),
            (JoinStateSpec::Memory, None),
            (JoinStateSpec::Redis(spec), Some(redis)),
        ]
    }

    fn join(dir: &std::path::Path, matches: JoinMatches, inner: bool, state: JoinStateSpec) -> WindowJoin {
        let ctx = OperatorStateContext::standalone(dir.to_path_buf(), 128);
        let options = JoinOptions {
            window_ms: 60_000,
            delay_ms: 0,
            matches,
            inner,
            b_columns: vec![1],
        };
        let side = |schema| JoinSide {
            schema,
            key_columns: vec![0],
            event_time_column: 1,
        };
        let store: Box<dyn JoinState> = match state {
            JoinStateSpec::Rocksdb => Box::new(JoinStore::new("join", ctx, 60_000, 0)),
            JoinStateSpec::Memory => Box::new(HeapJoinStore::new("join", ctx, 60_000, 0).unwrap()),
            JoinStateSpec::Redis(spec) => Box::new(
                RedisJoinStore::new("join", ctx, (60_000, 0), &spec, "t:".into(), None, Arc::default()).unwrap(),
            ),
        };
        WindowJoin::new(
            "join",
            options,
            (side(impressions()), side(clicks())),
            output(),
            store,
            128,
            Arc::default(),
        )
        .unwrap()
    }

    /// Everything the watermark fires, every deferred step included.
    fn watermark(j: &mut WindowJoin, wm: i64) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        j.on_watermark(wm, &mut out).unwrap();
        while j.has_deferred_output() {
            if let Some(io) = j.io_wait() {
                futures::executor::block_on(io);
            }
            j.resume(&mut out).unwrap();
        }
        out
    }

    fn a_batch(rows: &[(i64, i64, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            impressions(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn b_batch(rows: &[(i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            clicks(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    /// (request_id, click_ts, label) of every output row, in order.
    fn rows(events: &[StreamEvent]) -> Vec<(i64, Option<i64>, i32)> {
        let mut out = Vec::new();
        for e in events {
            if let StreamEvent::Data(b) = e {
                let ids = b.column(0).as_primitive::<Int64Type>();
                let click = b.column(3).as_primitive::<TimestampMillisecondType>();
                let label = b.column(4).as_primitive::<Int32Type>();
                for i in 0..b.num_rows() {
                    out.push((
                        ids.value(i),
                        (!click.is_null(i)).then(|| click.value(i)),
                        label.value(i),
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn every_impression_comes_out_once_after_its_window_labelled_by_its_first_click() {
        stores().into_iter().for_each(|(state, _redis)| {
            every_impression_comes_out_once_after_its_window_labelled_by_its_first_click_with(state)
        });
    }

    fn every_impression_comes_out_once_after_its_window_labelled_by_its_first_click_with(state: JoinStateSpec) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = join(dir.path(), JoinMatches::First, false, state);
        // A click may come before its impression.
        j.on_b(&b_batch(&[(1, 5_000), (1, 3_000), (3, 70_000)])).unwrap();
        j.on_a(&a_batch(&[(1, 1_000, "x"), (2, 2_000, "y"), (3, 4_000, "z")]))
            .unwrap();
        let out = watermark(&mut j, 60_999);
        assert_eq!(rows(&out), vec![], "nothing before t_A + window");
        assert!(
            matches!(out[..], [StreamEvent::Watermark(999)]),
            "the watermark trails by the window: {out:?}"
        );
        let out = watermark(&mut j, 64_000);
        assert_eq!(
            rows(&out),
            vec![(1, Some(3_000), 1), (2, None, 0), (3, None, 0)],
            "the earliest click in the window; a click after the window does not count"
        );
        let StreamEvent::Data(batch) = &out[0] else { panic!() };
        assert_eq!(
            batch.column(2).as_string::<i32>().value(0),
            "x",
            "A columns carried through"
        );
        let out = watermark(&mut j, i64::MAX);
        assert_eq!(rows(&out), vec![], "each impression once");
        assert!(matches!(out[..], [StreamEvent::Watermark(i64::MAX)]), "{out:?}");
    }

    #[test]
    fn all_matches_and_inner_join() {
        stores()
            .into_iter()
            .for_each(|(state, _redis)| all_matches_and_inner_join_with(state));
    }

    fn all_matches_and_inner_join_with(state: JoinStateSpec) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = join(dir.path(), JoinMatches::All, true, state);
        j.on_a(&a_batch(&[(1, 1_000, "x"), (2, 2_000, "y")])).unwrap();
        j.on_b(&b_batch(&[(1, 5_000), (1, 3_000)])).unwrap();
        let out = watermark(&mut j, i64::MAX);
        assert_eq!(rows(&out), vec![(1, Some(3_000), 1), (1, Some(5_000), 1)]);
    }

    #[test]
    fn a_late_impression_is_still_emitted_and_a_late_click_is_dropped() {
        stores()
            .into_iter()
            .for_each(|(state, _redis)| a_late_impression_is_still_emitted_and_a_late_click_is_dropped_with(state));
    }

    fn a_late_impression_is_still_emitted_and_a_late_click_is_dropped_with(state: JoinStateSpec) {
        let dir = tempfile::tempdir().unwrap();
        let mut j = join(dir.path(), JoinMatches::First, false, state);
        watermark(&mut j, 100_000);
        j.on_b(&b_batch(&[(1, 2_000)])).unwrap();
        j.on_a(&a_batch(&[(1, 1_000, "x")])).unwrap();
        assert_eq!((j.late_a, j.late_b), (1, 1));
        assert_eq!(j.metrics.late_records.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(rows(&watermark(&mut j, 100_001)), vec![(1, None, 0)]);
    }
}
