//! Starts one coordinator: opens its Raft storage, joins the group, and serves the Raft
//! transport and the job API on one address until SIGINT/SIGTERM.
//!
//! Bootstrapping: start every member with the same `--peer` list; on the very first start
//! of a new cluster, one of them also gets `--init`, which writes the initial membership.
//! `--init` on a member that already has Raft state does nothing, so the same command
//! restarts a member; a restarted member is never added again, it simply rejoins.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use openraft::BasicNode;
use tonic::service::interceptor::InterceptedService;
use weir_common::storage_roots::StorageRoots;
use weir_proto::cluster::task_manager_registry_server::TaskManagerRegistryServer;
use weir_proto::job::job_service_server::JobServiceServer;
use weir_proto::raft::raft_service_server::RaftServiceServer;
use weir_taskmanager::metrics::http_endpoint::{metrics_router, require_token, serve as serve_http};
use weir_taskmanager::shutdown_signal::shutdown_signal;
use weir_taskmanager::transport::ClusterTransport;

use crate::partition_committer::PartitionCommitter;
use crate::raft::network::{GrpcNetwork, RaftRpcService};
use crate::raft::storage;
use crate::raft::types::{NodeId, Raft};
use crate::server::console::console_router;
use crate::server::coordinator_metrics::CoordinatorMetrics;
use crate::server::job_api::JobApi;
use crate::server::job_supervisor::{JobSupervisor, RestartPolicy, SupervisorHandle};
use crate::server::task_manager_registry::Registry;

pub struct ServeOptions {
    pub id: NodeId,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub peers: BTreeMap<NodeId, String>,
    pub init: bool,
    pub restart: RestartPolicy,
    /// Checkpoint storage for specs that name none.
    pub checkpoint_storage: Option<String>,
    /// Where to serve the web console and `/metrics` over HTTP.
    pub http_address: Option<SocketAddr>,
    /// TLS and the tokens callers must present, for every gRPC service and client here.
    pub transport: ClusterTransport,
    /// Where specs may read and write.
    pub storage_roots: StorageRoots,
}

/// Raft timing. openraft lets a follower stand for election only after the leader's lease
/// (`election_timeout_max`) plus a random election timeout, so a dead leader is replaced
/// 1.5 to 2 s after its last heartbeat.
fn raft_config() -> Result<openraft::Config> {
    openraft::Config {
        cluster_name: "weir".into(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        install_snapshot_timeout: 2000,
        ..Default::default()
    }
    .validate()
    .context("raft configuration")
}

pub async fn serve(opts: ServeOptions) -> Result<()> {
    anyhow::ensure!(
        opts.peers.contains_key(&opts.id),
        "--peer must list this coordinator's own id {}",
        opts.id
    );
    let (log, state) = storage::open(&opts.data_dir)
        .await
        .with_context(|| format!("opening raft storage in {}", opts.data_dir.display()))?;
    let network = GrpcNetwork {
        transport: opts.transport.clone(),
    };
    let raft = Raft::new(opts.id, Arc::new(raft_config()?), network, log, state.clone())
        .await
        .context("starting raft")?;
    if opts.init {
        if raft.is_initialized().await? {
            tracing::info!(id = opts.id, "already initialized; --init ignored");
        } else {
            let members: BTreeMap<NodeId, BasicNode> = opts
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            raft.initialize(members).await.context("initializing the cluster")?;
            tracing::info!(id = opts.id, peers = opts.peers.len(), "cluster initialized");
        }
    }
    tracing::info!(id = opts.id, listen = %opts.listen, "coordinator serving");
    let address = opts.peers[&opts.id].clone();
    let registry = Registry::new(raft.clone(), opts.id, address.clone());
    let watermarks = registry.watermarks.clone();
    let supervisor = SupervisorHandle::default();
    let supervising = tokio::spawn(
        JobSupervisor::new(
            raft.clone(),
            state.clone(),
            registry.clone(),
            opts.restart,
            supervisor.clone(),
            opts.transport.clone(),
        )
        .run(),
    );
    let committing = tokio::spawn(PartitionCommitter::new(raft.clone(), state.clone(), opts.id).run());
    if let Some(http) = opts.http_address {
        let mut metrics = prometheus_client::registry::Registry::default();
        metrics.register_collector(Box::new(CoordinatorMetrics {
            id: opts.id,
            raft: raft.clone(),
            state: state.clone(),
            registry: registry.clone(),
        }));
        let console =
            console_router(opts.peers.values().cloned().collect(), &opts.transport).context("the web console")?;
        let router = require_token(metrics_router(Arc::new(metrics)), &opts.transport).merge(console);
        let listener = tokio::net::TcpListener::bind(http)
            .await
            .with_context(|| format!("--http-address {http}"))?;
        tokio::spawn(async move {
            if let Err(e) = serve_http(listener, router, shutdown_signal()).await {
                tracing::error!(error = %e, "HTTP endpoint stopped");
            }
        });
    }
    if !opts.transport.authenticates() {
        tracing::warn!("no --token-file, WEIR_TOKEN or mutual TLS: the job API accepts anyone who can reach it");
    }
    let auth = opts.transport.require_auth();
    opts.transport
        .server()?
        .add_service(InterceptedService::new(
            TaskManagerRegistryServer::new(registry),
            auth.clone(),
        ))
        .add_service(InterceptedService::new(
            RaftServiceServer::new(RaftRpcService { raft: raft.clone() }),
            auth.clone(),
        ))
        .add_service(InterceptedService::new(
            JobServiceServer::new(JobApi {
                raft: raft.clone(),
                state,
                address,
                supervisor,
                watermarks,
                checkpoint_storage: opts.checkpoint_storage,
                storage_roots: opts.storage_roots,
            }),
            auth,
        ))
        .serve_with_shutdown(opts.listen, shutdown_signal())
        .await
        .with_context(|| format!("serving on {}", opts.listen))?;
    supervising.abort();
    committing.abort();
    raft.shutdown().await.ok();
    Ok(())
}
