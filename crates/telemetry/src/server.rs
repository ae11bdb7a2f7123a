//! The HTTP/1.1 server: the accept loop, one task per connection, and the three routes.
//!
//! Stopping (by [`TelemetryServer::shutdown`] or by dropping the handle) closes the listener at
//! once, asks open connections to finish their current request, and cuts off whatever is left
//! after [`SHUTDOWN_GRACE`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::http::{drain_connections, serve_http1};
use crate::{Health, Registry};

/// The content type of `GET /metrics`: the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of every other answer.
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// How long a stop waits for requests in flight before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors and the like), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Body = Full<Bytes>;

/// Why the telemetry endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The listening socket could not be bound.
    #[error("could not bind the telemetry endpoint to {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        source: io::Error,
    },
    /// The bound socket did not tell its address.
    #[error("could not read the local address of the telemetry endpoint bound to {addr}")]
    LocalAddr {
        /// The address asked for.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
}

/// A running telemetry endpoint. Dropping it stops it too, without waiting.
#[derive(Debug)]
pub struct TelemetryServer {
    addr: SocketAddr,
    /// Sending `true`, or dropping it, stops the accept loop.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TelemetryServer {
    /// The address the endpoint listens on (the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish for up to a second, and returns once
    /// the listener is closed and every connection is done.
    pub async fn shutdown(self) {
        let TelemetryServer { addr, stop, task } = self;
        stop.send_replace(true);
        if let Err(error) = task.await {
            tracing::warn!(%error, "telemetry accept loop ended abnormally");
        }
        tracing::info!(addr = %addr, "telemetry endpoint stopped");
    }
}

/// Binds `addr` (port 0 picks a free port) and serves `/metrics`, `/healthz` and `/readyz` on
/// a task of the current tokio runtime. Returns once the socket is bound.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
) -> Result<TelemetryServer, TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| TelemetryError::LocalAddr { addr, source })?;
    let (stop, stopped) = watch::channel(false);
    let endpoints = Arc::new(Endpoints { registry, health });
    let task = tokio::spawn(accept_loop(listener, endpoints, stopped));
    tracing::info!(addr = %local_addr, "telemetry endpoint listening");
    Ok(TelemetryServer {
        addr: local_addr,
        stop,
        task,
    })
}

/// What the routes answer from.
struct Endpoints {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

async fn accept_loop(
    listener: TcpListener,
    endpoints: Arc<Endpoints>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let connection = serve_connection(stream, peer, Arc::clone(&endpoints), stopped.clone());
                    connections.spawn(connection);
                }
                Err(error) => {
                    tracing::warn!(%error, "telemetry accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            // A stop, or the handle dropped (the sender with it): either way, stop.
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    drain(connections).await;
}

/// Waits up to [`SHUTDOWN_GRACE`] for the connections, then aborts the rest.
async fn drain(connections: JoinSet<()>) {
    let left = drain_connections(connections, SHUTDOWN_GRACE).await;
    if left > 0 {
        tracing::debug!(left, "telemetry cut off connections at shutdown");
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    endpoints: Arc<Endpoints>,
    stopped: watch::Receiver<bool>,
) {
    let handler = move |request| {
        let endpoints = Arc::clone(&endpoints);
        async move { endpoints.respond(&request).await }
    };
    if let Err(error) = serve_http1(stream, handler, stopped).await {
        tracing::debug!(%peer, %error, "telemetry connection ended with an error");
    }
}

impl Endpoints {
    async fn respond(&self, request: &Request<Incoming>) -> Response<Body> {
        let readable = matches!(*request.method(), Method::GET | Method::HEAD);
        match (readable, request.uri().path()) {
            (true, "/metrics") => self.metrics().await,
            (true, "/healthz") => text_response(StatusCode::OK, "ok"),
            (true, "/readyz") => self.readiness(),
            (false, "/metrics" | "/healthz" | "/readyz") => method_not_allowed(),
            _ => text_response(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Renders on the blocking pool: scrape callbacks may take locks or do some work.
    async fn metrics(&self) -> Response<Body> {
        let registry = Arc::clone(&self.registry);
        match tokio::task::spawn_blocking(move || registry.render()).await {
            Ok(body) => response(StatusCode::OK, METRICS_CONTENT_TYPE, body),
            Err(error) => {
                tracing::warn!(%error, "telemetry metrics render failed");
                text_response(StatusCode::INTERNAL_SERVER_ERROR, "metrics render failed")
            }
        }
    }

    fn readiness(&self) -> Response<Body> {
        match self.health.readiness() {
            Ok(()) => text_response(StatusCode::OK, "ready"),
            Err(reason) => text_response(StatusCode::SERVICE_UNAVAILABLE, reason),
        }
    }
}

fn method_not_allowed() -> Response<Body> {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, TEXT_CONTENT_TYPE, body)
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
