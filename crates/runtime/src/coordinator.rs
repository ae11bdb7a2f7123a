//! Planning: turn a job spec into a stored plan (the shard list) and tell which shards still
//! need work. The plan lives beside the output as `job.json` and its chunk files; a re-run
//! reuses it, so the same command resumes, and refuses to mix outputs of a changed spec into
//! the same folder.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use futures::StreamExt;
use rubricmill_core::{JobSpec, ShardId, ShardSpec};
use rubricmill_store::location::{InputPattern, absolute_input_pattern};
use rubricmill_store::{
    Inputs, JobManifest, JobStore, MarkerSummary, PlanIndex, PlanWriter, list_inputs, plan_shards,
    plan_shards_into, to_url,
};

use crate::RuntimeError;

/// Plans a job, or loads the plan an earlier run stored. Relative local paths in the spec are
/// made absolute first, so the stored plan means the same on every machine that shares them.
/// A new plan streams into chunk files as the inputs are planned, so planning holds a few
/// chunks in memory, not the shard list.
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
    let inputs = list_inputs(&spec.input.url, spec.input.format).await?;
    let mut writer = PlanWriter::new(&store);
    plan_shards_into(&inputs, spec.input.records_per_shard, async |shards| {
        writer.extend(shards).await
    })
    .await?;
    let index = writer.finish().await?;
    let manifest = manifest_of(spec, templates, &inputs, index);
    let stored = store.create_manifest(&manifest).await?;
    check_same_job(&stored, &fingerprint, &store)?;
    tracing::info!(job = %stored.name, shards = stored.shard_count, chunks = stored.chunks.len(), "planned job");
    Ok((stored, false))
}

/// A plan held in memory and stored nowhere (for `validate`): its index (without chunks) and
/// its shards.
#[derive(Debug, Clone)]
pub struct PlannedInMemory {
    pub manifest: JobManifest,
    pub shards: Vec<ShardSpec>,
}

/// Plans without storing anything (for `validate`).
pub async fn plan(spec: &JobSpec) -> Result<PlannedInMemory, RuntimeError> {
    let spec = absolutize(spec)?;
    check_output_outside_inputs(&spec, &JobStore::open(&spec.output.url, &spec.name)?)?;
    let templates = read_templates(&spec)?;
    let inputs = list_inputs(&spec.input.url, spec.input.format).await?;
    let shards = plan_shards(&inputs, spec.input.records_per_shard).await?;
    let index = PlanIndex {
        shard_count: shards.len() as u64,
        expected_records: shards.iter().map(|s| s.expected_records).sum(),
        chunks: Vec::new(),
    };
    Ok(PlannedInMemory {
        manifest: manifest_of(spec, templates, &inputs, index),
        shards,
    })
}

fn manifest_of(
    spec: JobSpec,
    templates: BTreeMap<String, String>,
    inputs: &Inputs,
    index: PlanIndex,
) -> JobManifest {
    JobManifest {
        name: spec.name.clone(),
        fingerprint: fingerprint(&spec, &templates),
        planned_at: Utc::now(),
        input_root: inputs.location.url_of(&inputs.location.path),
        spec,
        templates,
        shard_count: index.shard_count,
        expected_records: index.expected_records,
        chunks: index.chunks,
        inline_shards: Vec::new(),
    }
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
/// do (summaries of shards the plan does not hold are left out): a listing of `commits/`, the
/// progress log, and reads of only the markers the log does not summarise (see
/// `rubricmill_store::progress`); the plan is read a chunk at a time.
pub async fn pending_shards(
    manifest: &JobManifest,
    store: &JobStore,
) -> Result<(Vec<ShardSpec>, Vec<MarkerSummary>), RuntimeError> {
    let mut summaries: HashMap<ShardId, MarkerSummary> = store
        .committed_summaries()
        .await?
        .into_iter()
        .map(|marker| (marker.shard_id.clone(), marker))
        .collect();
    let mut pending = Vec::new();
    let mut planned_summaries = Vec::with_capacity(summaries.len());
    let mut chunks = std::pin::pin!(store.planned_shards(manifest));
    while let Some(chunk) = chunks.next().await {
        for shard in chunk? {
            match summaries.remove(&shard.id) {
                Some(summary) => planned_summaries.push(summary),
                None => pending.push(shard),
            }
        }
    }
    planned_summaries.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    Ok((pending, planned_summaries))
}
