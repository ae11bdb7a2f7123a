//! `rubricmill validate`: checks the spec, the environment and the inputs, plans the shards and
//! estimates calls, tokens and cost by rendering the prompts of a sample of shards, spending
//! nothing and writing nothing.

use std::path::Path;
use std::process::ExitCode;

use futures::StreamExt;
use rubricmill_core::{JobSpec, PipelineKind, ProviderKind};
use rubricmill_mine::Estimate;
use rubricmill_runtime::{ContextOptions, JobContext};
use rubricmill_store::{ReadItem, read_shard};

pub async fn validate(job: &Path, json: bool, sample_shards: usize) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::load(job)?;
    rubricmill_runtime::preflight(&spec)?;
    let manifest = rubricmill_runtime::coordinator::plan(&spec).await?;
    let mut seen = std::collections::HashSet::new();
    let (files, bytes) = manifest
        .shards
        .iter()
        .flat_map(|s| s.unit.files())
        .filter(|f| seen.insert(f.url.clone()))
        .fold((0u64, 0u64), |(n, b), f| (n + 1, b + f.size));
    let records: u64 = manifest.shards.iter().map(|s| s.expected_records).sum();
    let context = JobContext::new(manifest.clone(), 0.0, &ContextOptions { no_cache: true })?;
    let sampled = estimate(&context, sample_shards).await?;
    let (estimate, sampled_records) = (sampled.estimate, sampled.records);
    let scale = if sampled_records == 0 {
        0.0
    } else {
        records as f64 / sampled_records as f64
    };
    let scaled = |n: u64| (n as f64 * scale).round() as u64;
    let llm = spec.llm.for_stage("generate");
    let price = |input: u64, output: u64| {
        llm.price_per_million
            .map(|p| (input as f64 * p.input + output as f64 * p.output) / 1_000_000.0)
    };
    let calls = scaled(estimate.calls);
    let prompt_tokens = scaled(estimate.prompt_tokens);
    let typical_out = scaled(estimate.typical_output_tokens);
    let max_out = scaled(estimate.max_output_tokens);
    let typical_cost = price(prompt_tokens, typical_out);
    let max_cost = price(prompt_tokens, max_out);
    let sampled_all = sampled_records == records;
    if json {
        let plan = serde_json::json!({
            "job": spec.name,
            "pipeline": spec.pipeline.as_str(),
            "fingerprint": manifest.fingerprint,
            "input_files": files,
            "input_bytes": bytes,
            "shards": manifest.shards.len(),
            "expected_records": records,
            "provider": llm.provider.as_str(),
            "model": llm.model,
            "estimate": {
                "exact": sampled_all,
                "calls": calls,
                "prompt_tokens": prompt_tokens,
                "typical_output_tokens": typical_out,
                "max_output_tokens": max_out,
                "typical_cost_usd": typical_cost,
                "max_cost_usd": max_cost,
                "rejected_before_calls": scaled(estimate.rejected),
                "largest_request_tokens": estimate.largest_request_tokens,
                "over_token_limit": scaled(sampled.over_token_limit),
            },
        });
        println!("{plan}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("job spec {} is valid", job.display());
    println!(
        "  job        {} ({} pipeline)",
        spec.name,
        spec.pipeline.as_str()
    );
    println!(
        "  inputs     {files} files, {bytes} bytes, matching {}",
        manifest.spec.input.url
    );
    println!(
        "  shards     {} ({} records per shard)",
        manifest.shards.len(),
        spec.input.records_per_shard
    );
    let unit = match spec.pipeline {
        PipelineKind::Researchqa => "documents",
        PipelineKind::Crg => "records",
    };
    println!("  expected   {records} {unit}");
    match llm.provider {
        ProviderKind::Simulated => {
            println!(
                "  llm        simulated provider: test and dry-run answers derived from the input, not a model"
            )
        }
        ProviderKind::Openai => {
            println!(
                "  llm        {} at {}",
                llm.model,
                llm.base_url.as_deref().unwrap_or("(no base_url)")
            )
        }
    }
    let basis = if sampled_all {
        "from every record".to_owned()
    } else {
        format!("extrapolated from {sampled_records} sampled records")
    };
    println!("  calls      about {calls} ({basis}), first attempts only");
    println!(
        "  tokens     {prompt_tokens} in; out about {typical_out}, at most {max_out} (max_tokens on every call)"
    );
    match (typical_cost, max_cost) {
        (Some(typical), Some(max)) => {
            println!("  cost       about ${typical:.2}, at most ${max:.2}")
        }
        _ => println!("  cost       unknown: set llm.price_per_million"),
    }
    if let Some(limit) = llm.tokens_per_minute {
        println!(
            "  rate       largest request about {} tokens (input + max_tokens) of llm.tokens_per_minute = {limit}",
            estimate.largest_request_tokens
        );
        if sampled.over_token_limit > 0 {
            println!(
                "  warning    about {} records need more than llm.tokens_per_minute in one request and will be rejected: shorten them, lower llm.max_tokens or raise llm.tokens_per_minute",
                scaled(sampled.over_token_limit)
            );
        }
    }
    if let Some(budget) = spec.llm.max_cost_usd {
        println!("  budget     ${budget:.2}");
    }
    println!(
        "  output     {}/{}",
        manifest.spec.output.url.trim_end_matches('/'),
        spec.name
    );
    Ok(ExitCode::SUCCESS)
}

/// What the sampled shards would cost.
struct Sampled {
    estimate: Estimate,
    /// Records the sample covered.
    records: u64,
    /// Sampled records with a request larger than the job's whole token limit.
    over_token_limit: u64,
}

/// Estimates over up to `sample_shards` shards spread evenly over the plan.
async fn estimate(context: &JobContext, sample_shards: usize) -> anyhow::Result<Sampled> {
    let shards = &context.manifest.shards;
    let step = shards.len().div_ceil(sample_shards.max(1)).max(1);
    let spec = context.spec();
    let token_limit = spec.llm.tokens_per_minute.map(u64::from);
    let mut total = Estimate::default();
    let mut records = 0;
    let mut over_token_limit = 0;
    for shard in shards.iter().step_by(step) {
        let mut items = read_shard(
            &context.inputs,
            shard,
            spec.input.format,
            spec.input.max_record_bytes,
        );
        while let Some(item) = items.next().await {
            records += 1;
            match item? {
                ReadItem::Record(record) => {
                    let estimate = context.pipeline.estimate(&record);
                    if token_limit.is_some_and(|limit| estimate.largest_request_tokens > limit) {
                        over_token_limit += 1;
                    }
                    total.add(&estimate);
                }
                ReadItem::Reject { .. } => total.rejected += 1,
            }
        }
    }
    Ok(Sampled {
        estimate: total,
        records,
        over_token_limit,
    })
}
