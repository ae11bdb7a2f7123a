//! The endpoint's three routes as an axum router, and [`serve`], which puts them on the shared
//! HTTP serving path (`rubricmill-http`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, Response, StatusCode};
use axum::routing::any;
use rubricmill_http::HttpServer;

use crate::{Health, Registry};

/// The content type of `GET /metrics`: the OpenMetrics text format 1.0.0.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of every other answer.
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Why the telemetry endpoint could not start.
pub type TelemetryError = rubricmill_http::HttpError;

/// A running telemetry endpoint. Dropping it stops it too, without waiting.
#[derive(Debug)]
pub struct TelemetryServer {
    server: HttpServer,
}

impl TelemetryServer {
    /// The address the endpoint listens on (the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops accepting, lets requests in flight finish for up to a second, and returns once
    /// the listener is closed and every connection is done.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Binds `addr` (port 0 picks a free port) and serves [`router`] on a task of the current tokio
/// runtime. Returns once the socket is bound.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
) -> Result<TelemetryServer, TelemetryError> {
    let server = HttpServer::bind(addr, "telemetry", router(registry, health)).await?;
    Ok(TelemetryServer { server })
}

/// `GET /metrics`, `GET /healthz` (liveness: the process answers) and `GET /readyz` (200
/// `ready`, or 503 with the reason); `HEAD` works too, other methods get 405, other paths 404.
/// Mount it in another router to serve the endpoints beside other routes.
pub fn router(registry: Arc<Registry>, health: Arc<Health>) -> Router {
    let endpoints = Arc::new(Endpoints { registry, health });
    Router::new()
        .route("/metrics", any(metrics))
        .route("/healthz", any(healthz))
        .route("/readyz", any(readyz))
        .fallback(|| async { text_response(StatusCode::NOT_FOUND, "not found") })
        .with_state(endpoints)
}

/// What the routes answer from.
struct Endpoints {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

type Shared = State<Arc<Endpoints>>;

fn readable(request: &Request) -> bool {
    matches!(*request.method(), Method::GET | Method::HEAD)
}

/// Renders on the blocking pool: scrape callbacks may take locks or do some work.
async fn metrics(State(endpoints): Shared, request: Request) -> Response<Body> {
    if !readable(&request) {
        return method_not_allowed();
    }
    let registry = Arc::clone(&endpoints.registry);
    match tokio::task::spawn_blocking(move || registry.render()).await {
        Ok(body) => response(StatusCode::OK, METRICS_CONTENT_TYPE, body),
        Err(error) => {
            tracing::warn!(%error, "telemetry metrics render failed");
            text_response(StatusCode::INTERNAL_SERVER_ERROR, "metrics render failed")
        }
    }
}

async fn healthz(request: Request) -> Response<Body> {
    if !readable(&request) {
        return method_not_allowed();
    }
    text_response(StatusCode::OK, "ok")
}

async fn readyz(State(endpoints): Shared, request: Request) -> Response<Body> {
    if !readable(&request) {
        return method_not_allowed();
    }
    match endpoints.health.readiness() {
        Ok(()) => text_response(StatusCode::OK, "ready"),
        Err(reason) => text_response(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

fn method_not_allowed() -> Response<Body> {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

fn text_response(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    response(status, TEXT_CONTENT_TYPE, body)
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
