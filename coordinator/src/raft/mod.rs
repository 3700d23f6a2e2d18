//! The coordinators' replicated hard state: openraft with its log and state machine in
//! RocksDB. The state machine holds the cluster metadata (jobs, their specs, status and
//! attempt); everything soft (task-manager registrations, heartbeats) lives outside it.

pub mod cluster_state;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod storage;
pub mod types;
