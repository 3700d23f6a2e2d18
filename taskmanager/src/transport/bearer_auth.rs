//! Bearer tokens: the tokens a process accepts (from a file, one per line, so a token can
//! be rotated by listing the new one beside the old, or from `WEIR_TOKEN`), the token its
//! own calls present (the first of them), and the check its gRPC services run on every
//! call: a valid `authorization: Bearer <token>`, or a client certificate that mutual TLS
//! verified. Tokens are compared in constant time.

use std::path::Path;
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::TransportError;

/// The tokens a process accepts; empty: no token is asked for.
#[derive(Default)]
pub struct AcceptedTokens {
    tokens: Vec<Vec<u8>>,
}

impl AcceptedTokens {
    /// Tokens from `file` (one per line; blank lines and `#` comments skipped) and `env`.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Self, TransportError> {
        let mut tokens = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| TransportError::Read {
                what: "token file",
                path: path.into(),
                source,
            })?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| l.as_bytes().to_vec()),
            );
            if tokens.is_empty() {
                return Err(TransportError::Config(format!(
                    "token file {} holds no token",
                    path.display()
                )));
            }
        }
        if let Some(t) = env.map(str::trim).filter(|t| !t.is_empty()) {
            tokens.push(t.as_bytes().to_vec());
        }
        for t in &tokens {
            if MetadataValue::<Ascii>::try_from(format!("Bearer {}", String::from_utf8_lossy(t))).is_err() {
                return Err(TransportError::Config(
                    "a token must be printable ASCII without spaces".into(),
                ));
            }
        }
        Ok(Self { tokens })
    }

    pub fn from_tokens(tokens: &[&str]) -> Self {
        Self {
            tokens: tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether `token` is one of them.
    pub fn accepts(&self, token: &[u8]) -> bool {
        // Every token is compared, each in constant time, so timing tells nothing.
        self.tokens
            .iter()
            .fold(false, |found, t| found | constant_time_eq(t, token))
    }

    /// Whether an `Authorization` header value carries an accepted token.
    pub fn accepts_header(&self, value: &str) -> bool {
        value
            .strip_prefix("Bearer ")
            .is_some_and(|t| self.accepts(t.trim().as_bytes()))
    }

    /// What this process's own calls present: the first token.
    pub fn presented(&self) -> PresentToken {
        PresentToken(
            self.tokens
                .first()
                .and_then(|t| MetadataValue::try_from(format!("Bearer {}", String::from_utf8_lossy(t))).ok()),
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Adds `authorization: Bearer <token>` to each outgoing call (nothing without a token).
#[derive(Clone, Default)]
pub struct PresentToken(Option<MetadataValue<Ascii>>);

impl Interceptor for PresentToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// Refuses calls that carry neither an accepted token nor a verified client certificate.
#[derive(Clone)]
pub struct RequireAuth {
    tokens: Arc<AcceptedTokens>,
    client_certificates: bool,
}

impl RequireAuth {
    pub fn new(tokens: Arc<AcceptedTokens>, client_certificates: bool) -> Self {
        Self {
            tokens,
            client_certificates,
        }
    }

    /// Why `request` is refused, if it is.
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.tokens.is_empty() {
            // Without tokens, either nothing is asked for or the TLS handshake already
            // demanded a client certificate.
            return Ok(());
        }
        if self.client_certificates && request.peer_certs().is_some_and(|c| !c.is_empty()) {
            return Ok(());
        }
        match request.metadata().get("authorization") {
            None => Err(Status::unauthenticated(
                "authentication required: no bearer token (give the client --token-file or WEIR_TOKEN)",
            )),
            Some(v) if v.to_str().is_ok_and(|v| self.tokens.accepts_header(v)) => Ok(()),
            Some(_) => Err(Status::unauthenticated(
                "authentication failed: the bearer token is not valid",
            )),
        }
    }
}

impl Interceptor for RequireAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_file_and_the_environment_and_are_checked_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# rotated 2026-12\nnew-token\n\nold-token\n").unwrap();
        let t = AcceptedTokens::load(Some(&file), Some("env-token")).unwrap();
        assert_eq!(t.len(), 3);
        for ok in ["new-token", "old-token", "env-token"] {
            assert!(t.accepts(ok.as_bytes()), "{ok}");
        }
        for bad in ["new-toke", "new-tokenx", "", "# rotated 2026-12"] {
            assert!(!t.accepts(bad.as_bytes()), "{bad}");
        }
        assert!(t.accepts_header("Bearer old-token"));
        assert!(!t.accepts_header("Basic old-token"));
    }

    #[test]
    fn calls_without_a_valid_token_are_refused_with_a_reason() {
        let auth = RequireAuth::new(Arc::new(AcceptedTokens::from_tokens(&["s3cret"])), false);
        let none = auth.check(&Request::new(())).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        assert!(none.message().contains("no bearer token"), "{}", none.message());
        let mut wrong = Request::new(());
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer guess".parse().unwrap());
        let wrong = auth.check(&wrong).unwrap_err();
        assert!(wrong.message().contains("not valid"), "{}", wrong.message());
        let mut right = Request::new(());
        PresentToken(Some("Bearer s3cret".parse().unwrap()))
            .call(Request::new(()))
            .map(|r| *right.metadata_mut() = r.metadata().clone())
            .unwrap();
        assert!(auth.check(&right).is_ok());
    }

    #[test]
    fn an_empty_token_file_is_an_error_not_an_open_door() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# nothing yet\n").unwrap();
        assert!(AcceptedTokens::load(Some(&file), None).is_err());
    }
}
