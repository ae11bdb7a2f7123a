//! `rubricmill`: build rubric datasets from survey articles and preference pairs. This binary
//! only parses arguments, sets up logging and prints; the work lives in the library crates.

mod args;
mod cluster;
mod export;
mod logging;
mod progress;
mod run;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// jemalloc keeps peak memory flat over long runs, where glibc's per-thread arenas grow with
/// the blocking threads that file I/O and Parquet encoding use (scripts/bench-embedded.sh).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "rubricmill",
    version,
    about = "Build rubric datasets from survey articles and preference pairs at corpus scale"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter (overrides RUST_LOG), e.g. `info` or `rubricmill_runtime=debug`.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job in this process (embedded mode); running it again resumes.
    Run(run::RunArgs),
    /// Check a job spec and its inputs, and show the plan, without calling any model.
    Validate {
        /// The job spec (TOML).
        job: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Shards read to estimate calls, tokens and cost (spread over the plan).
        #[arg(long, default_value_t = 20)]
        sample_shards: usize,
    },
    /// Write a job's committed rows as a dataset: dedup, splits, Hugging Face layout, card.
    Export(export::ExportArgs),
    /// Remove attempt files that no commit marker references.
    Gc(export::GcArgs),
    /// Distributed mode: plan a job, store it in the cluster and queue its uncommitted shards.
    Submit(cluster::SubmitArgs),
    /// Distributed mode: track progress from the commit markers, record lost shards, complete jobs.
    Coordinator(cluster::CoordinatorArgs),
    /// Distributed mode: a stateless worker pulling shards of every submitted job.
    Worker(cluster::WorkerArgs),
    /// Distributed mode: shards pending, running, committed and failed, rows, calls, cost, rate.
    Status(cluster::StatusArgs),
    /// Distributed mode: queue a job's failed shards again (only those).
    Retry(cluster::JobArgs),
    /// Distributed mode: stop a job; submitting it again resumes.
    Cancel(cluster::JobArgs),
    /// Serve an OpenAI-compatible mock LLM for tests, benchmarks and dry runs (simulated answers,
    /// latency, rate limits with 429s, fault injection).
    MockLlm(rubricmill_mock_llm::MockConfig),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(
        matches!(cli.log_format, LogFormat::Json),
        cli.log.as_deref(),
    );
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Validate {
                job,
                json,
                sample_shards,
            } => validate::validate(&job, json, sample_shards).await,
            Command::Export(args) => export::export(args).await,
            Command::Gc(args) => export::gc(args).await,
            Command::Submit(args) => cluster::submit(args).await,
            Command::Coordinator(args) => cluster::coordinator(args).await,
            Command::Worker(args) => cluster::worker(args).await,
            Command::Status(args) => cluster::status(args).await,
            Command::Retry(args) => cluster::retry(args).await,
            Command::Cancel(args) => cluster::cancel(args).await,
            Command::MockLlm(config) => rubricmill_mock_llm::run(config)
                .await
                .map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
