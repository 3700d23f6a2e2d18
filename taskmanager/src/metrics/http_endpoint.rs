//! The HTTP side of a process, on an address of its own beside the gRPC port (HTTP/1.1,
//! for scrapers and browsers): `/metrics`, rendered from a `prometheus-client` registry
//! whose collectors read the live counters at each scrape. Coordinators add the console's
//! routes to the same router.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::transport::ClusterTransport;
use crate::transport::bearer_auth::AcceptedTokens;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A router serving `/metrics` from `registry`.
pub fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { render(&registry) }
        }),
    )
}

fn render(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => ([(CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}")).into_response(),
    }
}

/// The cookie a browser keeps the token in (the console's login sets it).
pub const TOKEN_COOKIE: &str = "weir_token";

/// Lets through only requests with an accepted token, as `Authorization: Bearer` (what
/// Prometheus sends with `authorization.credentials_file`) or in the `weir_token` cookie;
/// without accepted tokens, everything.
pub fn require_token(router: Router, transport: &ClusterTransport) -> Router {
    if transport.accepted().is_empty() {
        return router;
    }
    let tokens = transport.accepted().clone();
    router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let tokens = tokens.clone();
        async move {
            if authorized(&req, &tokens) {
                next.run(req).await
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(WWW_AUTHENTICATE, "Bearer")],
                    "authentication required: send Authorization: Bearer <token>\n",
                )
                    .into_response()
            }
        }
    }))
}

fn authorized(req: &Request, tokens: &AcceptedTokens) -> bool {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| tokens.accepts_header(v));
    header
        || req
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(name, value)| name == TOKEN_COOKIE && tokens.accepts(value.as_bytes()))
}

/// Serves `router` on `listener` (bound by the caller, so that a taken port fails the
/// start) until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(listen = ?listener.local_addr().ok(), "serving HTTP");
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
