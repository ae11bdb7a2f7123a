//! A small load generator for mock-llm: N keep-alive HTTP/1.1 connections send a fixed number
//! of chat completion requests (a researchqa prompt) as fast as the server answers, then print
//! requests/s, latency percentiles and the server's `/stats`.
//!
//! `cargo run --release -p rubricmill-mock-llm --example load -- --url http://127.0.0.1:PORT/v1`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Args {
    /// Base URL of the server, `http://HOST:PORT/v1`.
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests to send in all.
    #[arg(long, default_value_t = 200_000)]
    requests: i64,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    other: u64,
    latencies_us: Vec<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// `host:port` and the path prefix of an `http://` URL.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((
        authority.to_owned(),
        format!("/{}", path.trim_end_matches('/')),
    ))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (authority, prefix) = split_url(&args.url)?;
    let addr: SocketAddr = tokio::net::lookup_host(&authority)
        .await?
        .next()
        .context("the host did not resolve")?;
    let body = Bytes::from(serde_json::to_vec(&json!({
        "model": "bench",
        "temperature": 0.0,
        "max_tokens": 1024,
        "messages": [
            {"role": "system", "content": "You write research questions and rubrics from survey sections."},
            {"role": "user", "content": "<max_items>6</max_items>\n<section_heading>4 Evaluation › 4.1 Rubric-based grading</section_heading>\n<section_text>Rubric-based grading asks judges to score answers against explicit criteria. Criteria written by experts improve agreement, while automatically generated rubrics scale to many questions.</section_text>\n<cited_works>\n[3] Kim (2023). Rubric grading\n</cited_works>"}
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "researchqa_query_rubric", "schema": {"type": "object"}}}
    }))?);
    let uri = format!("{prefix}/chat/completions");
    let remaining = Arc::new(AtomicI64::new(args.requests));

    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (uri, authority, body, remaining) = (
            uri.clone(),
            authority.clone(),
            body.clone(),
            Arc::clone(&remaining),
        );
        workers.spawn(async move { connection(addr, uri, authority, body, remaining).await });
    }
    let mut total = Tally::default();
    while let Some(joined) = workers.join_next().await {
        let tally = joined??;
        total.ok += tally.ok;
        total.other += tally.other;
        total.latencies_us.extend(tally.latencies_us);
    }
    let elapsed = started.elapsed();

    let sent = total.ok + total.other;
    total.latencies_us.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if total.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((total.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(total.latencies_us[index]) / 1000.0
    };
    println!(
        "requests: {sent} ({} ok, {} other) over {} connections in {:.2} s",
        total.ok,
        total.other,
        args.connections,
        elapsed.as_secs_f64()
    );
    println!("requests/s: {:.0}", sent as f64 / elapsed.as_secs_f64());
    println!(
        "latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
        percentile(0.5),
        percentile(0.99),
        percentile(1.0)
    );
    println!("server /stats: {}", fetch_stats(addr, &authority).await?);
    if total.other > 0 {
        bail!("{} requests were not answered 200", total.other);
    }
    Ok(())
}

async fn connection(
    addr: SocketAddr,
    uri: String,
    authority: String,
    body: Bytes,
    remaining: Arc<AtomicI64>,
) -> anyhow::Result<Tally> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(driver);
    let mut tally = Tally::default();
    while remaining.fetch_sub(1, Ordering::Relaxed) > 0 {
        sender.ready().await?;
        let request = Request::post(uri.as_str())
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))?;
        let sent = Instant::now();
        let response = sender.send_request(request).await?;
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        tally.latencies_us.push(micros);
        if ok {
            tally.ok += 1;
        } else {
            tally.other += 1;
        }
    }
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
    Ok(tally)
}

async fn fetch_stats(addr: SocketAddr, authority: &str) -> anyhow::Result<String> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(driver);
    let request = Request::get("/stats")
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
