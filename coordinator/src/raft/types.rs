//! The openraft type configuration of Weir's coordinator group.

use std::io::Cursor;

use crate::raft::cluster_state::{ClusterCommand, CommandOutcome};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Raft types of the coordinator group.
    pub TypeConfig:
        D = ClusterCommand,
        R = CommandOutcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
