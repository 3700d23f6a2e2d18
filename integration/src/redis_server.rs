//! A real Redis for tests and benchmarks: Debian's `redis-server` (`scripts/setup.sh test`
//! installs it), started as its own process on a free port of 127.0.0.1 with an
//! append-only file in its directory, so that a restart (a graceful `SHUTDOWN`) keeps what
//! it acknowledged, as a production Redis holding a join's rows must. Killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
}

impl RedisServer {
    /// Starts a server keeping its files in `dir`, and waits until it answers.
    pub fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self {
            child: None,
            dir: dir.to_path_buf(),
            port,
        };
        server.up()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""])
            // No background rewrite of the append-only file: a fork that copies the whole
            // dataset would take a core from the system under test mid-run.
            .args(["--auto-aof-rewrite-percentage", "0"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting redis-server (scripts/setup.sh test installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.cli(&["PING"]).map(|s| s.trim() != "PONG").unwrap_or(true) {
            if Instant::now() > deadline {
                bail!("redis-server on port {} did not answer within 30 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the server as an operator would (`SHUTDOWN`: it writes its append-only file
    /// and exits), keeps it down for `down`, and starts it again on the same port.
    pub fn restart(&mut self, down: Duration) -> Result<()> {
        let _ = self.cli(&["SHUTDOWN"]);
        if let Some(mut c) = self.child.take() {
            c.wait()?;
        }
        std::thread::sleep(down);
        self.up()
    }

    /// Runs `redis-cli` against the server and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .context("running redis-cli")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// How many keys the server holds.
    pub fn keys(&self) -> Result<u64> {
        let out = self.cli(&["DBSIZE"])?;
        out.trim().parse().with_context(|| format!("DBSIZE printed {out:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
