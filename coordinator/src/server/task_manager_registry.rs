//! The leader's registry of task managers: soft state filled by their heartbeats (the
//! first heartbeat registers). It is not replicated: after a failover the new leader knows
//! every live task manager again within one heartbeat interval, because each one follows
//! the refusal of the old address to the new leader.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use weir_proto::cluster::task_manager_registry_server::TaskManagerRegistry;
use weir_proto::cluster::{
    HeartbeatRequest, HeartbeatResponse, ListTaskManagersRequest, ListTaskManagersResponse, TaskManagerInfo,
};

use crate::raft::types::{NodeId, Raft};
use crate::server::not_leader;

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A task manager silent for this long is lost (its subtasks must be restarted elsewhere).
pub const LOST_AFTER: Duration = Duration::from_secs(3);

struct Registered {
    address: String,
    slots: u32,
    last_heartbeat: Instant,
}

#[derive(Clone)]
pub struct Registry {
    raft: Raft,
    id: NodeId,
    address: String,
    task_managers: Arc<Mutex<BTreeMap<String, Registered>>>,
}

impl Registry {
    pub fn new(raft: Raft, id: NodeId, address: String) -> Self {
        Self {
            raft,
            id,
            address,
            task_managers: Arc::default(),
        }
    }

    /// Ok when this coordinator leads; otherwise the redirect to the leader. Soft state
    /// needs no quorum round trip: a stale leader only collects heartbeats nobody reads.
    fn check_leader(&self) -> Result<(), Status> {
        let metrics = self.raft.metrics().borrow().clone();
        match metrics.current_leader {
            Some(leader) if leader == self.id => Ok(()),
            Some(leader) => {
                let addr = metrics
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|n| n.addr.clone());
                Err(not_leader(addr, "not the leader"))
            }
            None => Err(not_leader(None, "election in progress")),
        }
    }
}

#[tonic::async_trait]
impl TaskManagerRegistry for Registry {
    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        self.check_leader()?;
        let req = request.into_inner();
        if req.task_manager_id.is_empty() || req.slots == 0 {
            return Err(Status::invalid_argument(
                "a task manager needs an id and at least one slot",
            ));
        }
        let mut tms = self.task_managers.lock().expect("registry lock");
        let known = tms.contains_key(&req.task_manager_id);
        tms.insert(
            req.task_manager_id.clone(),
            Registered {
                address: req.address.clone(),
                slots: req.slots,
                last_heartbeat: Instant::now(),
            },
        );
        if !known {
            tracing::info!(task_manager = %req.task_manager_id, address = %req.address, slots = req.slots, "task manager registered");
        }
        Ok(Response::new(HeartbeatResponse {
            interval_ms: HEARTBEAT_INTERVAL.as_millis() as u64,
        }))
    }

    async fn list_task_managers(
        &self,
        _: Request<ListTaskManagersRequest>,
    ) -> Result<Response<ListTaskManagersResponse>, Status> {
        self.check_leader()?;
        let now = Instant::now();
        let tms = self.task_managers.lock().expect("registry lock");
        let task_managers = tms
            .iter()
            .map(|(id, r)| {
                let age = now.duration_since(r.last_heartbeat);
                TaskManagerInfo {
                    task_manager_id: id.clone(),
                    address: r.address.clone(),
                    slots: r.slots,
                    last_heartbeat_ms_ago: age.as_millis() as u64,
                    alive: age < LOST_AFTER,
                }
            })
            .collect();
        Ok(Response::new(ListTaskManagersResponse {
            task_managers,
            leader: self.address.clone(),
        }))
    }
}
