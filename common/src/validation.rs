//! Semantic validation: turns a deserialized [`JobSpec`] into a [`JobGraph`], or refuses it
//! with every problem found, each naming the path of the field at fault. Nothing runs
//! before a spec has passed here.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::format::{Item, StrftimeItems};

use crate::expr;
use crate::graph::{Edge, EdgePartitioning, JobGraph, SinkConnector, SourceConnector, Vertex, VertexId, VertexKind};
use crate::protobuf_schema::ProtobufSchemaError;
use crate::schema::{
    generator_schema, is_event_time_type, is_key_type, is_numeric, is_orderable, schema_from_fields, timestamp_ms,
};
use crate::spec::{
    AggregateFunction, FieldSpec, FormatSpec, GeneratorWorkload, JobSpec, JoinStateSpec, KafkaDelivery, KafkaSinkSpec,
    KafkaSourceSpec, KafkaStart, LookupJoinSpec, LookupSourceSpec, MAX_RETAINED_CHECKPOINTS, OperatorSpec,
    PartitionCommitSpec, RedisStateSpec, SinkSpec, SourceSpec, WindowAggregateSpec, WindowJoinSpec,
};
use crate::spec_error::{SpecError, SpecErrors};

const MAX_MAX_PARALLELISM: u32 = 32_768;
/// librdkafka consumer properties a Kafka source sets from its own fields or needs as
/// they are (offsets come from checkpoints, never from auto-commit).
pub const KAFKA_PROPERTIES_WEIR_SETS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
];
/// librdkafka producer properties a Kafka sink sets from its own fields or needs as they
/// are (its delivery guarantee rests on them).
pub const KAFKA_PRODUCER_PROPERTIES_WEIR_SETS: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "transactional.id",
    "transaction.timeout.ms",
    "acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
];
/// Below this, barriers would follow each other faster than a heartbeat reports them.
const MIN_CHECKPOINT_INTERVAL_MS: u64 = 100;

/// Validates a spec and builds its graph.
pub fn validate(spec: &JobSpec) -> Result<JobGraph, SpecErrors> {
    let mut v = Validator {
        spec,
        errors: Vec::new(),
        vertices: Vec::new(),
        by_name: BTreeMap::new(),
        partitioned_by: BTreeMap::new(),
    };
    v.run();
    if !v.errors.is_empty() {
        return Err(SpecErrors(v.errors));
    }
    let edges = v.edges();
    let tasks = JobGraph::build_tasks(&v.vertices, &edges);
    Ok(JobGraph {
        name: spec.name.clone(),
        max_parallelism: spec.max_parallelism,
        vertices: v.vertices,
        edges,
        tasks,
        dead_letter_path: spec.dead_letter.as_ref().map(|d| d.path.clone()),
        checkpoint: spec.checkpoint.clone(),
    })
}

/// A node of the spec before it is placed in the graph.
enum Node<'a> {
    Source(usize, &'a SourceSpec),
    Operator(usize, &'a OperatorSpec),
    Sink(usize, &'a SinkSpec),
}

impl Node<'_> {
    fn path(&self) -> String {
        match self {
            Node::Source(i, _) => format!("sources[{i}]"),
            Node::Operator(i, _) => format!("operators[{i}]"),
            Node::Sink(i, _) => format!("sinks[{i}]"),
        }
    }
    fn id(&self) -> &str {
        match self {
            Node::Source(_, s) => &s.id,
            Node::Operator(_, o) => &o.id,
            Node::Sink(_, s) => &s.id,
        }
    }
    /// The ids this node reads, each with the field that names it.
    fn inputs(&self) -> Vec<(&'static str, &str)> {
        match self {
            Node::Source(..) => Vec::new(),
            Node::Operator(_, o) => {
                let mut inputs = vec![("input", o.input.as_str())];
                if let Some(j) = &o.window_join {
                    inputs.push(("window_join.right", j.right.as_str()));
                }
                inputs
            }
            Node::Sink(_, s) => vec![("input", s.input.as_str())],
        }
    }
    fn parallelism(&self) -> Option<u32> {
        match self {
            Node::Source(_, s) => s.parallelism,
            Node::Operator(_, o) => o.parallelism,
            Node::Sink(_, s) => s.parallelism,
        }
    }
}

struct Validator<'a> {
    spec: &'a JobSpec,
    errors: Vec<SpecError>,
    vertices: Vec<Vertex>,
    by_name: BTreeMap<String, VertexId>,
    /// Keys and parallelism by which a vertex's output is already hash-partitioned.
    partitioned_by: BTreeMap<VertexId, (Vec<String>, u32)>,
}

impl<'a> Validator<'a> {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(SpecError::new(path, msg));
    }

    fn run(&mut self) {
        let spec = self.spec;
        if spec.name.trim().is_empty() {
            self.err("name", "must not be empty");
        }
        if spec.max_parallelism == 0 || spec.max_parallelism > MAX_MAX_PARALLELISM {
            self.err(
                "max_parallelism",
                format!("must be between 1 and {MAX_MAX_PARALLELISM}"),
            );
        }
        self.check_parallelism("parallelism", spec.parallelism);
        if let Some(c) = &spec.checkpoint {
            if c.interval_ms < MIN_CHECKPOINT_INTERVAL_MS {
                self.err(
                    "checkpoint.interval_ms",
                    format!("must be at least {MIN_CHECKPOINT_INTERVAL_MS}"),
                );
            }
            if c.timeout_ms == 0 {
                self.err("checkpoint.timeout_ms", "must be positive");
            }
            if c.retain == 0 || c.retain > MAX_RETAINED_CHECKPOINTS {
                self.err(
                    "checkpoint.retain",
                    format!("must be between 1 and {MAX_RETAINED_CHECKPOINTS}"),
                );
            }
            if let Some(url) = &c.storage
                && !url.contains("://")
            {
                self.err(
                    "checkpoint.storage",
                    "must be a URL such as file:///var/lib/weir/checkpoints",
                );
            }
        }
        if spec.sources.is_empty() {
            self.err("sources", "a job needs at least one source");
        }
        if spec.sinks.is_empty() {
            self.err("sinks", "a job needs at least one sink");
        }
        if let Some(d) = &spec.dead_letter
            && d.path.trim().is_empty()
        {
            self.err("dead_letter.path", "must not be empty");
        }

        let nodes: Vec<Node<'a>> = spec
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| Node::Source(i, s))
            .chain(spec.operators.iter().enumerate().map(|(i, o)| Node::Operator(i, o)))
            .chain(spec.sinks.iter().enumerate().map(|(i, s)| Node::Sink(i, s)))
            .collect();

        let errors_before_ids = self.errors.len();
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (n, node) in nodes.iter().enumerate() {
            if node.id().trim().is_empty() {
                self.err(format!("{}.id", node.path()), "must not be empty");
            } else if index.insert(node.id(), n).is_some() {
                self.err(format!("{}.id", node.path()), format!("duplicate id '{}'", node.id()));
            }
            if let Some(p) = node.parallelism() {
                self.check_parallelism(&format!("{}.parallelism", node.path()), p);
            }
        }
        // Inputs are looked up by id: with broken ids, what follows would only mislead.
        if self.errors.len() > errors_before_ids {
            return;
        }

        // Inputs must exist and must not be sinks.
        let mut ok_inputs = true;
        for node in &nodes {
            let inputs = node.inputs();
            for (field, input) in &inputs {
                match index.get(input) {
                    None => {
                        let known: Vec<&str> = nodes
                            .iter()
                            .filter(|n| !matches!(n, Node::Sink(..)))
                            .map(|n| n.id())
                            .collect();
                        self.err(
                            format!("{}.{field}", node.path()),
                            format!("unknown input '{input}' (known: {})", known.join(", ")),
                        );
                        ok_inputs = false;
                    }
                    Some(&i) if matches!(nodes[i], Node::Sink(..)) => {
                        self.err(
                            format!("{}.{field}", node.path()),
                            format!("'{input}' is a sink and has no output"),
                        );
                        ok_inputs = false;
                    }
                    Some(_) => {}
                }
            }
            if let [(_, left), (field, right)] = inputs[..]
                && left == right
            {
                self.err(
                    format!("{}.{field}", node.path()),
                    format!("'{right}' is already the input: a join needs two different inputs"),
                );
                ok_inputs = false;
            }
        }
        if !ok_inputs {
            return;
        }

        let Some(order) = self.topological_order(&nodes, &index) else {
            return;
        };

        // Everything but sinks must feed something.
        let fed: HashSet<&str> = nodes.iter().flat_map(|n| n.inputs()).map(|(_, i)| i).collect();
        for node in &nodes {
            if !matches!(node, Node::Sink(..)) && !fed.contains(node.id()) {
                self.err(
                    node.path(),
                    format!(
                        "the output of '{}' goes nowhere: no operator or sink reads it",
                        node.id()
                    ),
                );
            }
        }

        for n in order {
            let node = &nodes[n];
            let names = node.inputs();
            let inputs: Vec<VertexId> = names
                .iter()
                .filter_map(|(_, i)| self.by_name.get(*i).copied())
                .collect();
            if inputs.len() < names.len() {
                // An input failed validation; its own error says why.
                continue;
            }
            if let Some(vertex) = self.vertex_for(node, inputs) {
                self.by_name.insert(vertex.name.clone(), vertex.id);
                self.vertices.push(vertex);
            }
        }
    }

    fn check_parallelism(&mut self, path: &str, p: u32) {
        if p == 0 || p > self.spec.max_parallelism {
            self.err(
                path,
                format!("must be between 1 and max_parallelism ({})", self.spec.max_parallelism),
            );
        }
    }

    /// Orders nodes so each comes after its inputs; reports a cycle.
    fn topological_order(&mut self, nodes: &[Node], index: &BTreeMap<&str, usize>) -> Option<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; nodes.len()];
        let mut order = Vec::with_capacity(nodes.len());
        for start in 0..nodes.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Depth first, without recursion: each frame is a node and its next input.
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            marks[start] = Mark::Active;
            while let Some(top) = stack.last_mut() {
                let (n, next) = *top;
                let Some(&(field, input)) = nodes[n].inputs().get(next) else {
                    marks[n] = Mark::Done;
                    order.push(n);
                    stack.pop();
                    continue;
                };
                top.1 += 1;
                let i = index[input];
                match marks[i] {
                    Mark::Done => {}
                    Mark::New => {
                        marks[i] = Mark::Active;
                        stack.push((i, 0));
                    }
                    Mark::Active => {
                        let at = stack.iter().position(|&(c, _)| c == i).unwrap_or(0);
                        let mut names: Vec<&str> = stack[at..].iter().map(|&(c, _)| nodes[c].id()).collect();
                        names.push(nodes[i].id());
                        self.err(
                            format!("{}.{field}", nodes[n].path()),
                            format!("cycle: {}", names.join(" <- ")),
                        );
                        return None;
                    }
                }
            }
        }
        Some(order)
    }

    fn vertex_for(&mut self, node: &Node, inputs: Vec<VertexId>) -> Option<Vertex> {
        let id = VertexId(self.vertices.len());
        let path = node.path();
        let parallelism = node.parallelism().unwrap_or(self.spec.parallelism);
        let upstream = inputs.first().map(|i| self.vertices[i.0].clone());
        let (kind, schema, event_time_column) = match node {
            Node::Source(_, s) => self.source(&path, s)?,
            Node::Operator(_, o) => {
                let up = upstream.as_ref().expect("operators have inputs");
                let right = inputs.get(1).map(|i| self.vertices[i.0].clone());
                self.operator(&path, o, up, right.as_ref(), id, parallelism)?
            }
            Node::Sink(_, s) => {
                let up = upstream.as_ref().expect("sinks have inputs");
                self.sink(&path, s, up)?
            }
        };
        if let (Some(up), VertexKind::Filter { .. }) = (&upstream, &kind)
            && let Some(p) = self.partitioned_by.get(&up.id).cloned()
            && p.1 == parallelism
        {
            self.partitioned_by.insert(id, p);
        }
        Some(Vertex {
            id,
            name: node.id().to_string(),
            spec_path: path,
            kind,
            parallelism,
            inputs,
            schema,
            event_time_column,
        })
    }

    fn kafka_source(&mut self, path: &str, k: &KafkaSourceSpec) {
        if k.bootstrap_servers.trim().is_empty() {
            self.err(
                format!("{path}.bootstrap_servers"),
                "must name at least one broker (host:port)",
            );
        }
        if k.topics.is_empty() {
            self.err(format!("{path}.topics"), "must name at least one topic");
        }
        let mut seen = HashSet::new();
        for (i, t) in k.topics.iter().enumerate() {
            if t.trim().is_empty() {
                self.err(format!("{path}.topics[{i}]"), "must not be empty");
            } else if !seen.insert(t) {
                self.err(format!("{path}.topics[{i}]"), format!("{t:?} is listed twice"));
            }
        }
        match (k.start, k.start_timestamp_ms) {
            (KafkaStart::Timestamp, None) => {
                self.err(format!("{path}.start_timestamp_ms"), "required with start: timestamp")
            }
            (KafkaStart::Committed | KafkaStart::Earliest | KafkaStart::Latest, Some(_)) => self.err(
                format!("{path}.start_timestamp_ms"),
                "only applies with start: timestamp",
            ),
            _ => {}
        }
        if k.idle_timeout_ms == Some(0) {
            self.err(
                format!("{path}.idle_timeout_ms"),
                "must be positive (leave it out to never go idle)",
            );
        }
        if k.batch_size == 0 {
            self.err(format!("{path}.batch_size"), "must be positive");
        }
        for key in k.properties.keys() {
            if KAFKA_PROPERTIES_WEIR_SETS.contains(&key.as_str()) {
                self.err(
                    format!("{path}.properties.{key}"),
                    "is set by Weir (use the source's own fields)",
                );
            }
        }
    }

    fn protobuf_format(
        &mut self,
        path: &str,
        connector: &SourceConnector,
        descriptor_set: &str,
        message: &str,
        fields: &[FieldSpec],
    ) {
        if !matches!(connector, SourceConnector::Kafka(_)) {
            self.err(
                format!("{path}.format"),
                "protobuf records need a Kafka source (files are read as JSON lines)",
            );
            return;
        }
        let message = match crate::protobuf_schema::load_message(descriptor_set, message) {
            Ok(m) => m,
            Err(e @ ProtobufSchemaError::DescriptorSet { .. }) => {
                return self.err(format!("{path}.format.descriptor_set"), e.to_string());
            }
            Err(e @ ProtobufSchemaError::UnknownMessage { .. }) => {
                return self.err(format!("{path}.format.message"), e.to_string());
            }
        };
        for (i, f) in fields.iter().enumerate() {
            if let Err(e) = crate::protobuf_schema::field_for(&message, f) {
                self.err(format!("{path}.schema[{i}]"), e);
            }
        }
    }

    fn source(&mut self, path: &str, s: &SourceSpec) -> Option<(VertexKind, SchemaRef, String)> {
        let connector = match (&s.generator, &s.file, &s.kafka) {
            (Some(g), None, None) => {
                if g.events == 0 || g.events % 2 != 0 {
                    self.err(format!("{path}.generator.events"), "must be a positive even number");
                }
                if g.batch_size == 0 {
                    self.err(format!("{path}.generator.batch_size"), "must be positive");
                }
                if g.events_per_second == Some(0) {
                    self.err(format!("{path}.generator.events_per_second"), "must be positive");
                }
                SourceConnector::Generator(g.clone())
            }
            (None, Some(f), None) => {
                if f.path.trim().is_empty() {
                    self.err(format!("{path}.file.path"), "must not be empty");
                }
                if f.batch_size == 0 {
                    self.err(format!("{path}.file.batch_size"), "must be positive");
                }
                SourceConnector::File(f.clone())
            }
            (None, None, Some(k)) => {
                self.kafka_source(&format!("{path}.kafka"), k);
                SourceConnector::Kafka(k.clone())
            }
            _ => {
                self.err(path, "needs exactly one connector: generator, file or kafka");
                return None;
            }
        };
        if let Some(a) = &s.event_time.alignment {
            let at = format!("{path}.event_time.alignment");
            if matches!(connector, SourceConnector::File(_)) {
                self.err(
                    at.clone(),
                    "only Kafka and generator sources can be aligned (they pause their reads)",
                );
            }
            if a.group.trim().is_empty() {
                self.err(format!("{at}.group"), "must not be empty");
            }
            if a.max_drift_ms == 0 {
                self.err(format!("{at}.max_drift_ms"), "must be positive");
            }
        }
        let produces_text = match &connector {
            SourceConnector::Generator(g) => g.workload == GeneratorWorkload::W2Logs,
            SourceConnector::File(_) | SourceConnector::Kafka(_) => true,
        };
        let schema = if produces_text {
            if s.format.is_none() {
                self.err(
                    format!("{path}.format"),
                    "this connector produces raw records: give a format, e.g. {\"type\": \"json\"}",
                );
            }
            let Some(fields) = &s.schema else {
                self.err(format!("{path}.schema"), "required to decode raw records");
                return None;
            };
            self.check_fields(&format!("{path}.schema"), fields)?;
            if let Some(FormatSpec::Protobuf {
                descriptor_set,
                message,
            }) = &s.format
            {
                self.protobuf_format(path, &connector, descriptor_set, message, fields);
            }
            schema_from_fields(fields)
        } else {
            let SourceConnector::Generator(g) = &connector else {
                unreachable!()
            };
            let builtin = generator_schema(g.workload).expect("typed generator");
            if s.format.is_some() {
                self.err(
                    format!("{path}.format"),
                    "this generator produces typed rows; it takes no format",
                );
            }
            if let Some(fields) = &s.schema {
                let declared = schema_from_fields(fields);
                if declared.fields() != builtin.fields() {
                    self.err(
                        format!("{path}.schema"),
                        format!("does not match the generator's schema ({})", describe(&builtin)),
                    );
                }
            }
            builtin
        };
        let col = &s.event_time.column;
        match schema.field_with_name(col) {
            Err(_) => self.err(
                format!("{path}.event_time.column"),
                format!("unknown column '{col}' (columns: {})", column_list(&schema)),
            ),
            Ok(f) if !is_event_time_type(f.data_type()) => self.err(
                format!("{path}.event_time.column"),
                format!("'{col}' is {}; event time needs timestamp_ms or int64", f.data_type()),
            ),
            Ok(f) if f.is_nullable() => self.err(
                format!("{path}.event_time.column"),
                format!("'{col}' is nullable; the event-time column must not be"),
            ),
            Ok(_) => {}
        }
        Some((
            VertexKind::Source {
                connector,
                format: s.format.clone(),
                max_out_of_orderness_ms: s.event_time.max_out_of_orderness_ms,
                alignment: s.event_time.alignment.clone(),
            },
            schema,
            col.clone(),
        ))
    }

    fn check_fields(&mut self, path: &str, fields: &[crate::spec::FieldSpec]) -> Option<()> {
        if fields.is_empty() {
            self.err(path, "needs at least one field");
            return None;
        }
        let mut seen = HashSet::new();
        for (i, f) in fields.iter().enumerate() {
            if f.name.is_empty() {
                self.err(format!("{path}[{i}].name"), "must not be empty");
            } else if !seen.insert(f.name.as_str()) {
                self.err(format!("{path}[{i}].name"), format!("duplicate column '{}'", f.name));
            }
        }
        Some(())
    }

    fn operator(
        &mut self,
        path: &str,
        o: &OperatorSpec,
        up: &Vertex,
        right: Option<&Vertex>,
        id: VertexId,
        parallelism: u32,
    ) -> Option<(VertexKind, SchemaRef, String)> {
        let kinds = [
            o.filter.is_some(),
            o.project.is_some(),
            o.key_by.is_some(),
            o.window_aggregate.is_some(),
            o.window_join.is_some(),
            o.lookup_join.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.err(
                path,
                "needs exactly one of: filter, project, key_by, window_aggregate, window_join, lookup_join",
            );
            return None;
        }
        if let (Some(j), Some(right)) = (&o.window_join, right) {
            let out = self.window_join(&format!("{path}.window_join"), j, up, right)?;
            self.partitioned_by.insert(id, (j.left_key.clone(), parallelism));
            return Some((VertexKind::WindowJoin(j.clone()), out, up.event_time_column.clone()));
        }
        let schema = up.schema.clone();
        let et = up.event_time_column.clone();
        if let Some(predicate) = &o.filter {
            match expr::compile(predicate, &schema) {
                Ok(c) if c.data_type != DataType::Boolean => self.err(
                    format!("{path}.filter"),
                    format!("must be a boolean predicate, but yields {}", c.data_type),
                ),
                Ok(_) => {}
                Err(e) => self.err(format!("{path}.filter"), e),
            }
            return Some((
                VertexKind::Filter {
                    predicate: predicate.clone(),
                },
                schema,
                et,
            ));
        }
        if let Some(columns) = &o.project {
            let mut fields = Vec::new();
            let mut names = HashSet::new();
            let mut keeps_event_time = false;
            if columns.is_empty() {
                self.err(format!("{path}.project"), "needs at least one column");
            }
            for (i, c) in columns.iter().enumerate() {
                let cpath = format!("{path}.project[{i}]");
                if c.name().is_empty() {
                    self.err(format!("{cpath}.name"), "must not be empty");
                    continue;
                }
                if !names.insert(c.name().to_string()) {
                    self.err(cpath.clone(), format!("duplicate output column '{}'", c.name()));
                }
                match expr::compile(&c.sql(), &schema) {
                    Ok(compiled) => {
                        if c.name() == et && c.sql() == format!("\"{et}\"") {
                            keeps_event_time = true;
                        }
                        fields.push(Field::new(c.name(), compiled.data_type, compiled.nullable));
                    }
                    Err(e) => self.err(cpath, e),
                }
            }
            if !keeps_event_time {
                self.err(
                    format!("{path}.project"),
                    format!("must keep the event-time column '{et}' as it is (list \"{et}\")"),
                );
            }
            return Some((
                VertexKind::Project {
                    columns: columns.clone(),
                },
                Arc::new(Schema::new(fields)),
                et,
            ));
        }
        if let Some(keys) = &o.key_by {
            self.check_keys(&format!("{path}.key_by"), keys, &schema);
            self.partitioned_by.insert(id, (keys.clone(), parallelism));
            return Some((VertexKind::KeyBy { keys: keys.clone() }, schema, et));
        }
        if let Some(l) = &o.lookup_join {
            let out = self.lookup_join(&format!("{path}.lookup_join"), l, &schema)?;
            return Some((VertexKind::LookupJoin(l.clone()), out, et));
        }
        let w = o.window_aggregate.as_ref().expect("one kind is set");
        let out = self.window_aggregate(&format!("{path}.window_aggregate"), w, &schema)?;
        self.partitioned_by.insert(id, (w.key_by.clone(), parallelism));
        Some((VertexKind::WindowAggregate(w.clone()), out, "window_time".to_string()))
    }

    fn lookup_join(&mut self, path: &str, l: &LookupJoinSpec, schema: &SchemaRef) -> Option<SchemaRef> {
        self.check_keys(&format!("{path}.key"), &l.key, schema);
        match &l.from {
            LookupSourceSpec::Redis { url, .. } => match url::Url::parse(url) {
                Ok(u) if u.scheme() == "redis" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
                _ => self.err(
                    format!("{path}.from.redis.url"),
                    format!("'{url}' is not a redis://host:port URL"),
                ),
            },
            LookupSourceSpec::Parquet {
                path: pattern,
                key_column,
            } => {
                if !pattern.contains("%H") {
                    self.err(
                        format!("{path}.from.parquet.path"),
                        format!("'{pattern}' has no %H: it names the directory of each hour's snapshot"),
                    );
                } else if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
                    self.err(
                        format!("{path}.from.parquet.path"),
                        format!("'{pattern}' is not a valid strftime pattern"),
                    );
                }
                if key_column.is_empty() {
                    self.err(format!("{path}.from.parquet.key_column"), "must not be empty");
                }
            }
        }
        if l.columns.is_empty() {
            self.err(format!("{path}.columns"), "needs at least one column to look up");
        }
        if l.timeout_ms == 0 {
            self.err(format!("{path}.timeout_ms"), "must be positive");
        }
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut names: HashSet<String> = fields.iter().map(|f| f.name().clone()).collect();
        for (i, c) in l.columns.iter().enumerate() {
            if c.name.is_empty() {
                self.err(format!("{path}.columns[{i}].name"), "must not be empty");
            } else if !names.insert(c.name.clone()) {
                self.err(
                    format!("{path}.columns[{i}].name"),
                    format!("output column '{}' already exists", c.name),
                );
            }
            fields.push(Field::new(&c.name, crate::schema::arrow_type(c.data_type), true));
        }
        Some(Arc::new(Schema::new(fields)))
    }

    fn check_keys(&mut self, path: &str, keys: &[String], schema: &SchemaRef) {
        if keys.is_empty() {
            self.err(path, "needs at least one key column");
        }
        for (i, k) in keys.iter().enumerate() {
            match schema.field_with_name(k) {
                Err(_) => self.err(
                    format!("{path}[{i}]"),
                    format!("unknown column '{k}' (columns: {})", column_list(schema)),
                ),
                Ok(f) if !is_key_type(f.data_type()) => self.err(
                    format!("{path}[{i}]"),
                    format!("'{k}' is {}, which cannot be a key", f.data_type()),
                ),
                Ok(_) => {}
            }
        }
    }

    fn window_join(&mut self, path: &str, j: &WindowJoinSpec, left: &Vertex, right: &Vertex) -> Option<SchemaRef> {
        self.check_keys(&format!("{path}.left_key"), &j.left_key, &left.schema);
        self.check_keys(&format!("{path}.right_key"), &j.right_key, &right.schema);
        if j.right_key.len() != j.left_key.len() {
            self.err(
                format!("{path}.right_key"),
                format!(
                    "has {} columns but left_key has {}: they are joined pairwise",
                    j.right_key.len(),
                    j.left_key.len()
                ),
            );
        }
        for (i, (l, r)) in j.left_key.iter().zip(&j.right_key).enumerate() {
            if let (Ok(lf), Ok(rf)) = (left.schema.field_with_name(l), right.schema.field_with_name(r))
                && lf.data_type() != rf.data_type()
            {
                self.err(
                    format!("{path}.right_key[{i}]"),
                    format!(
                        "'{r}' is {} but left_key[{i}] '{l}' is {}: joined keys need the same type",
                        rf.data_type(),
                        lf.data_type()
                    ),
                );
            }
        }
        if j.window_ms == 0 {
            self.err(format!("{path}.window_ms"), "must be positive");
        }
        if j.window_ms.saturating_add(j.delay_ms) > i64::MAX as u64 / 2 {
            self.err(format!("{path}.delay_ms"), "window_ms + delay_ms is out of range");
        }
        let mut fields: Vec<Field> = left.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut names: HashSet<String> = fields.iter().map(|f| f.name().clone()).collect();
        for (i, c) in j.right_columns.iter().enumerate() {
            let cpath = format!("{path}.right_columns[{i}]");
            match right.schema.field_with_name(c.column()) {
                Err(_) => self.err(
                    cpath,
                    format!(
                        "unknown column '{}' of '{}' (columns: {})",
                        c.column(),
                        right.name,
                        column_list(&right.schema)
                    ),
                ),
                Ok(_) if !names.insert(c.output().to_string()) => self.err(
                    cpath,
                    format!(
                        "output column '{}' already exists (rename it: {{\"column\": \"{}\", \"as\": ...}})",
                        c.output(),
                        c.column()
                    ),
                ),
                // A left join fills the B columns of an unmatched row with nulls.
                Ok(f) => fields.push(Field::new(
                    c.output(),
                    f.data_type().clone(),
                    f.is_nullable() || !j.inner,
                )),
            }
        }
        if j.label_column.is_empty() {
            self.err(format!("{path}.label_column"), "must not be empty");
        } else if names.contains(&j.label_column) {
            self.err(
                format!("{path}.label_column"),
                format!("output column '{}' already exists", j.label_column),
            );
        }
        fields.push(Field::new(&j.label_column, DataType::Int32, false));
        if let JoinStateSpec::Redis(redis) = &j.state {
            self.redis_state(
                &format!("{path}.state.redis"),
                redis,
                j.window_ms.saturating_add(j.delay_ms),
            );
        }
        Some(Arc::new(Schema::new(fields)))
    }

    fn redis_state(&mut self, path: &str, r: &RedisStateSpec, window_and_delay: u64) {
        match url::Url::parse(&r.url) {
            Ok(u) if u.scheme() == "redis" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(u) if u.scheme() != "redis" => self.err(
                format!("{path}.url"),
                format!("'{}': the scheme must be redis:// (not {}://)", r.url, u.scheme()),
            ),
            Ok(_) => self.err(format!("{path}.url"), format!("'{}' names no host", r.url)),
            Err(e) => self.err(
                format!("{path}.url"),
                format!("'{}' is not a URL ({e}); expected redis://host:port", r.url),
            ),
        }
        if r.ttl_ms <= window_and_delay {
            self.err(
                format!("{path}.ttl_ms"),
                format!(
                    "{} ms would expire rows before the join is done with them: it must exceed window_ms + delay_ms ({window_and_delay} ms), by far",
                    r.ttl_ms
                ),
            );
        }
        if r.timeout_ms == 0 {
            self.err(format!("{path}.timeout_ms"), "must be positive");
        }
    }

    fn window_aggregate(&mut self, path: &str, w: &WindowAggregateSpec, schema: &SchemaRef) -> Option<SchemaRef> {
        self.check_keys(&format!("{path}.key_by"), &w.key_by, schema);
        if w.tumbling_ms == 0 {
            self.err(format!("{path}.tumbling_ms"), "must be positive");
        }
        if w.aggregates.is_empty() {
            self.err(format!("{path}.aggregates"), "needs at least one aggregate");
        }
        let mut fields: Vec<Field> = w
            .key_by
            .iter()
            .filter_map(|k| schema.field_with_name(k).ok().cloned())
            .collect();
        for n in ["window_start", "window_end", "window_time"] {
            fields.push(Field::new(n, timestamp_ms(), false));
        }
        let mut names: HashSet<String> = fields.iter().map(|f| f.name().clone()).collect();
        for (i, a) in w.aggregates.iter().enumerate() {
            let apath = format!("{path}.aggregates[{i}]");
            if !names.insert(a.output.clone()) {
                self.err(
                    format!("{apath}.as"),
                    format!("output column '{}' already exists", a.output),
                );
            }
            let out_type = match (a.function, &a.column) {
                (AggregateFunction::Count, None) => DataType::Int64,
                (AggregateFunction::Count, Some(_)) => {
                    self.err(format!("{apath}.column"), "count takes no column");
                    continue;
                }
                (f, None) => {
                    self.err(
                        format!("{apath}.column"),
                        format!("{f:?} needs a column").to_lowercase(),
                    );
                    continue;
                }
                (f, Some(c)) => match schema.field_with_name(c) {
                    Err(_) => {
                        self.err(
                            format!("{apath}.column"),
                            format!("unknown column '{c}' (columns: {})", column_list(schema)),
                        );
                        continue;
                    }
                    Ok(field) => {
                        let t = field.data_type();
                        let ok = match f {
                            AggregateFunction::Sum => is_numeric(t),
                            _ => is_orderable(t),
                        };
                        if !ok {
                            self.err(
                                format!("{apath}.column"),
                                format!("cannot take {} of '{c}', which is {t}", format!("{f:?}").to_lowercase()),
                            );
                            continue;
                        }
                        match (f, t.is_floating()) {
                            (AggregateFunction::Sum, true) => DataType::Float64,
                            (AggregateFunction::Sum, false) => DataType::Int64,
                            _ => t.clone(),
                        }
                    }
                },
            };
            // sum/min/max of a window whose values were all null is null.
            fields.push(Field::new(&a.output, out_type, a.function != AggregateFunction::Count));
        }
        Some(Arc::new(Schema::new(fields)))
    }

    fn partition_commit(&mut self, path: &str, c: &PartitionCommitSpec) {
        if self.spec.checkpoint.is_none() {
            self.err(
                path,
                "needs checkpoints (`checkpoint`): a partition is committed with the checkpoint that completes it",
            );
        }
        if c.target_file_bytes != 0 && c.target_file_bytes < 1 << 20 {
            self.err(
                format!("{path}.target_file_bytes"),
                "must be 0 (no compaction) or at least 1 MiB",
            );
        }
        if c.idle_timeout_ms == Some(0) {
            self.err(format!("{path}.idle_timeout_ms"), "must be positive");
        }
        if let Some(n) = &c.notice {
            if n.bootstrap_servers.trim().is_empty() {
                self.err(format!("{path}.notice.bootstrap_servers"), "must not be empty");
            }
            if n.topic.trim().is_empty() {
                self.err(format!("{path}.notice.topic"), "must not be empty");
            }
        }
    }

    fn kafka_sink(&mut self, path: &str, k: &KafkaSinkSpec, up: &Vertex) {
        if k.bootstrap_servers.trim().is_empty() {
            self.err(
                format!("{path}.bootstrap_servers"),
                "must name at least one broker (host:port)",
            );
        }
        match (&k.topic, &k.topic_expr) {
            (Some(t), None) => {
                if let Err(e) = check_topic_name(t) {
                    self.err(format!("{path}.topic"), e);
                }
            }
            (None, Some(e)) => match crate::expr::compile(e, &up.schema) {
                Ok(c) if !matches!(c.data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => self.err(
                    format!("{path}.topic_expr"),
                    format!("yields {}, not a string (a topic name)", c.data_type),
                ),
                Ok(_) => {}
                Err(msg) => self.err(format!("{path}.topic_expr"), msg),
            },
            _ => self.err(path, "needs exactly one of: topic, topic_expr"),
        }
        if let Some(key) = &k.key
            && up.schema.field_with_name(key).is_err()
        {
            self.err(
                format!("{path}.key"),
                format!("unknown column '{key}' (columns: {})", column_list(&up.schema)),
            );
        }
        if let Some(FormatSpec::Protobuf {
            descriptor_set,
            message,
        }) = &k.format
        {
            match crate::protobuf_schema::load_message(descriptor_set, message) {
                Ok(m) => {
                    for f in up.schema.fields() {
                        let checked = crate::schema::field_type(f.data_type())
                            .ok_or_else(|| {
                                format!(
                                    "column '{}' is {}, which protobuf output does not support",
                                    f.name(),
                                    f.data_type()
                                )
                            })
                            .and_then(|t| crate::protobuf_schema::output_field_for(&m, f.name(), t));
                        if let Err(e) = checked {
                            self.err(format!("{path}.format"), e);
                        }
                    }
                }
                Err(e @ ProtobufSchemaError::DescriptorSet { .. }) => {
                    self.err(format!("{path}.format.descriptor_set"), e.to_string())
                }
                Err(e @ ProtobufSchemaError::UnknownMessage { .. }) => {
                    self.err(format!("{path}.format.message"), e.to_string())
                }
            }
        }
        for key in k.properties.keys() {
            if KAFKA_PRODUCER_PROPERTIES_WEIR_SETS.contains(&key.as_str()) {
                self.err(
                    format!("{path}.properties.{key}"),
                    "is set by Weir (use the sink's own fields)",
                );
            }
        }
        if k.delivery == KafkaDelivery::AtLeastOnce {
            if k.transactional_id_prefix.is_some() {
                self.err(
                    format!("{path}.transactional_id_prefix"),
                    "only applies with delivery: exactly_once",
                );
            }
            return;
        }
        let Some(c) = &self.spec.checkpoint else {
            self.err(
                format!("{path}.delivery"),
                "exactly_once needs checkpoints (`checkpoint`): transactions commit when a checkpoint completes",
            );
            return;
        };
        let needed = c.interval_ms + c.timeout_ms;
        if k.transaction_timeout_ms <= needed {
            self.err(
                format!("{path}.transaction_timeout_ms"),
                format!(
                    "{} ms would let the broker abort a transaction before its checkpoint completes: it must exceed checkpoint.interval_ms + checkpoint.timeout_ms ({needed} ms)",
                    k.transaction_timeout_ms
                ),
            );
        }
        if let Some(p) = &k.transactional_id_prefix
            && (p.is_empty() || p.chars().any(char::is_whitespace))
        {
            self.err(
                format!("{path}.transactional_id_prefix"),
                "must be non-empty, without spaces",
            );
        }
    }

    fn sink(&mut self, path: &str, s: &SinkSpec, up: &Vertex) -> Option<(VertexKind, SchemaRef, String)> {
        let connector = match (&s.parquet, &s.kafka, &s.blackhole) {
            (Some(p), None, None) => {
                if p.path.trim().is_empty() {
                    self.err(format!("{path}.parquet.path"), "must not be empty");
                }
                if let Err(e) = check_partition_pattern(&p.partition) {
                    self.err(format!("{path}.parquet.partition"), e);
                }
                if p.max_file_bytes == 0 {
                    self.err(format!("{path}.parquet.max_file_bytes"), "must be positive");
                }
                if p.rollover_ms == 0 {
                    self.err(format!("{path}.parquet.rollover_ms"), "must be positive");
                }
                if let Some(c) = &p.commit {
                    self.partition_commit(&format!("{path}.parquet.commit"), c);
                }
                SinkConnector::Parquet(p.clone())
            }
            (None, Some(k), None) => {
                self.kafka_sink(&format!("{path}.kafka"), k, up);
                SinkConnector::Kafka(k.clone())
            }
            (None, None, Some(b)) => {
                for (i, c) in b.sum_columns.iter().enumerate() {
                    match up.schema.field_with_name(c) {
                        Err(_) => self.err(
                            format!("{path}.blackhole.sum_columns[{i}]"),
                            format!("unknown column '{c}' (columns: {})", column_list(&up.schema)),
                        ),
                        Ok(f)
                            if !(f.data_type().is_integer() || matches!(f.data_type(), DataType::Timestamp(_, _))) =>
                        {
                            self.err(
                                format!("{path}.blackhole.sum_columns[{i}]"),
                                format!(
                                    "'{c}' is {}; only integer and timestamp columns can be summed",
                                    f.data_type()
                                ),
                            )
                        }
                        Ok(_) => {}
                    }
                }
                SinkConnector::Blackhole(b.clone())
            }
            _ => {
                self.err(path, "needs exactly one of: parquet, kafka, blackhole");
                return None;
            }
        };
        Some((
            VertexKind::Sink(connector),
            up.schema.clone(),
            up.event_time_column.clone(),
        ))
    }

    fn edges(&self) -> Vec<Edge> {
        let mut edges = Vec::new();
        for v in &self.vertices {
            for (side, &from) in v.inputs.iter().enumerate() {
                let up = &self.vertices[from.0];
                let keys = match &v.kind {
                    VertexKind::KeyBy { keys } => Some(keys),
                    VertexKind::WindowAggregate(w) => Some(&w.key_by),
                    VertexKind::WindowJoin(j) if side == 0 => Some(&j.left_key),
                    VertexKind::WindowJoin(j) => Some(&j.right_key),
                    _ => None,
                };
                let partitioning = match keys {
                    Some(keys) if self.partitioned_by.get(&from) != Some(&(keys.clone(), v.parallelism)) => {
                        EdgePartitioning::Hash {
                            key_columns: keys
                                .iter()
                                .map(|k| up.schema.index_of(k).expect("validated key"))
                                .collect(),
                        }
                    }
                    _ if up.parallelism == v.parallelism => EdgePartitioning::Forward,
                    _ => EdgePartitioning::Rebalance,
                };
                edges.push(Edge {
                    from,
                    to: v.id,
                    partitioning,
                });
            }
        }
        edges
    }
}

fn column_list(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{topic:?} is not a valid topic name (1 to 249 of letters, digits, '.', '_', '-')"
        ))
    }
}

/// A partition pattern must be a valid strftime pattern that yields a relative path.
pub fn check_partition_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    if pattern.starts_with('/') || pattern.split('/').any(|s| s == "..") {
        return Err("must be a relative path without '..'".into());
    }
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        return Err(format!("'{pattern}' is not a valid strftime pattern"));
    }
    Ok(())
}
