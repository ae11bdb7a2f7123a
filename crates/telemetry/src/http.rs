//! The HTTP/1.1 serving both of our small servers share (this crate's endpoint and mock-llm):
//! one connection with keep-alive that finishes its request in flight when told to stop, and
//! the drain of a server's connections at shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper::Response;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Serves one connection with `handler` until the client closes it or `stopped` changes; then
/// the request in flight is finished and the connection closed. Any body type works: most
/// answers are an `http_body_util::Full` body, mock-llm streams its oversized ones.
pub async fn serve_http1<F, Fut, B>(
    stream: TcpStream,
    handler: F,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    F: Fn(hyper::Request<Incoming>) -> Fut,
    Fut: Future<Output = Response<B>>,
    B: hyper::body::Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = hyper::service::service_fn(move |request| {
        let answer = handler(request);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Waits up to `grace` for a stopped server's connections to finish, then aborts the rest;
/// returns how many were cut off.
pub async fn drain_connections(mut connections: JoinSet<()>, grace: Duration) -> usize {
    let finished = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_ok() {
        return 0;
    }
    let left = connections.len();
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    left
}
