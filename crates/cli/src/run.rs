//! `rubricmill run`: the embedded mode, with a progress bar and a summary at the end.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rubricmill_core::{JobSpec, PipelineKind, ProviderKind, Usage};
use rubricmill_runtime::{EmbeddedOptions, RunSummary, StopReason, run_embedded};

use crate::progress::Bar;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The job spec (TOML).
    job: PathBuf,
    /// Workers in this process.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Shards each worker processes at once.
    #[arg(long, default_value_t = 2)]
    shard_concurrency: usize,
    /// Records of one shard in flight at once (default: the job's llm.max_concurrency).
    #[arg(long)]
    record_concurrency: Option<usize>,
    /// Deliveries of a shard before it is given up.
    #[arg(long, default_value_t = 4)]
    max_deliver: u32,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Call the model even when the response cache has the answer.
    #[arg(long)]
    no_cache: bool,
}

/// Exit codes besides 0 (complete) and 1 (error before or outside the run).
const EXIT_FATAL: u8 = 2;
const EXIT_SHARDS_FAILED: u8 = 3;
const EXIT_BUDGET: u8 = 4;
const EXIT_INTERRUPTED: u8 = 130;

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::load(&args.job)?;
    if spec.llm.provider == ProviderKind::Simulated {
        tracing::warn!(job = %spec.name, "llm provider is \"simulated\": answers are derived from the input text for tests and dry runs, not written by a model");
    }
    let options = EmbeddedOptions {
        workers: args.workers,
        shard_concurrency: args.shard_concurrency,
        record_concurrency: args
            .record_concurrency
            .unwrap_or(spec.llm.max_concurrency as usize),
        max_deliver: args.max_deliver,
        context: rubricmill_runtime::ContextOptions {
            no_cache: args.no_cache,
            ..Default::default()
        },
        ..EmbeddedOptions::default()
    };
    let mut bar = Bar::new(!args.no_progress && !args.json);
    let summary = run_embedded(&spec, &options, &mut bar, interrupted())
        .await
        .with_context(|| format!("job {:?} did not run", spec.name))?;
    bar.finish();
    let agreement = (spec.pipeline == PipelineKind::Score).then(|| Agreement::of(&summary));
    if args.json {
        let mut json = summary_json(&summary, spec.pipeline);
        if let Some(agreement) = agreement {
            json["agreement"] = agreement.to_json();
        }
        println!("{json}");
    } else {
        print_summary(&summary, spec.llm.provider, spec.pipeline);
        if let Some(agreement) = agreement {
            println!("{}", agreement.line());
        }
    }
    Ok(ExitCode::from(match summary.stop {
        StopReason::Complete => 0,
        StopReason::Fatal(_) => EXIT_FATAL,
        StopReason::ShardsFailed => EXIT_SHARDS_FAILED,
        StopReason::Budget(_) => EXIT_BUDGET,
        StopReason::Interrupted => EXIT_INTERRUPTED,
    }))
}

/// A score job's agreement with its preference labels, over every committed shard.
struct Agreement {
    /// Rows whose input carried a preference label.
    labelled: u64,
    /// Of those, rows whose highest-scoring response is the labelled one.
    agreeing: u64,
}

impl Agreement {
    /// The `agreement` stage over every committed shard, earlier runs' and this one's (the
    /// score pipeline counts each labelled record in, and out when its scores agree with the
    /// label).
    fn of(summary: &RunSummary) -> Self {
        let mut agreement = Self {
            labelled: 0,
            agreeing: 0,
        };
        for counts in [&summary.before.agreement, &summary.this_run.agreement]
            .into_iter()
            .flatten()
        {
            agreement.labelled += counts.input;
            agreement.agreeing += counts.output;
        }
        agreement
    }

    fn rate(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.agreeing as f64 / self.labelled as f64)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"labelled": self.labelled, "agreeing": self.agreeing, "rate": self.rate()})
    }

    fn line(&self) -> String {
        match self.rate() {
            Some(rate) => format!(
                "  agreement  {} of {} labelled records ({:.1}%): the rubric's scores prefer the labelled response",
                self.agreeing,
                self.labelled,
                rate * 100.0
            ),
            None => "  agreement  no record carried a preference label".to_owned(),
        }
    }
}

/// Resolves on the first Ctrl-C or SIGTERM (finish the shards in flight, then stop); a second
/// Ctrl-C exits at once (uncommitted shards are simply redone on the next run).
pub(crate) async fn interrupted() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM");
                None
            }
        };
    let sigterm = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
    }
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted twice: exiting now; re-run the same command to resume");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    });
}

fn summary_json(summary: &RunSummary, pipeline: PipelineKind) -> serde_json::Value {
    let tally = |t: &rubricmill_runtime::Tally| {
        serde_json::json!({
            "shards": t.shards, "records": t.records, "rows": t.rows, "rejects": t.rejects,
            "llm_calls": t.usage.calls, "cache_hits": t.usage.cache_hits, "retries": t.usage.retries,
            "throttled": t.usage.throttled, "tokens_in": t.usage.tokens_in, "tokens_out": t.usage.tokens_out,
            "cost_usd": t.usage.cost_usd, "latency_p50_ms": t.usage.latency.quantile_ms(0.5),
            "latency_p95_ms": t.usage.latency.quantile_ms(0.95),
            "batch_calls": t.usage.batch_calls, "batch_saved_usd": t.usage.batch_saved_usd,
        })
    };
    let (stop, reason) = match &summary.stop {
        StopReason::Complete => ("complete", None),
        StopReason::ShardsFailed => ("shards_failed", None),
        StopReason::Budget(reason) => ("budget", Some(reason.clone())),
        StopReason::Fatal(reason) => ("fatal", Some(reason.clone())),
        StopReason::Interrupted => ("interrupted", None),
    };
    let mut this_run = tally(&summary.this_run);
    // crg rows carry the consistency filter's decision, reference rows the self-check's;
    // earlier runs' split is not recorded.
    if filters_rows(pipeline) {
        let run = &summary.this_run;
        this_run["kept_rows"] = (run.rows - run.dropped_rows).into();
        this_run["dropped_rows"] = run.dropped_rows.into();
    }
    serde_json::json!({
        "job": summary.job,
        "output": summary.output_url,
        "resumed": summary.resumed,
        "shards_planned": summary.shards_planned,
        "before": tally(&summary.before),
        "this_run": this_run,
        "uncommitted": {
            "attempts": summary.uncommitted.attempts, "llm_calls": summary.uncommitted.usage.calls,
            "tokens_in": summary.uncommitted.usage.tokens_in, "tokens_out": summary.uncommitted.usage.tokens_out,
            "cost_usd": summary.uncommitted.usage.cost_usd,
            "cut_off_calls": summary.uncommitted.cut_off.calls,
            "cut_off_cost_usd": summary.uncommitted.cut_off.cost_usd,
            "cut_off_tokens_in": summary.uncommitted.cut_off.tokens_in,
            "cut_off_tokens_out": summary.uncommitted.cut_off.tokens_out,
            "batch_calls": summary.uncommitted.usage.batch_calls,
            "batch_saved_usd": summary.uncommitted.usage.batch_saved_usd,
        },
        "spent_usd": spent_usd(summary),
        "batches_waiting": {
            "shards": summary.waiting.len(),
            "batches": summary.waiting.values().map(|(b, _)| u64::from(*b)).sum::<u64>(),
            "items": summary.waiting.values().map(|(_, i)| i).sum::<u64>(),
            "collected_calls": batch_paid(summary).batch_calls,
            "collected_cost_usd": batch_paid(summary).cost_usd,
        },
        "failed": summary.failed.iter().map(|(shard, reason)| serde_json::json!({"shard": shard, "reason": reason})).collect::<Vec<_>>(),
        "stop": stop,
        "reason": reason,
        "elapsed_s": summary.elapsed.as_secs_f64(),
        "structured_output": summary.structured_output,
        "provider_limits": summary.provider_limits,
        "output_requests": {
            "get": summary.output_requests.get, "head": summary.output_requests.head,
            "put": summary.output_requests.put, "list": summary.output_requests.list,
            "delete": summary.output_requests.delete, "copy": summary.output_requests.copy,
        },
    })
}

/// Batch mode: answers that came through provider batches and what they saved, and the
/// batches still open (a run stopped while shards waited).
fn batch_line(summary: &RunSummary) -> Option<String> {
    let mut usage = summary.this_run.usage;
    usage.add(&summary.uncommitted.usage);
    usage.add(&batch_paid(summary));
    if usage.batch_calls == 0 && summary.waiting.is_empty() {
        return None;
    }
    let mut line = format!(
        "  batches    {} answers through provider batches this run, ${:.4} saved against online prices",
        usage.batch_calls, usage.batch_saved_usd
    );
    if !summary.waiting.is_empty() {
        let batches: u64 = summary.waiting.values().map(|(b, _)| u64::from(*b)).sum();
        let items: u64 = summary.waiting.values().map(|(_, i)| i).sum();
        line.push_str(&format!(
            "; {batches} batches ({items} calls) of {} shards still with the provider: run again to collect them",
            summary.waiting.len()
        ));
    }
    Some(line)
}

/// What the provider billed the job in all: committed shards, before and in this run, and
/// attempts that did not commit.
fn spent_usd(summary: &RunSummary) -> f64 {
    summary.before.usage.cost_usd
        + summary.this_run.usage.cost_usd
        + summary.uncommitted.usage.cost_usd
        + batch_paid(summary).cost_usd
}

/// Batch mode: what the collected batches of shards the run did not commit cost.
fn batch_paid(summary: &RunSummary) -> Usage {
    let mut total = Usage::default();
    for paid in summary.batch_paid.values() {
        total.add(paid);
    }
    total
}

fn print_summary(summary: &RunSummary, provider: ProviderKind, pipeline: PipelineKind) {
    let run = &summary.this_run;
    let done = summary.before.shards + run.shards;
    let seconds = summary.elapsed.as_secs_f64().max(1e-3);
    if run.shards == 0 && summary.failed.is_empty() && summary.stop == StopReason::Complete {
        println!(
            "job {} is already complete: {}/{} shards committed, {} rows, {} rejects; nothing to do",
            summary.job, done, summary.shards_planned, summary.before.rows, summary.before.rejects
        );
        println!(
            "output: {}",
            rubricmill_store::location::display_location(&summary.output_url)
        );
        return;
    }
    let label = if provider == ProviderKind::Simulated {
        " (simulated provider)"
    } else {
        ""
    };
    println!("job {}: {}", summary.job, stop_text(&summary.stop));
    println!(
        "  shards     {done}/{} committed ({} this run, {} before)",
        summary.shards_planned, run.shards, summary.before.shards
    );
    println!(
        "  records    {} read this run, {:.0} records/s",
        run.records,
        run.records as f64 / seconds
    );
    println!(
        "  rows       {} this run, {} in all",
        run.rows,
        summary.before.rows + run.rows
    );
    if filters_rows(pipeline) {
        println!("{}", kept_line(run, pipeline));
    }
    println!(
        "  rejects    {} this run, {} in all",
        run.rejects,
        summary.before.rejects + run.rejects
    );
    println!(
        "  llm calls  {}{label}, tokens {} in / {} out, cost ${:.4}",
        run.usage.calls, run.usage.tokens_in, run.usage.tokens_out, run.usage.cost_usd
    );
    let latency = |q: f64| {
        run.usage
            .latency
            .quantile_ms(q)
            .map_or("-".to_owned(), |ms| format!("{ms:.0} ms"))
    };
    println!(
        "             {} cache hits, {} retries, {} throttled (429/503), latency p50 {} p95 {}",
        run.usage.cache_hits,
        run.usage.retries,
        run.usage.throttled,
        latency(0.5),
        latency(0.95)
    );
    if summary.uncommitted.attempts > 0 {
        println!(
            "             {} calls, ${:.4} paid by {} attempts that did not commit; {} more cut off on the wire (about ${:.4})",
            summary.uncommitted.usage.calls,
            summary.uncommitted.usage.cost_usd,
            summary.uncommitted.attempts,
            summary.uncommitted.cut_off.calls,
            summary.uncommitted.cut_off.cost_usd
        );
    }
    if let Some(line) = batch_line(summary) {
        println!("{line}");
    }
    println!("  spent      ${:.4} on this job in all", spent_usd(summary));
    if !summary.structured_output.is_empty() {
        let modes: Vec<String> = summary
            .structured_output
            .iter()
            .map(|(stage, mode)| format!("{stage}={mode}"))
            .collect();
        println!("  structured output: {}", modes.join(", "));
    }
    for (stage, limits) in &summary.provider_limits {
        println!("  provider limits ({stage}): {}", limits.describe());
    }
    println!("  elapsed    {seconds:.2}s");
    for (shard, reason) in &summary.failed {
        println!("  failed     shard {shard}: {reason}");
    }
    println!(
        "output: {}",
        rubricmill_store::location::display_location(&summary.output_url)
    );
}

/// The crg rows of this run by the consistency filter's decision.
/// Whether the pipeline's rows carry `kept` (crg's consistency filter, reference's
/// self-check).
fn filters_rows(pipeline: PipelineKind) -> bool {
    matches!(pipeline, PipelineKind::Crg | PipelineKind::Reference)
}

fn kept_line(run: &rubricmill_runtime::Tally, pipeline: PipelineKind) -> String {
    let filter = if pipeline == PipelineKind::Reference {
        "the self-check"
    } else {
        "the consistency filter"
    };
    format!(
        "  kept       {} rows kept, {} dropped by {filter} (this run)",
        run.rows - run.dropped_rows,
        run.dropped_rows
    )
}

fn stop_text(stop: &StopReason) -> String {
    match stop {
        StopReason::Complete => "complete".into(),
        StopReason::ShardsFailed => "finished with failed shards (re-run to retry them)".into(),
        StopReason::Budget(reason) => {
            format!("stopped: {reason}; raise llm.max_cost_usd and re-run to resume")
        }
        StopReason::Fatal(reason) => format!("stopped: {reason}"),
        StopReason::Interrupted => "interrupted; re-run the same command to resume".into(),
    }
}
