//! How the exactly-once Kafka sink tells, after a restart, whether a transaction
//! committed. Each transaction with records also commits, through
//! `send_offsets_to_transaction`, offset `checkpoint` for (its first topic, partition 0) to
//! the consumer group `<transactional id prefix>-<subtask>`; Kafka makes that offset
//! visible exactly when the transaction commits (KIP-98). A restore first initialises the
//! transactional ids that wrote the segment (which fences that writer and commits or
//! aborts whatever it left in flight), then reads the group's committed offset with
//! `read_committed` (which asks the broker for stable offsets only, KIP-447): below the
//! checkpoint, the transaction was aborted and its write-ahead segment is replayed.

use std::time::Duration;

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use weir_common::spec::KafkaSinkSpec;

/// The consumer group the transactions of one sink subtask commit their markers to.
pub fn marker_group(prefix: &str, subtask: u32) -> String {
    format!("{prefix}-{subtask}")
}

/// The marker a transaction prepared for `checkpoint` commits.
pub fn marker_offsets(topic: &str, checkpoint: u64) -> Result<TopicPartitionList, String> {
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(checkpoint as i64))
        .map_err(|e| format!("commit marker on {topic}: {e}"))?;
    Ok(offsets)
}

fn consumer(spec: &KafkaSinkSpec, group: &str) -> Result<BaseConsumer, String> {
    let mut config = ClientConfig::new();
    // Security settings (SASL, TLS) apply to every client; producer-only ones are
    // ignored by a consumer with a warning.
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", &spec.bootstrap_servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer for group {group}: {e}"))
}

/// What `send_offsets_to_transaction` needs to commit to `group` (a group without
/// members: generation -1, so the broker checks no membership).
pub fn group_metadata(spec: &KafkaSinkSpec, group: &str) -> Result<ConsumerGroupMetadata, String> {
    consumer(spec, group)?
        .group_metadata()
        .ok_or_else(|| format!("no group metadata for {group}"))
}

/// The checkpoint of the last transaction that committed a marker on `topic` to
/// `group`, `None` when none did.
pub fn committed_marker(
    spec: &KafkaSinkSpec,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Option<u64>, String> {
    let mut wanted = TopicPartitionList::new();
    wanted
        .add_partition(topic, 0)
        .set_offset(Offset::Invalid)
        .map_err(|e| e.to_string())?;
    let committed = consumer(spec, group)?
        .committed_offsets(wanted, timeout)
        .map_err(|e| format!("reading the commit marker of group {group} on {topic}: {e}"))?;
    let offset = committed.find_partition(topic, 0).map(|p| p.offset());
    Ok(match offset {
        Some(Offset::Offset(n)) if n >= 0 => Some(n as u64),
        _ => None,
    })
}

/// Whether a segment's transaction must be written again.
pub fn needs_replay(checkpoint: u64, committed: Option<u64>) -> bool {
    committed.is_none_or(|c| c < checkpoint)
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;

    #[test]
    fn a_transaction_is_replayed_unless_its_marker_reached_its_checkpoint() {
        assert!(needs_replay(4, None));
        assert!(needs_replay(4, Some(3)));
        assert!(!needs_replay(4, Some(4)));
        assert!(!needs_replay(4, Some(9)), "a later transaction's marker covers it");
    }

    /// Against the mock cluster's group coordinator (which stores plain offset commits;
    /// transactional ones it accepts but drops, see the module's tests in
    /// record_producer.rs): a group without a marker reads `None`, then the committed
    /// checkpoint.
    #[test]
    fn the_committed_marker_is_read_back_from_the_group() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 2, 1).unwrap();
        let spec: KafkaSinkSpec = serde_json::from_value(serde_json::json!({
            "bootstrap_servers": cluster.bootstrap_servers(),
            "topic": "out",
            "delivery": "exactly_once",
        }))
        .unwrap();
        let timeout = Duration::from_secs(10);
        assert_eq!(committed_marker(&spec, "p-0", "out", timeout).unwrap(), None);
        let committer = consumer(&spec, "p-0").unwrap();
        committer
            .commit(&marker_offsets("out", 12).unwrap(), rdkafka::consumer::CommitMode::Sync)
            .unwrap();
        assert_eq!(committed_marker(&spec, "p-0", "out", timeout).unwrap(), Some(12));
        assert_eq!(
            committed_marker(&spec, "p-1", "out", timeout).unwrap(),
            None,
            "another subtask's group"
        );
    }
}
