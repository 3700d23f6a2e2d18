//! A cluster of real Weir processes on 127.0.0.1 for tests: coordinators started with
//! free ports and their own data directories, killed with SIGKILL and restarted with the
//! same command, all stopped when the sandbox is dropped. Checkpoint storage is the
//! sandbox's `checkpoints/` directory.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use crate::binary;

pub struct Coordinator {
    pub id: u64,
    pub address: String,
    /// Where it serves HTTP (`/metrics`).
    pub http_address: String,
    data_dir: PathBuf,
    process: Option<Child>,
}

pub struct ClusterSandbox {
    pub dir: tempfile::TempDir,
    pub coordinators: Vec<Coordinator>,
    pub task_managers: Vec<Option<Child>>,
    /// Where each task manager serves `/metrics`.
    pub task_manager_metrics: Vec<String>,
    /// Extra flags for every `coordinator serve`.
    serve_args: Vec<String>,
    /// Environment of every process the sandbox starts, CLI runs included (a token file,
    /// TLS settings).
    pub env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl ClusterSandbox {
    /// Starts `n` coordinators; the first one initializes the group.
    pub fn start(n: u64) -> Self {
        Self::start_with(n, &[])
    }

    /// Starts `n` coordinators with extra `serve` flags.
    pub fn start_with(n: u64, serve_args: &[&str]) -> Self {
        Self::start_with_env(n, serve_args, &[])
    }

    /// Starts `n` coordinators with extra `serve` flags, every process (task managers and
    /// CLI runs too) with `env` in its environment.
    pub fn start_with_env(n: u64, serve_args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let coordinators = (1..=n)
            .map(|id| Coordinator {
                id,
                address: format!("127.0.0.1:{}", free_port()),
                http_address: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("coordinator-{id}")),
                process: None,
            })
            .collect();
        let mut sandbox = Self {
            dir,
            coordinators,
            task_managers: Vec::new(),
            task_manager_metrics: Vec::new(),
            serve_args: serve_args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        for i in 0..n as usize {
            sandbox.start_coordinator(i);
        }
        sandbox
    }

    /// Starts coordinator `i` (index, not id) with the command a user would type; the
    /// same command bootstraps it and restarts it.
    pub fn start_coordinator(&mut self, i: usize) {
        let peers: Vec<String> = self
            .coordinators
            .iter()
            .map(|c| format!("{}={}", c.id, c.address))
            .collect();
        let serve_args = self.serve_args.clone();
        let c = &mut self.coordinators[i];
        let log = std::fs::File::create(self.dir.path().join(format!("coordinator-{}.log", c.id))).expect("log file");
        let mut cmd = Command::new(binary("coordinator"));
        cmd.arg("serve")
            .args(["--id", &c.id.to_string(), "--listen", &c.address])
            .args(["--http-address", &c.http_address, "--data-dir"])
            .arg(&c.data_dir)
            .env("WEIR_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log);
        for p in &peers {
            cmd.args(["--peer", p]);
        }
        if c.id == 1 {
            cmd.arg("--init");
        }
        cmd.arg("--checkpoint-storage")
            .arg(format!("file://{}", self.dir.path().join("checkpoints").display()));
        cmd.args(&serve_args);
        c.process = Some(cmd.spawn().expect("start coordinator"));
    }

    /// Starts a task manager with `slots` slots; returns its index and address.
    pub fn start_task_manager(&mut self, slots: u32) -> (usize, String) {
        let i = self.task_managers.len();
        let address = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(self.dir.path().join(format!("taskmanager-{i}.log"))).expect("log file");
        let child = Command::new(binary("taskmanager"))
            .args([
                "--coordinators",
                &self.addresses(),
                "--address",
                &address,
                "--slots",
                &slots.to_string(),
                "--id",
                &format!("tm-{i}"),
                "--metrics-address",
                &metrics,
            ])
            .arg("--work-dir")
            .arg(self.dir.path().join(format!("taskmanager-{i}")))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start task manager");
        self.task_managers.push(Some(child));
        self.task_manager_metrics.push(metrics);
        (i, address)
    }

    /// Waits until the leader counts `n` live task managers.
    pub fn wait_for_task_managers(&self, n: usize, within: std::time::Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let out = self.cli(&["taskmanagers"], &self.addresses());
            let alive = String::from_utf8_lossy(&out.stdout).matches("  alive  ").count();
            if alive == n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{alive} of {n} task managers registered: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.all_logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Process ids of the task managers still running.
    pub fn task_manager_pids(&self) -> Vec<u32> {
        self.task_managers.iter().flatten().map(|c| c.id()).collect()
    }

    pub fn kill_task_manager(&mut self, i: usize) {
        if let Some(mut p) = self.task_managers[i].take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.coordinators[i].process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    pub fn addresses(&self) -> String {
        self.coordinators
            .iter()
            .map(|c| c.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The addresses of every coordinator but `address`, comma separated.
    pub fn addresses_except(&self, address: &str) -> String {
        self.coordinators
            .iter()
            .filter(|c| c.address != address)
            .map(|c| c.address.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn index_of(&self, address: &str) -> Option<usize> {
        self.coordinators.iter().position(|c| c.address == address)
    }

    /// Runs `coordinator <args> --coordinators <addresses>`.
    pub fn cli(&self, args: &[&str], coordinators: &str) -> Output {
        Command::new(binary("coordinator"))
            .args(args)
            .args(["--coordinators", coordinators])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run coordinator cli")
    }

    /// Submits the spec at `spec` to every coordinator and returns the job id; panics with
    /// the CLI's message when the submit is refused.
    pub fn submit(&self, spec: &std::path::Path) -> String {
        let run = self.cli(&["submit", spec.to_str().expect("spec path")], &self.addresses());
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        String::from_utf8_lossy(&run.stdout).trim().to_string()
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("coordinator-{id}.log"))).unwrap_or_default()
    }

    /// The leader's address, as the first line of `coordinator list` names it.
    pub fn leader(&self, addresses: &str) -> String {
        String::from_utf8_lossy(&self.cli(&["list"], addresses).stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("leader ")
            .to_string()
    }

    /// Every coordinator's and task manager's log, for a failing assertion's message.
    pub fn all_logs(&self) -> String {
        let mut out = String::new();
        for f in crate::files_below(self.dir.path()) {
            if f.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(self.dir.path().join(&f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("--- {} (last lines)\n", f.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for ClusterSandbox {
    fn drop(&mut self) {
        for i in 0..self.task_managers.len() {
            self.kill_task_manager(i);
        }
        for i in 0..self.coordinators.len() {
            self.kill(i);
        }
    }
}

/// The first line of `coordinator status` (job, state, attempt).
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

impl ClusterSandbox {
    /// `coordinator status JOB` output from `addresses`, once a coordinator answers
    /// (empty before).
    pub fn job_status(&self, addresses: &str, job: &str) -> String {
        let out = self.cli(&["status", job], addresses);
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::new()
        }
    }

    /// Polls the job's status until `done` holds for it; panics (with every log) when the
    /// job fails or is cancelled, or after `within`.
    pub fn wait_for_job(
        &self,
        addresses: &str,
        job: &str,
        within: std::time::Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let s = self.job_status(addresses, job);
            if done(&s) {
                return s;
            }
            assert!(
                !s.contains("Failed") && !s.contains("Cancelled"),
                "job ended badly:\n{s}\n{}",
                self.all_logs()
            );
            assert!(
                std::time::Instant::now() < deadline,
                "timed out; last status:\n{s}\n{}",
                self.all_logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Waits until `source` has read more than `records` and a checkpoint triggered after
    /// that moment has completed (one checkpoint is in flight at a time, so the second to
    /// complete after it was triggered after it), then SIGKILLs task manager `tm`: the
    /// restarted attempt must replay from there. Returns the status seen just before.
    pub fn kill_after_checkpoint_past(&mut self, job: &str, source: &str, records: u64, tm: usize) -> String {
        let all = self.addresses();
        let within = std::time::Duration::from_secs(120);
        let s = self.wait_for_job(&all, job, within, |s| {
            first_line(s).contains("Running") && vertex_records_in(s, source) > records
        });
        let seen = last_checkpoint(&s);
        let s = self.wait_for_job(&all, job, within, |s| {
            first_line(s).contains("Running") && last_checkpoint(s) > seen + 1
        });
        self.kill_task_manager(tm);
        s
    }
}

/// The id of the last completed checkpoint in `coordinator status` (0 before the first).
pub fn last_checkpoint(status: &str) -> u64 {
    status
        .split("checkpoints: last ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or(0)
}

/// `records in` of one vertex's line of `coordinator status` (0 when it is not there).
pub fn vertex_records_in(status: &str, vertex: &str) -> u64 {
    status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{vertex} ")))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A number after `label` on the status line of `vertex` (0 when absent).
pub fn vertex_figure(status: &str, vertex: &str, label: &str) -> i64 {
    status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{vertex} ")))
        .and_then(|l| l.split(label).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
