//! `rubricmill`: build rubric datasets from survey articles and preference pairs. This binary
//! only parses arguments, sets up logging and prints; the work lives in the library crates.

mod args;
mod cluster;
mod export;
mod logging;
mod manual;
mod plan;
mod progress;
mod run;
mod validate;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

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
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
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
    /// Plan a job and store the plan beside its output without running it (`run` and `submit`
    /// reuse it); prints the shard count.
    Plan {
        /// The job spec (TOML).
        job: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a job's committed rows as a dataset: dedup, splits, Hugging Face layout, card.
    Export(export::ExportArgs),
    /// Serve the web UI over a job's committed output (read only): figures, charts and a
    /// viewer of its rows beside their sources; prints the URL.
    View(view::ViewArgs),
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
    /// Print a shell completion script, e.g. `rubricmill completions bash >
    /// ~/.local/share/bash-completion/completions/rubricmill`.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (rubricmill.1 and one per subcommand) into a folder, or print the
    /// main page to stdout.
    Man {
        /// Folder for rubricmill.1, rubricmill-run.1, … (created if missing); without it the
        /// main page goes to stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// The commands that only print what the argument definitions say: no runtime, no logging.
fn generated_docs(command: &Command) -> Option<anyhow::Result<ExitCode>> {
    let result = match command {
        Command::Completions { shell } => {
            manual::completions(Cli::command(), *shell, &mut std::io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out: Some(dir) } => manual::write_pages(Cli::command(), dir).map(|pages| {
            for page in pages {
                println!("{}", page.display());
            }
            ExitCode::SUCCESS
        }),
        Command::Man { out: None } => {
            manual::main_page(Cli::command(), &mut std::io::stdout().lock())
                .map(|()| ExitCode::SUCCESS)
        }
        _ => return None,
    };
    Some(result)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(result) = generated_docs(&cli.command) {
        return exit(result);
    }
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
            Command::Plan { job, json } => plan::plan(&job, json).await,
            Command::Export(args) => export::export(args).await,
            Command::View(args) => view::view(args).await,
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
            Command::Completions { .. } | Command::Man { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    exit(result)
}

fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_message(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: most error types of the workspace
/// already include their source in their own message, so a cause is appended only when the
/// text so far does not hold it. Secrets are redacted whatever the error.
fn error_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(text.as_str()) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    rubricmill_core::secret::redact_secrets(&message).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct ReadError {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(ReadError {
            path: "job.toml".into(),
            source: inner,
        })
        .context("cannot start the job");
        let message = error_message(&error);
        assert_eq!(
            message,
            "cannot start the job: cannot read job.toml: no such file"
        );
        assert_eq!(message.matches("no such file").count(), 1);
    }

    #[test]
    fn secrets_in_causes_are_redacted() {
        let error = anyhow::anyhow!("refused by https://user:hunter2@example.com/v1");
        assert!(!error_message(&error).contains("hunter2"));
    }
}
