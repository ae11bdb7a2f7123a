//! Integration tests: rendering through the public API, and a real server on 127.0.0.1:0
//! queried with raw HTTP/1.1 over a `TcpStream`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rubricmill_telemetry::{
    CounterExt, Health, ProcessCollector, Registry, TelemetryError, TelemetryServer, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---- rendering ----

/// The sample lines of a render (no comments), to compare regardless of children's order.
fn samples(rendered: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = rendered.lines().filter(|l| !l.starts_with('#')).collect();
    lines.sort_unstable();
    lines
}

#[test]
fn counter_without_labels_renders_from_zero() {
    let registry = Registry::new("rm");
    let shards = registry.counter("shards_total", "Shards committed.", &[]);
    assert_eq!(
        registry.render(),
        "# HELP rm_shards Shards committed.\n# TYPE rm_shards counter\nrm_shards_total 0.0\n# EOF\n"
    );
    let shard = shards.with(&[]);
    shard.inc();
    shard.inc_by(2.0);
    assert_eq!(shard.get(), 3.0);
    assert_eq!(samples(&registry.render()), ["rm_shards_total 3.0"]);
    shard.inc_by(0.5);
    assert_eq!(samples(&registry.render()), ["rm_shards_total 3.5"]);
}

#[test]
fn labelled_families_render_every_child() {
    let registry = Registry::new("rm");
    let inflight = registry.gauge(
        "shards_in_flight",
        "Shards being worked on.",
        &["pipeline", "worker"],
    );
    inflight.with(&["survey", "w1"]).set(2.0);
    inflight.with(&["crg", "w2"]).set(-1.5);
    inflight.with(&["crg", "w1"]).set(7.0);
    let requests = registry.counter("requests_total", "Requests", &["status"]);
    requests.with(&["500"]).inc();
    let rendered = registry.render();
    assert!(
        rendered.contains("# HELP rm_requests Requests.\n# TYPE rm_requests counter\n"),
        "{rendered}"
    );
    assert!(
        rendered.contains(
            "# HELP rm_shards_in_flight Shards being worked on.\n# TYPE rm_shards_in_flight gauge\n"
        ),
        "{rendered}"
    );
    assert_eq!(
        samples(&rendered),
        [
            "rm_requests_total{status=\"500\"} 1.0",
            "rm_shards_in_flight{pipeline=\"crg\",worker=\"w1\"} 7.0",
            "rm_shards_in_flight{pipeline=\"crg\",worker=\"w2\"} -1.5",
            "rm_shards_in_flight{pipeline=\"survey\",worker=\"w1\"} 2.0",
        ]
    );
}

#[test]
fn labelled_family_without_children_renders_nothing() {
    let registry = Registry::new("rm");
    let depth = registry.gauge("queue_depth", "Deliveries waiting.", &["queue"]);
    assert_eq!(registry.render(), "# EOF\n");
    depth.with(&["q"]).set(1.0);
    assert_eq!(
        samples(&registry.render()),
        ["rm_queue_depth{queue=\"q\"} 1.0"]
    );
}

#[test]
fn empty_namespace_adds_no_prefix() {
    let registry = Registry::new("");
    registry.gauge("up", "Up", &[]).with(&[]).set(1.0);
    assert_eq!(samples(&registry.render()), ["up 1.0"]);
}

#[test]
fn histograms_render_cumulative_buckets_sum_and_count() {
    let registry = Registry::new("rm");
    let latency = registry.histogram(
        "call_duration_seconds",
        "Call latency.",
        &["model", "outcome"],
        &[0.1, 1.0, 10.0],
    );
    let ok = latency.with(&["m", "ok"]);
    for seconds in [0.05, 0.5, 0.7, 20.0] {
        ok.observe(seconds);
    }
    let rendered = registry.render();
    assert!(
        rendered.contains("# TYPE rm_call_duration_seconds histogram\n"),
        "{rendered}"
    );
    assert_eq!(
        samples(&rendered),
        [
            "rm_call_duration_seconds_bucket{le=\"+Inf\",model=\"m\",outcome=\"ok\"} 4",
            "rm_call_duration_seconds_bucket{le=\"0.1\",model=\"m\",outcome=\"ok\"} 1",
            "rm_call_duration_seconds_bucket{le=\"1.0\",model=\"m\",outcome=\"ok\"} 3",
            "rm_call_duration_seconds_bucket{le=\"10.0\",model=\"m\",outcome=\"ok\"} 3",
            "rm_call_duration_seconds_count{model=\"m\",outcome=\"ok\"} 4",
            "rm_call_duration_seconds_sum{model=\"m\",outcome=\"ok\"} 21.25",
        ]
    );
}

#[test]
fn process_collector_renders_unprefixed_process_metrics() {
    let registry = Registry::new("rm");
    registry.collector(Box::new(ProcessCollector));
    let rendered = registry.render();
    if !cfg!(target_os = "linux") {
        assert_eq!(rendered, "# EOF\n");
        return;
    }
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
        "process_threads ",
    ] {
        let line = rendered
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} in\n{rendered}"));
        let value: f64 = line[name.len()..].parse().unwrap();
        assert!(value > 0.0 || name.starts_with("process_cpu"), "{line}");
    }
}

#[test]
fn label_values_and_help_are_escaped() {
    let registry = Registry::new("rm");
    let files = registry.gauge("file_bytes", "Bytes per file.\nSee C:\\docs.", &["file"]);
    files.with(&["a\\b \"quoted\"\nnext"]).set(1.0);
    let rendered = registry.render();
    assert!(
        rendered.contains("# HELP rm_file_bytes Bytes per file.\\nSee C:\\\\docs.\n"),
        "{rendered}"
    );
    assert!(
        rendered.contains("rm_file_bytes{file=\"a\\\\b \\\"quoted\\\"\\nnext\"} 1.0\n"),
        "{rendered}"
    );
}

#[test]
fn set_total_raises_but_never_lowers() {
    let registry = Registry::new("rm");
    let tokens = registry.counter("tokens_total", "Tokens.", &[]).with(&[]);
    tokens.set_total(10.0);
    assert_eq!(tokens.get(), 10.0);
    tokens.set_total(4.0);
    assert_eq!(tokens.get(), 10.0);
    tokens.set_total(f64::NAN);
    assert_eq!(tokens.get(), 10.0);
    tokens.set_total(12.5);
    assert_eq!(tokens.get(), 12.5);
    tokens.inc();
    assert_eq!(tokens.get(), 13.5);
}

#[test]
fn gauge_goes_up_and_down() {
    let registry = Registry::new("rm");
    let gauge = registry.gauge("slots", "Free slots.", &[]).with(&[]);
    gauge.set(5.0);
    gauge.inc();
    gauge.dec();
    gauge.dec();
    gauge.dec_by(2.5);
    assert_eq!(gauge.get(), 1.5);
    gauge.inc_by(0.5);
    assert_eq!(gauge.get(), 2.0);
}

#[test]
fn concurrent_increments_are_not_lost() {
    let registry = Registry::new("rm");
    let counter = registry.counter("hits_total", "Hits.", &["kind"]);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..1000 {
                    counter.with(&["a"]).inc();
                }
            });
        }
    });
    assert_eq!(counter.with(&["a"]).get(), 4000.0);
}

#[test]
fn registering_the_same_family_twice_shares_it() {
    let registry = Registry::new("rm");
    let first = registry.counter("jobs_total", "Jobs.", &["state"]);
    let second = registry.counter("jobs_total", "Jobs.", &["state"]);
    first.with(&["done"]).inc();
    assert_eq!(second.with(&["done"]).get(), 1.0);
    assert_eq!(
        registry.render().matches("# TYPE rm_jobs counter").count(),
        1
    );
}

#[test]
fn on_scrape_runs_before_each_render() {
    let registry = Registry::new("rm");
    let processed = registry.counter("records_total", "Records.", &[]).with(&[]);
    let source = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    {
        let (source, calls) = (Arc::clone(&source), Arc::clone(&calls));
        registry.on_scrape(Box::new(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            processed.set_total(source.load(Ordering::SeqCst) as f64);
        }));
    }
    source.store(41, Ordering::SeqCst);
    assert!(registry.render().contains("rm_records_total 41.0\n"));
    source.store(42, Ordering::SeqCst);
    assert!(registry.render().contains("rm_records_total 42.0\n"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
#[should_panic(expected = "1 label values given for the label names [\"pipeline\", \"status\"]")]
fn too_few_label_values_panic() {
    let registry = Registry::new("rm");
    registry
        .counter("calls_total", "Calls.", &["pipeline", "status"])
        .with(&["crg"]);
}

#[test]
#[should_panic(expected = "2 label values given for the label names []")]
fn label_values_for_an_unlabelled_family_panic() {
    let registry = Registry::new("rm");
    registry.gauge("up", "Up.", &[]).with(&["a", "b"]);
}

#[test]
#[should_panic(expected = "counter \"rm_shards\" must end in `_total`")]
fn counter_without_total_suffix_panics() {
    let registry = Registry::new("rm");
    registry.counter("shards", "Shards.", &[]);
}

#[test]
#[should_panic(expected = "is not a valid Prometheus name")]
fn invalid_metric_name_panics() {
    let registry = Registry::new("rm");
    registry.gauge("queue-depth", "Depth.", &[]);
}

#[test]
#[should_panic(expected = "label name \"__name\" is not a valid Prometheus label name")]
fn reserved_label_name_panics() {
    let registry = Registry::new("rm");
    registry.gauge("depth", "Depth.", &["__name"]);
}

#[test]
#[should_panic(expected = "label name \"a\" appears twice")]
fn duplicate_label_name_panics() {
    let registry = Registry::new("rm");
    registry.gauge("depth", "Depth.", &["a", "a"]);
}

#[test]
#[should_panic(
    expected = "metric \"rm_depth\" is already registered with another type or other label names"
)]
fn same_name_with_other_labels_panics() {
    let registry = Registry::new("rm");
    registry.gauge("depth", "Depth.", &["queue"]);
    registry.gauge("depth", "Depth.", &["stream"]);
}

// ---- server ----

/// A parsed HTTP/1.1 answer.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the telemetry server did not answer within 10 s");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("an HTTP answer with a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

async fn start(registry: Arc<Registry>, health: Arc<Health>) -> TelemetryServer {
    serve("127.0.0.1:0".parse().unwrap(), registry, health)
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_endpoint_serves_the_rendered_registry_and_runs_callbacks_per_scrape() {
    let registry = Registry::new("rubricmill");
    let committed = registry.counter("shards_committed_total", "Shards committed", &["pipeline"]);
    committed.with(&["crg"]).inc_by(3.0);
    let scrapes = registry.gauge("scrapes", "Scrapes seen.", &[]).with(&[]);
    let scrape_gauge = scrapes.clone();
    registry.on_scrape(Box::new(move || {
        scrape_gauge.inc();
    }));
    let server = start(Arc::clone(&registry), Health::new()).await;

    let first = request(server.local_addr(), "GET", "/metrics").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        first
            .body
            .contains("# TYPE rubricmill_shards_committed counter\n"),
        "{}",
        first.body
    );
    assert!(
        first
            .body
            .contains("rubricmill_shards_committed_total{pipeline=\"crg\"} 3.0\n"),
        "{}",
        first.body
    );
    assert!(
        first.body.contains("rubricmill_scrapes 1.0\n"),
        "{}",
        first.body
    );

    let second = request(server.local_addr(), "GET", "/metrics?fresh=1").await;
    assert!(
        second.body.contains("rubricmill_scrapes 2.0\n"),
        "{}",
        second.body
    );
    assert_eq!(scrapes.get(), 2.0);
    server.shutdown().await;
}

#[tokio::test]
async fn readyz_follows_the_health_state() {
    let health = Health::new();
    let server = start(Registry::new("rm"), Arc::clone(&health)).await;
    let addr = server.local_addr();

    let starting = request(addr, "GET", "/readyz").await;
    assert_eq!((starting.status, starting.body.as_str()), (503, "starting"));

    health.set_ready();
    let ready = request(addr, "GET", "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready"));

    health.set_not_ready("draining: sigterm");
    let draining = request(addr, "GET", "/readyz").await;
    assert_eq!(
        (draining.status, draining.body.as_str()),
        (503, "draining: sigterm")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_answers_ok_whatever_the_readiness() {
    let server = start(Registry::new("rm"), Health::new()).await;
    let reply = request(server.local_addr(), "GET", "/healthz").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let server = start(Registry::new("rm"), Health::new()).await;
    let addr = server.local_addr();
    assert_eq!(request(addr, "GET", "/").await.status, 404);
    assert_eq!(request(addr, "GET", "/metricsx").await.status, 404);
    assert_eq!(request(addr, "POST", "/nowhere").await.status, 404);
    let post = request(addr, "POST", "/metrics").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_connection_serves_several_requests() {
    let server = start(Registry::new("rm"), Health::new()).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let two = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(two.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 1, "{raw}");
    assert_eq!(
        raw.matches("HTTP/1.1 503 Service Unavailable").count(),
        1,
        "{raw}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let server = start(Registry::new("rm"), Health::new()).await;
    let addr = server.local_addr();
    assert_eq!(request(addr, "GET", "/healthz").await.status, 200);
    server.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let server = start(Registry::new("rm"), Health::new()).await;
    let addr = server.local_addr();
    drop(server);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting 5 s after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn binding_a_taken_address_reports_it() {
    let server = start(Registry::new("rm"), Health::new()).await;
    let taken = server.local_addr();
    let error = serve(taken, Registry::new("rm"), Health::new())
        .await
        .unwrap_err();
    match &error {
        TelemetryError::Bind { addr, source, .. } => {
            assert_eq!(*addr, taken);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!("could not bind the telemetry endpoint to {taken}")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_router_mounts_beside_other_routes() {
    use rubricmill_http::HttpServer;
    use rubricmill_http::axum::{Router, routing::get};

    let registry = Registry::new("rm");
    registry.gauge("up", "Up", &[]).with(&[]).set(1.0);
    let app = Router::new()
        .route("/other", get(|| async { "other" }))
        .merge(rubricmill_telemetry::router(registry, Health::new()));
    let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), "test", app)
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(request(addr, "GET", "/other").await.body, "other");
    let metrics = request(addr, "GET", "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("\nrm_up 1.0\n"), "{}", metrics.body);
    assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);
    server.shutdown().await;
}
