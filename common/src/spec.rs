//! The job spec: the JSON document a user submits. Every operator is an object with an
//! `id`, an `input` and exactly one kind field (`filter`, `project`, ...), so that an error
//! can point at `operators[2].filter` and a typo in a kind is an unknown field.
//!
//! `docs/job-spec.schema.json` is generated from these types (`coordinator schema`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::key_groups::DEFAULT_MAX_PARALLELISM;

fn default_parallelism() -> u32 {
    1
}
fn default_max_parallelism() -> u32 {
    DEFAULT_MAX_PARALLELISM
}
fn default_batch_size() -> usize {
    8192
}

/// A streaming job: sources, a DAG of operators, and sinks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Human-readable job name; also used in file and log names.
    pub name: String,
    /// Default parallelism of every source, operator and sink.
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    /// Number of key groups (the upper bound for rescaling keyed state).
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: u32,
    pub sources: Vec<SourceSpec>,
    #[serde(default)]
    pub operators: Vec<OperatorSpec>,
    pub sinks: Vec<SinkSpec>,
    /// Where records that cannot be parsed go. Defaults to `<workdir>/dead-letter`.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterSpec>,
    /// Periodic checkpoints (cluster jobs); none when absent.
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
}

/// How often the leader starts a checkpoint, how long one may take before it is
/// abandoned (the next one then starts), where operator state goes, and how many
/// completed checkpoints stay in storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    pub interval_ms: u64,
    #[serde(default = "default_checkpoint_timeout_ms")]
    pub timeout_ms: u64,
    /// Checkpoint storage for keyed state, a URL (`file:///var/lib/weir/checkpoints`).
    /// Every task manager and coordinator must reach it. When absent the coordinators'
    /// `--checkpoint-storage` applies; jobs with keyed state need one or the other.
    #[serde(default)]
    pub storage: Option<String>,
    /// How many completed checkpoints to keep in storage (older ones are deleted).
    #[serde(default = "default_checkpoint_retain")]
    pub retain: u32,
}

fn default_checkpoint_retain() -> u32 {
    3
}

/// The most checkpoints the Raft state remembers per job, so the most that can be kept.
pub const MAX_RETAINED_CHECKPOINTS: u32 = 10;

fn default_checkpoint_timeout_ms() -> u64 {
    600_000
}

/// A source: exactly one connector field (`generator`, `file` or `kafka`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub id: String,
    #[serde(default)]
    pub generator: Option<GeneratorSpec>,
    #[serde(default)]
    pub file: Option<FileSourceSpec>,
    #[serde(default)]
    pub kafka: Option<KafkaSourceSpec>,
    /// How raw records are decoded. Required for connectors that produce bytes.
    #[serde(default)]
    pub format: Option<FormatSpec>,
    /// The stream's columns. Required with `format`; typed generators bring their own.
    #[serde(default)]
    pub schema: Option<Vec<FieldSpec>>,
    pub event_time: EventTimeSpec,
    #[serde(default)]
    pub parallelism: Option<u32>,
}

/// Deterministic benchmark data (`shared/bench/flink/README.md`), bit for bit.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSpec {
    pub workload: GeneratorWorkload,
    /// Number of events (N); must be even, as the workload definitions require.
    pub events: u64,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// At most this many events per second over all subtasks (unlimited when absent).
    #[serde(default)]
    pub events_per_second: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorWorkload {
    /// W1 impressions: request_id, ts, user_id, ad_id, campaign_id.
    W1Impressions,
    /// W1 clicks: request_id, ts.
    W1Clicks,
    /// W2 log lines as JSON text (needs `format: {"type": "json"}` and a schema).
    W2Logs,
    /// W3 events: key, ts.
    W3Events,
}

/// JSON-lines files: one file, or every file of a directory in name order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceSpec {
    pub path: String,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

/// Kafka topics. Every partition of every topic belongs to one source subtask (partition
/// `p` of a topic to subtask `(p + topic offset) % parallelism`), which reads it from the
/// position its checkpoint recorded, or from `start` on a first run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceSpec {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    /// Consumer group whose committed offsets `start: committed` reads, and to which
    /// positions are committed when a checkpoint completes (for monitoring only: restores
    /// use the checkpoint's positions). Default: `weir-<job name>`.
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub start: KafkaStart,
    /// For `start: timestamp`: the first record read from each partition is the first at
    /// or after this time (epoch ms).
    #[serde(default)]
    pub start_timestamp_ms: Option<i64>,
    /// A partition that delivers nothing for this long stops holding the watermark back,
    /// until it delivers again. Absent: partitions never count as idle.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Read each partition up to its end as of the start, then finish (a backfill, or a
    /// test); otherwise the source never ends.
    #[serde(default)]
    pub bounded: bool,
    /// librdkafka consumer properties passed through (e.g. `security.protocol`,
    /// `fetch.max.bytes`); those Weir sets itself are refused.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Where a Kafka source starts reading a partition it has no checkpointed position for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStart {
    /// The group's committed offset; the earliest when the group has none.
    #[default]
    Committed,
    Earliest,
    Latest,
    /// `start_timestamp_ms`.
    Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FormatSpec {
    /// One JSON object per record; fields not in the schema are ignored.
    Json,
    /// One protobuf message per record (Kafka sources). Columns read the message's fields
    /// of the same name; fields not in the schema are ignored.
    Protobuf {
        /// A compiled descriptor set (`protoc --include_imports
        /// --descriptor_set_out=FILE`), readable by the coordinators and task managers.
        descriptor_set: String,
        /// The message type's full name, e.g. `logs.v1.LogLine`.
        message: String,
    },
}

/// A column of a stream.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: FieldType,
    /// A record missing a non-nullable field goes to the dead-letter output.
    #[serde(default)]
    pub nullable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Boolean,
    Int32,
    Int64,
    Uint64,
    Float32,
    Float64,
    String,
    /// Milliseconds since the epoch, UTC. JSON input may give a number or an ISO-8601 string.
    TimestampMs,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// A non-nullable `timestamp_ms` or `int64` (epoch ms) column.
    pub column: String,
    /// Bounded out-of-orderness: watermark = max event time - this - 1.
    #[serde(default)]
    pub max_out_of_orderness_ms: u64,
    /// Watermark alignment (Kafka sources): no partition reads further ahead of the
    /// group's slowest source subtask than `max_drift_ms` of event time.
    #[serde(default)]
    pub alignment: Option<WatermarkAlignmentSpec>,
}

/// Flink's watermark alignment, coordinated by the leader: every source subtask of the
/// group reports its watermark every ~200 ms; the leader answers `allowed = least
/// watermark of the group + max_drift_ms`, and a subtask pauses each partition whose own
/// watermark is past it until the group catches up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatermarkAlignmentSpec {
    /// Sources with the same group (in one job) are aligned with each other.
    pub group: String,
    pub max_drift_ms: u64,
}

/// An operator: `id`, `input`, and exactly one of the kind fields.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorSpec {
    pub id: String,
    /// The id of the source or operator feeding this one.
    pub input: String,
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Keep rows for which this SQL predicate is true.
    #[serde(default)]
    pub filter: Option<String>,
    /// Compute the output columns from SQL expressions.
    #[serde(default)]
    pub project: Option<Vec<ProjectColumn>>,
    /// Hash-partition the stream by these columns.
    #[serde(default)]
    pub key_by: Option<Vec<String>>,
    #[serde(default)]
    pub window_aggregate: Option<WindowAggregateSpec>,
    #[serde(default)]
    pub window_join: Option<WindowJoinSpec>,
    #[serde(default)]
    pub lookup_join: Option<LookupJoinSpec>,
}

/// A dimension join: each row gets `columns` looked up by its `key` in a dimension table,
/// a Redis hash per key or a Parquet snapshot loaded into a local RocksDB table. Lookups
/// are batched (one round trip per batch for the keys its cache misses), cached (LRU with
/// a TTL), and bounded by `timeout_ms`; a key the table lacks gives nulls, and a lookup
/// that fails or times out gives what `on_failure` says. Output: every input column, then
/// `columns` (nullable).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupJoinSpec {
    /// The input columns whose values, joined with ':', form the lookup key.
    pub key: Vec<String>,
    pub from: LookupSourceSpec,
    pub columns: Vec<LookupColumn>,
    #[serde(default)]
    pub cache: LookupCacheSpec,
    #[serde(default = "default_lookup_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub on_failure: LookupFailureSpec,
}

fn default_lookup_timeout_ms() -> u64 {
    1_000
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LookupSourceSpec {
    /// `HMGET <key_prefix><key> <field of each column>`: one hash per key.
    Redis {
        url: String,
        #[serde(default)]
        key_prefix: String,
    },
    /// The Parquet files under `path`, a strftime pattern (UTC) of the hour whose
    /// snapshot it holds (`/dims/users/dt=%Y-%m-%d/hour=%H`), keyed by `key_column`. The
    /// snapshot of the hour of the first row is loaded before it is joined (or the newest
    /// of the 24 hours before, if that hour has none); when the watermark enters a new
    /// hour, that hour's snapshot is loaded in the background and replaces the table
    /// atomically once complete.
    Parquet { path: String, key_column: String },
}

/// A looked-up column: its name in the output, its type, and the Redis field or Parquet
/// column it comes from (default: the name).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: FieldType,
    #[serde(default)]
    pub field: Option<String>,
}

impl LookupColumn {
    pub fn source_field(&self) -> &str {
        self.field.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupCacheSpec {
    /// Keys kept (found or not), least recently used evicted first; 0 disables the cache.
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
    /// How long a cached answer is used before it is looked up again.
    #[serde(default = "default_cache_ttl_ms")]
    pub ttl_ms: u64,
}

impl Default for LookupCacheSpec {
    fn default() -> Self {
        Self {
            max_entries: default_cache_entries(),
            ttl_ms: default_cache_ttl_ms(),
        }
    }
}

fn default_cache_entries() -> usize {
    100_000
}

fn default_cache_ttl_ms() -> u64 {
    60_000
}

/// What a row gets when its lookup failed (the store is down or slower than the timeout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LookupFailureSpec {
    /// Nulls in the looked-up columns (counted and logged).
    #[default]
    Null,
    /// The row goes to the dead-letter output instead of downstream.
    DeadLetter,
}

/// `"col"` keeps a column; `{"name": .., "expr": ..}` computes one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ProjectColumn {
    Column(String),
    Expr { name: String, expr: String },
}

impl ProjectColumn {
    pub fn name(&self) -> &str {
        match self {
            ProjectColumn::Column(c) => c,
            ProjectColumn::Expr { name, .. } => name,
        }
    }

    pub fn sql(&self) -> String {
        match self {
            ProjectColumn::Column(c) => format!("\"{}\"", c.replace('"', "\"\"")),
            ProjectColumn::Expr { expr, .. } => expr.clone(),
        }
    }
}

/// An event-time tumbling window per key, emitted when the watermark passes its end.
/// Output: the key columns, `window_start`, `window_end`, `window_time` (= end - 1 ms, the
/// output's event time, as in Flink SQL) and one column per aggregate.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowAggregateSpec {
    pub key_by: Vec<String>,
    /// Tumbling window size, aligned to the epoch.
    pub tumbling_ms: u64,
    pub aggregates: Vec<AggregateSpec>,
}

/// `input LEFT JOIN right WITHIN window_ms DELAY delay_ms ON left_key = right_key`: each
/// row of `input` (A, e.g. impressions) comes out exactly once, when the watermark passes
/// `t_A + window_ms + delay_ms`, with the `right` rows (B, e.g. clicks) of its key whose
/// event time lies in `[t_A, t_A + window_ms]`, or with nulls when there is none. Output:
/// every A column, the `right_columns`, and `label_column` (int32: 1 with a match, else 0).
/// Its event time is A's; the output watermark trails the input's by window + delay.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowJoinSpec {
    /// The id of the source or operator feeding the B side.
    pub right: String,
    pub left_key: Vec<String>,
    /// As many columns as `left_key`, of the same types, in the same order.
    pub right_key: Vec<String>,
    pub window_ms: u64,
    /// How long after the window the row waits for late B rows.
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub matches: JoinMatchesSpec,
    /// Only A rows with a match come out.
    #[serde(default)]
    pub inner: bool,
    /// The B columns in the output: `"col"`, or `{"column": "ts", "as": "click_ts"}`.
    #[serde(default)]
    pub right_columns: Vec<JoinColumn>,
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// Where pending rows live.
    #[serde(default)]
    pub state: JoinStateSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinStateSpec {
    /// RocksDB on the task manager's disk: state far larger than memory.
    #[default]
    Rocksdb,
    /// The heap: fastest, bounded by memory; checkpoints are full snapshots.
    Memory,
    /// Rows in Redis, timers (and which rows each key holds) in RocksDB:
    /// `{"redis": {"url": "redis://host:6379"}}`.
    Redis(RedisStateSpec),
}

/// Where a window join keeps its rows in Redis. Writes are pipelined and idempotent
/// (a row's key is a hash of its content), a checkpoint waits until Redis acknowledged
/// every row it covers, and a row is deleted only once a checkpoint taken after its
/// last use completed; `ttl_ms` is the backstop for rows nothing deletes (a job that
/// ends or is cancelled between checkpoints). Redis must persist what it acknowledged
/// (`appendonly yes`) for a Redis crash to lose nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisStateSpec {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Keys are `<key_prefix><a|b><16-byte hash>`; default `weir:<job name>:<operator id>:`.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Every row expires this long after it was written, whatever happens to the job;
    /// must be longer than `window_ms + delay_ms` (default one day).
    #[serde(default = "default_redis_ttl_ms")]
    pub ttl_ms: u64,
    /// How long one request may take before it is retried (with back-off; the join
    /// waits meanwhile, pushing back on its inputs).
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_redis_ttl_ms() -> u64 {
    86_400_000
}

fn default_redis_timeout_ms() -> u64 {
    5_000
}

fn default_label_column() -> String {
    "label".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinMatchesSpec {
    /// One output row per A row, with its earliest B row.
    #[default]
    First,
    /// One output row per matching (A, B) pair.
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum JoinColumn {
    Column(String),
    Renamed {
        column: String,
        #[serde(rename = "as")]
        output: String,
    },
}

impl JoinColumn {
    pub fn column(&self) -> &str {
        match self {
            JoinColumn::Column(c) | JoinColumn::Renamed { column: c, .. } => c,
        }
    }

    pub fn output(&self) -> &str {
        match self {
            JoinColumn::Column(c) | JoinColumn::Renamed { output: c, .. } => c,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    pub function: AggregateFunction,
    /// The input column (not used by `count`).
    #[serde(default)]
    pub column: Option<String>,
    /// Output column name.
    #[serde(rename = "as")]
    pub output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFunction {
    Count,
    Sum,
    Min,
    Max,
}

/// A sink: `id`, `input`, and exactly one of `parquet`, `kafka` or `blackhole`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    pub id: String,
    pub input: String,
    #[serde(default)]
    pub parallelism: Option<u32>,
    #[serde(default)]
    pub parquet: Option<ParquetSinkSpec>,
    #[serde(default)]
    pub kafka: Option<KafkaSinkSpec>,
    #[serde(default)]
    pub blackhole: Option<BlackholeSinkSpec>,
}

fn default_transaction_timeout_ms() -> u64 {
    // The brokers' default `transaction.max.timeout.ms`.
    15 * 60 * 1000
}

/// Rows as records on Kafka topics: one JSON object (or protobuf message) per row, to a fixed `topic` or to the
/// topic `topic_expr` computes from each row (a new topic needs no restart: the producer
/// learns it from the broker, which must have it or create it automatically).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkSpec {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The topic of every record (exactly one of `topic` and `topic_expr`).
    #[serde(default)]
    pub topic: Option<String>,
    /// A SQL expression over the row yielding its topic name, e.g.
    /// `'clicks-' || lower(country)`. A row whose topic is null or not a valid topic name
    /// goes to the dead-letter output.
    #[serde(default)]
    pub topic_expr: Option<String>,
    /// Column whose value (as text) is the record key; absent: records have no key.
    #[serde(default)]
    pub key: Option<String>,
    /// How rows are encoded: `{"type": "json"}` (default; timestamps as ISO-8601 text) or
    /// `{"type": "protobuf", "descriptor_set", "message"}` (every column to the message
    /// field of its name; nulls left unset).
    #[serde(default)]
    pub format: Option<FormatSpec>,
    #[serde(default)]
    pub delivery: KafkaDelivery,
    /// `exactly_once`: the prefix of the transactional ids, `<prefix>-<subtask>-<n>`.
    /// Ids must not be shared with another job. Default: `weir-<job name>-<sink id>`.
    #[serde(default)]
    pub transactional_id_prefix: Option<String>,
    /// `exactly_once`: how long the broker keeps a transaction open before aborting it.
    /// Must exceed the checkpoint interval plus the checkpoint timeout (a transaction
    /// stays open until its checkpoint completes), and may not exceed the broker's
    /// `transaction.max.timeout.ms` (checked when the sink starts).
    #[serde(default = "default_transaction_timeout_ms")]
    pub transaction_timeout_ms: u64,
    /// librdkafka producer properties passed through (e.g. `compression.type`,
    /// `linger.ms`); those Weir sets itself are refused.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// What a Kafka sink guarantees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KafkaDelivery {
    /// Idempotent producer, flushed at every checkpoint barrier: no record is lost, and
    /// retries never duplicate; records after the restored checkpoint are written again
    /// after a crash.
    #[default]
    AtLeastOnce,
    /// Kafka transactions, committed when the checkpoint completes (needs `checkpoint`;
    /// consumers read with `isolation.level=read_committed`).
    ExactlyOnce,
}

fn default_partition_pattern() -> String {
    "dt=%Y-%m-%d/hour=%H".to_string()
}
fn default_max_file_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_rollover_ms() -> u64 {
    15 * 60 * 1000
}

/// Hour-partitioned (or day-, minute-partitioned) Parquet files.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkSpec {
    /// Root directory of the table.
    pub path: String,
    /// strftime pattern of the partition directory, from the event-time column (UTC).
    #[serde(default = "default_partition_pattern")]
    pub partition: String,
    #[serde(default)]
    pub compression: Compression,
    /// Roll a part file once it holds about this many bytes.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Roll a part file once it has been open this long (wall clock).
    #[serde(default = "default_rollover_ms")]
    pub rollover_ms: u64,
    /// Commit each partition once it is complete (needs checkpoints): compaction,
    /// `_SUCCESS`, a record in the coordinators' state, a notice on a Kafka topic.
    #[serde(default)]
    pub commit: Option<PartitionCommitSpec>,
}

fn default_target_file_bytes() -> u64 {
    128 * 1024 * 1024
}

/// When and how a partition (a time bucket of the pattern: an hour) is committed. Once
/// the sink's watermark (the least over its subtasks, as of a completed checkpoint) passes
/// the end of a partition plus `delay_ms`, the leader merges the partition's small part
/// files into files of about `target_file_bytes`, writes `_SUCCESS`, records the commit
/// in the Raft log and publishes the notice. Rows that arrive for a partition after that
/// point go to the dead-letter output as late (counted), never into the partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionCommitSpec {
    #[serde(default)]
    pub delay_ms: u64,
    /// Compaction target; 0 leaves the parts as they are.
    #[serde(default = "default_target_file_bytes")]
    pub target_file_bytes: u64,
    /// Also commit partitions that received no rows (between the first partition with
    /// rows and the watermark): `_SUCCESS` and a notice with no files.
    #[serde(default)]
    pub empty_partitions: bool,
    /// Partition recovery: a sink subtask that received neither rows nor a newer
    /// watermark for this long lets its commit watermark follow the wall clock, so an idle
    /// stream's partitions still get committed. Absent: partitions wait for the watermark.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub notice: Option<CommitNoticeSpec>,
}

/// Where commit notices go: one JSON record per committed partition, keyed by the
/// partition, with a `notice_id` that stays the same if a crash makes it repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitNoticeSpec {
    pub bootstrap_servers: String,
    pub topic: String,
    /// The table name notices carry. Default: the sink's id.
    #[serde(default)]
    pub table: Option<String>,
    /// librdkafka producer properties passed through.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

/// Discards rows; counts them, and sums the named integer columns so benchmarks can check
/// their results without writing them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkSpec {
    #[serde(default)]
    pub sum_columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    /// Directory for the dead-letter JSON-lines files.
    pub path: String,
}

/// The JSON Schema of job specs, as published in `docs/job-spec.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(JobSpec);
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}
