//! `lookup_join`: enriches each row with columns looked up by key in a dimension table,
//! in Redis (a hash per key) or in a local RocksDB table loaded from a Parquet snapshot.
//!
//! A batch is looked up as a whole: the keys its cache misses (deduplicated) go to the
//! store in one request, and the batch waits, as deferred output, until the answer is
//! there; the subtask awaits it off the slot's thread. Redis lookups are bounded by the
//! timeout; when one fails the rows whose keys missed the cache get nulls (`on_failure:
//! "null"`, counted and logged) or go to the dead-letter output (`"dead_letter"`). A key
//! the table does not hold gives nulls, and is cached as such.
//!
//! The Parquet table is the snapshot of the hour of the first row (or the newest of the
//! day before): the first batch waits for it to load. When the watermark enters a new
//! hour, that hour's snapshot (if there is one) loads on a thread of its own while the
//! old table keeps answering, and replaces it whole once complete (the cache is cleared
//! then, so no answer of the old table outlives it).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringBuilder};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use lru::LruCache;
use tokio::sync::oneshot;
use weir_common::Vertex;
use weir_common::schema::arrow_type;
use weir_common::spec::{LookupFailureSpec, LookupJoinSpec, LookupSourceSpec};

use crate::dead_letter::{DeadLetter, DeadLetterQueue};
use crate::error::TaskError;
use crate::operators::lookup_table::{LookupTable, hour_of, newest_snapshot, snapshot_dir};
use crate::operators::redis_lookup::RedisLookup;
use crate::runtime::event_time_column::event_times;
use crate::runtime::io_reply::{Reply, Taken};
use crate::runtime::operator::Operator;
use crate::runtime::stream_event::StreamEvent;
use crate::runtime::subtask_metrics::SubtaskMetrics;

type Fields = Arc<Vec<Option<String>>>;
type Answers = Result<Vec<Option<Vec<Option<String>>>>, String>;
type Loaded = Result<LookupTable, String>;

#[expect(
    clippy::large_enum_variant,
    reason = "one per operator, built once and never moved on a hot path"
)]
enum Store {
    Redis {
        lookup: RedisLookup,
        prefix: String,
    },
    Parquet {
        pattern: String,
        key_column: String,
        /// Where loaded tables live (one directory per hour's snapshot).
        local: PathBuf,
        table: Option<LookupTable>,
        loading: Reply<Loaded>,
        /// The newest hour a load was started for.
        requested: Option<i64>,
        /// Why there is no table yet (the first load failed): lookups fail with it.
        error: Option<String>,
    },
}

/// A batch waiting for its lookups.
struct Pending {
    batch: RecordBatch,
    /// Per row, its key (`None`: a null key, which matches nothing).
    keys: Vec<Option<String>>,
    /// What the cache knew of the batch's keys when it came.
    known: foldhash::HashMap<String, Option<Fields>>,
    /// The keys asked of the store, in the order of its answers.
    asked: Vec<String>,
    answers: Reply<Answers>,
}

pub struct LookupJoin {
    name: String,
    subtask: u32,
    output: SchemaRef,
    key_columns: Vec<usize>,
    event_time_column: usize,
    fields: Vec<String>,
    types: Vec<DataType>,
    on_failure: LookupFailureSpec,
    store: Store,
    cache: Option<LruCache<String, (Instant, Option<Fields>)>>,
    cache_ttl: Duration,
    pending: Option<Pending>,
    letters: Vec<DeadLetter>,
    dead_letters: DeadLetterQueue,
    /// Its `errors` count the rows whose lookup failed.
    metrics: Arc<SubtaskMetrics>,
}

impl LookupJoin {
    /// The operator of a validated `lookup_join` vertex reading `input`; rows whose lookup
    /// failed go to `dead_letters` (with `on_failure: "dead_letter"`), and a Parquet
    /// table's local copies live under `local`.
    pub fn from_spec(
        vertex: &Vertex,
        subtask: u32,
        spec: &LookupJoinSpec,
        input: &Vertex,
        (dead_letters, local): (DeadLetterQueue, PathBuf),
        metrics: Arc<SubtaskMetrics>,
    ) -> Result<Self, TaskError> {
        let invalid = |message: String| TaskError::Invalid {
            vertex: vertex.name.clone(),
            message,
        };
        let column = |name: &str| {
            input
                .schema
                .index_of(name)
                .map_err(|_| invalid(format!("'{}' has no column '{name}'", input.name)))
        };
        let fields: Vec<String> = spec.columns.iter().map(|c| c.source_field().to_string()).collect();
        let timeout = Duration::from_millis(spec.timeout_ms);
        let store = match &spec.from {
            LookupSourceSpec::Redis { url, key_prefix } => Store::Redis {
                lookup: RedisLookup::start(&vertex.name, url, fields.clone(), timeout)
                    .map_err(|e| invalid(e.to_string()))?,
                prefix: key_prefix.clone(),
            },
            LookupSourceSpec::Parquet { path, key_column } => Store::Parquet {
                pattern: path.clone(),
                key_column: key_column.clone(),
                local,
                table: None,
                loading: Reply::None,
                requested: None,
                error: None,
            },
        };
        Ok(Self {
            name: vertex.name.clone(),
            subtask,
            output: vertex.schema.clone(),
            key_columns: spec.key.iter().map(|k| column(k)).collect::<Result<_, _>>()?,
            event_time_column: column(&input.event_time_column)?,
            fields,
            types: spec.columns.iter().map(|c| arrow_type(c.data_type)).collect(),
            on_failure: spec.on_failure,
            store,
            cache: NonZeroUsize::new(spec.cache.max_entries).map(LruCache::new),
            cache_ttl: Duration::from_millis(spec.cache.ttl_ms),
            pending: None,
            letters: Vec::new(),
            dead_letters,
            metrics,
        })
    }

    fn arrow(&self, e: arrow::error::ArrowError) -> TaskError {
        TaskError::arrow(&self.name, e)
    }

    /// Each row's key: its key columns as text, joined with ':'.
    fn keys(&self, batch: &RecordBatch) -> Result<Vec<Option<String>>, TaskError> {
        let columns = self
            .key_columns
            .iter()
            .map(|i| cast(batch.column(*i), &DataType::Utf8))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.arrow(e))?;
        let columns: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
        Ok((0..batch.num_rows())
            .map(|row| {
                let mut key = String::new();
                for (i, c) in columns.iter().enumerate() {
                    if c.is_null(row) {
                        return None;
                    }
                    if i > 0 {
                        key.push(':');
                    }
                    key.push_str(c.value(row));
                }
                Some(key)
            })
            .collect())
    }

    fn cached(&mut self, key: &str) -> Option<Option<Fields>> {
        let ttl = self.cache_ttl;
        let cache = self.cache.as_mut()?;
        match cache.get(key).map(|(at, fields)| (at.elapsed() < ttl, fields.clone())) {
            Some((true, fields)) => Some(fields),
            Some((false, _)) => {
                cache.pop(key);
                None
            }
            None => None,
        }
    }

    /// Starts loading the snapshot of `hour`'s table (or, for the first, the newest before).
    fn load_table(&mut self, hour: i64, first: bool) {
        let Store::Parquet {
            pattern,
            key_column,
            local,
            loading,
            requested,
            ..
        } = &mut self.store
        else {
            return;
        };
        if requested.is_some_and(|r| r >= hour) || !loading.is_none() {
            return;
        }
        *requested = Some(hour);
        let found = if first {
            newest_snapshot(pattern, hour)
        } else {
            snapshot_dir(pattern, hour).is_dir().then_some(hour)
        };
        let (tx, rx) = oneshot::channel();
        *loading = Reply::Waiting(rx);
        let (pattern, key_column, fields) = (pattern.clone(), key_column.clone(), self.fields.clone());
        let dir = local.join(format!("h{hour}"));
        let name = self.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("lookup-load-{name}"))
            .spawn(move || {
                let loaded = match found {
                    Some(h) => LookupTable::load(&pattern, h, &dir, &key_column, &fields).map_err(|e| e.to_string()),
                    None => Err(format!(
                        "no snapshot for the hour of {}",
                        snapshot_dir(&pattern, hour).display()
                    )),
                };
                let _ = tx.send(loaded);
            });
        if let Err(e) = spawned {
            tracing::error!(operator = %self.name, error = %e, "cannot start loading the lookup table");
        }
    }

    /// Swaps in a table that finished loading. When the first cannot be loaded, lookups
    /// fail (`on_failure` applies) until a later hour's snapshot loads.
    fn poll_table(&mut self) {
        let Store::Parquet {
            table, loading, error, ..
        } = &mut self.store
        else {
            return;
        };
        let Taken::Ready(loaded) = loading.take() else { return };
        match loaded {
            Ok(new) => {
                tracing::info!(operator = %self.name, hour = new.hour, "lookup table swapped in");
                *table = Some(new);
                *error = None;
                if let Some(c) = &mut self.cache {
                    c.clear();
                }
            }
            Err(e) if table.is_none() => {
                tracing::error!(operator = %self.name, error = %e, "no lookup table: lookups fail until one loads");
                *error = Some(e);
            }
            Err(e) => tracing::warn!(operator = %self.name, error = %e, "the lookup table stays as it is"),
        }
    }

    /// Whether a batch can be looked up now: the store answers (or is known not to).
    fn ready(&self) -> bool {
        match &self.store {
            Store::Redis { .. } => true,
            Store::Parquet { table, error, .. } => table.is_some() || error.is_some(),
        }
    }

    fn start(&mut self, batch: RecordBatch) -> Result<(), TaskError> {
        let keys = self.keys(&batch)?;
        let mut asked: Vec<String> = Vec::new();
        let mut known = foldhash::HashMap::default();
        for k in keys.iter().flatten() {
            if known.contains_key(k) || asked.last() == Some(k) {
                continue;
            }
            match self.cached(k) {
                Some(fields) => {
                    known.insert(k.clone(), fields);
                }
                None => asked.push(k.clone()),
            }
        }
        asked.sort_unstable();
        asked.dedup();
        let answers = match &self.store {
            // Every key was in the cache.
            _ if asked.is_empty() => Reply::ready(Ok(Vec::new())),
            Store::Redis { lookup, prefix } => {
                let rx = lookup.lookup(asked.iter().map(|k| format!("{prefix}{k}")).collect());
                Reply::Waiting(rx)
            }
            Store::Parquet { table, error, .. } => {
                let answer = match table {
                    Some(t) => {
                        let refs: Vec<&str> = asked.iter().map(String::as_str).collect();
                        t.get_many(&refs).map_err(|e| e.to_string())
                    }
                    None => Err(error.clone().unwrap_or_else(|| "no lookup table loaded".into())),
                };
                Reply::ready(answer)
            }
        };
        self.pending = Some(Pending {
            batch,
            keys,
            known,
            asked,
            answers,
        });
        Ok(())
    }

    /// Emits the pending batch once its answers are there.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.poll_table();
        let Some(mut p) = self.pending.take() else {
            return Ok(());
        };
        if p.answers.is_none() {
            // The batch came before the first Parquet table.
            if self.ready() {
                self.start(p.batch)?;
                return self.finish(out);
            }
            let t = event_times(&p.batch, self.event_time_column)
                .first()
                .copied()
                .unwrap_or(0);
            self.load_table(hour_of(t), true);
            self.pending = Some(p);
            return Ok(());
        }
        let answers = match p.answers.take() {
            Taken::NotYet => {
                self.pending = Some(p);
                return Ok(());
            }
            Taken::Ready(a) => a,
            Taken::Gone => Err("the lookup connection ended".to_string()),
        };
        let failed = match answers {
            Ok(values) => {
                let now = Instant::now();
                for (k, v) in p.asked.into_iter().zip(values) {
                    let v = v.map(Arc::new);
                    if let Some(cache) = &mut self.cache {
                        cache.put(k.clone(), (now, v.clone()));
                    }
                    p.known.insert(k, v);
                }
                None
            }
            Err(e) => Some(e),
        };
        let mut rows: Vec<Option<Fields>> = Vec::with_capacity(p.keys.len());
        let mut lost = Vec::new();
        for (row, key) in p.keys.iter().enumerate() {
            let found = key.as_deref().and_then(|k| p.known.get(k).cloned());
            if found.is_none() && key.is_some() {
                lost.push(row);
            }
            rows.push(found.flatten());
        }
        let mut batch = self.enriched(&p.batch, &rows)?;
        if let Some(reason) = failed.filter(|_| !lost.is_empty()) {
            SubtaskMetrics::add(&self.metrics.errors, lost.len() as u64);
            match self.on_failure {
                LookupFailureSpec::Null => {
                    tracing::warn!(operator = %self.name, rows = lost.len(), error = %reason, "lookup failed: nulls");
                }
                LookupFailureSpec::DeadLetter => {
                    let mut keep = vec![true; batch.num_rows()];
                    lost.iter().for_each(|r| keep[*r] = false);
                    let dead =
                        filter_record_batch(&batch, &BooleanArray::from(keep.iter().map(|k| !k).collect::<Vec<_>>()))
                            .map_err(|e| self.arrow(e))?;
                    self.dead_letter(&dead, &reason)?;
                    batch = filter_record_batch(&batch, &BooleanArray::from(keep)).map_err(|e| self.arrow(e))?;
                }
            }
        }
        if batch.num_rows() > 0 {
            out.push(StreamEvent::Data(batch));
        }
        Ok(())
    }

    /// The input rows with the looked-up columns appended.
    fn enriched(&self, batch: &RecordBatch, rows: &[Option<Fields>]) -> Result<RecordBatch, TaskError> {
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (j, data_type) in self.types.iter().enumerate() {
            let mut text = StringBuilder::new();
            for fields in rows {
                text.append_option(fields.as_ref().and_then(|f| f.get(j).cloned().flatten()));
            }
            let text: ArrayRef = Arc::new(text.finish());
            // Text that does not parse as the column's type becomes null.
            columns.push(cast(&text, data_type).map_err(|e| self.arrow(e))?);
        }
        RecordBatch::try_new(self.output.clone(), columns).map_err(|e| self.arrow(e))
    }

    fn dead_letter(&mut self, rows: &RecordBatch, reason: &str) -> Result<(), TaskError> {
        let mut json = arrow_json::LineDelimitedWriter::new(Vec::new());
        json.write(rows).map_err(|e| self.arrow(e))?;
        json.finish().map_err(|e| self.arrow(e))?;
        let text = json.into_inner();
        SubtaskMetrics::add(&self.metrics.dead_letters, rows.num_rows() as u64);
        let source: Arc<str> = self.name.as_str().into();
        let origin: Arc<str> = "lookup_join".into();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.letters.push(DeadLetter {
                source: source.clone(),
                subtask: self.subtask,
                origin: origin.clone(),
                position: 0,
                reason: format!("lookup failed: {reason}"),
                raw: line.to_vec(),
            });
        }
        Ok(())
    }
}

impl Operator for LookupJoin {
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.poll_table();
        if !self.ready() {
            self.pending = Some(Pending {
                batch,
                keys: Vec::new(),
                known: foldhash::HashMap::default(),
                asked: Vec::new(),
                answers: Reply::None,
            });
            return self.finish(out);
        }
        self.start(batch)?;
        self.finish(out)
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.poll_table();
        if let Store::Parquet { table, requested, .. } = &self.store
            && watermark < i64::MAX
            && requested.is_some_and(|r| hour_of(watermark) > r)
        {
            let first = table.is_none();
            self.load_table(hour_of(watermark), first);
        }
        out.push(StreamEvent::Watermark(watermark));
        Ok(())
    }

    fn has_deferred_output(&self) -> bool {
        self.pending.is_some() || !self.letters.is_empty()
    }

    fn resume(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TaskError> {
        self.finish(out)
    }

    fn io_wait(&mut self) -> Option<BoxFuture<'static, ()>> {
        if !self.letters.is_empty() {
            let letters = std::mem::take(&mut self.letters);
            let queue = self.dead_letters.clone();
            return Some(Box::pin(async move {
                for l in letters {
                    // A closed queue means the job is ending; the letters have nowhere to go.
                    let _ = queue.send(l).await;
                }
            }));
        }
        if let Some(p) = &mut self.pending
            && let Some(f) = p.answers.wait()
        {
            return Some(f);
        }
        match &mut self.store {
            Store::Parquet { loading, .. } => loading.wait(),
            Store::Redis { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, Int64Array, TimestampMillisecondArray, UInt64Array};
    use arrow::datatypes::Int64Type;
    use weir_common::spec_loader::parse_spec;
    use weir_common::validation::validate;

    use super::*;
    use crate::dead_letter::DeadLetterWriter;
    use crate::operators::redis_rows::test_server::TestRedis;

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_704_067_200_000;

    /// The `enrich` operator of a spec reading W1 impressions, looking up `from`.
    fn operator(from: serde_json::Value, on_failure: &str, dir: &std::path::Path) -> (LookupJoin, DeadLetterWriter) {
        let spec = serde_json::json!({
            "name": "lookup",
            "sources": [{"id": "imp", "generator": {"workload": "w1_impressions", "events": 10},
                         "event_time": {"column": "ts"}}],
            "operators": [{"id": "enrich", "input": "imp", "lookup_join": {
                "key": ["user_id"], "from": from, "on_failure": on_failure, "timeout_ms": 300,
                "columns": [{"name": "country", "type": "string"},
                            {"name": "age", "type": "int64", "field": "years"}]}}],
            "sinks": [{"id": "out", "input": "enrich", "blackhole": {}}]
        });
        let graph = validate(&parse_spec(&spec.to_string(), &[]).unwrap()).unwrap();
        let v = graph.vertices.iter().find(|v| v.name == "enrich").unwrap();
        let VertexKind::LookupJoin(l) = &v.kind else { panic!() };
        let (queue, writer) = DeadLetterWriter::start(dir, "dead.jsonl");
        let local = dir.join("local");
        let op = LookupJoin::from_spec(v, 0, l, graph.vertex(v.inputs[0]), (queue, local), Arc::default()).unwrap();
        (op, writer)
    }

    use weir_common::graph::VertexKind;

    fn batch(users: &[i64], t: i64) -> RecordBatch {
        let schema =
            weir_common::schema::generator_schema(weir_common::spec::GeneratorWorkload::W1Impressions).unwrap();
        let n = users.len();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt64Array::from_iter_values(0..n as u64)),
                Arc::new(TimestampMillisecondArray::from_iter_values(std::iter::repeat_n(t, n)).with_timezone("UTC")),
                Arc::new(Int64Array::from_iter_values(users.iter().copied())),
                Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(1, n))),
                Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(1, n))),
            ],
        )
        .unwrap()
    }

    /// Everything the operator emits for `event`, waiting (as the subtask would) for its I/O.
    fn run(op: &mut LookupJoin, event: StreamEvent) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        match event {
            StreamEvent::Data(b) => op.on_batch(b, &mut out).unwrap(),
            StreamEvent::Watermark(w) => op.on_watermark(w, &mut out).unwrap(),
            _ => unreachable!(),
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while op.has_deferred_output() {
            assert!(Instant::now() < deadline, "no progress");
            match op.io_wait() {
                Some(f) => futures::executor::block_on(f),
                None => std::thread::sleep(Duration::from_millis(5)),
            }
            op.resume(&mut out).unwrap();
        }
        out
    }

    /// (country, age) per output row.
    fn looked_up(events: &[StreamEvent]) -> Vec<(Option<String>, Option<i64>)> {
        let mut rows = Vec::new();
        for e in events {
            if let StreamEvent::Data(b) = e {
                let country = b.column_by_name("country").unwrap().as_string::<i32>();
                let age = b.column_by_name("age").unwrap().as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    rows.push((
                        (!country.is_null(i)).then(|| country.value(i).to_string()),
                        (!age.is_null(i)).then(|| age.value(i)),
                    ));
                }
            }
        }
        rows
    }

    fn some(c: &str, a: i64) -> (Option<String>, Option<i64>) {
        (Some(c.into()), Some(a))
    }

    #[test]
    fn rows_get_their_redis_fields_and_answers_are_cached() {
        let redis = TestRedis::start();
        redis.cli(&["HSET", "user:1", "country", "fr", "years", "31"]);
        redis.cli(&["HSET", "user:2", "country", "de", "years", "not a number"]);
        let dir = tempfile::tempdir().unwrap();
        let from = serde_json::json!({"redis": {"url": redis.url(), "key_prefix": "user:"}});
        let (mut op, _w) = operator(from, "null", dir.path());
        let out = run(&mut op, StreamEvent::Data(batch(&[1, 2, 3, 1], T0)));
        assert_eq!(
            looked_up(&out),
            vec![some("fr", 31), (Some("de".into()), None), (None, None), some("fr", 31)],
            "a missing key gives nulls, a field that is not a number a null"
        );
        redis.cli(&["HSET", "user:1", "country", "it"]);
        let out = run(&mut op, StreamEvent::Data(batch(&[1], T0)));
        assert_eq!(looked_up(&out), vec![some("fr", 31)], "answered from the cache");
        assert_eq!(op.metrics.errors.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn a_store_that_is_down_gives_nulls_or_dead_letters() {
        let mut redis = TestRedis::start();
        redis.cli(&["HSET", "user:1", "country", "fr", "years", "31"]);
        let dir = tempfile::tempdir().unwrap();
        let from = serde_json::json!({"redis": {"url": redis.url(), "key_prefix": "user:"}});
        let (mut nulls, _w1) = operator(from.clone(), "null", &dir.path().join("a"));
        let (mut dead, w2) = operator(from, "dead_letter", &dir.path().join("b"));
        assert_eq!(
            looked_up(&run(&mut dead, StreamEvent::Data(batch(&[1], T0)))),
            vec![some("fr", 31)]
        );
        redis.down();
        let out = run(&mut nulls, StreamEvent::Data(batch(&[1, 5], T0)));
        assert_eq!(looked_up(&out), vec![(None, None), (None, None)]);
        assert_eq!(nulls.metrics.errors.load(std::sync::atomic::Ordering::Relaxed), 2);
        let out = run(&mut dead, StreamEvent::Data(batch(&[1, 5], T0)));
        assert_eq!(
            looked_up(&out),
            vec![some("fr", 31)],
            "the cached key still joins; the other is dead-lettered"
        );
        assert_eq!(dead.metrics.dead_letters.load(std::sync::atomic::Ordering::Relaxed), 1);
        drop(dead);
        assert_eq!(w2.finish().unwrap(), 1);
        let letters = std::fs::read_to_string(dir.path().join("b/dead.jsonl")).unwrap();
        assert!(
            letters.contains("lookup failed") && letters.contains("\\\"user_id\\\":5"),
            "{letters}"
        );
    }

    #[test]
    fn the_parquet_table_of_a_new_hour_replaces_the_old_one() {
        let root = tempfile::tempdir().unwrap();
        let pattern = format!("{}/users/dt=%Y-%m-%d/hour=%H", root.path().display());
        let snapshot = |hour: i64, country: &str| {
            let dir = crate::operators::lookup_table::snapshot_dir(&pattern, hour);
            std::fs::create_dir_all(&dir).unwrap();
            let schema = Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("id", DataType::Int64, false),
                arrow::datatypes::Field::new("country", DataType::Utf8, false),
                arrow::datatypes::Field::new("years", DataType::Int64, false),
            ]));
            let b = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![1])),
                    Arc::new(arrow::array::StringArray::from(vec![country])),
                    Arc::new(Int64Array::from(vec![40])),
                ],
            )
            .unwrap();
            let f = std::fs::File::create(dir.join("part-0.parquet")).unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
            w.write(&b).unwrap();
            w.close().unwrap();
        };
        snapshot(T0, "fr");
        snapshot(T0 + HOUR, "jp");
        let from = serde_json::json!({"parquet": {"path": pattern, "key_column": "id"}});
        let (mut op, _w) = operator(from, "null", root.path());
        let out = run(&mut op, StreamEvent::Data(batch(&[1, 2], T0 + 10)));
        assert_eq!(looked_up(&out), vec![some("fr", 40), (None, None)]);
        run(&mut op, StreamEvent::Watermark(T0 + HOUR + 5));
        // The new table loads in the background; the old one answers meanwhile.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(&op.store, Store::Parquet { table: Some(t), .. } if t.hour == T0 + HOUR) {
            assert!(Instant::now() < deadline, "the 01:00 snapshot never loaded");
            std::thread::sleep(Duration::from_millis(10));
            op.poll_table();
        }
        let out = run(&mut op, StreamEvent::Data(batch(&[1], T0 + HOUR + 10)));
        assert_eq!(looked_up(&out), vec![some("jp", 40)], "the 01:00 snapshot answers");
    }
}
