//! Planning: turn a job spec into a stored plan (the shard list) and tell which shards still
//! need work. The plan lives beside the output as `job.json`; a re-run reuses it, so the same
//! command resumes, and refuses to mix outputs of a changed spec into the same folder.

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use rubricmill_core::{JobSpec, ShardSpec};
use rubricmill_store::location::{InputPattern, absolute_input_pattern};
use rubricmill_store::{JobManifest, JobStore, MarkerSummary, list_inputs, plan_shards, to_url};

use crate::RuntimeError;

/// Plans a job, or loads the plan an earlier run stored. Relative local paths in the spec are
/// made absolute first, so the stored plan means the same on every machine that shares them.
pub async fn plan_or_resume(spec: &JobSpec) -> Result<(JobManifest, bool), RuntimeError> {
    let spec = absolutize(spec)?;
    let store = JobStore::open(&spec.output.url, &spec.name)?;
    check_output_outside_inputs(&spec, &store)?;
    let templates = read_templates(&spec)?;
    let fingerprint = fingerprint(&spec, &templates);
    if let Some(existing) = store.load_manifest().await? {
        check_same_job(&existing, &fingerprint, &store)?;
        return Ok((
            JobManifest {
                spec,
                templates,
                ..existing
            },
            true,
        ));
    }
    let manifest = plan(&spec).await?;
    let stored = store.create_manifest(&manifest).await?;
    check_same_job(&stored, &fingerprint, &store)?;
    Ok((stored, false))
}

/// Plans without storing anything (for `validate`).
pub async fn plan(spec: &JobSpec) -> Result<JobManifest, RuntimeError> {
    let spec = absolutize(spec)?;
    check_output_outside_inputs(&spec, &JobStore::open(&spec.output.url, &spec.name)?)?;
    let templates = read_templates(&spec)?;
    let inputs = list_inputs(&spec.input.url, spec.input.format).await?;
    let shards = plan_shards(&inputs, spec.input.records_per_shard).await?;
    Ok(JobManifest {
        name: spec.name.clone(),
        fingerprint: fingerprint(&spec, &templates),
        planned_at: Utc::now(),
        input_root: inputs.location.url_of(&inputs.location.path),
        spec,
        templates,
        shards,
    })
}

/// Reads the prompt template overrides the spec names; unknown names and unreadable files are
/// errors before any work.
fn read_templates(spec: &JobSpec) -> Result<BTreeMap<String, String>, RuntimeError> {
    let mut templates = BTreeMap::new();
    for (name, path) in &spec.prompts {
        let text = std::fs::read_to_string(path).map_err(|error| {
            RuntimeError::Config(format!("prompts.{name}: cannot read {path}: {error}"))
        })?;
        templates.insert(name.clone(), text);
    }
    rubricmill_mine::Templates::new(templates.clone())
        .map_err(|problem| RuntimeError::Config(format!("prompts: {problem}")))?;
    Ok(templates)
}

/// The spec's fingerprint extended by the texts of overridden templates.
fn fingerprint(spec: &JobSpec, templates: &BTreeMap<String, String>) -> String {
    if templates.is_empty() {
        return spec.fingerprint();
    }
    let text = serde_json::to_string(templates).unwrap_or_default();
    rubricmill_core::short_hash(format!("{}|{text}", spec.fingerprint()).as_bytes(), 32)
}

fn check_same_job(
    existing: &JobManifest,
    fingerprint: &str,
    store: &JobStore,
) -> Result<(), RuntimeError> {
    if existing.fingerprint == fingerprint {
        return Ok(());
    }
    Err(RuntimeError::SpecChanged {
        job: existing.name.clone(),
        folder: store.url(),
        planned: existing.fingerprint.clone(),
        now: fingerprint.to_owned(),
    })
}

/// Refuses a job whose input pattern would read its own output: a second run would mine the
/// first run's plan, markers and Parquet parts as records.
fn check_output_outside_inputs(spec: &JobSpec, store: &JobStore) -> Result<(), RuntimeError> {
    let inputs = InputPattern::parse(&spec.input.url)?;
    if !inputs.location.same_store(store.location()) {
        return Ok(());
    }
    match store
        .layout_examples()
        .into_iter()
        .find(|p| inputs.selects(p))
    {
        None => Ok(()),
        Some(example) => Err(RuntimeError::Config(format!(
            "output.url: the job's output folder {} is inside what input.url {} reads (e.g. {} \
             would be read as input); put the output elsewhere or narrow the input pattern",
            store.url(),
            inputs.pattern,
            inputs.location.url_of(&example),
        ))),
    }
}

fn absolutize(spec: &JobSpec) -> Result<JobSpec, RuntimeError> {
    let mut spec = spec.clone();
    spec.input.url = absolute_input_pattern(&spec.input.url)?;
    spec.output.url = to_url(&spec.output.url)?.to_string();
    Ok(spec)
}

/// Shards of the plan that have no commit marker yet, and the marker summaries of those that
/// do: a listing of `commits/`, the progress log, and reads of only the markers the log does not
/// summarise (see `rubricmill_store::progress`).
pub async fn pending_shards(
    manifest: &JobManifest,
    store: &JobStore,
) -> Result<(Vec<ShardSpec>, Vec<MarkerSummary>), RuntimeError> {
    let summaries = store.committed_summaries().await?;
    let planned: HashSet<&str> = manifest.shards.iter().map(|s| s.id.as_str()).collect();
    let summaries: Vec<MarkerSummary> = summaries
        .into_iter()
        .filter(|m| planned.contains(m.shard_id.as_str()))
        .collect();
    let committed: HashSet<&str> = summaries.iter().map(|m| m.shard_id.as_str()).collect();
    let pending = manifest
        .shards
        .iter()
        .filter(|s| !committed.contains(s.id.as_str()))
        .cloned()
        .collect();
    Ok((pending, summaries))
}
