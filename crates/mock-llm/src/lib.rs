//! `mock-llm`: an OpenAI-compatible HTTP server for tests, benchmarks and dry runs, which also
//! speaks Azure OpenAI's and Anthropic's addressing.
//!
//! It answers `POST /v1/chat/completions` through the simulated provider's
//! [`simulated_answer`](rubricmill_llm::simulated::simulated_answer), so the pipelines' tasks
//! (researchqa, crg, reference with its self-check grader and degraded answer, nuggets with
//! their support check, score responses) get valid, deterministic, task-aware JSON. The same answers come from Azure's
//! `POST /openai/deployments/{deployment}/chat/completions?api-version=…` (key in `api-key`;
//! 400 without `api-version`) and from Anthropic's `POST /v1/messages` (key in `x-api-key`,
//! `anthropic-version` required, a forced tool answered as a `tool_use` block, prompt caching
//! simulated per system text; see the `anthropic` module). Successful answers announce the
//! `--rpm` / `--tpm` limits per minute in `x-ratelimit-limit-*` (`anthropic-ratelimit-*` on
//! messages) with what remains. It can be slow (fixed, uniform or lognormal
//! latency, plus a cost per output token), enforce rate limits (RPM, TPM, RPS with a burst)
//! with 429s that carry `Retry-After`, `retry-after-ms` and `x-ratelimit-*` headers, and inject
//! faults by rate (500, 503, hangs, malformed JSON, truncation, context length). It can also act
//! like real servers that refuse a response format (json_schema or json_object, with the status
//! they use: llama-cpp-python answers 500) or send a runaway answer (a streamed body of any
//! size). `GET /v1/models`, `GET /stats` (`?window_ms=N` adds sliding-window maxima) and `GET
//! /health` complete it.
//!
//! Batch APIs, kept in memory: OpenAI's `POST /v1/files` (multipart), `GET /v1/files`
//! (`?purpose=`, `limit`, `after`), `GET /v1/files/{id}` and `/content`, `POST /v1/batches`,
//! `GET /v1/batches/{id}`, `GET /v1/batches` (`limit`, `after`), `POST
//! /v1/batches/{id}/cancel`; the same under Azure OpenAI's `/openai/...?api-version=` with the
//! `api-key` header; Anthropic's `POST /v1/messages/batches`, `GET /v1/messages/batches/{id}`,
//! `/results`, `/cancel` and the listing, with `x-api-key`. Items are answered by the online
//! path's simulated answer and fault draw; `batch_delay_ms`, `batch_item_failure_rate`,
//! `batch_expire_rate` and `batch_max_bytes` shape processing, and [`BatchStats`] in `/stats`
//! counts files, batches (by name), and items answered and failed.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use rubricmill_mock_llm::{MockConfig, MockServer};
//! let server = MockServer::start(MockConfig { rps: Some(20.0), burst: Some(20), ..MockConfig::default() }).await?;
//! let base_url = server.base_url(); // http://127.0.0.1:PORT/v1
//! # let _ = base_url;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod anthropic;
mod batches;
mod config;
mod faults;
mod limits;
mod server;
mod stats;

pub use config::{ApiKey, Latency, LogNormalMs, MockConfig, UniformMs};
pub use server::MockServer;
pub use stats::{BatchStats, RecordedRequest, Stats, WindowMaxima, max_in_window};

use anyhow::Context;
use tracing::info;

/// Runs the server for the CLI: starts it, prints `mock-llm listening on http://ADDR/v1` on
/// stdout, serves until Ctrl-C or SIGTERM, then prints the stats as JSON on stdout.
pub async fn run(config: MockConfig) -> anyhow::Result<()> {
    let server = MockServer::start(config)
        .await
        .context("could not start mock-llm")?;
    println!("mock-llm listening on {}", server.base_url());
    wait_for_stop_signal().await?;
    info!("mock-llm stopping");
    let stats = server.shutdown_with_stats().await;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("could not listen for ctrl-c")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("could not listen for ctrl-c")
}
