//! The pipeline seam: a worker hands each input record to a [`Pipeline`], which returns the rows
//! and rejects it made, with per-stage counts and LLM usage. Record-level problems are rejects;
//! only failures that concern the whole shard or job are errors.

use std::collections::BTreeMap;

use rubricmill_core::row::excerpt;
use rubricmill_core::{
    OutputRow, PipelineKind, Provenance, RawPayload, RawRecord, RejectRow, SourceRef, StageCounts,
    Usage,
};
use rubricmill_llm::{ChatRequest, Gateway, LlmError};

/// Identity of the attempt a record is processed in, for provenance.
#[derive(Debug, Clone)]
pub struct RecordContext {
    pub shard_id: String,
    pub attempt_id: String,
}

/// What one record became.
#[derive(Debug, Clone, Default)]
pub struct RecordOutcome {
    pub rows: Vec<OutputRow>,
    pub rejects: Vec<RejectRow>,
    pub stages: BTreeMap<String, StageCounts>,
    pub usage: Usage,
}

impl RecordOutcome {
    fn stage(&mut self, stage: &str) -> &mut StageCounts {
        self.stages.entry(stage.to_owned()).or_default()
    }

    /// Counts an item entering `stage`.
    pub fn enter(&mut self, stage: &str) {
        self.stage(stage).input += 1;
    }

    /// Counts an item leaving `stage` onwards.
    pub fn pass(&mut self, stage: &str) {
        self.stage(stage).output += 1;
    }

    /// Counts and records a rejected item.
    pub fn reject(
        &mut self,
        ctx: &RecordContext,
        source: &SourceRef,
        stage: &str,
        reason: impl Into<String>,
        raw: &str,
    ) {
        self.stage(stage).rejected += 1;
        self.rejects.push(RejectRow {
            source_file: source.file.clone(),
            source_location: source.location.to_string(),
            shard_id: ctx.shard_id.clone(),
            attempt_id: ctx.attempt_id.clone(),
            stage: stage.to_owned(),
            reason: reason.into(),
            excerpt: excerpt(raw),
        });
    }
}

impl RecordOutcome {
    /// Counts the record into stage `parse` and reads it with `read`: the value, or `None` once
    /// the record has been rejected there with the reason.
    pub fn parse<T>(
        &mut self,
        ctx: &RecordContext,
        record: &RawRecord,
        read: impl FnOnce(&RawRecord) -> Result<T, String>,
    ) -> Option<T> {
        self.enter("parse");
        match read(record) {
            Ok(value) => {
                self.pass("parse");
                Some(value)
            }
            Err(reason) => {
                self.reject_unreadable(ctx, record, reason);
                None
            }
        }
    }

    /// Rejects the whole record at stage `parse`, with its raw text as the excerpt.
    fn reject_unreadable(&mut self, ctx: &RecordContext, record: &RawRecord, reason: String) {
        let raw = match &record.payload {
            RawPayload::Json(value) => value.to_string(),
            RawPayload::Text(text) => text.clone(),
        };
        self.reject(ctx, &record.source, "parse", reason, &raw);
    }
}

/// The JSON object a record holds, or why `pipeline` cannot read it.
pub fn json_object<'a>(
    record: &'a RawRecord,
    pipeline: &str,
) -> Result<&'a serde_json::Value, String> {
    let RawPayload::Json(value) = &record.payload else {
        return Err(format!(
            "the {pipeline} pipeline reads structured records (JSON objects)"
        ));
    };
    if !value.is_object() {
        return Err("record is not a JSON object".into());
    }
    Ok(value)
}

/// The input dataset or file a record came from, as rows name it: the last path segment.
pub fn source_name(source: &SourceRef) -> String {
    source
        .file
        .rsplit('/')
        .next()
        .unwrap_or(&source.file)
        .to_owned()
}

/// Failures that stop the shard (retryable) or the job (fatal, budget).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Llm(LlmError),
}

impl PipelineError {
    /// True when no later attempt can succeed without the user changing something.
    pub fn is_fatal(&self) -> bool {
        matches!(self, PipelineError::Llm(LlmError::Fatal(_)))
    }

    /// True when a call was deferred to a provider batch: the record is unfinished, not failed.
    pub fn is_deferred(&self) -> bool {
        matches!(self, PipelineError::Llm(LlmError::Deferred))
    }

    pub fn is_budget(&self) -> bool {
        matches!(self, PipelineError::Llm(LlmError::BudgetExhausted { .. }))
    }
}

/// What processing a record would cost, worked out without calling a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Records that would be rejected before any call.
    pub rejected: u64,
    pub calls: u64,
    pub prompt_tokens: u64,
    /// Output tokens if every answer used `max_tokens`.
    pub max_output_tokens: u64,
    /// Output tokens for answers of the typical size of this pipeline.
    pub typical_output_tokens: u64,
    /// The largest single request: its prompt plus `max_tokens` (what the rate limiter
    /// reserves for it).
    pub largest_request_tokens: u64,
}

impl Estimate {
    /// One call of `request` through `gateway`, whose answer is typically `typical` tokens.
    pub fn call(gateway: &Gateway, request: &ChatRequest, typical: u64) -> Self {
        let prompt_tokens = gateway.estimate_prompt_tokens(&request.messages);
        Self {
            rejected: 0,
            calls: 1,
            prompt_tokens,
            max_output_tokens: u64::from(request.max_tokens),
            typical_output_tokens: typical.min(u64::from(request.max_tokens)),
            largest_request_tokens: prompt_tokens + u64::from(request.max_tokens),
        }
    }

    /// A record that would be rejected before any call.
    pub fn rejected() -> Self {
        Self {
            rejected: 1,
            ..Self::default()
        }
    }

    pub fn add(&mut self, other: &Estimate) {
        self.rejected += other.rejected;
        self.calls += other.calls;
        self.prompt_tokens += other.prompt_tokens;
        self.max_output_tokens += other.max_output_tokens;
        self.typical_output_tokens += other.typical_output_tokens;
        self.largest_request_tokens = self
            .largest_request_tokens
            .max(other.largest_request_tokens);
    }
}

#[async_trait::async_trait]
pub trait Pipeline: Send + Sync {
    fn kind(&self) -> PipelineKind;
    /// The calls and tokens `process` would spend on this record (first attempt, no retries).
    fn estimate(&self, record: &RawRecord) -> Estimate;
    /// Template name → hash, for output metadata.
    fn prompt_hashes(&self) -> BTreeMap<String, String>;
    async fn process(
        &self,
        record: RawRecord,
        ctx: &RecordContext,
    ) -> Result<RecordOutcome, PipelineError>;
}

/// Template name → hash of `templates`, for [`Pipeline::prompt_hashes`].
pub fn template_hashes<'a>(
    templates: impl IntoIterator<Item = &'a crate::prompt::Template>,
) -> BTreeMap<String, String> {
    templates
        .into_iter()
        .map(|t| (t.name.clone(), t.hash.clone()))
        .collect()
}

/// Provenance of a row made by one LLM call.
pub fn provenance(
    source: &SourceRef,
    ctx: &RecordContext,
    provider: &str,
    model: &str,
    prompt_hash: &str,
    usage: &Usage,
) -> Provenance {
    Provenance {
        source_file: source.file.clone(),
        source_location: source.location.to_string(),
        shard_id: ctx.shard_id.clone(),
        attempt_id: ctx.attempt_id.clone(),
        provider: provider.to_owned(),
        model: model.to_owned(),
        prompt_hash: prompt_hash.to_owned(),
        tokens_in: usage.tokens_in,
        tokens_out: usage.tokens_out,
        cost_usd: usage.cost_usd,
        cache_hits: usage.cache_hits,
        // The worker knows which attempts paid for the cached answers.
        cached_from: Vec::new(),
    }
}

/// Decides what an LLM error means for the record: `Ok(reason)` rejects the record, `Err` stops
/// the shard or job.
pub fn classify_llm_error(error: LlmError) -> Result<String, PipelineError> {
    match error {
        LlmError::BadRecord(reason) | LlmError::Unusable(reason) => Ok(reason),
        other => Err(PipelineError::Llm(other)),
    }
}

/// Sampling parameters of one generation stage.
#[derive(Debug, Clone)]
pub struct StageModel {
    pub model: String,
    pub temperature: f32,
    pub max_tokens: u32,
    pub seed: Option<u64>,
}

/// What a pipeline calls models with: per stage (`generate`, `judge`, …) a gateway and its
/// sampling parameters, and the prompt templates in force.
#[derive(Clone)]
pub struct Stages {
    stages: BTreeMap<String, (std::sync::Arc<rubricmill_llm::Gateway>, StageModel)>,
    pub templates: crate::prompt::Templates,
}

impl Stages {
    pub fn new(
        stages: BTreeMap<String, (std::sync::Arc<rubricmill_llm::Gateway>, StageModel)>,
        templates: crate::prompt::Templates,
    ) -> Self {
        Self { stages, templates }
    }

    /// The gateway and parameters of a stage. Every stage of `llm_stages(pipeline)` is present;
    /// asking for another is a programming error.
    pub fn get(&self, stage: &str) -> (std::sync::Arc<rubricmill_llm::Gateway>, StageModel) {
        self.stages
            .get(stage)
            .cloned()
            .unwrap_or_else(|| panic!("no llm stage {stage:?} was configured"))
    }
}

/// A JSON record at line 1 of `file:///in.jsonl`, for the pipelines' unit tests.
#[cfg(test)]
pub(crate) fn json_record(value: serde_json::Value) -> RawRecord {
    RawRecord {
        source: SourceRef::new("file:///in.jsonl", rubricmill_core::Location::Line(1)),
        payload: RawPayload::Json(value),
    }
}
