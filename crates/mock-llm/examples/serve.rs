//! A standalone mock-llm server, the same as `rubricmill mock-llm`, for benchmarks of the
//! server alone: `cargo run --release -p rubricmill-mock-llm --example serve -- --rps 20 --burst 20`.

use clap::Parser;
use rubricmill_mock_llm::MockConfig;

/// OpenAI-compatible mock LLM server.
#[derive(Parser, Debug)]
#[command(name = "mock-llm")]
struct Cli {
    #[command(flatten)]
    config: MockConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    rubricmill_mock_llm::run(Cli::parse().config).await
}
