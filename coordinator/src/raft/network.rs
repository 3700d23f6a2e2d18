//! Raft traffic between coordinators over gRPC (`weir.raft.v1.RaftService`): the client
//! side openraft calls to reach a peer, and the service that hands a peer's calls to the
//! local Raft. Every call has a deadline (openraft's per-RPC TTL).

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_proto::raft::RaftMessage;
use weir_proto::raft::raft_service_client::RaftServiceClient;
use weir_proto::raft::raft_service_server::RaftService;
use weir_taskmanager::transport::{AuthChannel, ClusterTransport};

use crate::raft::types::{NodeId, Raft, TypeConfig};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Makes clients for peers; a client connects lazily and reconnects by itself.
#[derive(Clone, Default)]
pub struct GrpcNetwork {
    pub transport: ClusterTransport,
}

pub struct GrpcPeer {
    target: NodeId,
    client: Result<RaftServiceClient<AuthChannel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcPeer {
        let client = self
            .transport
            .channel(&node.addr, CONNECT_TIMEOUT)
            .map(RaftServiceClient::new)
            .map_err(|e| format!("coordinator {target}: {e}"));
        GrpcPeer { target, client }
    }
}

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl GrpcPeer {
    async fn call<Req, Resp, E>(&mut self, method: &'static str, req: &Req, ttl: Duration) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self
            .client
            .as_mut()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.clone()))))?;
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = RaftMessage { json };
        let call = async {
            match method {
                "append_entries" => client.append_entries(msg).await,
                "vote" => client.vote(msg).await,
                _ => client.install_snapshot(msg).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{method} to coordinator {} timed out after {ttl:?}", self.target),
                ))));
            }
            Ok(Err(status)) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GrpcPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call("append_entries", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call("install_snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}

/// Serves peers' Raft calls against the local Raft.
pub struct RaftRpcService {
    pub raft: Raft,
}

fn decode<T: DeserializeOwned>(msg: tonic::Request<RaftMessage>) -> Result<T, tonic::Status> {
    serde_json::from_slice(&msg.into_inner().json).map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

fn encode<T: Serialize>(result: &T) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
    serde_json::to_vec(result)
        .map(|json| tonic::Response::new(RaftMessage { json }))
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftService for RaftRpcService {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        encode(&self.raft.append_entries(decode(request)?).await)
    }

    async fn vote(&self, request: tonic::Request<RaftMessage>) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        encode(&self.raft.vote(decode(request)?).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        encode(&self.raft.install_snapshot(decode(request)?).await)
    }
}
