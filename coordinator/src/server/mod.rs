//! `coordinator serve`: a member of the Raft group serving the Raft transport and the job
//! API on one gRPC port.

pub mod console;
pub mod coordinator_metrics;
pub mod job_api;
pub mod job_supervisor;
pub mod serve;
pub mod task_manager_registry;

use tonic::Status;
use weir_proto::LEADER_METADATA;

/// The answer of a coordinator that is not the leader: UNAVAILABLE, with the leader's
/// address (when known) in the `weir-leader` metadata entry for the caller to retry there.
pub fn not_leader(leader: Option<String>, why: &str) -> Status {
    match leader {
        Some(addr) => {
            let mut status = Status::unavailable(format!("not the leader; the leader is {addr}"));
            if let Ok(v) = addr.parse() {
                status.metadata_mut().insert(LEADER_METADATA, v);
            }
            status
        }
        None => Status::unavailable(format!("no leader available: {why}")),
    }
}
