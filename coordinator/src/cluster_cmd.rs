//! The cluster commands of the CLI: `serve`, and the job API clients `submit`, `list`,
//! `status`, `cancel`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow};
use weir_common::event_time::{WATERMARK_MAX, WATERMARK_MIN};
use weir_common::storage_roots::StorageRoots;
use weir_proto::cluster::ListTaskManagersRequest;
use weir_proto::cluster::task_manager_registry_client::TaskManagerRegistryClient;
use weir_proto::job::job_service_client::JobServiceClient;
use weir_proto::job::{
    CancelRequest, GetRequest, JobState, JobStatus, ListRequest, SavepointRequest, SubmitRequest, VertexStatus,
};
use weir_taskmanager::leader_client::LeaderClient;
use weir_taskmanager::transport::AuthChannel;

use crate::cli::{CancelArgs, ClusterArgs, JobArgs, ServeArgs, SubmitArgs};
use crate::job_client::JobClient;
use crate::server::job_supervisor::RestartPolicy;
use crate::server::serve::{ServeOptions, serve as run_server};

pub enum CmdError {
    /// The request was refused for a reason the user must fix (exit code 2).
    Refused(Vec<String>),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for CmdError {
    fn from(e: anyhow::Error) -> Self {
        CmdError::Failed(e)
    }
}

pub async fn serve(args: ServeArgs) -> Result<(), CmdError> {
    let mut peers = BTreeMap::new();
    for p in &args.peers {
        let (id, addr) = p
            .split_once('=')
            .ok_or_else(|| CmdError::Refused(vec![format!("error: --peer {p}: expected ID=ADDR")]))?;
        let id: u64 = id
            .parse()
            .map_err(|_| CmdError::Refused(vec![format!("error: --peer {p}: '{id}' is not a number")]))?;
        peers.insert(id, addr.to_string());
    }
    run_server(ServeOptions {
        id: args.id,
        listen: args.listen,
        data_dir: args.data_dir,
        peers,
        init: args.init,
        restart: RestartPolicy {
            max_restarts: args.max_restarts,
            initial_backoff: Duration::from_millis(args.restart_backoff_ms),
            ..RestartPolicy::default()
        },
        checkpoint_storage: args.checkpoint_storage,
        http_address: args.http_address,
        transport: args
            .security
            .transport()
            .map_err(|e| CmdError::Refused(vec![format!("error: {e}")]))?,
        storage_roots: StorageRoots::new(&args.allowed_storage_roots)
            .map_err(|e| CmdError::Refused(vec![format!("error: --allowed-storage-root: {e}")]))?,
    })
    .await
    .map_err(CmdError::Failed)
}

fn client(args: &ClusterArgs) -> Result<JobClient, CmdError> {
    let transport = args.security.transport().map_err(anyhow::Error::from)?;
    Ok(JobClient::new(args.coordinators.clone(), transport)?)
}

pub async fn submit(args: SubmitArgs) -> Result<(), CmdError> {
    let spec_json =
        std::fs::read_to_string(&args.spec.spec).with_context(|| format!("reading {}", args.spec.spec.display()))?;
    let mut c = client(&args.cluster)?;
    let req = SubmitRequest {
        spec_json,
        overrides: args.spec.overrides.clone(),
        from_savepoint: args.from_savepoint.clone().unwrap_or_default(),
    };
    let resp = c
        .call(|mut cl| {
            let req = req.clone();
            async move { cl.submit(req).await }
        })
        .await?;
    if !resp.errors.is_empty() {
        let mut lines = vec![format!("error: job spec {} refused:", args.spec.spec.display())];
        lines.extend(resp.errors.iter().map(|e| format!("  {}: {}", e.path, e.message)));
        return Err(CmdError::Refused(lines));
    }
    println!("{}", resp.job_id);
    if args.wait {
        let job_id = resp.job_id.clone();
        loop {
            let status = c
                .call(|mut cl| {
                    let job_id = job_id.clone();
                    async move { cl.get(GetRequest { job_id }).await }
                })
                .await?;
            eprintln!("{}", progress_line(&status));
            match status.state() {
                JobState::Finished => return Ok(()),
                JobState::Failed | JobState::Cancelled => {
                    return Err(CmdError::Failed(anyhow!(
                        "job {} ended {:?}",
                        status.job_id,
                        status.state()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
    Ok(())
}

pub async fn list(args: ClusterArgs) -> Result<(), CmdError> {
    let resp = client(&args)?
        .call(|mut cl| async move { cl.list(ListRequest {}).await })
        .await?;
    println!("leader {}", resp.leader);
    for job in &resp.jobs {
        println!("{}", describe(job));
    }
    Ok(())
}

pub async fn status(args: JobArgs) -> Result<(), CmdError> {
    one_job(
        args,
        |mut cl, job_id| async move { cl.get(GetRequest { job_id }).await },
    )
    .await
}

pub async fn cancel(args: CancelArgs) -> Result<(), CmdError> {
    if args.savepoint {
        return take_savepoint(args, true).await;
    }
    let args = JobArgs {
        job_id: args.job_id,
        cluster: args.cluster,
    };
    one_job(args, |mut cl, job_id| async move {
        cl.cancel(CancelRequest { job_id }).await
    })
    .await
}

/// `savepoint JOB [--cancel]`.
pub async fn savepoint(args: CancelArgs) -> Result<(), CmdError> {
    let cancel = args.savepoint;
    take_savepoint(args, cancel).await
}

async fn take_savepoint(args: CancelArgs, cancel: bool) -> Result<(), CmdError> {
    let resp = client(&args.cluster)?
        .call(|mut cl| {
            let job_id = args.job_id.clone();
            async move { cl.savepoint(SavepointRequest { job_id, cancel }).await }
        })
        .await?;
    println!("{}", resp.url);
    eprintln!(
        "savepoint of {} at checkpoint {}{}",
        args.job_id,
        resp.checkpoint_id,
        if cancel { "; job cancelled" } else { "" }
    );
    Ok(())
}

/// Calls a job API method taking a job id and prints the job it returns.
async fn one_job<F, Fut>(args: JobArgs, f: F) -> Result<(), CmdError>
where
    F: Fn(JobServiceClient<AuthChannel>, String) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<JobStatus>, tonic::Status>>,
{
    let job = client(&args.cluster)?.call(|cl| f(cl, args.job_id.clone())).await?;
    println!("{}", describe(&job));
    for v in &job.vertices {
        println!("{}", describe_vertex(v));
    }
    for g in &job.alignment {
        println!(
            "  alignment group {}: global watermark {}  allowed {}  reporting {}/{}  throttled [{}]",
            g.group,
            format_watermark(g.global_watermark),
            format_watermark(g.allowed),
            g.subtasks_reporting,
            g.subtasks,
            g.throttled.join(" ")
        );
    }
    for s in &job.commits {
        println!(
            "  sink {}: commit watermark {}  partitions waiting {}",
            s.sink,
            format_watermark(s.watermark),
            s.pending
        );
        for c in s.recent.iter().rev().take(5) {
            println!(
                "    committed {}: {} files, {} rows, {} bytes{}",
                c.partition,
                c.files,
                c.rows,
                c.bytes,
                if c.notified { ", notice sent" } else { "" }
            );
        }
    }
    if let Some(last) = job.checkpoints.last() {
        let ids: Vec<String> = job.checkpoints.iter().map(|c| c.id.to_string()).collect();
        println!(
            "  checkpoints: last {} (attempt {}, {} ms, state {} bytes of which {} uploaded, alignment {} ms); recent: {}",
            last.id,
            last.attempt,
            last.duration_ms,
            last.state_bytes,
            last.uploaded_bytes,
            last.alignment_ms,
            ids.join(" ")
        );
        for c in job.checkpoints.iter().rev().skip(1).take(4) {
            println!(
                "    checkpoint {} (attempt {}): {} ms, state {} bytes, {} uploaded, alignment {} ms",
                c.id, c.attempt, c.duration_ms, c.state_bytes, c.uploaded_bytes, c.alignment_ms
            );
        }
        for s in &last.sources {
            println!("    source task {} subtask {} at {}", s.task, s.subtask, s.position);
        }
    }
    if job.vertices.is_empty() && !job.placement.is_empty() {
        // No live counters (yet) on this leader; the Raft log still says where it runs.
        let mut placed: Vec<String> = job
            .placement
            .iter()
            .map(|p| {
                format!(
                    "task {} subtask {}@{} slot {}",
                    p.task, p.subtask, p.task_manager, p.slot
                )
            })
            .collect();
        placed.dedup();
        println!("  placement: {}", placed.join(", "));
    }
    Ok(())
}

pub async fn task_managers(args: ClusterArgs) -> Result<(), CmdError> {
    let transport = args.security.transport().map_err(anyhow::Error::from)?;
    let resp = LeaderClient::new(args.coordinators.clone(), transport)
        .map_err(anyhow::Error::from)?
        .call(|ch| async move {
            TaskManagerRegistryClient::new(ch)
                .list_task_managers(ListTaskManagersRequest {})
                .await
        })
        .await
        .map_err(anyhow::Error::from)?;
    println!("leader {}", resp.leader);
    for tm in &resp.task_managers {
        println!(
            "{}  {}  slots {}  {}  last heartbeat {} ms ago",
            tm.task_manager_id,
            tm.address,
            tm.slots,
            if tm.alive { "alive" } else { "lost" },
            tm.last_heartbeat_ms_ago
        );
    }
    Ok(())
}

/// One vertex of `status`: counters, watermark and where each subtask runs.
fn describe_vertex(v: &VertexStatus) -> String {
    let watermark = format_watermark(v.watermark);
    let placed: Vec<String> = v
        .task_managers
        .iter()
        .enumerate()
        .map(|(i, tm)| format!("{i}@{}", if tm.is_empty() { "?" } else { tm }))
        .collect();
    let mut line = format!(
        "  {:<16} p={:<3} in {:>12}  out {:>12}  watermark {}  subtasks {}",
        v.name,
        v.parallelism,
        v.records_in,
        v.records_out,
        watermark,
        placed.join(" ")
    );
    for (what, n) in [
        ("dead letters", v.dead_letters),
        ("late", v.late_records),
        ("disorder ms", v.max_disorder_ms),
    ] {
        if n > 0 {
            line.push_str(&format!("  {what} {n}"));
        }
    }
    line
}

/// A watermark as UTC time; `-` before the first, `end` after the last.
fn format_watermark(watermark: i64) -> String {
    if watermark == WATERMARK_MIN {
        "-".to_string()
    } else if watermark == WATERMARK_MAX {
        "end".to_string()
    } else {
        chrono::DateTime::from_timestamp_millis(watermark)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| watermark.to_string())
    }
}

/// The line `submit --wait` prints every second.
fn progress_line(job: &JobStatus) -> String {
    let read: u64 = job.vertices.first().map(|v| v.records_in).unwrap_or(0);
    let mut s = describe(job);
    if !job.vertices.is_empty() {
        s.push_str(&format!("  records read {read}"));
    }
    s
}

fn describe(job: &JobStatus) -> String {
    let mut s = format!(
        "{}  {:<11} attempt {}  {}",
        job.job_id,
        format!("{:?}", job.state()),
        job.attempt,
        job.name
    );
    if !job.failure.is_empty() {
        s.push_str(&format!("  failure: {}", job.failure));
    }
    s
}
