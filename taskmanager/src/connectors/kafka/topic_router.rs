//! Which topic each row of a Kafka sink goes to, and with which key: a fixed topic, or
//! the topic a SQL expression computes from the row (dynamic routing: any valid name, so
//! a new topic needs no restart). A row whose topic is null or not a valid name cannot be
//! written and is returned as an error for the dead-letter output.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use weir_common::expr::{self, CompiledExpr};
use weir_common::spec::KafkaSinkSpec;
use weir_common::validation::check_topic_name;

use crate::error::TaskError;

enum Topic {
    Fixed(Arc<str>),
    Computed(CompiledExpr),
}

pub struct TopicRouter {
    vertex: String,
    topic: Topic,
    key_column: Option<usize>,
    /// Topic names seen so far, so that a row's topic is a reference count, not a copy.
    known: HashMap<String, Arc<str>>,
}

/// Per row: its topic (or why it has none) and its key.
pub struct Routes {
    pub topics: Vec<Result<Arc<str>, String>>,
    pub keys: Option<Vec<Option<Vec<u8>>>>,
}

/// Distinct topics one sink remembers; past this the names are no longer shared.
const MAX_KNOWN_TOPICS: usize = 10_000;

impl TopicRouter {
    pub fn new(vertex: &str, spec: &KafkaSinkSpec, schema: &SchemaRef) -> Result<Self, TaskError> {
        let invalid = |message: String| TaskError::Invalid {
            vertex: vertex.to_string(),
            message,
        };
        let topic = match (&spec.topic, &spec.topic_expr) {
            (Some(t), None) => Topic::Fixed(Arc::from(t.as_str())),
            (None, Some(sql)) => {
                Topic::Computed(expr::compile(sql, schema).map_err(|message| TaskError::Expression {
                    vertex: vertex.to_string(),
                    message,
                })?)
            }
            _ => return Err(invalid("needs exactly one of topic, topic_expr".into())),
        };
        let key_column = spec
            .key
            .as_ref()
            .map(|k| schema.index_of(k).map_err(|e| TaskError::arrow(vertex, e)))
            .transpose()?;
        Ok(Self {
            vertex: vertex.to_string(),
            topic,
            key_column,
            known: HashMap::new(),
        })
    }

    pub fn route(&mut self, batch: &RecordBatch) -> Result<Routes, TaskError> {
        let rows = batch.num_rows();
        let topics = match &self.topic {
            Topic::Fixed(t) => vec![Ok(t.clone()); rows],
            Topic::Computed(e) => {
                let values =
                    e.expr
                        .evaluate(batch)
                        .and_then(|v| v.into_array(rows))
                        .map_err(|e| TaskError::Expression {
                            vertex: self.vertex.clone(),
                            message: e.to_string(),
                        })?;
                let values = cast(&values, &DataType::Utf8).map_err(|e| TaskError::arrow(&self.vertex, e))?;
                let values = values.as_string::<i32>();
                (0..rows)
                    .map(|i| {
                        if values.is_null(i) {
                            return Err("the topic expression is null".to_string());
                        }
                        self.intern(values.value(i))
                    })
                    .collect()
            }
        };
        let keys = match self.key_column {
            None => None,
            Some(c) => {
                let col = cast(batch.column(c), &DataType::Utf8).map_err(|e| TaskError::arrow(&self.vertex, e))?;
                let col = col.as_string::<i32>();
                Some(
                    (0..rows)
                        .map(|i| (!col.is_null(i)).then(|| col.value(i).as_bytes().to_vec()))
                        .collect(),
                )
            }
        };
        Ok(Routes { topics, keys })
    }

    fn intern(&mut self, name: &str) -> Result<Arc<str>, String> {
        if let Some(t) = self.known.get(name) {
            return Ok(t.clone());
        }
        check_topic_name(name)?;
        let topic: Arc<str> = Arc::from(name);
        if self.known.len() < MAX_KNOWN_TOPICS {
            self.known.insert(name.to_string(), topic.clone());
        }
        Ok(topic)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn spec(topic: Option<&str>, expr: Option<&str>, key: Option<&str>) -> KafkaSinkSpec {
        serde_json::from_value(serde_json::json!({
            "bootstrap_servers": "127.0.0.1:9092",
            "topic": topic,
            "topic_expr": expr,
            "key": key,
        }))
        .unwrap()
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("country", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec![Some("DE"), Some("fr"), None, Some("a b")])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_go_to_the_topic_their_expression_names() {
        let b = batch();
        let mut router = TopicRouter::new(
            "out",
            &spec(None, Some("'clicks-' || lower(country)"), Some("id")),
            &b.schema(),
        )
        .unwrap();
        let routes = router.route(&b).unwrap();
        assert_eq!(routes.topics[0].as_deref(), Ok("clicks-de"));
        assert_eq!(routes.topics[1].as_deref(), Ok("clicks-fr"));
        assert_eq!(routes.topics[2], Err("the topic expression is null".to_string()));
        assert!(
            routes.topics[3]
                .as_ref()
                .unwrap_err()
                .contains("not a valid topic name")
        );
        assert_eq!(
            routes.keys.unwrap(),
            vec![
                Some(b"1".to_vec()),
                Some(b"2".to_vec()),
                Some(b"3".to_vec()),
                Some(b"4".to_vec())
            ]
        );
    }

    #[test]
    fn a_fixed_topic_takes_every_row() {
        let b = batch();
        let mut router = TopicRouter::new("out", &spec(Some("events"), None, None), &b.schema()).unwrap();
        let routes = router.route(&b).unwrap();
        assert!(routes.topics.iter().all(|t| t.as_deref() == Ok("events")));
        assert!(routes.keys.is_none());
    }
}
