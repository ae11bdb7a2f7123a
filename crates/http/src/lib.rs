//! The one way rubricmill serves HTTP: every server of ours (the telemetry endpoint, the web UI,
//! mock-llm) is an [`axum::Router`] handed to [`HttpServer::bind`].
//!
//! - HTTP/1.1 with keep-alive (and `TCP_NODELAY`: small answers leave at once), one task per
//!   connection, on the current tokio runtime.
//! - [`ServeOptions::on_accept`] is told about every accepted connection (mock-llm counts them).
//! - Each request carries the peer's address as an [`axum::extract::ConnectInfo`] extension.
//! - [`HttpServer::shutdown`] closes the listener at once, lets requests in flight finish for up
//!   to a grace period (hyper-util's graceful shutdown), then cuts off whatever is left, so a
//!   slow or never-ending client cannot hold a process that is stopping.
//!
//! ```no_run
//! # async fn example() -> Result<(), rubricmill_http::HttpError> {
//! use axum::{Router, routing::get};
//! use rubricmill_http::HttpServer;
//!
//! let router = Router::new().route("/healthz", get(|| async { "ok" }));
//! let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), "example", router).await?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

pub use axum;

/// How long a stop waits for requests in flight before cutting them off, unless
/// [`HttpServer::with_grace`] says otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors and the like), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The listening socket could not be bound.
    #[error("could not bind the {server} endpoint to {addr}")]
    Bind {
        /// Which server (`telemetry`, `ui`, `mock-llm`).
        server: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        source: io::Error,
    },
    /// The bound socket did not tell its address.
    #[error("could not read the local address of the {server} endpoint")]
    LocalAddr {
        /// Which server.
        server: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// Told the peer address of every connection accepted.
pub type AcceptHook = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// How [`HttpServer::serve_with`] serves.
#[derive(Clone)]
pub struct ServeOptions {
    /// How long a stop waits for requests in flight before cutting them off.
    pub grace: Duration,
    /// Called with the peer's address when a connection is accepted, before its first request.
    pub on_accept: Option<AcceptHook>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_SHUTDOWN_GRACE,
            on_accept: None,
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("grace", &self.grace)
            .field("on_accept", &self.on_accept.is_some())
            .finish()
    }
}

/// A running server. Dropping it stops it too, without waiting for requests in flight.
#[derive(Debug)]
pub struct HttpServer {
    name: &'static str,
    addr: SocketAddr,
    /// Sending `true`, or dropping it, stops the accept loop.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves `router` on a task of the current
    /// tokio runtime, with the default grace period. Returns once the socket is bound.
    pub async fn bind(
        addr: SocketAddr,
        name: &'static str,
        router: Router,
    ) -> Result<HttpServer, HttpError> {
        Self::bind_with_grace(addr, name, router, DEFAULT_SHUTDOWN_GRACE).await
    }

    /// [`HttpServer::bind`] with another grace period for requests in flight at shutdown.
    pub async fn bind_with_grace(
        addr: SocketAddr,
        name: &'static str,
        router: Router,
        grace: Duration,
    ) -> Result<HttpServer, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind {
                server: name,
                addr,
                source,
            })?;
        Self::serve(listener, name, router, grace)
    }

    /// Serves `router` on a listener the caller bound.
    pub fn serve(
        listener: TcpListener,
        name: &'static str,
        router: Router,
        grace: Duration,
    ) -> Result<HttpServer, HttpError> {
        let options = ServeOptions {
            grace,
            ..ServeOptions::default()
        };
        Self::serve_with(listener, name, router, options)
    }

    /// Serves `router` on a listener the caller bound, with `options`.
    pub fn serve_with(
        listener: TcpListener,
        name: &'static str,
        router: Router,
        options: ServeOptions,
    ) -> Result<HttpServer, HttpError> {
        let addr = listener
            .local_addr()
            .map_err(|source| HttpError::LocalAddr {
                server: name,
                source,
            })?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, name, router, options, stopped));
        tracing::info!(server = name, %addr, "http endpoint listening");
        Ok(HttpServer {
            name,
            addr,
            stop,
            task,
        })
    }

    /// The address the server listens on (the actual port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish within the grace period, and returns
    /// once the listener is closed and every connection is done.
    pub async fn shutdown(self) {
        let HttpServer {
            name,
            addr,
            stop,
            task,
        } = self;
        stop.send_replace(true);
        if let Err(error) = task.await {
            tracing::warn!(server = name, %error, "http accept loop ended abnormally");
        }
        tracing::info!(server = name, %addr, "http endpoint stopped");
    }
}

async fn accept_loop(
    listener: TcpListener,
    name: &'static str,
    router: Router,
    options: ServeOptions,
    mut stopped: watch::Receiver<bool>,
) {
    let ServeOptions { grace, on_accept } = options;
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(server = name, %peer, %error, "http could not set TCP_NODELAY");
                    }
                    if let Some(hook) = &on_accept {
                        hook(peer);
                    }
                    let router = router.clone();
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        router.clone().oneshot(request)
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(server = name, %peer, %error, "http connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(server = name, %error, "http accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            // A stop, or the handle dropped (the sender with it): either way, stop.
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok()
    {
        while connections.join_next().await.is_some() {}
        return;
    }
    let left = connections.len();
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    tracing::debug!(server = name, left, "http connections cut off at shutdown");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn serves_routes_and_tells_the_peer() {
        let router =
            Router::new()
                .route("/hello", get(|| async { "hello" }))
                .route(
                    "/peer",
                    get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                        peer.ip().to_string()
                    }),
                );
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), "test", router)
            .await
            .unwrap();
        let base = format!("http://{}", server.local_addr());
        let hello = reqwest::get(format!("{base}/hello")).await.unwrap();
        assert_eq!(hello.status(), 200);
        assert_eq!(hello.text().await.unwrap(), "hello");
        let peer = reqwest::get(format!("{base}/peer")).await.unwrap();
        assert_eq!(peer.text().await.unwrap(), "127.0.0.1");
        let missing = reqwest::get(format!("{base}/missing")).await.unwrap();
        assert_eq!(missing.status(), 404);
        server.shutdown().await;
        assert!(reqwest::get(format!("{base}/hello")).await.is_err());
    }

    #[tokio::test]
    async fn a_request_in_flight_finishes_within_the_grace_period() {
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
        let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
        let router = Router::new().route(
            "/slow",
            get(move || {
                let entered_tx = Arc::clone(&entered_tx);
                async move {
                    if let Some(tx) = entered_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    "done"
                }
            }),
        );
        let server = HttpServer::bind_with_grace(
            "127.0.0.1:0".parse().unwrap(),
            "test",
            router,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let url = format!("http://{}/slow", server.local_addr());
        let request = tokio::spawn(async move { reqwest::get(url).await?.text().await });
        entered_rx.await.unwrap();
        server.shutdown().await;
        assert_eq!(request.await.unwrap().unwrap(), "done");
    }

    #[tokio::test]
    async fn a_request_beyond_the_grace_period_is_cut_off() {
        let finished = Arc::new(AtomicBool::new(false));
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
        let entered_tx = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
        let router = {
            let finished = Arc::clone(&finished);
            Router::new().route(
                "/never",
                get(move || {
                    let finished = Arc::clone(&finished);
                    let entered_tx = Arc::clone(&entered_tx);
                    async move {
                        if let Some(tx) = entered_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                        std::future::pending::<()>().await;
                        finished.store(true, Ordering::SeqCst);
                        "never"
                    }
                }),
            )
        };
        let server = HttpServer::bind_with_grace(
            "127.0.0.1:0".parse().unwrap(),
            "test",
            router,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
        let url = format!("http://{}/never", server.local_addr());
        let request = tokio::spawn(async move { reqwest::get(url).await?.text().await });
        entered_rx.await.unwrap();
        server.shutdown().await;
        assert!(request.await.unwrap().is_err(), "the client sees the cut");
        assert!(!finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn the_accept_hook_sees_every_connection_once() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let options = ServeOptions {
            on_accept: Some({
                let (accepted, peers) = (Arc::clone(&accepted), Arc::clone(&peers));
                Arc::new(move |peer: SocketAddr| {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    peers.lock().unwrap().push(peer);
                })
            }),
            ..ServeOptions::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let router = Router::new().route("/hello", get(|| async { "hello" }));
        let server = HttpServer::serve_with(listener, "test", router, options).unwrap();
        let url = format!("http://{}/hello", server.local_addr());
        // One client keeps its connection alive over two requests; a second client opens another.
        let client = reqwest::Client::new();
        for _ in 0..2 {
            let answer = client.get(&url).send().await.unwrap();
            assert_eq!(answer.text().await.unwrap(), "hello");
        }
        let other = reqwest::Client::new();
        assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
        server.shutdown().await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let peers = peers.lock().unwrap();
        assert!(
            peers.iter().all(|peer| peer.ip().is_loopback()),
            "{peers:?}"
        );
        assert_ne!(peers[0], peers[1]);
    }
}
