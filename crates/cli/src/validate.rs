//! `rubricmill validate`: checks the spec, the environment and the inputs, plans the shards and
//! estimates calls, tokens and cost by rendering the prompts of a sample of shards, spending
//! nothing and writing nothing. For crg it also reports, per input file, which pair layouts its
//! records were read as ([`layout_report`]): how many records fit each and the pairs they give,
//! the first normalised pair, and the reasons of the first records that fit none.

use std::path::Path;
use std::process::ExitCode;

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use rubricmill_core::{
    JobSpec, PairLayout, PipelineKind, PreferencePair, ProviderKind, ShardSpec, ShardUnit,
};
use rubricmill_mine::Estimate;
use rubricmill_mine::pairs::PairReader;
use rubricmill_runtime::{ContextOptions, JobContext};
use rubricmill_store::ReadItem;
use rubricmill_store::location::display_location;
use serde_json::json;

pub async fn validate(job: &Path, json: bool, sample_shards: usize) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::load(job)?;
    rubricmill_runtime::preflight(&spec)?;
    let planned = rubricmill_runtime::coordinator::plan(&spec).await?;
    let (manifest, shards) = (planned.manifest, planned.shards);
    let mut seen = std::collections::HashSet::new();
    let (files, bytes) = shards
        .iter()
        .flat_map(|s| s.unit.files())
        .filter(|f| seen.insert(f.url.clone()))
        .fold((0u64, 0u64), |(n, b), f| (n + 1, b + f.size));
    let records = manifest.expected_records;
    let unreadable = unreadable_files(&shards);
    let warnings = plan_warnings(manifest.shard_count, records, bytes);
    let context = JobContext::new(
        manifest.clone(),
        0.0,
        &ContextOptions {
            no_cache: true,
            estimate_only: true,
        },
    )?;
    let sampled = estimate(&context, &shards, sample_shards).await?;
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
    let batch_factor = llm.batch_price_factor;
    let in_batch = |cost: Option<f64>| cost.map(|c| c * batch_factor);
    let modes = stage_modes(&spec);
    let sampled_all = sampled_records == records;
    let layouts = match spec.pipeline {
        PipelineKind::Crg => Some(layout_report(&context, &shards).await?),
        PipelineKind::Researchqa
        | PipelineKind::Reference
        | PipelineKind::Nuggets
        | PipelineKind::Score => None,
    };
    if json {
        let mut plan = serde_json::json!({
            "job": spec.name,
            "pipeline": spec.pipeline.as_str(),
            "fingerprint": manifest.fingerprint,
            "input_files": files,
            "input_bytes": bytes,
            "shards": manifest.shard_count,
            "expected_records": records,
            "unreadable": unreadable
                .iter()
                .map(|(file, reason)| json!({"file": file, "reason": reason}))
                .collect::<Vec<_>>(),
            "warnings": warnings,
            "provider": llm.provider.as_str(),
            "model": llm.model,
            "modes": modes,
            "estimate": {
                "exact": sampled_all,
                "calls": calls,
                "prompt_tokens": prompt_tokens,
                "typical_output_tokens": typical_out,
                "max_output_tokens": max_out,
                "typical_cost_usd": typical_cost,
                "max_cost_usd": max_cost,
                "typical_cost_batch_usd": in_batch(typical_cost),
                "max_cost_batch_usd": in_batch(max_cost),
                "rejected_before_calls": scaled(estimate.rejected),
                "largest_request_tokens": estimate.largest_request_tokens,
                "over_token_limit": scaled(sampled.over_token_limit),
            },
        });
        if let Some(files) = &layouts {
            plan["layouts"] = json!({
                "forced": (spec.input.layout.kind != PairLayout::Auto)
                    .then(|| spec.input.layout.kind.as_str()),
                "files": files.iter().map(FileLayouts::to_json).collect::<Vec<_>>(),
            });
        }
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
        manifest.shard_count, spec.input.records_per_shard
    );
    let unit = match spec.pipeline {
        PipelineKind::Researchqa => "documents",
        PipelineKind::Crg | PipelineKind::Reference | PipelineKind::Score => "records",
        PipelineKind::Nuggets => "records of questions",
    };
    println!("  expected   {records} {unit}");
    if !unreadable.is_empty() {
        println!(
            "  unreadable {} (each becomes a reject with its reason)",
            plural(unreadable.len() as u64, "file")
        );
        for (file, reason) in unreadable.iter().take(5) {
            println!("    {}: {reason}", display_location(file));
        }
        if unreadable.len() > 5 {
            println!("    … and {} more", unreadable.len() - 5);
        }
    }
    for warning in &warnings {
        println!("  warning    {warning}");
    }
    match llm.provider {
        ProviderKind::Simulated => {
            println!(
                "  llm        simulated provider: test and dry-run answers derived from the input, not a model"
            )
        }
        ProviderKind::Openai | ProviderKind::Anthropic => {
            println!(
                "  llm        {} at {} ({})",
                llm.model,
                llm.endpoint_url().as_deref().unwrap_or("(no base_url)"),
                llm.provider.as_str()
            )
        }
        ProviderKind::Azure => {
            println!(
                "  llm        {} at {} (azure deployment {}, api-version {})",
                llm.model,
                llm.base_url.as_deref().unwrap_or("(no base_url)"),
                llm.deployment_name(),
                llm.api_version.as_deref().unwrap_or("(unset)")
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
            println!(
                "  cost       online about ${typical:.2}, at most ${max:.2}; batch about ${:.2}, at most ${:.2} (llm.batch_price_factor = {batch_factor})",
                typical * batch_factor,
                max * batch_factor
            );
        }
        _ => println!("  cost       unknown: set llm.price_per_million"),
    }
    let modes_text: Vec<String> = modes
        .iter()
        .map(|(stage, mode)| format!("{stage} {mode}"))
        .collect();
    println!("  mode       {}", modes_text.join(", "));
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
        "  output     {}",
        display_location(&format!(
            "{}/{}",
            manifest.spec.output.url.trim_end_matches('/'),
            spec.name
        ))
    );
    if let Some(files) = &layouts {
        print_layouts(files, spec.input.layout.kind);
    }
    Ok(ExitCode::SUCCESS)
}

/// Each LLM stage's `llm.mode` (`online` or `batch`).
fn stage_modes(spec: &JobSpec) -> BTreeMap<&'static str, &'static str> {
    rubricmill_core::spec::llm_stages(spec.pipeline)
        .iter()
        .map(|stage| (*stage, spec.llm.for_stage(stage).mode.as_str()))
        .collect()
}

/// Records read per input file for the layout report.
const LAYOUT_SAMPLE_RECORDS: u64 = 1_000;
/// Records read in all for the layout report; files past it are listed as not read.
const LAYOUT_TOTAL_RECORDS: u64 = 100_000;
/// Reasons shown per file for records that fit no layout.
const UNFIT_REASONS_SHOWN: usize = 5;
/// Characters of each text shown in the first pair.
const SHOWN_CHARS: usize = 72;

/// How the records of one input file were read.
#[derive(Debug, Default)]
struct FileLayouts {
    file: String,
    examined: u64,
    /// True when records of the file were left unread (past [`LAYOUT_SAMPLE_RECORDS`]).
    partial: bool,
    /// Layout → (records that fit it, pairs, comparisons skipped).
    fits: BTreeMap<PairLayout, (u64, u64, u64)>,
    unfit: u64,
    /// (location, reason) of the first records that fit no layout.
    unfit_reasons: Vec<(String, String)>,
    /// (location, layout, pair) of the first normalised pair.
    first_pair: Option<(String, PairLayout, PreferencePair)>,
}

impl FileLayouts {
    fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            ..Self::default()
        }
    }

    fn unfit(&mut self, location: String, reason: String) {
        self.unfit += 1;
        if self.unfit_reasons.len() < UNFIT_REASONS_SHOWN {
            self.unfit_reasons.push((location, reason));
        }
    }

    fn pairs(&self) -> u64 {
        self.fits.values().map(|(_, pairs, _)| pairs).sum()
    }

    fn to_json(&self) -> serde_json::Value {
        let fits: serde_json::Map<String, serde_json::Value> = self
            .fits
            .iter()
            .map(|(layout, (records, pairs, skipped))| {
                (
                    layout.as_str().to_owned(),
                    json!({"records": records, "pairs": pairs, "skipped": skipped}),
                )
            })
            .collect();
        json!({
            "file": self.file,
            "records_examined": self.examined,
            "all_records_examined": !self.partial,
            "fits": fits,
            "fits_none": self.unfit,
            "pairs": self.pairs(),
            "first_pair": self.first_pair.as_ref().map(|(location, layout, pair)| json!({
                "location": location,
                "layout": layout.as_str(),
                "pair_id": pair.pair_id,
                "prompt": pair.prompt.iter().map(|m| json!({
                    "role": m.role,
                    "content": clip(&m.content, SHOWN_CHARS),
                })).collect::<Vec<_>>(),
                "chosen": clip(&pair.chosen, SHOWN_CHARS),
                "rejected": clip(&pair.rejected, SHOWN_CHARS),
            })),
            "fits_none_reasons": self.unfit_reasons.iter().map(|(location, reason)| json!({
                "location": location,
                "reason": reason,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Reads up to [`LAYOUT_SAMPLE_RECORDS`] records of every input file (at most
/// [`LAYOUT_TOTAL_RECORDS`] in all) with the job's pair settings, as the crg pipeline will.
async fn layout_report(
    context: &JobContext,
    shards: &[ShardSpec],
) -> anyhow::Result<Vec<FileLayouts>> {
    let spec = context.spec();
    let reader = PairReader::for_input(&spec.input);
    let mut files: Vec<FileLayouts> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut total = 0u64;
    let mut slot = |files: &mut Vec<FileLayouts>, url: &str| -> usize {
        *index.entry(url.to_owned()).or_insert_with(|| {
            files.push(FileLayouts::new(url));
            files.len() - 1
        })
    };
    for shard in shards {
        let shard_files: Vec<usize> = shard
            .unit
            .files()
            .iter()
            .map(|f| slot(&mut files, &f.url))
            .collect();
        if total >= LAYOUT_TOTAL_RECORDS
            || shard_files
                .iter()
                .all(|i| files[*i].examined >= LAYOUT_SAMPLE_RECORDS)
        {
            for i in shard_files {
                files[i].partial = true;
            }
            continue;
        }
        let mut items = context.read_shard(shard);
        while let Some(item) = items.next().await {
            let (source, outcome) = match item? {
                ReadItem::Record(record) => {
                    let outcome = reader.read_input(&record);
                    (record.source, outcome)
                }
                ReadItem::Reject { source, reason, .. } => (source, Err(reason)),
            };
            let i = slot(&mut files, &source.file);
            let file = &mut files[i];
            if file.examined >= LAYOUT_SAMPLE_RECORDS || total >= LAYOUT_TOTAL_RECORDS {
                file.partial = true;
                continue;
            }
            file.examined += 1;
            total += 1;
            let location = source.location.to_string();
            match outcome {
                Ok(normalized) => {
                    let counts = file.fits.entry(normalized.layout).or_default();
                    counts.0 += 1;
                    counts.1 += normalized.pairs.len() as u64;
                    counts.2 += normalized.skipped.len() as u64;
                    if file.first_pair.is_none()
                        && let Some(pair) = normalized.pairs.into_iter().next()
                    {
                        file.first_pair = Some((location, normalized.layout, pair));
                    }
                }
                Err(reason) => file.unfit(location, reason),
            }
        }
    }
    Ok(files)
}

fn print_layouts(files: &[FileLayouts], forced: PairLayout) {
    if forced == PairLayout::Auto {
        println!("  layouts    detected per record (input.layout = \"auto\")");
    } else {
        println!("  layouts    input.layout = \"{forced}\" for every record");
    }
    for file in files {
        let examined = if file.examined == 0 && file.partial {
            format!("not read: the report stops after {LAYOUT_TOTAL_RECORDS} records in all")
        } else if file.partial {
            format!("first {} records read", file.examined)
        } else {
            plural(file.examined, "record")
        };
        println!("    {} ({examined})", file.file);
        for (layout, (records, pairs, skipped)) in &file.fits {
            let skipped = if *skipped == 0 {
                String::new()
            } else {
                format!(", {} skipped", plural(*skipped, "comparison"))
            };
            println!(
                "      {:<14} {} -> {}{skipped}",
                layout.as_str(),
                plural(*records, "record"),
                plural(*pairs, "pair")
            );
        }
        if file.unfit > 0 {
            println!("      {:<14} {}", "fits none", plural(file.unfit, "record"));
        }
        if let Some((location, layout, pair)) = &file.first_pair {
            let last_turn = pair.prompt.last().map_or("", |m| m.content.as_str());
            println!(
                "      first pair     {location} ({layout}, {}): prompt {:?} | chosen {:?} | rejected {:?}",
                plural(pair.prompt.len() as u64, "turn"),
                clip(last_turn, SHOWN_CHARS),
                clip(&pair.chosen, SHOWN_CHARS),
                clip(&pair.rejected, SHOWN_CHARS)
            );
        }
        for (location, reason) in &file.unfit_reasons {
            println!("      fits none      {location}: {reason}");
        }
    }
}

/// Files (or their tails) that planning found unreadable, with the reason each will be a reject.
fn unreadable_files(shards: &[ShardSpec]) -> Vec<(String, String)> {
    shards
        .iter()
        .filter_map(|shard| match &shard.unit {
            ShardUnit::Unreadable { file, reason, .. } => Some((file.url.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

/// Warnings about a plan out of proportion to its input: more records than stored bytes, or
/// thousands of shards for a few bytes each, means near-empty records or an input that
/// decompresses absurdly (both cost bookkeeping for nothing).
fn plan_warnings(shards: u64, records: u64, stored_bytes: u64) -> Vec<String> {
    let mut warnings = Vec::new();
    if records > stored_bytes.max(1) {
        warnings.push(format!(
            "{records} records from {stored_bytes} stored bytes: the records are near-empty or \
             the input decompresses absurdly; check the input"
        ));
    }
    if shards > 1_000 && shards > stored_bytes / 1_024 {
        warnings.push(format!(
            "{shards} shards for {stored_bytes} stored bytes (under 1 KiB a shard): raise \
             input.records_per_shard"
        ));
    }
    warnings
}

/// `n word` with the word in the plural unless `n` is 1.
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn clip(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
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
async fn estimate(
    context: &JobContext,
    shards: &[ShardSpec],
    sample_shards: usize,
) -> anyhow::Result<Sampled> {
    let step = shards.len().div_ceil(sample_shards.max(1)).max(1);
    let spec = context.spec();
    let token_limit = spec.llm.tokens_per_minute.map(u64::from);
    let mut total = Estimate::default();
    let mut records = 0;
    let mut over_token_limit = 0;
    for shard in shards.iter().step_by(step) {
        let mut items = context.read_shard(shard);
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
