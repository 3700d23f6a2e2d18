//! `window_aggregate`: keyed event-time tumbling windows with count, sum, min and max,
//! computed incrementally and emitted when the watermark passes a window's last
//! millisecond. A row whose window has already fired is late: it is counted and dropped,
//! as in Flink's default. Its state survives restarts: see `window_store`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::RowConverter;
use weir_common::event_time::{window_is_complete, window_start};
use weir_common::schema::UTC;
use weir_common::spec::WindowAggregateSpec;

use crate::error::TaskError;
use crate::operators::window_state::{Accumulator, AggInput, WindowState, encode_keys, key_converter};
use crate::operators::window_store::{SPILL_KEYS, WindowStore};

/// Keys per output batch when a spilled window fires.
const FIRE_CHUNK_KEYS: usize = 64 * 1024;
use crate::runtime::event_time_column::event_times;
use crate::runtime::operator::Operator;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;
use crate::state::OperatorStateContext;

pub struct WindowAggregate {
    name: String,
    size: i64,
    key_columns: Vec<usize>,
    key_types: Vec<DataType>,
    converter: Option<RowConverter>,
    event_time_column: usize,
    accumulators: Vec<Accumulator>,
    agg_columns: Vec<Option<usize>>,
    output: SchemaRef,
    /// Open windows by start: in memory since the last spill.
    windows: BTreeMap<i64, WindowState>,
    store: WindowStore,
    /// A spilled window firing chunk by chunk: its start and the last RocksDB key
    /// emitted (`None` before the first chunk).
    firing: Option<(i64, Option<Vec<u8>>)>,
    /// Keys per step when a spilled window fires ([`FIRE_CHUNK_KEYS`]).
    fire_chunk_keys: usize,
    watermark: i64,
    metrics: Arc<SubtaskMetrics>,
}

impl WindowAggregate {
    pub fn new(
        name: &str,
        spec: &WindowAggregateSpec,
        input: &SchemaRef,
        event_time_column: &str,
        output: SchemaRef,
        metrics: Arc<SubtaskMetrics>,
        state: OperatorStateContext,
    ) -> Result<Self, TaskError> {
        let arrow = |e| TaskError::arrow(name, e);
        let key_columns: Vec<usize> = spec
            .key_by
            .iter()
            .map(|k| input.index_of(k))
            .collect::<Result<_, _>>()
            .map_err(arrow)?;
        let key_fields: Vec<(DataType, bool)> = key_columns
            .iter()
            .map(|&i| (input.field(i).data_type().clone(), input.field(i).is_nullable()))
            .collect();
        let mut accumulators = Vec::new();
        let mut agg_columns = Vec::new();
        for a in &spec.aggregates {
            let col = a
                .column
                .as_ref()
                .map(|c| input.index_of(c))
                .transpose()
                .map_err(arrow)?;
            accumulators.push(Accumulator::new(a.function, col.map(|c| input.field(c).data_type())));
            agg_columns.push(col);
        }
        Ok(Self {
            store: WindowStore::new(name, state, accumulators.clone()),
            name: name.to_string(),
            size: spec.tumbling_ms as i64,
            key_types: key_fields.iter().map(|(t, _)| t.clone()).collect(),
            converter: key_converter(&key_fields).map_err(arrow)?,
            key_columns,
            event_time_column: input.index_of(event_time_column).map_err(arrow)?,
            accumulators,
            agg_columns,
            output,
            windows: BTreeMap::new(),
            firing: None,
            fire_chunk_keys: FIRE_CHUNK_KEYS,
            watermark: i64::MIN,
            metrics,
        })
    }

    fn fire(&self, start: i64, state: WindowState, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        if state.is_empty() {
            return Ok(());
        }
        let arrow = |e| TaskError::arrow(&self.name, e);
        let n = state.len();
        let mut cols: Vec<ArrayRef> = state
            .key_columns(&self.key_types, self.converter.as_ref())
            .map_err(arrow)?;
        let ts = |v: i64| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(vec![v; n]).with_timezone(UTC)) };
        cols.push(ts(start));
        cols.push(ts(start + self.size));
        cols.push(ts(start + self.size - 1));
        let first_agg = self.key_columns.len() + 3;
        for (a, acc) in self.accumulators.iter().enumerate() {
            let t = self.output.field(first_agg + a).data_type();
            cols.push(
                state
                    .aggregate_column(a, *acc, self.accumulators.len(), t)
                    .map_err(arrow)?,
            );
        }
        out.push(StreamEvent::Data(
            RecordBatch::try_new(self.output.clone(), cols).map_err(arrow)?,
        ));
        Ok(())
    }

    /// Fires every window the watermark completed, in start order, then forwards the
    /// watermark. A window in memory fires at once; a spilled one (possibly larger than
    /// memory) streams out of RocksDB one chunk per call, the rest deferred, so each
    /// chunk goes downstream before the next is read.
    fn fire_complete_windows(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        loop {
            if let Some((start, after)) = self.firing.take() {
                let int_keys = self.converter.is_none();
                let (chunk, last) = self
                    .store
                    .read_chunk(start, after.as_deref(), self.fire_chunk_keys, int_keys)?;
                self.fire(start, chunk, out)?;
                match last {
                    Some(key) => {
                        self.firing = Some((start, Some(key)));
                        return Ok(());
                    }
                    None => self.store.forget(start)?,
                }
                continue;
            }
            let in_memory = self.windows.first_key_value().map(|(s, _)| *s);
            let Some(start) = in_memory.into_iter().chain(self.store.first_spilled()).min() else {
                break;
            };
            if !window_is_complete(start + self.size, self.watermark) {
                break;
            }
            let state = self
                .windows
                .remove(&start)
                .unwrap_or_else(|| WindowState::new(self.converter.is_none()));
            if !self.store.is_spilled(start) {
                self.fire(start, state, out)?;
                continue;
            }
            // Part of the window is on disk: merge the in-memory part into RocksDB, where
            // the whole window then streams from.
            let mut rest = BTreeMap::from([(start, state)]);
            self.store.spill(&mut rest, &self.key_types, self.converter.as_ref())?;
            self.firing = Some((start, None));
        }
        out.push(StreamEvent::Watermark(self.watermark));
        Ok(())
    }
}

impl Operator for WindowAggregate {
    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.store.open_if_restored()?;
        let arrow = |e| TaskError::arrow(&self.name, e);
        let key_cols: Vec<ArrayRef> = self.key_columns.iter().map(|&c| batch.column(c).clone()).collect();
        let keys = encode_keys(&key_cols, self.converter.as_ref()).map_err(arrow)?;
        let inputs: Vec<AggInput> = self
            .accumulators
            .iter()
            .zip(&self.agg_columns)
            .map(|(acc, col)| match col {
                Some(c) => AggInput::from_column(*acc, batch.column(*c)),
                None => Ok(AggInput::None),
            })
            .collect::<Result<_, _>>()
            .map_err(arrow)?;
        let ts = event_times(&batch, self.event_time_column);
        let int_keys = self.converter.is_none();
        let mut late = 0u64;
        let mut row = 0;
        while row < ts.len() {
            let start = window_start(ts[row], self.size);
            let mut end = row + 1;
            while end < ts.len() && window_start(ts[end], self.size) == start {
                end += 1;
            }
            if window_is_complete(start + self.size, self.watermark) {
                late += (end - row) as u64;
            } else {
                self.windows
                    .entry(start)
                    .or_insert_with(|| WindowState::new(int_keys))
                    .update(&keys, row..end, &self.accumulators, &inputs);
            }
            row = end;
        }
        if late > 0 {
            SubtaskMetrics::add(&self.metrics.late_records, late);
        }
        if self.windows.values().map(WindowState::len).sum::<usize>() > SPILL_KEYS {
            self.store
                .spill(&mut self.windows, &self.key_types, self.converter.as_ref())?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.store.open_if_restored()?;
        self.watermark = watermark;
        self.fire_complete_windows(out)
    }

    fn on_barrier(&mut self, id: u64, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.store.open_if_restored()?;
        self.store
            .checkpoint(id, &mut self.windows, &self.key_types, self.converter.as_ref())?;
        out.push(StreamEvent::Barrier(id));
        Ok(())
    }

    fn has_deferred_output(&self) -> bool {
        self.firing.is_some()
    }

    fn resume(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.fire_complete_windows(out)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Float64Array, StringArray};
    use arrow::datatypes::{Field, Float64Type, Int64Type, Schema, TimestampMillisecondType};
    use weir_common::schema::timestamp_ms;
    use weir_common::spec::{AggregateFunction, AggregateSpec};

    use super::*;

    fn operator() -> (WindowAggregate, SchemaRef, Arc<SubtaskMetrics>) {
        let dir = std::env::temp_dir().join(format!(
            "weir-window-test-{}",
            xxhash_rust::xxh3::xxh3_64(format!("{:?}", std::thread::current().id()).as_bytes())
        ));
        operator_in(dir)
    }

    fn operator_in(dir: std::path::PathBuf) -> (WindowAggregate, SchemaRef, Arc<SubtaskMetrics>) {
        let input: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, false),
            Field::new("ts", timestamp_ms(), false),
            Field::new("amount", DataType::Float64, true),
        ]));
        let agg = |function, column: Option<&str>, output: &str| AggregateSpec {
            function,
            column: column.map(String::from),
            output: output.into(),
        };
        let spec = WindowAggregateSpec {
            key_by: vec!["user".into()],
            tumbling_ms: 10,
            aggregates: vec![
                agg(AggregateFunction::Count, None, "n"),
                agg(AggregateFunction::Sum, Some("amount"), "total"),
                agg(AggregateFunction::Max, Some("amount"), "top"),
            ],
        };
        let output: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, false),
            Field::new("window_start", timestamp_ms(), false),
            Field::new("window_end", timestamp_ms(), false),
            Field::new("window_time", timestamp_ms(), false),
            Field::new("n", DataType::Int64, false),
            Field::new("total", DataType::Float64, true),
            Field::new("top", DataType::Float64, true),
        ]));
        let metrics = Arc::new(SubtaskMetrics::default());
        (
            WindowAggregate::new(
                "w",
                &spec,
                &input,
                "ts",
                output,
                metrics.clone(),
                OperatorStateContext::standalone(dir, 128),
            )
            .unwrap(),
            input,
            metrics,
        )
    }

    fn rows(schema: &SchemaRef, users: &[&str], ts: &[i64], amounts: &[Option<f64>]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(users.to_vec())),
                Arc::new(TimestampMillisecondArray::from(ts.to_vec()).with_timezone(UTC)),
                Arc::new(Float64Array::from(amounts.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn fires_each_window_once_with_its_aggregates_and_drops_late_rows() {
        let (mut op, schema, metrics) = operator();
        let mut out = Vec::new();
        op.on_batch(
            rows(
                &schema,
                &["a", "b", "a", "a"],
                &[1, 2, 5, 12],
                &[Some(1.5), None, Some(2.0), Some(7.0)],
            ),
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        op.on_watermark(8, &mut out).unwrap();
        assert!(
            matches!(out[..], [StreamEvent::Watermark(8)]),
            "window [0,10) is not complete at 8"
        );
        out.clear();
        op.on_watermark(9, &mut out).unwrap();
        let StreamEvent::Data(b) = &out[0] else {
            panic!("{out:?}")
        };
        let users: Vec<&str> = b.column(0).as_string::<i32>().iter().map(|u| u.unwrap()).collect();
        assert_eq!(users, ["a", "b"]);
        assert_eq!(
            b.column(1).as_primitive::<TimestampMillisecondType>().values()[..],
            [0, 0]
        );
        assert_eq!(
            b.column(3).as_primitive::<TimestampMillisecondType>().values()[..],
            [9, 9]
        );
        assert_eq!(b.column(4).as_primitive::<Int64Type>().values()[..], [2, 1]);
        let total = b.column(5).as_primitive::<Float64Type>();
        assert_eq!((total.value(0), total.is_null(1)), (3.5, true));
        assert_eq!(b.column(6).as_primitive::<Float64Type>().value(0), 2.0);

        out.clear();
        op.on_batch(rows(&schema, &["c"], &[3], &[Some(1.0)]), &mut out)
            .unwrap();
        assert_eq!(metrics.late_records.load(std::sync::atomic::Ordering::Relaxed), 1);
        op.on_watermark(i64::MAX, &mut out).unwrap();
        let StreamEvent::Data(b) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.column(6).as_primitive::<Float64Type>().value(0), 7.0);
    }

    /// user, window start, count, total, top.
    type FiredRow = (String, i64, i64, Option<f64>, Option<f64>);

    fn fired(out: &[StreamEvent]) -> Vec<FiredRow> {
        let mut rows = Vec::new();
        for e in out {
            if let StreamEvent::Data(b) = e {
                for r in 0..b.num_rows() {
                    let f = |c: usize| {
                        let a = b.column(c).as_primitive::<Float64Type>();
                        a.is_valid(r).then(|| a.value(r))
                    };
                    rows.push((
                        b.column(0).as_string::<i32>().value(r).to_string(),
                        b.column(1).as_primitive::<TimestampMillisecondType>().value(r),
                        b.column(4).as_primitive::<Int64Type>().value(r),
                        f(5),
                        f(6),
                    ));
                }
            }
        }
        rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
        rows
    }

    #[test]
    fn windows_spilled_to_rocksdb_fire_the_same_results_as_in_memory_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let feed = |op: &mut WindowAggregate, schema: &SchemaRef, spill: bool| -> (Vec<FiredRow>, Vec<usize>) {
            let mut out = Vec::new();
            op.on_batch(
                rows(schema, &["a", "b", "a"], &[1, 2, 15], &[Some(1.5), None, Some(4.0)]),
                &mut out,
            )
            .unwrap();
            if spill {
                op.store
                    .spill(&mut op.windows, &op.key_types, op.converter.as_ref())
                    .unwrap();
                assert!(op.windows.is_empty());
            }
            op.on_batch(
                rows(
                    schema,
                    &["a", "c", "b"],
                    &[3, 4, 16],
                    &[Some(9.0), Some(2.0), Some(-1.0)],
                ),
                &mut out,
            )
            .unwrap();
            // As the chain drives it: deferred output comes one step at a time, and the
            // watermark follows the last window's last step.
            let mut steps = Vec::new();
            op.on_watermark(i64::MAX, &mut out).unwrap();
            steps.push(fired(&out).len());
            while op.has_deferred_output() {
                let before = out.len();
                op.resume(&mut out).unwrap();
                steps.push(fired(&out[before..]).len());
            }
            let watermarks: Vec<usize> = (0..out.len())
                .filter(|i| matches!(out[*i], StreamEvent::Watermark(_)))
                .collect();
            assert_eq!(watermarks, [out.len() - 1], "one watermark, after every window");
            (fired(&out), steps)
        };
        let (mut memory, schema, _) = operator_in(tmp.path().join("memory"));
        let (mut spilled, _, _) = operator_in(tmp.path().join("spilled"));
        spilled.fire_chunk_keys = 1;
        let (expected, steps) = feed(&mut memory, &schema, false);
        assert_eq!(expected.len(), 5, "{expected:?}");
        assert_eq!(steps, [5], "in-memory windows fire at once");
        let (got, steps) = feed(&mut spilled, &schema, true);
        assert_eq!(got, expected);
        assert!(steps.len() >= 5 && steps.iter().all(|n| *n <= 1), "{steps:?}");
        assert!(spilled.store.first_spilled().is_none(), "fired windows leave RocksDB");
    }
}
