//! One Redis connection for an operator, on a thread of its own: connected lazily, every
//! attempt (connecting included) bounded by a timeout, and dropped after a failure so the
//! next attempt connects afresh. What to do after a failure (retry until it works, or
//! give up for a back-off) is the caller's: `redis_rows` and `redis_lookup`.

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, FromRedisValue, Pipeline};

/// The first wait after a failure; each further failure doubles it up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RedisConnectionError {
    #[error("{url}: {source}")]
    Url {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("the Redis connection thread for {url} ended")]
    Gone { url: String },
    #[error("starting the Redis connection thread: {0}")]
    Thread(#[from] std::io::Error),
}

pub struct RedisConnection {
    pub url: String,
    client: Client,
    conn: Option<MultiplexedConnection>,
    timeout: Duration,
}

impl RedisConnection {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisConnectionError> {
        Ok(Self {
            url: url.to_string(),
            client: Client::open(url).map_err(|source| RedisConnectionError::Url {
                url: url.to_string(),
                source,
            })?,
            conn: None,
            timeout,
        })
    }

    /// Runs `pipe` once; the error says what went wrong, for logs and fallbacks.
    pub async fn query<T: FromRedisValue>(&mut self, pipe: &Pipeline) -> Result<T, String> {
        let timeout = self.timeout;
        let (client, conn) = (&self.client, &mut self.conn);
        let attempt = async {
            let mut c = match conn.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let options = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout));
                    let c = client.get_multiplexed_async_connection_with_config(&options).await?;
                    *conn = Some(c.clone());
                    c
                }
            };
            pipe.query_async::<T>(&mut c).await
        };
        let failure = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => format!("{}: {e}", self.url),
            Err(_) => format!("{}: no answer within {} ms", self.url, timeout.as_millis()),
        };
        self.conn = None;
        Err(failure)
    }
}

/// Runs `serve` on a thread named `name` with a runtime of its own.
pub fn spawn_connection_thread<F>(name: String, serve: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    std::thread::Builder::new().name(name.clone()).spawn(
        move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(serve),
            Err(e) => tracing::error!(thread = %name, error = %e, "no runtime for a Redis connection"),
        },
    )?;
    Ok(())
}
