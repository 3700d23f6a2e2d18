//! An operator's rows in Redis: binary keys to binary values, written with `SET .. PX`
//! and read with `MGET`, in pipelines, by one connection on a thread of its own.
//!
//! The operator stays synchronous: it queues writes here (sent in batches of
//! `WRITE_BATCH` rows), asks for reads and for a sync (everything written so far
//! acknowledged), and learns of their results with `try_*` calls. While it waits, it hands
//! the subtask a future from [`RedisRows::io_wait`]; the subtask awaits it without
//! blocking its slot's thread, and backpressure follows from the bounded request channel
//! (`IN_FLIGHT` requests) that the operator waits on when it is full.
//!
//! Requests are served one after another, in the order sent, so a read sees every write
//! sent before it. A request that fails or takes longer than the timeout is retried on a
//! new connection, with exponential back-off, until it succeeds: a Redis outage stalls the
//! operator (and, through backpressure, its inputs) and loses nothing. Every request is
//! idempotent (`SET` of the same value, `UNLINK`, `MGET`), so a retry after a partial
//! success is harmless.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::Pipeline;
use tokio::sync::{mpsc, oneshot};

use crate::operators::redis_connection::{
    FIRST_BACKOFF, MAX_BACKOFF, RedisConnection, RedisConnectionError, spawn_connection_thread,
};
use crate::runtime::io_reply::{Reply, Taken};
use crate::runtime::subtask_metrics::SubtaskMetrics;

/// Rows per write request.
const WRITE_BATCH: usize = 8192;
/// Bytes of row values per write request.
const WRITE_BYTES: usize = 2 << 20;
/// Requests queued for the connection beyond the one it serves.
const IN_FLIGHT: usize = 4;
/// Keys per `MGET` or `UNLINK` command.
const KEYS_PER_COMMAND: usize = 512;

#[derive(Debug, Clone)]
pub struct RedisRowsConfig {
    /// Which operator the rows belong to (logs, errors).
    pub operator: String,
    pub url: String,
    pub ttl: Duration,
    pub timeout: Duration,
    /// The operator's counters: each failed request counts in `errors`.
    pub metrics: Arc<SubtaskMetrics>,
}

type Values = Vec<Option<Vec<u8>>>;

enum Request {
    Write {
        sets: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
        done: Option<oneshot::Sender<()>>,
    },
    Read {
        keys: Vec<Vec<u8>>,
        reply: oneshot::Sender<Values>,
    },
}

pub struct RedisRows {
    config: RedisRowsConfig,
    tx: mpsc::Sender<Request>,
    /// Requests the channel had no room for, in order; nothing is sent past them.
    outbox: VecDeque<Request>,
    sets: Vec<(Vec<u8>, Vec<u8>)>,
    set_bytes: usize,
    deletes: Vec<Vec<u8>>,
    read: Reply<Values>,
    sync: Reply<()>,
}

impl RedisRows {
    /// Starts the connection thread (it connects lazily, retrying until Redis answers).
    pub fn start(config: RedisRowsConfig) -> Result<Self, RedisConnectionError> {
        let redis = RedisConnection::new(&config.url, config.timeout)?;
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let connection = Connection {
            config: config.clone(),
            redis,
        };
        spawn_connection_thread(format!("redis-{}", config.operator), connection.run(rx))?;
        Ok(Self {
            config,
            tx,
            outbox: VecDeque::new(),
            sets: Vec::new(),
            set_bytes: 0,
            deletes: Vec::new(),
            read: Reply::None,
            sync: Reply::None,
        })
    }

    fn gone(&self) -> RedisConnectionError {
        RedisConnectionError::Gone {
            url: self.config.url.clone(),
        }
    }

    fn send(&mut self, request: Request) {
        let unsent = if self.outbox.is_empty() {
            match self.tx.try_send(request) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) => Some(r),
            }
        } else {
            Some(request)
        };
        self.outbox.extend(unsent);
    }

    /// Sends what the outbox holds while the channel has room.
    fn drain(&mut self) -> Result<(), RedisConnectionError> {
        while let Some(request) = self.outbox.pop_front() {
            match self.tx.try_send(request) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(r)) => {
                    self.outbox.push_front(r);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.gone()),
            }
        }
        Ok(())
    }

    /// Queues `value` under `key` (sent once a batch is full, or at the next read or sync).
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set_bytes += value.len();
        self.sets.push((key, value));
        if self.sets.len() >= WRITE_BATCH || self.set_bytes >= WRITE_BYTES {
            self.flush(None);
        }
    }

    /// Queues the deletion of `key` (sent with the next write).
    pub fn delete(&mut self, key: Vec<u8>) {
        self.deletes.push(key);
    }

    fn flush(&mut self, done: Option<oneshot::Sender<()>>) {
        if self.sets.is_empty() && self.deletes.is_empty() && done.is_none() {
            return;
        }
        self.set_bytes = 0;
        let request = Request::Write {
            sets: std::mem::take(&mut self.sets),
            deletes: std::mem::take(&mut self.deletes),
            done,
        };
        self.send(request);
    }

    /// Whether more may be queued: nothing waits for room in the channel (what does is
    /// sent by the futures of [`Self::io_wait`]).
    pub fn accepting(&self) -> bool {
        self.outbox.is_empty()
    }

    /// Asks for the values of `keys` (after every write queued so far); [`Self::try_read`]
    /// returns them, in order.
    pub fn read(&mut self, keys: Vec<Vec<u8>>) {
        debug_assert!(self.read.is_none(), "one read at a time");
        self.flush(None);
        let (reply, rx) = oneshot::channel();
        self.send(Request::Read { keys, reply });
        self.read = Reply::Waiting(rx);
    }

    /// The values the last [`Self::read`] asked for, once they are there.
    pub fn try_read(&mut self) -> Result<Option<Values>, RedisConnectionError> {
        self.drain()?;
        match self.read.take() {
            Taken::Ready(v) => Ok(Some(v)),
            Taken::NotYet => Ok(None),
            Taken::Gone => Err(self.gone()),
        }
    }

    /// Sends every queued write; [`Self::synced`] tells when Redis acknowledged them all.
    pub fn sync(&mut self) {
        let (done, rx) = oneshot::channel();
        self.flush(Some(done));
        self.sync = Reply::Waiting(rx);
    }

    /// Whether everything written before the last [`Self::sync`] is acknowledged.
    pub fn synced(&mut self) -> Result<bool, RedisConnectionError> {
        self.drain()?;
        if self.sync.is_none() {
            return Ok(true);
        }
        match self.sync.take() {
            Taken::Ready(()) => Ok(true),
            Taken::NotYet => Ok(false),
            Taken::Gone => Err(self.gone()),
        }
    }

    /// What the operator waits on, if anything: room in the channel for the oldest
    /// unsent request (it is sent when there is), else a read's reply, else a sync's.
    pub fn io_wait(&mut self) -> Option<BoxFuture<'static, ()>> {
        if let Some(request) = self.outbox.pop_front() {
            let tx = self.tx.clone();
            return Some(Box::pin(async move {
                // A closed channel shows as `Gone` at the next `try_read` or `synced`.
                let _ = tx.send(request).await;
            }));
        }
        self.read.wait().or_else(|| self.sync.wait())
    }
}

/// The connection thread's side: serves requests in order, retrying each until it works.
struct Connection {
    config: RedisRowsConfig,
    redis: RedisConnection,
}

impl Connection {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(request) = rx.recv().await {
            match request {
                Request::Write { sets, deletes, done } => {
                    // An empty pipeline would wait for answers that never come.
                    let empty = sets.is_empty() && deletes.is_empty();
                    let pipe = self.write_pipeline(&sets, &deletes);
                    if !empty && self.query::<()>(&pipe, "write", &rx).await.is_none() {
                        return;
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Request::Read { keys, reply } if keys.is_empty() => {
                    let _ = reply.send(Vec::new());
                }
                Request::Read { keys, reply } => {
                    let mut pipe = redis::pipe();
                    for chunk in keys.chunks(KEYS_PER_COMMAND) {
                        let cmd = pipe.cmd("MGET");
                        for k in chunk {
                            cmd.arg(k.as_slice());
                        }
                    }
                    let Some(values) = self.query::<Vec<Values>>(&pipe, "read", &rx).await else {
                        return;
                    };
                    let _ = reply.send(values.into_iter().flatten().collect());
                }
            }
        }
    }

    fn write_pipeline(&self, sets: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> Pipeline {
        let ttl_ms = self.config.ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for (k, v) in sets {
            pipe.cmd("SET")
                .arg(k.as_slice())
                .arg(v.as_slice())
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
        }
        for chunk in deletes.chunks(KEYS_PER_COMMAND) {
            let cmd = pipe.cmd("UNLINK");
            for k in chunk {
                cmd.arg(k.as_slice());
            }
            cmd.ignore();
        }
        pipe
    }

    /// Runs `pipe` until it succeeds; `None` when the operator went away meanwhile.
    async fn query<T: redis::FromRedisValue>(
        &mut self,
        pipe: &Pipeline,
        what: &str,
        rx: &mpsc::Receiver<Request>,
    ) -> Option<T> {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u32;
        loop {
            match self.redis.query::<T>(pipe).await {
                Ok(v) => {
                    if failures > 0 {
                        tracing::info!(operator = %self.config.operator, url = %self.config.url, failures, "Redis answers again");
                    }
                    return Some(v);
                }
                Err(e) => {
                    SubtaskMetrics::add(&self.config.metrics.errors, 1);
                    tracing::warn!(operator = %self.config.operator, request = what, error = %e, retry_in_ms = backoff.as_millis() as u64, "Redis request failed")
                }
            }
            failures += 1;
            if rx.is_closed() {
                return None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A real `redis-server` for unit tests (Debian's redis-server package; `scripts/setup.sh
/// test` installs it), on a free port of 127.0.0.1, killed when dropped.
#[cfg(test)]
pub mod test_server {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct TestRedis {
        child: Option<Child>,
        pub port: u16,
    }

    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    impl TestRedis {
        pub fn start() -> Self {
            let mut r = Self::on(free_port());
            r.up();
            r
        }

        /// A server for `port`, not started yet.
        pub fn on(port: u16) -> Self {
            Self { child: None, port }
        }

        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        /// Starts the server (again) on its port, without persistence.
        pub fn up(&mut self) {
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server (scripts/setup.sh test installs it)");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.cli(&["PING"]).trim() != "PONG" {
                assert!(Instant::now() < deadline, "redis-server did not answer");
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        pub fn down(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        pub fn cli(&self, args: &[&str]) -> String {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args)
                .output()
                .expect("redis-cli");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }

        pub fn keys(&self) -> u64 {
            self.cli(&["DBSIZE"]).trim().parse().unwrap_or(0)
        }
    }

    /// Awaits what `t` waits on (`io_wait`), as its subtask would, until `done(t)` holds.
    pub fn drive<T>(
        t: &mut T,
        io_wait: impl Fn(&mut T) -> Option<futures::future::BoxFuture<'static, ()>>,
        mut done: impl FnMut(&mut T) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(t) {
            assert!(Instant::now() < deadline, "no progress");
            match io_wait(t) {
                Some(f) => futures::executor::block_on(f),
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            self.down();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{TestRedis, drive, free_port};
    use super::*;

    fn rows(url: String) -> RedisRows {
        RedisRows::start(RedisRowsConfig {
            operator: "join".into(),
            url,
            ttl: Duration::from_secs(60),
            timeout: Duration::from_millis(500),
            metrics: Arc::default(),
        })
        .unwrap()
    }

    fn until(r: &mut RedisRows, done: impl FnMut(&mut RedisRows) -> bool) {
        drive(r, RedisRows::io_wait, done);
    }

    fn read_all(r: &mut RedisRows, keys: &[&str]) -> Values {
        r.read(keys.iter().map(|k| k.as_bytes().to_vec()).collect());
        let mut got = None;
        until(r, |r| {
            got = r.try_read().unwrap();
            got.is_some()
        });
        got.unwrap()
    }

    #[test]
    fn writes_are_read_back_in_order_and_deletes_remove_them() {
        let redis = TestRedis::start();
        let mut r = rows(redis.url());
        // More than a batch, so some go before the read and the rest with it.
        for i in 0..(WRITE_BATCH * 3 + 7) {
            r.put(format!("k{i}").into_bytes(), vec![i as u8, 0, 255]);
        }
        let got = read_all(&mut r, &["k0", "missing", "k6150"]);
        assert_eq!(
            got,
            vec![Some(vec![0, 0, 255]), None, Some(vec![6150u32 as u8, 0, 255])]
        );
        r.delete(b"k0".to_vec());
        r.sync();
        until(&mut r, |r| r.synced().unwrap());
        assert_eq!(redis.keys(), (WRITE_BATCH * 3 + 6) as u64);
        let ttl: i64 = redis.cli(&["PTTL", "k1"]).trim().parse().unwrap();
        assert!(ttl > 50_000 && ttl <= 60_000, "written with the TTL: {ttl}");
    }

    /// With Redis away the writes wait (a sync stays pending) and go through once it is
    /// back: nothing is lost, and the rows never block the caller's thread.
    #[test]
    fn an_outage_holds_writes_until_redis_is_back() {
        let port = free_port();
        let mut r = rows(format!("redis://127.0.0.1:{port}"));
        for i in 0..100 {
            r.put(format!("k{i}").into_bytes(), b"v".to_vec());
        }
        r.sync();
        std::thread::sleep(Duration::from_millis(300));
        assert!(!r.synced().unwrap(), "acknowledged with no Redis");
        let mut redis = TestRedis::on(port);
        redis.up();
        until(&mut r, |r| r.synced().unwrap());
        assert_eq!(redis.keys(), 100);
        let failed = r.config.metrics.errors.load(std::sync::atomic::Ordering::Relaxed);
        assert!(failed > 0, "the failed requests count as errors");
        redis.down();
        let reader = std::thread::spawn(move || {
            let got = read_all(&mut r, &["k7"]);
            (r, got)
        });
        std::thread::sleep(Duration::from_millis(300));
        redis.up();
        let (_, got) = reader.join().unwrap();
        assert_eq!(
            got,
            vec![None],
            "a server without persistence came back empty, and the read still ended"
        );
    }
}
