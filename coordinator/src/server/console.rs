//! The web console, served by every coordinator on its HTTP address beside `/metrics`: a
//! page (`console/`, compiled in) and the JSON it polls. The JSON handlers are clients of
//! the job API like the CLI (they reach the leader through `LeaderClient` with this
//! coordinator's credentials), so any coordinator serves the same console.
//!
//! Routes: `GET /` the page; `GET /api/jobs`, `GET /api/jobs/{id}`, `POST /api/jobs` (a
//! spec, JSON; answers the job id or the spec errors), `POST /api/jobs/{id}/cancel`,
//! `GET /api/taskmanagers`; `GET /login` and `POST /login` (the token, kept in a cookie
//! the browser sends with every request). With tokens configured every route but the
//! login needs one (header or cookie).

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use weir_proto::cluster::ListTaskManagersRequest;
use weir_proto::cluster::task_manager_registry_client::TaskManagerRegistryClient;
use weir_proto::job::job_service_client::JobServiceClient;
use weir_proto::job::{CancelRequest, GetRequest, ListRequest, SubmitRequest};
use weir_taskmanager::leader_client::{LeaderCallError, LeaderClient};
use weir_taskmanager::metrics::http_endpoint::{TOKEN_COOKIE, require_token};
use weir_taskmanager::transport::{AuthChannel, ClusterTransport};

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");
const LOGIN: &str = include_str!("../../console/login.html");

#[derive(Clone)]
struct Console {
    /// One client, shared: it remembers the leader and keeps its connections.
    leader: Arc<Mutex<LeaderClient>>,
}

/// The console's routes: the page and its API need a token when the cluster has tokens,
/// the login page does not.
pub fn console_router(coordinators: Vec<String>, transport: &ClusterTransport) -> Result<Router, LeaderCallError> {
    let state = Console {
        leader: Arc::new(Mutex::new(LeaderClient::new(coordinators, transport.clone())?)),
    };
    let guarded = Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/console.js", get(|| async { asset("text/javascript", SCRIPT) }))
        .route("/console.css", get(|| async { asset("text/css", STYLE) }))
        .route("/api/jobs", get(list_jobs).post(submit_job))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/taskmanagers", get(task_managers))
        .with_state(state);
    let mut guarded = require_token(guarded, transport);
    if !transport.accepted().is_empty() {
        // A browser without the cookie is sent to the login page rather than shown a 401.
        guarded = guarded.layer(axum::middleware::map_response(
            |req_path: axum::http::Uri, response: Response| async move {
                if response.status() == StatusCode::UNAUTHORIZED && req_path.path() == "/" {
                    return (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response();
                }
                response
            },
        ));
    }
    let tokens = transport.accepted().clone();
    let login = Router::new().route(
        "/login",
        get(|| async { Html(LOGIN) }).post(move |Form(form): Form<LoginForm>| {
            let tokens = tokens.clone();
            async move {
                if tokens.is_empty() || tokens.accepts(form.token.trim().as_bytes()) {
                    let cookie = format!(
                        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                        form.token.trim()
                    );
                    (
                        StatusCode::SEE_OTHER,
                        [(LOCATION, "/".to_string()), (SET_COOKIE, cookie)],
                    )
                        .into_response()
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        Html(LOGIN.replace("<!--error-->", "<p class=\"error\">That token is not valid.</p>")),
                    )
                        .into_response()
                }
            }
        }),
    );
    Ok(guarded.merge(login))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], body)
}

/// A job API failure as the console shows it.
fn failure(e: LeaderCallError) -> Response {
    let (status, message) = match &e {
        LeaderCallError::Refused(s) if s.code() == tonic::Code::NotFound => (StatusCode::NOT_FOUND, e.to_string()),
        LeaderCallError::Refused(s) if s.code() == tonic::Code::Unauthenticated => {
            (StatusCode::UNAUTHORIZED, e.to_string())
        }
        LeaderCallError::Refused(_) => (StatusCode::BAD_REQUEST, e.to_string()),
        _ => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Calls the leader's API with `f` and answers its reply as JSON.
async fn answer<T, F, Fut>(c: &Console, f: F) -> Response
where
    T: Serialize,
    F: FnMut(AuthChannel) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match c.leader.lock().await.call(f).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => failure(e),
    }
}

async fn list_jobs(State(c): State<Console>) -> Response {
    answer(
        &c,
        |ch| async move { JobServiceClient::new(ch).list(ListRequest {}).await },
    )
    .await
}

async fn get_job(State(c): State<Console>, Path(id): Path<String>) -> Response {
    answer(&c, |ch| {
        let job_id = id.clone();
        async move { JobServiceClient::new(ch).get(GetRequest { job_id }).await }
    })
    .await
}

async fn submit_job(State(c): State<Console>, headers: HeaderMap, body: String) -> Response {
    if !headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        // A form post from another site cannot send JSON without CORS: this keeps the
        // cookie from being used by other pages.
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the spec as application/json\n",
        )
            .into_response();
    }
    let req = SubmitRequest {
        spec_json: body,
        overrides: Vec::new(),
        from_savepoint: String::new(),
    };
    let reply = c
        .leader
        .lock()
        .await
        .call(|ch| {
            let req = req.clone();
            async move { JobServiceClient::new(ch).submit(req).await }
        })
        .await;
    match reply {
        Ok(r) if !r.errors.is_empty() => (StatusCode::UNPROCESSABLE_ENTITY, Json(r)).into_response(),
        Ok(r) => Json(r).into_response(),
        Err(e) => failure(e),
    }
}

async fn cancel_job(State(c): State<Console>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !headers.contains_key("x-weir-console") {
        // Same reason as for submit: only the console's own script sets this header.
        return (StatusCode::FORBIDDEN, "missing x-weir-console header\n").into_response();
    }
    answer(&c, |ch| {
        let job_id = id.clone();
        async move { JobServiceClient::new(ch).cancel(CancelRequest { job_id }).await }
    })
    .await
}

async fn task_managers(State(c): State<Console>) -> Response {
    let reply = c
        .leader
        .lock()
        .await
        .call(|ch| async move {
            TaskManagerRegistryClient::new(ch)
                .list_task_managers(ListTaskManagersRequest {})
                .await
        })
        .await;
    match reply {
        Ok(r) => Json(serde_json::json!({
            "leader": r.leader,
            "task_managers": r.task_managers,
        }))
        .into_response(),
        Err(e) => failure(e),
    }
}
