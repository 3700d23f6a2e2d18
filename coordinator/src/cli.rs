//! The command line: `local`, `validate` and `schema`. Exit codes: 0 success, 1 the job
//! failed, 2 the spec (or the configuration) was refused.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use weir_common::spec_loader::parse_spec;
use weir_common::validation::validate;
use weir_common::{JobGraph, SpecErrors};
use weir_taskmanager::transport::security_args::SecurityArgs;

use crate::cluster_cmd;
use crate::config::{LocalConfig, load_config};
use crate::local_cluster::run_local;

#[derive(Parser, Debug)]
#[command(
    name = "coordinator",
    version,
    about = "Weir coordinator: runs and manages streaming jobs"
)]
pub struct Cli {
    /// TOML configuration file (flags and WEIR_* variables override it).
    #[arg(long, global = true, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a job in this process: a coordinator and N task managers, until it finishes.
    Local(LocalArgs),
    /// Check a job spec and print its execution plan, without running it.
    Validate(SpecArgs),
    /// Print the JSON Schema of job specs.
    Schema,
    /// Run a coordinator: a member of the Raft group serving the job API.
    Serve(ServeArgs),
    /// Submit a job to the cluster.
    Submit(SubmitArgs),
    /// List the cluster's jobs.
    List(ClusterArgs),
    /// Show one job.
    Status(JobArgs),
    /// Cancel a job (after taking a savepoint with --savepoint).
    Cancel(CancelArgs),
    /// Take a savepoint of a running job; prints its URL.
    Savepoint(CancelArgs),
    /// List the task managers known to the leader.
    Taskmanagers(ClusterArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// This coordinator's id in the Raft group.
    #[arg(long, env = "WEIR_NODE_ID")]
    pub id: u64,
    /// Address to serve the Raft transport and the job API on.
    #[arg(long, env = "WEIR_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// Where the Raft log and snapshots live.
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Every member, this one included: `--peer 1=127.0.0.1:7001` (repeat per member).
    #[arg(long = "peer", value_name = "ID=ADDR", required = true)]
    pub peers: Vec<String>,
    /// First start of a new cluster only: write the initial membership (ignored when this
    /// member already has Raft state).
    #[arg(long)]
    pub init: bool,
    /// How many times a failed job is restarted before it is marked FAILED.
    #[arg(long, env = "WEIR_MAX_RESTARTS", default_value_t = 10)]
    pub max_restarts: u32,
    /// Back-off before the first restart of a failed job; it doubles with each further
    /// failure, up to 30 s.
    #[arg(long, env = "WEIR_RESTART_BACKOFF_MS", default_value_t = 500)]
    pub restart_backoff_ms: u64,
    /// Checkpoint storage for jobs whose spec names none (`file:///shared/weir/checkpoints`,
    /// `s3://bucket/weir` when built with the s3 feature); every coordinator and task
    /// manager must reach the same place.
    #[arg(long, env = "WEIR_CHECKPOINT_STORAGE")]
    pub checkpoint_storage: Option<String>,
    /// Address to serve HTTP on: the web console and `/metrics` (Prometheus text format),
    /// e.g. 0.0.0.0:8081.
    #[arg(long, env = "WEIR_HTTP_ADDRESS")]
    pub http_address: Option<std::net::SocketAddr>,
    /// Where jobs may read and write files (repeat per root): a path or URL prefix such
    /// as `/data/weir` or `hdfs://namenode:8020/warehouse`. Specs naming a path elsewhere
    /// are refused at submit. None given: anywhere.
    #[arg(
        long = "allowed-storage-root",
        value_name = "PATH|URL",
        env = "WEIR_ALLOWED_STORAGE_ROOTS",
        value_delimiter = ','
    )]
    pub allowed_storage_roots: Vec<String>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Coordinator addresses, comma separated; any one is enough, the leader is found.
    #[arg(
        long,
        env = "WEIR_COORDINATORS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001"
    )]
    pub coordinators: Vec<String>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Follow the job's status until it ends.
    #[arg(long)]
    pub wait: bool,
    /// Start from a savepoint (its URL, as `savepoint` printed it): source positions and
    /// operator state; stateful operators may have a different parallelism.
    #[arg(long, value_name = "URL")]
    pub from_savepoint: Option<String>,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    pub job_id: String,
    /// `cancel`: take a savepoint first, cancel once it is complete (printing its URL).
    /// `savepoint`: cancel the job once the savepoint is taken.
    #[arg(long, alias = "cancel")]
    pub savepoint: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct JobArgs {
    pub job_id: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// The job spec (JSON).
    pub spec: PathBuf,
    /// Override a field of the spec: `--set sources.0.generator.events=1000`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LocalArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Number of task managers to start.
    #[arg(long, env = "WEIR_TASK_MANAGERS")]
    pub task_managers: Option<usize>,
    /// Slots per task manager (default: enough for the job).
    #[arg(long, env = "WEIR_SLOTS")]
    pub slots: Option<usize>,
    /// Directory for dead letters when the spec names none.
    #[arg(long, env = "WEIR_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Also write the final summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Progress line interval in milliseconds (0 turns progress off).
    #[arg(long, env = "WEIR_PROGRESS_MS")]
    pub progress_ms: Option<u64>,
}

pub fn run(cli: Cli) -> ExitCode {
    let config = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Schema => {
            println!("{}", weir_common::spec::json_schema());
            ExitCode::SUCCESS
        }
        Command::Validate(args) => match load(&args) {
            Ok(graph) => {
                print_plan(&graph);
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve(args) => runtime_run(cluster_cmd::serve(args)),
        Command::Submit(args) => runtime_run(cluster_cmd::submit(args)),
        Command::List(args) => runtime_run(cluster_cmd::list(args)),
        Command::Status(args) => runtime_run(cluster_cmd::status(args)),
        Command::Cancel(args) => runtime_run(cluster_cmd::cancel(args)),
        Command::Savepoint(args) => runtime_run(cluster_cmd::savepoint(args)),
        Command::Taskmanagers(args) => runtime_run(cluster_cmd::task_managers(args)),
        Command::Local(args) => {
            let graph = match load(&args.spec) {
                Ok(g) => g,
                Err(code) => return code,
            };
            let local = LocalConfig::resolve(&config, &args);
            match run_local(graph, &local) {
                Ok(summary) => {
                    print!("{}", summary.render());
                    if let Some(path) = &args.summary_json
                        && let Err(e) = std::fs::write(path, summary.to_json())
                    {
                        eprintln!("error: writing {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs a cluster command on a tokio runtime; its error decides the exit code.
fn runtime_run(fut: impl std::future::Future<Output = Result<(), cluster_cmd::CmdError>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(cluster_cmd::CmdError::Refused(lines)) => {
            for l in lines {
                eprintln!("{l}");
            }
            ExitCode::from(2)
        }
        Err(cluster_cmd::CmdError::Failed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads, overrides and validates a spec; prints every problem and returns exit code 2.
fn load(args: &SpecArgs) -> Result<JobGraph, ExitCode> {
    let refuse = |errors: SpecErrors| {
        eprintln!("error: job spec {} refused:", args.spec.display());
        for e in &errors.0 {
            eprintln!("  {e}");
        }
        ExitCode::from(2)
    };
    let text = std::fs::read_to_string(&args.spec).map_err(|e| {
        eprintln!("error: reading {}: {e}", args.spec.display());
        ExitCode::from(2)
    })?;
    let spec = parse_spec(&text, &args.overrides).map_err(refuse)?;
    validate(&spec).map_err(refuse)
}

fn print_plan(graph: &JobGraph) {
    println!("job '{}': valid", graph.name);
    for task in &graph.tasks {
        let chain: Vec<String> = task
            .vertices
            .iter()
            .map(|v| {
                let v = graph.vertex(*v);
                format!("{} ({})", v.name, v.kind.label())
            })
            .collect();
        println!("  task {} x{}: {}", task.id, task.parallelism, chain.join(" -> "));
    }
    for e in graph.task_edges() {
        println!(
            "  edge {} -> {}: {:?}",
            graph.vertex(e.from).name,
            graph.vertex(e.to).name,
            e.partitioning
        );
    }
}
