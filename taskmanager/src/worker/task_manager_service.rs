//! The gRPC service of a task manager (`weir.taskmanager.v1.TaskManagerService`):
//! deployments and cancellations from the coordinator leader, and the consumer side of
//! the data exchange with other task managers.

use std::pin::Pin;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weir_proto::taskmanager::task_manager_service_server::TaskManagerService;
use weir_proto::taskmanager::{
    CancelRequest, CancelResponse, DeployRequest, DeployResponse, ExchangeCredit, ExchangeFrame,
    TriggerCheckpointRequest, TriggerCheckpointResponse,
};

use super::deployed_jobs::{DeployError, DeployedJobs};
use crate::exchange::NETWORK_CREDITS;
use crate::exchange::inbound_channels::InboundChannels;

pub struct TaskManagerApi {
    pub jobs: DeployedJobs,
    pub inbound: InboundChannels,
}

#[tonic::async_trait]
impl TaskManagerService for TaskManagerApi {
    async fn deploy(&self, request: Request<DeployRequest>) -> Result<Response<DeployResponse>, Status> {
        match self.jobs.deploy(request.into_inner()).await {
            Ok(subtasks) => Ok(Response::new(DeployResponse { subtasks })),
            Err(e @ DeployError::Stale { .. }) => Err(Status::failed_precondition(e.to_string())),
            Err(e @ (DeployError::Spec { .. } | DeployError::Placement { .. } | DeployError::Slot { .. })) => {
                Err(Status::invalid_argument(e.to_string()))
            }
            Err(e @ (DeployError::Task { .. } | DeployError::State { .. })) => Err(Status::internal(e.to_string())),
        }
    }

    async fn cancel(&self, request: Request<CancelRequest>) -> Result<Response<CancelResponse>, Status> {
        let req = request.into_inner();
        let cancelled_subtasks = self.jobs.cancel(&req.job_id, req.below_attempt).await;
        Ok(Response::new(CancelResponse { cancelled_subtasks }))
    }

    async fn trigger_checkpoint(
        &self,
        request: Request<TriggerCheckpointRequest>,
    ) -> Result<Response<TriggerCheckpointResponse>, Status> {
        let req = request.into_inner();
        if req.completed_before > 0 {
            // Completing is idempotent; this covers a lost NotifyCheckpointComplete.
            self.jobs
                .checkpoint_complete(&req.job_id, req.attempt, req.completed_before);
        }
        let found = self
            .jobs
            .trigger_checkpoint(&req.job_id, req.attempt, req.checkpoint_id);
        checkpoint_answer(found, &req)
    }

    async fn notify_checkpoint_complete(
        &self,
        request: Request<TriggerCheckpointRequest>,
    ) -> Result<Response<TriggerCheckpointResponse>, Status> {
        let req = request.into_inner();
        let found = self
            .jobs
            .checkpoint_complete(&req.job_id, req.attempt, req.checkpoint_id);
        checkpoint_answer(found, &req)
    }

    type ExchangeStream = Pin<Box<dyn Stream<Item = Result<ExchangeCredit, Status>> + Send>>;

    async fn exchange(
        &self,
        request: Request<Streaming<ExchangeFrame>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let credits = self.inbound.accept(request.into_inner(), NETWORK_CREDITS).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(credits))))
    }
}

/// The answer to a checkpoint call: done, or the attempt does not run here.
fn checkpoint_answer(
    found: bool,
    req: &TriggerCheckpointRequest,
) -> Result<Response<TriggerCheckpointResponse>, Status> {
    if found {
        Ok(Response::new(TriggerCheckpointResponse {}))
    } else {
        Err(Status::not_found(format!(
            "attempt {} of job {} does not run here",
            req.attempt, req.job_id
        )))
    }
}
