//! The identity of one network channel: which job attempt, which edge between tasks, and
//! which producer and consumer subtasks.

use std::fmt;

use weir_proto::taskmanager::ChannelHeader;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelKey {
    pub job_id: String,
    pub attempt: u32,
    pub edge: u32,
    pub producer: u32,
    pub consumer: u32,
}

impl From<&ChannelHeader> for ChannelKey {
    fn from(h: &ChannelHeader) -> Self {
        Self {
            job_id: h.job_id.clone(),
            attempt: h.attempt,
            edge: h.edge,
            producer: h.producer_subtask,
            consumer: h.consumer_subtask,
        }
    }
}

impl From<&ChannelKey> for ChannelHeader {
    fn from(k: &ChannelKey) -> Self {
        Self {
            job_id: k.job_id.clone(),
            attempt: k.attempt,
            edge: k.edge,
            producer_subtask: k.producer,
            consumer_subtask: k.consumer,
        }
    }
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} attempt {} edge {} subtask {} -> {}",
            self.job_id, self.attempt, self.edge, self.producer, self.consumer
        )
    }
}
