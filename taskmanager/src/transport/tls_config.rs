//! TLS for gRPC, from PEM files: this process's certificate and key (its identity as a
//! server, and as a client under mutual TLS) and the CA that signs the cluster's
//! certificates (clients verify servers with it; servers that have it verify clients).
//! With a CA and no accepted tokens, servers demand a client certificate in the handshake
//! (mutual TLS is then the authentication); with tokens as well, a certificate is optional
//! and a caller without one must present a token.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::TransportError;

pub struct TlsConfig {
    identity: Option<Identity>,
    ca: Option<Certificate>,
    /// The name servers' certificates are checked against, when not the host of the
    /// address dialled.
    server_name: Option<String>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|source| TransportError::Read {
        what,
        path: path.into(),
        source,
    })
}

impl TlsConfig {
    /// Reads the PEM files; `None` when none is given (plain-text gRPC).
    pub fn load(
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
        server_name: Option<String>,
    ) -> Result<Option<Self>, TransportError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some(Identity::from_pem(read("TLS certificate", c)?, read("TLS key", k)?)),
            (None, None) => None,
            _ => {
                return Err(TransportError::Config("--tls-cert and --tls-key go together".into()));
            }
        };
        let ca = ca
            .map(|p| read("TLS CA certificate", p))
            .transpose()?
            .map(Certificate::from_pem);
        if identity.is_none() && ca.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            identity,
            ca,
            server_name,
        }))
    }

    /// What a client dialling `address` uses: the CA to verify the server, and this
    /// process's certificate for mutual TLS.
    pub fn client(&self, address: &str) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(ca.clone());
        }
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
        config.domain_name(
            self.server_name
                .clone()
                .unwrap_or_else(|| host.trim_matches(['[', ']']).to_string()),
        )
    }

    /// What a server uses; with a CA it verifies client certificates, demanding one unless
    /// tokens are accepted too.
    pub fn server(&self, tokens_accepted: bool) -> ServerTlsConfig {
        let mut config = ServerTlsConfig::new();
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        if let Some(ca) = &self.ca {
            config = config.client_ca_root(ca.clone()).client_auth_optional(tokens_accepted);
        }
        config
    }

    /// Whether a server with these settings can serve TLS at all.
    pub fn can_serve(&self) -> bool {
        self.identity.is_some()
    }

    /// Whether servers verify client certificates (mutual TLS).
    pub fn verifies_clients(&self) -> bool {
        self.identity.is_some() && self.ca.is_some()
    }
}
