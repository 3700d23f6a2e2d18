//! Which Kafka partitions a source subtask reads. Static, as Flink's Kafka source
//! enumerator assigns them: partition `p` of the topic listed `i`-th goes to subtask
//! `(i + p) % parallelism`, so each subtask gets a fair share of every topic, partition 0
//! of consecutive topics lands on different subtasks, and the assignment is the same in
//! every attempt (a checkpointed offset always comes back to the subtask that reads it).

/// A partition of a topic, as checkpoints and watermarks name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// The partitions of `topics` (each with its partition count) that `subtask` of
/// `parallelism` reads, in topic then partition order.
pub fn assigned_partitions(topics: &[(String, i32)], subtask: u32, parallelism: u32) -> Vec<TopicPartition> {
    let mut out = Vec::new();
    for (i, (topic, partitions)) in topics.iter().enumerate() {
        for p in 0..*partitions {
            if (i as u64 + p as u64) % parallelism as u64 == subtask as u64 {
                out.push(TopicPartition {
                    topic: topic.clone(),
                    partition: p,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_is_read_by_exactly_one_subtask_and_shares_are_even() {
        let topics = vec![("impressions".to_string(), 8), ("clicks".to_string(), 3)];
        let parallelism = 3;
        let shares: Vec<Vec<TopicPartition>> = (0..parallelism)
            .map(|s| assigned_partitions(&topics, s, parallelism))
            .collect();
        let mut all: Vec<TopicPartition> = shares.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 11, "each partition once");
        assert_eq!(shares.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 3]);
        // Partition 0 of the second topic does not pile onto subtask 0.
        assert!(shares[1].contains(&TopicPartition {
            topic: "clicks".into(),
            partition: 0
        }));
    }
}
