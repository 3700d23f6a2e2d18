//! `coordinator serve`: a member of the Raft group serving the Raft transport and the job
//! API on one gRPC port.

pub mod job_api;
pub mod serve;
