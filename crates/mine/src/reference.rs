//! The reference pipeline: a prompt and an optional reference answer → a rubric of weighted
//! criteria in the HealthBench layout (as in Rubrics as Rewards).
//!
//! For each input record:
//!
//! 1. **Read** (stage `parse`, [`ReferenceReader`]): the prompt is `prompt` (a string, or a
//!    chat message list) or else `messages` (a chat message list); the reference answer is
//!    `reference`, else `reference_answer`, else `ideal_completion` (a string); `tags` (a list
//!    of strings) and `domain` (a string) are passed through, `id` names the row (else a hash of
//!    the prompt). `input.fields` maps any of `id`, `prompt`, `messages`, `reference`, `tags`
//!    and `domain` to another place in the record, as for preference pairs. A record without a
//!    usable prompt is a reject with the reason; so is one without a reference answer when
//!    `reference.allow_missing_reference = false`.
//! 2. **Generate** (stage `generate`, template `reference_generate`): one call writes criteria,
//!    each `{criterion, points, category, tags}`; see [`parse_criteria`]. A criterion with empty
//!    text, points that are not an integer in [-10, 10] (or 0), an unknown category or a
//!    category that contradicts its sign is dropped, and the row's `dropped_criteria` says why;
//!    criteria beyond `reference.max_criteria` are dropped the same way. An answer with fewer
//!    than `reference.min_criteria` valid criteria gets the gateway's repair, and if still short
//!    the record becomes a reject (stage `generate`) naming the problems.
//!
//! 3. **Self-check** (stages `degrade` and `judge`, templates `reference_degrade` and
//!    `rubric_grade`; on unless `reference.self_check = false`; records without a reference
//!    answer skip it): the rubric must separate the reference answer from a worse one. The worse
//!    answer is the record's own (`degraded`, else `degraded_answer`, else a string
//!    `rejected`), or else one the `degrade` stage writes once per record (plausible, missing
//!    the key content, one detail wrong). The judge grades both answers under the rubric
//!    ([`crate::grading`], HealthBench's score); the rubric passes when the reference scores at
//!    least `reference.pass_threshold` and the degraded answer below it. A rubric that fails
//!    is regenerated with a new seed at a temperature of at least 0.7, up to
//!    `reference.max_resamples` times, as crg regenerates inconsistent rubrics.
//!
//! Every record ends as exactly one row or one reject: `inputs = rows + rejects`. A rubric that
//! failed the self-check after every attempt is still a row, with `kept = false` and the
//! `drop_reason` (the last attempt's scores), so it is never counted twice; exports leave it out.
//! A record whose degraded answer could not be written is a reject at stage `degrade`.

use std::collections::BTreeMap;
use std::sync::Arc;

use rubricmill_core::spec::ReferenceSpec;
use rubricmill_core::{
    CriterionVerdict, Message, OutputRow, PipelineKind, RawRecord, ReferenceCriterion,
    ReferenceRow, Usage, short_hash,
};
use rubricmill_llm::scope::in_stage;
use rubricmill_llm::simulated::{REFERENCE_DEGRADE_TASK, REFERENCE_TASK};
use rubricmill_llm::structured::extract_json;
use rubricmill_llm::{ChatRequest, Gateway, LlmError, ResponseFormat};
use serde_json::{Value, json};

use crate::crg::attempt_seed;
use crate::grading::{self, GradeCriterion, Grader, conversation_text};
use crate::pairs::FieldMap;
use crate::pipeline::{
    Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, StageModel, Stages,
    classify_llm_error, json_object, provenance, source_name, template_hashes,
};
use crate::prompt::Template;

/// Output tokens of a typical answer (a dozen criteria), for estimates.
const TYPICAL_ANSWER_TOKENS: u64 = 450;
/// Points a criterion may carry, both ends included (HealthBench's range).
pub const POINTS_RANGE: std::ops::RangeInclusive<i64> = -10..=10;
/// The categories a criterion may have.
pub const CATEGORIES: &[&str] = &["essential", "important", "optional", "pitfall"];
/// Where the reference answer is looked for when `input.fields.reference` is not mapped.
const REFERENCE_KEYS: &[&str] = &["reference", "reference_answer", "ideal_completion"];
/// Where the degraded answer is looked for when `input.fields.degraded` is not mapped.
const DEGRADED_KEYS: &[&str] = &["degraded", "degraded_answer", "rejected"];
/// Output tokens of a typical degraded answer.
const TYPICAL_DEGRADED_TOKENS: u64 = 200;
/// Lowest temperature of a regenerated rubric.
const RESAMPLE_TEMPERATURE: f32 = 0.7;
/// What the prompt shows when a record has no reference answer.
const NO_REFERENCE: &str = "(none given: write the rubric from the prompt alone)";

/// One record in normal form.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceInput {
    pub id: String,
    pub prompt: Vec<Message>,
    pub reference: Option<String>,
    /// A worse answer the record supplies for the self-check.
    pub degraded: Option<String>,
    pub tags: Vec<String>,
    pub domain: Option<String>,
}

/// Reads reference records through the field mapping.
#[derive(Debug, Clone)]
pub struct ReferenceReader {
    fields: FieldMap,
}

impl ReferenceReader {
    pub fn new(fields: FieldMap) -> Self {
        Self { fields }
    }

    /// The record in normal form, or why it cannot be read.
    pub fn read(&self, record: &RawRecord) -> Result<ReferenceInput, String> {
        let value = json_object(record, "reference")?;
        let prompt = self.prompt(value)?;
        let reference = self.reference(value)?;
        let degraded = self.degraded(value)?;
        let tags = match self.fields.get(value, "tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| {
                    t.as_str().map(str::to_owned).ok_or_else(|| {
                        format!("`{}` must be a list of strings", self.fields.path("tags"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format!(
                    "`{}` must be a list of strings",
                    self.fields.path("tags")
                ));
            }
        };
        let domain = match self.fields.get(value, "domain") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d.trim().is_empty() => None,
            Some(Value::String(d)) => Some(d.trim().to_owned()),
            Some(_) => {
                return Err(format!("`{}` must be a string", self.fields.path("domain")));
            }
        };
        let id = self.fields.id(value).unwrap_or_else(|| {
            let text: Vec<String> = prompt
                .iter()
                .map(|m| format!("{}\u{1f}{}", m.role, m.content))
                .collect();
            short_hash(text.join("\u{1e}").as_bytes(), 24)
        });
        Ok(ReferenceInput {
            id,
            prompt,
            reference,
            degraded,
            tags,
            domain,
        })
    }

    /// The record's own degraded answer: `degraded` (mappable), else `degraded_answer`, else a
    /// string `rejected` (a preference record's worse response).
    fn degraded(&self, value: &Value) -> Result<Option<String>, String> {
        let found = match self.fields.get(value, "degraded") {
            Some(found) => Some((self.fields.path("degraded").to_owned(), found)),
            None => DEGRADED_KEYS[1..]
                .iter()
                .find_map(|key| value.get(*key).map(|found| ((*key).to_owned(), found))),
        };
        match found {
            None | Some((_, Value::Null)) => Ok(None),
            Some((_, Value::String(text))) if text.trim().is_empty() => Ok(None),
            Some((_, Value::String(text))) => Ok(Some(text.trim().to_owned())),
            // A `rejected` that is not a string (a message list) is another layout's field.
            Some((key, _)) if key == "rejected" => Ok(None),
            Some((key, _)) => Err(format!("`{key}` must be a string")),
        }
    }

    fn prompt(&self, value: &Value) -> Result<Vec<Message>, String> {
        let (field, found) = match self.fields.get(value, "prompt") {
            Some(found) if !found.is_null() => ("prompt", found),
            _ => match self.fields.get(value, "messages") {
                Some(found) if !found.is_null() => ("messages", found),
                _ => {
                    return Err(format!(
                        "no prompt: give `{}` (a string or a message list) or `{}` (a message list)",
                        self.fields.path("prompt"),
                        self.fields.path("messages")
                    ));
                }
            },
        };
        prompt_messages(found, self.fields.path(field))
    }

    fn reference(&self, value: &Value) -> Result<Option<String>, String> {
        let found = match self.fields.get(value, "reference") {
            Some(found) => Some(("reference", found)),
            None => REFERENCE_KEYS[1..]
                .iter()
                .find_map(|key| value.get(*key).map(|found| (*key, found))),
        };
        match found {
            None | Some((_, Value::Null)) => Ok(None),
            Some((_, Value::String(text))) if text.trim().is_empty() => Ok(None),
            Some((_, Value::String(text))) => Ok(Some(text.trim().to_owned())),
            Some((key, _)) => Err(format!(
                "`{}` must be a string",
                if key == "reference" {
                    self.fields.path("reference")
                } else {
                    key
                }
            )),
        }
    }
}

/// A prompt found at `path`: a string (one user turn) or a chat message list; an empty one is
/// refused.
pub(crate) fn prompt_messages(found: &Value, path: &str) -> Result<Vec<Message>, String> {
    let messages = match found {
        Value::String(text) => vec![Message::new("user", text.trim())],
        Value::Array(turns) => turns
            .iter()
            .enumerate()
            .map(|(i, turn)| message_of(turn).map_err(|why| format!("`{path}` turn {i}: {why}")))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(format!("`{path}` must be a string or a message list")),
    };
    if messages.iter().all(|m| m.content.trim().is_empty()) {
        return Err(format!("`{path}` is empty"));
    }
    Ok(messages)
}

/// A chat turn: `{role, content}` with string content or a list of typed parts whose text
/// parts are joined.
fn message_of(turn: &Value) -> Result<Message, String> {
    let role = turn
        .get("role")
        .and_then(Value::as_str)
        .ok_or("needs a string `role`")?;
    let content = match turn.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for part in parts {
                match part.get("text").and_then(Value::as_str) {
                    Some(text) => texts.push(text),
                    None => return Err("has a content part without text".into()),
                }
            }
            texts.join("\n")
        }
        _ => return Err("needs `content` (a string or a list of text parts)".into()),
    };
    Ok(Message::new(role, content))
}

/// A parsed rubric: the criteria kept and, per dropped criterion, why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRubric {
    pub criteria: Vec<ReferenceCriterion>,
    pub dropped: Vec<String>,
}

/// Criteria from a model answer `{"criteria": [{criterion, points, category, tags}]}`.
/// Invalid criteria are dropped with a reason (see the module docs); the first `max` valid ones
/// are kept. Fewer than `min` valid criteria is an error naming what was wrong.
pub fn parse_criteria(answer: &str, min: usize, max: usize) -> Result<ParsedRubric, String> {
    let value = extract_json(answer).map_err(|e| e.to_string())?;
    let list = value
        .get("criteria")
        .and_then(Value::as_array)
        .ok_or("give {\"criteria\": [{\"criterion\", \"points\", \"category\", \"tags\"}]}")?;
    let mut criteria: Vec<ReferenceCriterion> = Vec::new();
    let mut dropped = Vec::new();
    for (index, item) in list.iter().enumerate() {
        match criterion_of(item) {
            Ok(criterion) if criteria.iter().any(|c| c.criterion == criterion.criterion) => {
                dropped.push(format!("criterion {index}: repeats an earlier criterion"));
            }
            Ok(criterion) if criteria.len() >= max => {
                dropped.push(format!(
                    "criterion {index}: over reference.max_criteria ({max}): {}",
                    criterion.criterion
                ));
            }
            Ok(criterion) => criteria.push(criterion),
            Err(why) => dropped.push(format!("criterion {index}: {why}")),
        }
    }
    if criteria.len() < min {
        let mut reason = format!("{} valid criteria, at least {min} needed", criteria.len());
        if !dropped.is_empty() {
            reason.push_str(&format!(" ({})", dropped.join("; ")));
        }
        return Err(reason);
    }
    Ok(ParsedRubric { criteria, dropped })
}

fn criterion_of(item: &Value) -> Result<ReferenceCriterion, String> {
    let text = item
        .get("criterion")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    if text.is_empty() {
        return Err("empty criterion text".into());
    }
    let points = match item.get("points") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(p) => p,
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() <= 1e6 => f as i64,
                _ => return Err(format!("points {n} is not an integer")),
            },
        },
        other => return Err(format!("points must be an integer, got {other:?}")),
    };
    if !POINTS_RANGE.contains(&points) {
        return Err(format!("points {points} outside [-10, 10]"));
    }
    if points == 0 {
        return Err("points 0 weigh nothing".into());
    }
    let category = match item.get("category").and_then(Value::as_str) {
        Some(c) => {
            let c = c.trim().to_ascii_lowercase();
            if !CATEGORIES.contains(&c.as_str()) {
                return Err(format!(
                    "category {c:?} is not one of {}",
                    CATEGORIES.join(", ")
                ));
            }
            c
        }
        None => implied_category(points).to_owned(),
    };
    if (category == "pitfall") != (points < 0) {
        return Err(format!(
            "category {category:?} contradicts points {points} (pitfalls, and only they, have negative points)"
        ));
    }
    let mut tags: Vec<String> = match item.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        Some(_) => return Err("tags must be a list of strings".into()),
    };
    if !tags.iter().any(|t| t.starts_with("level:")) {
        tags.push("level:example".into());
    }
    Ok(ReferenceCriterion {
        criterion: text.to_owned(),
        points: points as i32,
        tags,
        category,
    })
}

/// The category a criterion without one gets from its points.
fn implied_category(points: i64) -> &'static str {
    match points {
        p if p < 0 => "pitfall",
        p if p >= 7 => "essential",
        p if p >= 4 => "important",
        _ => "optional",
    }
}

pub struct ReferencePipeline {
    gateway: Arc<Gateway>,
    model: StageModel,
    degrade_gateway: Arc<Gateway>,
    degrade_model: StageModel,
    grader: Grader,
    spec: ReferenceSpec,
    reader: ReferenceReader,
    template: Template,
    degrade_template: Template,
}

/// One generation attempt and its self-check.
struct Attempt {
    rubric: ParsedRubric,
    reference: Graded,
    degraded: Graded,
    passed: bool,
}

/// An answer's verdicts and score under a rubric (empty and `None` when grading failed).
#[derive(Default)]
struct Graded {
    verdicts: Vec<CriterionVerdict>,
    score: Option<f64>,
}

impl ReferencePipeline {
    /// `fields` is `input.fields`, validated with the spec.
    pub fn new(stages: &Stages, spec: ReferenceSpec, fields: &BTreeMap<String, String>) -> Self {
        let (gateway, model) = stages.get("generate");
        let (degrade_gateway, degrade_model) = stages.get("degrade");
        Self {
            gateway,
            model,
            degrade_gateway,
            degrade_model,
            grader: Grader::new(stages, "judge"),
            spec,
            reader: ReferenceReader::new(FieldMap::new(fields)),
            template: stages.templates.get("reference_generate"),
            degrade_template: stages.templates.get("reference_degrade"),
        }
    }

    fn response_format(&self) -> ResponseFormat {
        ResponseFormat {
            name: REFERENCE_TASK.into(),
            schema: json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["criteria"],
                "properties": {"criteria": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["criterion", "points", "category", "tags"],
                    "properties": {
                        "criterion": {"type": "string"},
                        "points": {"type": "integer", "minimum": -10, "maximum": 10},
                        "category": {"type": "string", "enum": CATEGORIES},
                        "tags": {"type": "array", "items": {"type": "string"}}
                    }
                }}}
            }),
        }
    }

    /// The generation request at attempt `attempt` (1-based).
    fn request(&self, input: &ReferenceInput, attempt: u32) -> ChatRequest {
        let conversation = conversation_text(&input.prompt);
        let min = self.spec.min_criteria.to_string();
        let max = self.spec.max_criteria.to_string();
        let temperature = if attempt <= 1 {
            self.model.temperature
        } else {
            self.model.temperature.max(RESAMPLE_TEMPERATURE)
        };
        ChatRequest {
            model: self.model.model.clone(),
            messages: self.template.render(&[
                ("min_criteria", &min),
                ("max_criteria", &max),
                ("conversation", &conversation),
                (
                    "reference",
                    input.reference.as_deref().unwrap_or(NO_REFERENCE),
                ),
            ]),
            temperature,
            max_tokens: self.model.max_tokens,
            seed: attempt_seed(self.model.seed, attempt),
            response_format: Some(self.response_format()),
        }
    }

    fn degrade_request(&self, input: &ReferenceInput, reference: &str) -> ChatRequest {
        ChatRequest {
            model: self.degrade_model.model.clone(),
            messages: self.degrade_template.render(&[
                ("conversation", &conversation_text(&input.prompt)),
                ("reference", reference),
            ]),
            temperature: self.degrade_model.temperature,
            max_tokens: self.degrade_model.max_tokens,
            seed: self.degrade_model.seed,
            response_format: Some(ResponseFormat {
                name: REFERENCE_DEGRADE_TASK.into(),
                schema: json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["answer"],
                    "properties": {"answer": {"type": "string"}}
                }),
            }),
        }
    }

    fn read(&self, record: &RawRecord) -> Result<ReferenceInput, String> {
        let input = self.reader.read(record)?;
        if input.reference.is_none() && !self.spec.allow_missing_reference {
            return Err(
                "no reference answer, and reference.allow_missing_reference is false".into(),
            );
        }
        Ok(input)
    }

    /// Whether this record's rubric goes through the self-check.
    fn checks(&self, input: &ReferenceInput) -> bool {
        self.spec.self_check && input.reference.is_some()
    }

    fn max_attempts(&self, input: &ReferenceInput) -> u32 {
        if self.checks(input) {
            self.spec.max_resamples + 1
        } else {
            1
        }
    }

    /// One rubric generation; `Err((reason, resample))` when it made none.
    async fn generate(
        &self,
        input: &ReferenceInput,
        attempt: u32,
        usage: &mut Usage,
    ) -> Result<Result<ParsedRubric, (String, bool)>, PipelineError> {
        let request = self.request(input, attempt);
        let (min, max) = (
            self.spec.min_criteria as usize,
            self.spec.max_criteria as usize,
        );
        let (parsed, spent) = in_stage(
            "generate",
            self.gateway
                .chat_parsed(&request, |answer| parse_criteria(answer, min, max)),
        )
        .await;
        usage.add(&spent);
        Ok(match parsed {
            Ok(rubric) => Ok(rubric),
            Err(error) => {
                let resample = matches!(error, LlmError::Unusable(_));
                Err((classify_llm_error(error)?, resample))
            }
        })
    }

    /// The degraded answer the self-check grades, and where it came from.
    async fn degraded(
        &self,
        input: &ReferenceInput,
        reference: &str,
        usage: &mut Usage,
    ) -> Result<Result<(String, &'static str), String>, PipelineError> {
        if let Some(own) = &input.degraded {
            return Ok(Ok((own.clone(), "input")));
        }
        let request = self.degrade_request(input, reference);
        let (parsed, spent) = in_stage(
            "degrade",
            self.degrade_gateway.chat_parsed(&request, parse_degraded),
        )
        .await;
        usage.add(&spent);
        Ok(match parsed {
            Ok(answer) => Ok((answer, "generated")),
            Err(error) => Err(classify_llm_error(error)?),
        })
    }

    /// Grades the reference and the degraded answer under `rubric`.
    async fn self_check(
        &self,
        input: &ReferenceInput,
        rubric: &[ReferenceCriterion],
        reference: &str,
        degraded: &str,
        usage: &mut Usage,
    ) -> Result<(Graded, Graded), PipelineError> {
        let conversation = conversation_text(&input.prompt);
        let criteria: Vec<GradeCriterion<'_>> = rubric
            .iter()
            .map(|c| GradeCriterion {
                text: &c.criterion,
                points: c.points,
            })
            .collect();
        let points: Vec<i32> = rubric.iter().map(|c| c.points).collect();
        let ((ours, spent_ours), (worse, spent_worse)) = futures::join!(
            self.grader.grade(&conversation, &criteria, reference, None),
            self.grader.grade(&conversation, &criteria, degraded, None),
        );
        usage.add(&spent_ours);
        usage.add(&spent_worse);
        let mut graded = Vec::with_capacity(2);
        for result in [ours, worse] {
            graded.push(match result {
                Ok(verdicts) => Graded {
                    score: grading::score(&points, &verdicts),
                    verdicts,
                },
                Err(error) => {
                    let reason = classify_llm_error(error)?;
                    tracing::debug!(%reason, "reference self-check grade unusable");
                    Graded::default()
                }
            });
        }
        let degraded = graded.pop().unwrap_or_default();
        let reference = graded.pop().unwrap_or_default();
        Ok((reference, degraded))
    }

    fn passes(&self, reference: &Graded, degraded: &Graded) -> bool {
        match (reference.score, degraded.score) {
            (Some(ours), Some(worse)) => {
                ours >= self.spec.pass_threshold && worse < self.spec.pass_threshold
            }
            _ => false,
        }
    }
}

/// The degraded answer from `{"answer": "..."}`.
fn parse_degraded(answer: &str) -> Result<String, String> {
    let value = extract_json(answer).map_err(|e| e.to_string())?;
    match value.get("answer").and_then(Value::as_str).map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err("give {\"answer\": \"...\"} with a non-empty answer".into()),
    }
}

fn score_text(score: Option<f64>) -> String {
    score.map_or_else(|| "ungraded".to_owned(), |s| format!("{s:.2}"))
}

#[async_trait::async_trait]
impl Pipeline for ReferencePipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Reference
    }

    fn prompt_hashes(&self) -> BTreeMap<String, String> {
        let check: &[&Template] = if self.spec.self_check {
            &[&self.degrade_template, self.grader.template()]
        } else {
            &[]
        };
        template_hashes([&self.template].into_iter().chain(check.iter().copied()))
    }

    fn estimate(&self, record: &RawRecord) -> Estimate {
        let input = match self.read(record) {
            Ok(input) => input,
            Err(_) => {
                return Estimate::rejected();
            }
        };
        let mut estimate = Estimate::call(
            &self.gateway,
            &self.request(&input, 1),
            TYPICAL_ANSWER_TOKENS,
        );
        let Some(reference) = input.reference.as_deref().filter(|_| self.checks(&input)) else {
            return estimate;
        };
        if input.degraded.is_none() {
            let degrade = self.degrade_request(&input, reference);
            estimate.add(&Estimate::call(
                &self.degrade_gateway,
                &degrade,
                TYPICAL_DEGRADED_TOKENS,
            ));
        }
        // A typical rubric of a dozen criteria, graded for both answers.
        let placeholder = "The response states a fact about the question.";
        let criteria = vec![
            GradeCriterion {
                text: placeholder,
                points: 5,
            };
            12
        ];
        let conversation = conversation_text(&input.prompt);
        let degraded = input.degraded.as_deref().unwrap_or(reference);
        for answer in [reference, degraded] {
            let request = self.grader.request(&conversation, &criteria, answer, None);
            estimate.add(&Estimate::call(
                self.grader.gateway(),
                &request,
                12 * grading::TYPICAL_TOKENS_PER_CRITERION,
            ));
        }
        estimate
    }

    async fn process(
        &self,
        record: RawRecord,
        ctx: &RecordContext,
    ) -> Result<RecordOutcome, PipelineError> {
        let mut outcome = RecordOutcome::default();
        let Some(input) = outcome.parse(ctx, &record, |r| self.read(r)) else {
            return Ok(outcome);
        };
        let mut usage = Usage::default();
        let checked = self.checks(&input);
        let reference = input.reference.clone().unwrap_or_default();
        let degraded = if checked {
            outcome.enter("degrade");
            match self.degraded(&input, &reference, &mut usage).await? {
                Ok(degraded) => {
                    outcome.pass("degrade");
                    Some(degraded)
                }
                Err(reason) => {
                    outcome.usage.add(&usage);
                    outcome.reject(ctx, &record.source, "degrade", reason, &reference);
                    return Ok(outcome);
                }
            }
        } else {
            None
        };
        let mut last: Option<Attempt> = None;
        let mut last_error: Option<String> = None;
        let mut attempts = 0;
        for attempt in 1..=self.max_attempts(&input) {
            attempts = attempt;
            outcome.enter("generate");
            let rubric = match self.generate(&input, attempt, &mut usage).await? {
                Ok(rubric) => rubric,
                Err((reason, resample)) => {
                    last_error = Some(reason);
                    if resample {
                        continue;
                    }
                    break;
                }
            };
            outcome.pass("generate");
            let Some((degraded, _)) = &degraded else {
                last = Some(Attempt {
                    rubric,
                    reference: Graded::default(),
                    degraded: Graded::default(),
                    passed: true,
                });
                break;
            };
            outcome.enter("judge");
            let (ours, worse) = self
                .self_check(&input, &rubric.criteria, &reference, degraded, &mut usage)
                .await?;
            let passed = self.passes(&ours, &worse);
            if passed {
                outcome.pass("judge");
            }
            last = Some(Attempt {
                rubric,
                reference: ours,
                degraded: worse,
                passed,
            });
            if passed {
                break;
            }
        }
        outcome.usage.add(&usage);
        let Some(attempt) = last else {
            let reason = last_error.unwrap_or_else(|| "no rubric was generated".into());
            let prompt = conversation_text(&input.prompt);
            outcome.reject(ctx, &record.source, "generate", reason, &prompt);
            return Ok(outcome);
        };
        outcome.enter("self_check");
        let drop_reason = if attempt.passed {
            outcome.pass("self_check");
            None
        } else {
            Some(format!(
                "self-check failed after {attempts} attempt(s): the reference answer scored {}, \
                 the degraded answer {} (threshold {:.2}: the reference must reach it, the \
                 degraded answer stay below)",
                score_text(attempt.reference.score),
                score_text(attempt.degraded.score),
                self.spec.pass_threshold
            ))
        };
        let source = source_name(&record.source);
        let provenance = provenance(
            &record.source,
            ctx,
            self.gateway.provider_kind(),
            &self.model.model,
            &self.template.hash,
            &usage,
        );
        let (judge_model, judge_prompt_hash) = if checked {
            (
                self.grader.model().to_owned(),
                self.grader.template().hash.clone(),
            )
        } else {
            (String::new(), String::new())
        };
        let (degraded_answer, degraded_origin) = match degraded {
            Some((answer, origin)) => (Some(answer), Some(origin.to_owned())),
            None => (None, None),
        };
        outcome.rows.push(OutputRow::Reference(ReferenceRow {
            id: input.id,
            source,
            prompt: input.prompt,
            reference_answer: input.reference,
            example_tags: input.tags,
            domain: input.domain,
            rubric: attempt.rubric.criteria,
            dropped_criteria: attempt.rubric.dropped,
            degraded_answer,
            degraded_origin,
            reference_score: attempt.reference.score,
            degraded_score: attempt.degraded.score,
            reference_verdicts: attempt.reference.verdicts,
            degraded_verdicts: attempt.degraded.verdicts,
            attempts,
            kept: attempt.passed,
            drop_reason,
            judge_model,
            judge_prompt_hash,
            provenance,
        }));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::json_record as record;

    fn reader(fields: &[(&str, &str)]) -> ReferenceReader {
        let map = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ReferenceReader::new(FieldMap::new(&map))
    }

    #[test]
    fn reference_reads_string_prompts_messages_and_mapped_fields() {
        let plain = reader(&[])
            .read(&record(json!({"prompt": "Why do bread doughs rise?", "reference_answer": "Yeast.", "tags": ["cooking"]})))
            .unwrap();
        assert_eq!(
            plain.prompt,
            vec![Message::new("user", "Why do bread doughs rise?")]
        );
        assert_eq!(plain.reference.as_deref(), Some("Yeast."));
        assert_eq!(plain.tags, vec!["cooking".to_owned()]);
        assert_eq!(plain.id.len(), 24);

        let chat = reader(&[])
            .read(&record(json!({"id": 7, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})))
            .unwrap();
        assert_eq!(chat.id, "7");
        assert_eq!(chat.prompt[1], Message::new("user", "Hi"));
        assert_eq!(chat.reference, None);

        let mapped = reader(&[
            ("prompt", "q.text"),
            ("reference", "/a/0"),
            ("domain", "meta.area"),
        ])
        .read(&record(
            json!({"q": {"text": "Q?"}, "a": ["A."], "meta": {"area": "botany"}}),
        ))
        .unwrap();
        assert_eq!(mapped.prompt[0].content, "Q?");
        assert_eq!(mapped.reference.as_deref(), Some("A."));
        assert_eq!(mapped.domain.as_deref(), Some("botany"));
    }

    #[test]
    fn reference_refuses_records_without_a_usable_prompt() {
        let r = reader(&[]);
        let missing = r.read(&record(json!({"reference": "x"}))).unwrap_err();
        assert!(missing.contains("no prompt"), "{missing}");
        let empty = r.read(&record(json!({"prompt": "  "}))).unwrap_err();
        assert!(empty.contains("empty"), "{empty}");
        let bad_turn = r
            .read(&record(json!({"messages": [{"content": "no role"}]})))
            .unwrap_err();
        assert!(
            bad_turn.contains("turn 0") && bad_turn.contains("role"),
            "{bad_turn}"
        );
        let bad_tags = r
            .read(&record(json!({"prompt": "q", "tags": "one"})))
            .unwrap_err();
        assert!(bad_tags.contains("tags"), "{bad_tags}");
    }

    #[test]
    fn reference_criteria_out_of_range_or_contradictory_are_dropped_with_reasons() {
        let answer = json!({"criteria": [
            {"criterion": "The response names yeast.", "points": 8, "category": "essential", "tags": ["axis:accuracy"]},
            {"criterion": "The response claims baking soda is yeast.", "points": -5, "category": "pitfall", "tags": []},
            {"criterion": "Too heavy.", "points": 12, "category": "essential", "tags": []},
            {"criterion": "Fractional.", "points": 2.5, "category": "optional", "tags": []},
            {"criterion": "", "points": 3, "category": "optional", "tags": []},
            {"criterion": "Negative but important.", "points": -3, "category": "important", "tags": []},
            {"criterion": "Zero.", "points": 0, "category": "optional", "tags": []},
            {"criterion": "No category.", "points": 4}
        ]})
        .to_string();
        let parsed = parse_criteria(&answer, 1, 20).unwrap();
        let kept: Vec<&str> = parsed
            .criteria
            .iter()
            .map(|c| c.criterion.as_str())
            .collect();
        assert_eq!(
            kept,
            [
                "The response names yeast.",
                "The response claims baking soda is yeast.",
                "No category."
            ]
        );
        assert_eq!(parsed.criteria[2].category, "important");
        assert_eq!(parsed.criteria[0].tags, ["axis:accuracy", "level:example"]);
        assert_eq!(parsed.dropped.len(), 5, "{:?}", parsed.dropped);
        assert!(parsed.dropped[0].contains("outside [-10, 10]"));
        assert!(parsed.dropped[1].contains("not an integer"));
        assert!(parsed.dropped[2].contains("empty"));
        assert!(parsed.dropped[3].contains("contradicts"));
        assert!(parsed.dropped[4].contains("0"));
    }

    #[test]
    fn reference_rubric_with_too_few_valid_criteria_is_refused() {
        let none = parse_criteria(r#"{"criteria": []}"#, 1, 20).unwrap_err();
        assert!(none.contains("0 valid criteria"), "{none}");
        let short = parse_criteria(
            r#"{"criteria": [{"criterion": "A.", "points": 11, "category": "essential"}]}"#,
            1,
            20,
        )
        .unwrap_err();
        assert!(short.contains("outside [-10, 10]"), "{short}");
        let capped = parse_criteria(
            r#"{"criteria": [{"criterion": "A.", "points": 5}, {"criterion": "B.", "points": 5}, {"criterion": "A.", "points": 3}]}"#,
            1,
            1,
        )
        .unwrap();
        assert_eq!(capped.criteria.len(), 1);
        assert_eq!(capped.dropped.len(), 2);
    }
}
