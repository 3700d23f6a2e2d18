//! The leader's registry of task managers: soft state filled by their heartbeats (the
//! first heartbeat registers). It is not replicated: after a failover the new leader knows
//! every live task manager again within one heartbeat interval, because each one follows
//! the refusal of the old address to the new leader. Heartbeats also carry the state and
//! counters of every subtask a task manager runs; the job supervisor reads them here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};
use weir_proto::cluster::task_manager_registry_server::TaskManagerRegistry;
use weir_proto::cluster::{
    AlignWatermarksRequest, AlignWatermarksResponse, HeartbeatRequest, HeartbeatResponse, ListTaskManagersRequest,
    ListTaskManagersResponse, SubtaskReport, TaskManagerInfo,
};

use crate::raft::types::{NodeId, Raft};
use crate::server::not_leader;
use crate::watermark_aggregator::WatermarkAggregator;

pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A task manager silent for this long is lost (its subtasks must be restarted elsewhere).
pub const LOST_AFTER: Duration = Duration::from_secs(3);

struct Registered {
    address: String,
    slots: u32,
    last_heartbeat: Instant,
    subtasks: Vec<SubtaskReport>,
    /// Set when the leader failed to reach it; it counts as lost until it heartbeats again.
    suspected_since: Option<Instant>,
}

impl Registered {
    fn alive(&self) -> bool {
        self.last_heartbeat.elapsed() < LOST_AFTER && self.suspected_since.is_none_or(|t| self.last_heartbeat > t)
    }
}

/// A task manager that heartbeats.
#[derive(Debug, Clone)]
pub struct LiveTaskManager {
    pub id: String,
    pub address: String,
    pub slots: u32,
}

#[derive(Clone)]
pub struct Registry {
    raft: Raft,
    id: NodeId,
    address: String,
    task_managers: Arc<Mutex<BTreeMap<String, Registered>>>,
    /// The watermarks of aligned source subtasks, reported alongside the heartbeats.
    pub watermarks: WatermarkAggregator,
}

impl Registry {
    pub fn new(raft: Raft, id: NodeId, address: String) -> Self {
        Self {
            raft,
            id,
            address,
            task_managers: Arc::default(),
            watermarks: WatermarkAggregator::default(),
        }
    }

    /// Live task managers, by id.
    pub fn live(&self) -> Vec<LiveTaskManager> {
        let tms = self.task_managers.lock().expect("registry lock");
        tms.iter()
            .filter(|(_, r)| r.alive())
            .map(|(id, r)| LiveTaskManager {
                id: id.clone(),
                address: r.address.clone(),
                slots: r.slots,
            })
            .collect()
    }

    pub fn is_alive(&self, id: &str) -> bool {
        let tms = self.task_managers.lock().expect("registry lock");
        tms.get(id).is_some_and(Registered::alive)
    }

    /// The leader could not reach task manager `id`: no new work goes there until it
    /// heartbeats again (so a dead one is not chosen again before it is declared lost).
    pub fn suspect(&self, id: &str) {
        if let Some(r) = self.task_managers.lock().expect("registry lock").get_mut(id) {
            r.suspected_since = Some(Instant::now());
        }
    }

    /// The latest reports of the subtasks of one job attempt, with the reporting task
    /// manager's id.
    pub fn reports(&self, job_id: &str, attempt: u32) -> Vec<(String, SubtaskReport)> {
        let tms = self.task_managers.lock().expect("registry lock");
        tms.iter()
            .flat_map(|(id, r)| {
                r.subtasks
                    .iter()
                    .filter(|s| s.job_id == job_id && s.attempt == attempt)
                    .map(move |s| (id.clone(), s.clone()))
            })
            .collect()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Forgets every task manager (a coordinator that lost the leadership).
    pub fn clear(&self) {
        self.task_managers.lock().expect("registry lock").clear();
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
        if tonic::transport::Endpoint::from_shared(format!("http://{}", req.address)).is_err() {
            return Err(Status::invalid_argument(format!(
                "task manager address '{}' is not host:port",
                req.address
            )));
        }
        let mut tms = self.task_managers.lock().expect("registry lock");
        let known = tms.contains_key(&req.task_manager_id);
        tms.insert(
            req.task_manager_id.clone(),
            Registered {
                address: req.address.clone(),
                slots: req.slots,
                last_heartbeat: Instant::now(),
                subtasks: req.subtasks,
                suspected_since: None,
            },
        );
        if !known {
            tracing::info!(task_manager = %req.task_manager_id, address = %req.address, slots = req.slots, "task manager registered");
        }
        Ok(Response::new(HeartbeatResponse {
            interval_ms: HEARTBEAT_INTERVAL.as_millis() as u64,
        }))
    }

    async fn align_watermarks(
        &self,
        request: Request<AlignWatermarksRequest>,
    ) -> Result<Response<AlignWatermarksResponse>, Status> {
        self.check_leader()?;
        let groups = self.watermarks.report(request.into_inner().sources);
        Ok(Response::new(AlignWatermarksResponse { groups }))
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
                    alive: r.alive(),
                }
            })
            .collect();
        Ok(Response::new(ListTaskManagersResponse {
            task_managers,
            leader: self.address.clone(),
        }))
    }
}
