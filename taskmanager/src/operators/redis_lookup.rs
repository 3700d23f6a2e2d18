//! Dimension lookups in Redis for `lookup_join`: `HMGET <prefix><key> <fields>` for a
//! batch of keys in one pipeline, on a connection thread of its own.
//!
//! Unlike the window join's row store, a lookup is allowed to fail: each request gets one
//! attempt bounded by the timeout, and after a failure the connection is not tried again
//! for a back-off (50 ms doubling to 5 s), during which requests fail at once. A Redis that
//! is down thus costs the join one timeout, not one per batch.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::operators::redis_connection::{
    FIRST_BACKOFF, MAX_BACKOFF, RedisConnection, RedisConnectionError, spawn_connection_thread,
};

/// Per key, its fields' values (`None`: no such field), or `None` when the key has no
/// hash at all.
pub type Fields = Vec<Option<Vec<Option<String>>>>;

/// Why a lookup gave no answer.
pub type LookupFailure = String;

struct Request {
    keys: Vec<String>,
    reply: oneshot::Sender<Result<Fields, LookupFailure>>,
}

pub struct RedisLookup {
    tx: mpsc::Sender<Request>,
}

impl RedisLookup {
    pub fn start(
        operator: &str,
        url: &str,
        fields: Vec<String>,
        timeout: Duration,
    ) -> Result<Self, RedisConnectionError> {
        let redis = RedisConnection::new(url, timeout)?;
        let (tx, rx) = mpsc::channel(1);
        let connection = Connection {
            operator: operator.to_string(),
            redis,
            fields,
            backoff: FIRST_BACKOFF,
            closed_until: None,
        };
        spawn_connection_thread(format!("lookup-{operator}"), connection.run(rx))?;
        Ok(Self { tx })
    }

    /// Asks for the fields of `keys` (already prefixed); the answer comes on the receiver.
    /// The caller has at most one request out, so the channel always has room.
    pub fn lookup(&self, keys: Vec<String>) -> oneshot::Receiver<Result<Fields, LookupFailure>> {
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.tx.try_send(Request { keys, reply }) {
            let request = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            let _ = request
                .reply
                .send(Err("the lookup connection is busy or gone".to_string()));
        }
        rx
    }
}

struct Connection {
    operator: String,
    redis: RedisConnection,
    fields: Vec<String>,
    backoff: Duration,
    /// After a failure, no attempt before this.
    closed_until: Option<Instant>,
}

impl Connection {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(request) = rx.recv().await {
            let answer = self.serve(&request.keys).await;
            let _ = request.reply.send(answer);
        }
    }

    async fn serve(&mut self, keys: &[String]) -> Result<Fields, LookupFailure> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.closed_until.is_some_and(|t| Instant::now() < t) {
            return Err(format!(
                "{} failed recently; next attempt after the back-off",
                self.redis.url
            ));
        }
        let mut pipe = redis::pipe();
        for k in keys {
            let cmd = pipe.cmd("HMGET").arg(k);
            for f in &self.fields {
                cmd.arg(f);
            }
        }
        match self.redis.query::<Vec<Vec<Option<String>>>>(&pipe).await {
            Ok(fields) => {
                self.backoff = FIRST_BACKOFF;
                self.closed_until = None;
                // HMGET answers a missing key with nils only.
                Ok(fields
                    .into_iter()
                    .map(|f| f.iter().any(Option::is_some).then_some(f))
                    .collect())
            }
            Err(failure) => {
                tracing::warn!(operator = %self.operator, error = %failure, retry_in_ms = self.backoff.as_millis() as u64, "lookup failed");
                self.closed_until = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Err(failure)
            }
        }
    }
}
