//! The `taskmanager` binary: offers its slots to the coordinator group by heartbeating the
//! leader (the first heartbeat registers it), following the leader across failovers.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use weir_proto::cluster::HeartbeatRequest;
use weir_proto::cluster::task_manager_registry_client::TaskManagerRegistryClient;
use weir_taskmanager::leader_client::LeaderClient;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "taskmanager", version, about = "Weir task manager: runs operator subtasks")]
struct Args {
    /// Coordinator addresses, comma separated; the leader is found.
    #[arg(long, env = "WEIR_COORDINATORS", value_delimiter = ',', required = true)]
    coordinators: Vec<String>,
    /// Address this task manager is reached at (deployments and data exchange).
    #[arg(long, env = "WEIR_TM_ADDRESS")]
    address: String,
    /// Slots offered: how many parallel subtask pipelines it runs.
    #[arg(long, env = "WEIR_SLOTS", default_value_t = 2)]
    slots: u32,
    /// Stable id (default: the address).
    #[arg(long, env = "WEIR_TM_ID")]
    id: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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

async fn run(args: Args) -> anyhow::Result<()> {
    let id = args.id.clone().unwrap_or_else(|| args.address.clone());
    let mut leader = LeaderClient::new(args.coordinators.clone())?;
    let mut interval = Duration::from_millis(500);
    let mut registered = false;
    loop {
        let req = HeartbeatRequest {
            task_manager_id: id.clone(),
            address: args.address.clone(),
            slots: args.slots,
        };
        let sent = tokio::select! {
            r = leader.call(|ch| {
                let req = req.clone();
                async move { TaskManagerRegistryClient::new(ch).heartbeat(req).await }
            }) => r,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match sent {
            Ok(resp) => {
                if !registered {
                    tracing::info!(task_manager = %id, slots = args.slots, "registered with the coordinator leader");
                    registered = true;
                }
                interval = Duration::from_millis(resp.interval_ms.max(50));
            }
            Err(e) => {
                tracing::warn!(task_manager = %id, error = %e, "heartbeat not delivered; retrying");
                registered = false;
            }
        }
        tokio::time::sleep(interval).await;
    }
}
