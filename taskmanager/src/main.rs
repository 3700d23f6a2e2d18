//! The `taskmanager` binary: offers its slots to the coordinator group by heartbeating the
//! leader (the first heartbeat registers it, and it follows the leader across failovers),
//! runs the subtasks the leader deploys on it as actix actors, one arbiter per slot, and
//! serves deployments and the data exchange with other task managers over gRPC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tonic::service::interceptor::InterceptedService;
use weir_proto::taskmanager::task_manager_service_server::TaskManagerServiceServer;
use weir_taskmanager::exchange::inbound_channels::InboundChannels;
use weir_taskmanager::exchange::{CONNECTION_WINDOW, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT, STREAM_WINDOW};
use weir_taskmanager::leader_client::LeaderClient;
use weir_taskmanager::metrics::http_endpoint::{metrics_router, require_token, serve as serve_http};
use weir_taskmanager::metrics::task_manager_metrics::TaskManagerMetrics;
use weir_taskmanager::runtime::job_deployment::Exchange;
use weir_taskmanager::runtime::slot_pool::SlotPool;
use weir_taskmanager::shutdown_signal::shutdown_signal;
use weir_taskmanager::transport::security_args::SecurityArgs;
use weir_taskmanager::worker::deployed_jobs::DeployedJobs;
use weir_taskmanager::worker::heartbeat::Heartbeat;
use weir_taskmanager::worker::task_manager_service::TaskManagerApi;
use weir_taskmanager::worker::watermark_reporter::WatermarkReporter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exchange frames carry one batch each; generous, since credits bound the memory anyway.
const MAX_FRAME_BYTES: usize = 256 << 20;

#[derive(Parser, Debug)]
#[command(name = "taskmanager", version, about = "Weir task manager: runs operator subtasks")]
struct Args {
    /// Coordinator addresses, comma separated; the leader is found.
    #[arg(long, env = "WEIR_COORDINATORS", value_delimiter = ',', required = true)]
    coordinators: Vec<String>,
    /// Address this task manager is reached at (deployments and data exchange).
    #[arg(long, env = "WEIR_TM_ADDRESS")]
    address: String,
    /// Address to listen on (default: --address).
    #[arg(long, env = "WEIR_TM_LISTEN")]
    listen: Option<SocketAddr>,
    /// Slots offered: how many parallel subtask pipelines it runs.
    #[arg(long, env = "WEIR_SLOTS", default_value_t = 2)]
    slots: u32,
    /// Stable id (default: the address).
    #[arg(long, env = "WEIR_TM_ID")]
    id: Option<String>,
    /// Threads for network I/O (exchange streams, deployments, heartbeats); subtasks run on
    /// their slots' own threads. One avoids wake-ups between I/O threads, which cost more
    /// than the I/O itself on small machines (W3 across 2 task managers: 25 % less CPU).
    #[arg(long, env = "WEIR_TM_NETWORK_THREADS", default_value_t = 1)]
    network_threads: usize,
    /// Address to serve `/metrics` on (Prometheus text format), e.g. 0.0.0.0:9250; none
    /// when not given.
    #[arg(long, env = "WEIR_TM_METRICS_ADDRESS")]
    metrics_address: Option<SocketAddr>,
    #[command(flatten)]
    security: SecurityArgs,
    /// Where jobs without a dead-letter path of their own write their dead letters.
    #[arg(long, env = "WEIR_TM_WORK_DIR", default_value = "weir-taskmanager")]
    work_dir: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.network_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the actix system on a thread of its own, with one arbiter per slot.
fn start_slots(slots: u32) -> anyhow::Result<Vec<actix::ArbiterHandle>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("actix-system".into())
        .spawn(move || {
            let system = actix_rt::System::new();
            let pool = SlotPool::new(slots as usize);
            let _ = tx.send((0..slots as usize).map(|i| pool.slot(i)).collect());
            system.run()
        })
        .context("starting the actor system")?;
    rx.recv().context("the actor system did not start")
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.slots > 0, "--slots must be at least 1");
    let id = args.id.clone().unwrap_or_else(|| args.address.clone());
    let listen = match args.listen {
        Some(l) => l,
        None => args
            .address
            .parse()
            .with_context(|| format!("--address {} is not IP:PORT; give --listen", args.address))?,
    };
    let transport = args.security.transport()?;
    let exchange = Exchange {
        inbound: InboundChannels::default(),
        runtime: tokio::runtime::Handle::current(),
        transport: transport.clone(),
    };
    let inbound = exchange.inbound.clone();
    let jobs = DeployedJobs::new(
        id.clone(),
        start_slots(args.slots)?,
        Some(exchange),
        args.work_dir.clone(),
    );
    if let Some(address) = args.metrics_address {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(TaskManagerMetrics {
            task_manager_id: id.clone(),
            slots: args.slots,
            jobs: jobs.clone(),
        }));
        let router = require_token(metrics_router(std::sync::Arc::new(registry)), &transport);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("--metrics-address {address}"))?;
        tokio::spawn(async move {
            if let Err(e) = serve_http(listener, router, shutdown_signal()).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }
    let api = TaskManagerServiceServer::new(TaskManagerApi {
        jobs: jobs.clone(),
        inbound,
    })
    .max_decoding_message_size(MAX_FRAME_BYTES)
    .max_encoding_message_size(MAX_FRAME_BYTES);
    let api = InterceptedService::new(api, transport.require_auth());
    let server = transport
        .server()?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(KEEP_ALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEP_ALIVE_TIMEOUT))
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .add_service(api)
        .serve_with_shutdown(listen, shutdown_signal());
    let reporter = WatermarkReporter {
        task_manager_id: id.clone(),
        slots: jobs.alignment().clone(),
    };
    tokio::spawn(reporter.run(LeaderClient::new(args.coordinators.clone(), transport.clone())?));
    let heartbeat = Heartbeat {
        task_manager_id: id.clone(),
        address: args.address.clone(),
        slots: args.slots,
        jobs,
    };
    tracing::info!(task_manager = %id, listen = %listen, slots = args.slots, "task manager serving");
    tokio::select! {
        served = server => served.with_context(|| format!("serving on {listen}"))?,
        beat = heartbeat.run(LeaderClient::new(args.coordinators.clone(), transport)?) => beat?,
    }
    Ok(())
}
