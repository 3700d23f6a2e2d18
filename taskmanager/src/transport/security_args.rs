//! The security flags every binary shares (flattened into each command that serves or
//! calls gRPC), with their environment variables.

use std::path::PathBuf;

use clap::Args;

use super::bearer_auth::AcceptedTokens;
use super::tls_config::TlsConfig;
use super::{ClusterTransport, TransportError};

#[derive(Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// Bearer tokens, one per line: servers accept any of them, clients present the first.
    #[arg(long, env = "WEIR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// This process's TLS certificate (PEM): its identity as a server, and as a client
    /// under mutual TLS.
    #[arg(long, env = "WEIR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "WEIR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that signs the cluster's certificates: clients verify
    /// servers with it, servers verify client certificates with it (mutual TLS).
    #[arg(long, env = "WEIR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The name to check servers' certificates against (default: the host dialled).
    #[arg(long, env = "WEIR_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
}

impl SecurityArgs {
    /// The transport these flags (and `WEIR_TOKEN`, a token given directly) describe.
    pub fn transport(&self) -> Result<ClusterTransport, TransportError> {
        let env_token = std::env::var("WEIR_TOKEN").ok();
        let tokens = AcceptedTokens::load(self.token_file.as_deref(), env_token.as_deref())?;
        let tls = TlsConfig::load(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_ca.as_deref(),
            self.tls_server_name.clone(),
        )?;
        Ok(ClusterTransport::new(tls, tokens))
    }
}
