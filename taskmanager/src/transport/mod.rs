//! How Weir's processes reach each other and who they let in: bearer tokens
//! (`bearer_auth`), TLS and mutual TLS (`tls_config`), and the settings every binary
//! shares (`security_args`). `ClusterTransport` bundles them: it builds the endpoints of
//! every gRPC client (job API, heartbeats, Raft, deployments, the data exchange) and
//! configures every gRPC server, so one set of flags secures all traffic.

pub mod bearer_auth;
pub mod security_args;
pub mod tls_config;

use std::sync::Arc;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Server};

use bearer_auth::{AcceptedTokens, PresentToken, RequireAuth};
use tls_config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("bad address '{address}': {message}")]
    Address { address: String, message: String },
}

/// A channel whose calls carry this process's token.
pub type AuthChannel = InterceptedService<Channel, PresentToken>;

/// The security settings of one process, shared by its clients and servers.
#[derive(Clone, Default)]
pub struct ClusterTransport {
    tls: Option<Arc<TlsConfig>>,
    token: PresentToken,
    accepted: Arc<AcceptedTokens>,
}

impl std::fmt::Debug for ClusterTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTransport")
            .field("tls", &self.tls.is_some())
            .field("tokens", &self.accepted.len())
            .finish()
    }
}

impl ClusterTransport {
    pub fn new(tls: Option<TlsConfig>, accepted: AcceptedTokens) -> Self {
        Self {
            token: accepted.presented(),
            tls: tls.map(Arc::new),
            accepted: Arc::new(accepted),
        }
    }

    /// The endpoint of a gRPC server at `address` (`host:port`): `https` with this
    /// process's TLS settings when it has them.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, TransportError> {
        let bad = |message: String| TransportError::Address {
            address: address.to_string(),
            message,
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{address}")).map_err(|e| bad(e.to_string()))?;
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.client(address))
                .map_err(|e| bad(format!("TLS: {e}"))),
            None => Ok(endpoint),
        }
    }

    /// A lazily connecting channel to `address` whose calls carry this process's token.
    pub fn channel(&self, address: &str, connect_timeout: Duration) -> Result<AuthChannel, TransportError> {
        Ok(self.authorize(self.endpoint(address)?.connect_timeout(connect_timeout).connect_lazy()))
    }

    /// Adds this process's token to the calls over `channel`.
    pub fn authorize(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.token.clone())
    }

    /// A gRPC server builder with this process's TLS settings.
    pub fn server(&self) -> Result<Server, TransportError> {
        let builder = Server::builder();
        match &self.tls {
            Some(tls) if !tls.can_serve() => Err(TransportError::Config(
                "serving TLS needs --tls-cert and --tls-key".into(),
            )),
            Some(tls) => builder
                .tls_config(tls.server(!self.accepted.is_empty()))
                .map_err(|e| TransportError::Config(format!("TLS: {e}"))),
            None => Ok(builder),
        }
    }

    /// The check every gRPC service of this process runs on each call.
    pub fn require_auth(&self) -> RequireAuth {
        RequireAuth::new(
            self.accepted.clone(),
            self.tls.as_ref().is_some_and(|t| t.verifies_clients()),
        )
    }

    /// Whether callers must authenticate at all (a token or a client certificate).
    pub fn authenticates(&self) -> bool {
        !self.accepted.is_empty() || self.tls.as_ref().is_some_and(|t| t.verifies_clients())
    }

    /// The tokens this process accepts (HTTP endpoints check their callers against them).
    pub fn accepted(&self) -> &Arc<AcceptedTokens> {
        &self.accepted
    }
}
