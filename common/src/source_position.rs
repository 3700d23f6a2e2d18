//! Where a source subtask stands in its input, as recorded in a checkpoint: reading again
//! from a position yields exactly the records that followed it; and the checkpoint a new
//! attempt resumes from (positions and operator state).

use serde::{Deserialize, Serialize};

use crate::state_handle::StateHandle;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourcePosition {
    /// A generator: the next index it would emit (indices before it are done).
    Generator { next_index: u64 },
    /// JSON-lines files, none read yet.
    FilesStart,
    /// JSON-lines files: the file being read and the byte offset and line number of its
    /// next record; the files this subtask reads that sort before it are done.
    FileAt { file: String, offset: u64, line: u64 },
    /// JSON-lines files, every one read.
    FilesDone,
    /// Kafka: the next offset of every partition the subtask has read from; partitions
    /// not listed start where the source's `start` says.
    Kafka { offsets: Vec<KafkaOffset> },
}

impl SourcePosition {
    /// The positions of every subtask of a Kafka source merged into one, for a restore at
    /// another parallelism: each new subtask takes the offsets of the partitions it is
    /// assigned. A partition listed twice keeps its greater offset (a subtask that had not
    /// started yet carries the offsets it was restored with, which its partitions' owner
    /// has since passed). `None` when a position is not a Kafka one.
    pub fn kafka_union<'a>(positions: impl IntoIterator<Item = &'a SourcePosition>) -> Option<SourcePosition> {
        let mut next = std::collections::BTreeMap::new();
        for p in positions {
            let SourcePosition::Kafka { offsets } = p else {
                return None;
            };
            for o in offsets {
                let at = next.entry((o.topic.clone(), o.partition)).or_insert(o.next);
                *at = (*at).max(o.next);
            }
        }
        Some(SourcePosition::Kafka {
            offsets: next
                .into_iter()
                .map(|((topic, partition), next)| KafkaOffset { topic, partition, next })
                .collect(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaOffset {
    pub topic: String,
    pub partition: i32,
    /// The offset of the first record not yet read.
    pub next: i64,
}

/// The checkpoint a new attempt resumes from: which attempt took it, its id, and where
/// every source subtask stood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFrom {
    pub attempt: u32,
    pub checkpoint: u64,
    pub sources: Vec<RestoredSource>,
    /// The keyed state of every stateful operator subtask.
    #[serde(default)]
    pub state: Vec<StateHandle>,
    /// The storage URL the state handles' paths are relative to, when it is not the
    /// job's checkpoint storage (a savepoint).
    #[serde(default)]
    pub state_storage: Option<String>,
    /// Per committing sink (by name): its commit watermark at the checkpoint. Partitions
    /// complete by then may be committed, so the restored sink treats rows for them as
    /// late instead of writing them again.
    #[serde(default)]
    pub sink_watermarks: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredSource {
    pub task: u32,
    pub subtask: u32,
    pub position: SourcePosition,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(offsets: &[(&str, i32, i64)]) -> SourcePosition {
        SourcePosition::Kafka {
            offsets: offsets
                .iter()
                .map(|(t, p, n)| KafkaOffset {
                    topic: t.to_string(),
                    partition: *p,
                    next: *n,
                })
                .collect(),
        }
    }

    #[test]
    fn the_union_of_kafka_positions_keeps_each_partitions_furthest_offset() {
        let union = SourcePosition::kafka_union(&[
            kafka(&[("a", 0, 10), ("a", 2, 30)]),
            kafka(&[("a", 1, 20), ("a", 0, 4)]),
            kafka(&[]),
        ]);
        assert_eq!(union, Some(kafka(&[("a", 0, 10), ("a", 1, 20), ("a", 2, 30)])));
        assert_eq!(
            SourcePosition::kafka_union(&[kafka(&[]), SourcePosition::FilesDone]),
            None
        );
    }
}
