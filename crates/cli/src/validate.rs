//! `rubricmill validate`: checks the spec, lists the inputs and plans the shards, spending
//! nothing and writing nothing.

use std::path::Path;
use std::process::ExitCode;

use rubricmill_core::{JobSpec, PipelineKind, ProviderKind};

pub async fn validate(job: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::load(job)?;
    let manifest = rubricmill_runtime::coordinator::plan(&spec).await?;
    let mut files: Vec<&str> = manifest
        .shards
        .iter()
        .flat_map(|s| s.unit.files())
        .map(|f| f.url.as_str())
        .collect();
    files.dedup();
    let bytes: u64 = {
        let mut seen = std::collections::HashSet::new();
        manifest
            .shards
            .iter()
            .flat_map(|s| s.unit.files())
            .filter(|f| seen.insert(&f.url))
            .map(|f| f.size)
            .sum()
    };
    let records: u64 = manifest.shards.iter().map(|s| s.expected_records).sum();
    if json {
        let plan = serde_json::json!({
            "job": spec.name,
            "pipeline": spec.pipeline.as_str(),
            "fingerprint": manifest.fingerprint,
            "input_files": files.len(),
            "input_bytes": bytes,
            "shards": manifest.shards.len(),
            "expected_records": records,
            "provider": spec.llm.provider.as_str(),
            "model": spec.llm.model,
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
        "  inputs     {} files, {} bytes, matching {}",
        files.len(),
        bytes,
        manifest.spec.input.url
    );
    println!(
        "  shards     {} ({} records per shard)",
        manifest.shards.len(),
        spec.input.records_per_shard
    );
    let unit = match spec.pipeline {
        PipelineKind::Researchqa => "documents (one llm call per content section)",
        PipelineKind::Crg => "records (one llm call per preference pair)",
    };
    println!("  expected   {records} {unit}");
    match spec.llm.provider {
        ProviderKind::Simulated => {
            println!(
                "  llm        simulated provider: test and dry-run answers derived from the input, not a model"
            )
        }
        ProviderKind::Openai => println!(
            "  llm        {} at {}",
            spec.llm.model,
            spec.llm.base_url.as_deref().unwrap_or("(no base_url)")
        ),
    }
    println!(
        "  output     {}/{}",
        manifest.spec.output.url.trim_end_matches('/'),
        spec.name
    );
    Ok(ExitCode::SUCCESS)
}
