//! The score pipeline: rubric rows and responses → per-criterion verdicts and a weighted score
//! per response, and for labelled pairs the predicted preference (the consumer side of the
//! rubric recipes: Rubric-RM judge data, RuscaRL-style rewards, ResearchQA's coverage judge).
//!
//! For each input record:
//!
//! 1. **Read** (stage `parse`, [`ScoreReader`]): the rubric in any layout our exports and the
//!    common datasets use, detected per record (`input.fields.rubric` maps where it is):
//!
//!    | layout | rubric | criterion weight (`points`) |
//!    |---|---|---|
//!    | `healthbench` | `reward_model.rubrics` (verl) or `rubrics`: `[{criterion, points, tags}]` | the points |
//!    | `reference` | `rubric: [{criterion, points, category}]` (our reference rows) | the points |
//!    | `crg` | `rubric: [{text, kind}]` (our crg rows) | hard rule 10, principle 5 |
//!    | `openrubric` | `rubric`: the numbered text with `[Hard Rule]` / `[Principle]` tags | hard rule 10, principle 5 |
//!    | `researchqa` | `rubric: [{rubric_item, type}]` (our researchqa rows) | 1 each |
//!    | `plain` | `rubric`: a list of strings, or text lines without tags | 1 each |
//!
//!    (10 and 5 are the weights the `healthbench` export gives crg items.) The prompt is
//!    `prompt` (a string or a message list), else `instruction`, `query` or `question`. The
//!    responses are `responses` (strings, or objects with `text`, `content` or `response` and
//!    an optional `id`), else `chosen` and `rejected` (label: chosen), else `response_a` and
//!    `response_b` (label: `winner`), else one `response` or `completion`. A `label` names the
//!    preferred response by id or by index. The id is `id`, `pair_id` or `prompt_id`, else a
//!    hash of the prompt and rubric. A record without a prompt or a criterion is a reject.
//! 2. **Respond** (stage `respond`, template `score_respond`): `score.generate_responses`
//!    responses are sampled, each with its own seed, and graded beside the input's. A record
//!    left with no response at all is a reject.
//! 3. **Judge** (stage `judge`, template `rubric_grade`, [`crate::grading`]): one call per
//!    response grades every criterion; the score is HealthBench's (met points over positive
//!    points, clipped to [0, 1]). With `score.hard_rules_gate` a response that fails a hard rule
//!    scores 0, as OpenRubrics treats hard rules as gatekeepers. A grade the judge could not
//!    give leaves that response's score null.
//! 4. **Agreement** (stage `agreement`, labelled records): the response with the single
//!    highest score is the prediction (among the input's responses when it has two or more,
//!    else among all; none on a tie or a missing score); the stage counts a labelled
//!    record in and, when the prediction is the label, out, so the job's agreement with its
//!    labels is `agreement.output / agreement.input` in the run summary and `status`.
//!
//! Every record ends as exactly one row or one reject: `inputs = rows + rejects`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use rubricmill_core::spec::ScoreSpec;
use rubricmill_core::{
    Message, OutputRow, PipelineKind, RawRecord, ScoreCriterion, ScoreRow, ScoredResponse, Usage,
    short_hash,
};
use rubricmill_llm::scope::in_stage;
use rubricmill_llm::simulated::SCORE_RESPOND_TASK;
use rubricmill_llm::structured::extract_json;
use rubricmill_llm::{ChatRequest, Gateway, ResponseFormat};
use serde_json::{Value, json};

use crate::crg::{attempt_seed, parse_rubric_text};
use crate::grading::{self, GradeCriterion, Grader, conversation_text};
use crate::pairs::FieldMap;
use crate::pipeline::{
    Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, StageModel, Stages,
    classify_llm_error, json_object, provenance, source_name, template_hashes,
};
use crate::prompt::Template;
use crate::reference::prompt_messages;

/// Weight of a hard rule (as the healthbench export gives it).
pub const HARD_RULE_POINTS: i32 = 10;
/// Weight of a principle (as the healthbench export gives it).
pub const PRINCIPLE_POINTS: i32 = 5;
/// Output tokens of a typical generated response, for estimates.
const TYPICAL_RESPONSE_TOKENS: u64 = 300;
const PROMPT_KEYS: &[&str] = &["prompt", "instruction", "query", "question"];
const RESPONSE_TEXT_KEYS: &[&str] = &["text", "content", "response"];

/// One record in normal form.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreInput {
    pub id: String,
    pub layout: &'static str,
    pub prompt: Vec<Message>,
    pub rubric: Vec<ScoreCriterion>,
    /// `(response_id, text)` of the input's responses.
    pub responses: Vec<(String, String)>,
    pub label: Option<String>,
}

/// Reads rubric rows through the field mapping.
#[derive(Debug, Clone)]
pub struct ScoreReader {
    fields: FieldMap,
}

impl ScoreReader {
    pub fn new(fields: FieldMap) -> Self {
        Self { fields }
    }

    /// The record in normal form, or why it cannot be read.
    pub fn read(&self, record: &RawRecord) -> Result<ScoreInput, String> {
        let value = json_object(record, "score")?;
        let (layout, rubric) = self.rubric(value)?;
        if rubric.is_empty() {
            return Err("the rubric has no criteria".into());
        }
        let prompt = self.prompt(value)?;
        let (responses, implied_label) = self.responses(value)?;
        let label = match self.fields.get(value, "label") {
            None | Some(Value::Null) => implied_label,
            Some(Value::String(id)) => {
                let id = id.trim();
                if !responses.iter().any(|(rid, _)| rid == id) {
                    return Err(format!(
                        "`{}` names response {id:?}, which the record does not have",
                        self.fields.path("label")
                    ));
                }
                Some(id.to_owned())
            }
            Some(Value::Number(n)) => {
                let index = n.as_u64().map(|i| i as usize);
                match index.and_then(|i| responses.get(i)) {
                    Some((id, _)) => Some(id.clone()),
                    None => {
                        return Err(format!(
                            "`{}` is {n}, but the record has {} responses",
                            self.fields.path("label"),
                            responses.len()
                        ));
                    }
                }
            }
            Some(_) => {
                return Err(format!(
                    "`{}` must be a response id or index",
                    self.fields.path("label")
                ));
            }
        };
        let id = self
            .fields
            .id(value)
            .or_else(|| {
                ["pair_id", "prompt_id"]
                    .iter()
                    .find_map(|key| value.get(*key).and_then(Value::as_str))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| {
                let mut text = conversation_text(&prompt);
                for c in &rubric {
                    text.push('\u{1e}');
                    text.push_str(&c.criterion);
                }
                short_hash(text.as_bytes(), 24)
            });
        Ok(ScoreInput {
            id,
            layout,
            prompt,
            rubric,
            responses,
            label,
        })
    }

    fn rubric(&self, value: &Value) -> Result<(&'static str, Vec<ScoreCriterion>), String> {
        if let Some(found) = self.fields.get(value, "rubric") {
            return rubric_of(found, self.fields.path("rubric"));
        }
        if let Some(rubrics) = value.pointer("/reward_model/rubrics") {
            return weighted(rubrics, "reward_model.rubrics").map(|r| ("healthbench", r));
        }
        if let Some(rubrics) = value.get("rubrics") {
            return weighted(rubrics, "rubrics").map(|r| ("healthbench", r));
        }
        Err(format!(
            "no rubric: give `{}` (a criterion list or rubric text), `rubrics` or \
             `reward_model.rubrics`",
            self.fields.path("rubric")
        ))
    }

    fn prompt(&self, value: &Value) -> Result<Vec<Message>, String> {
        let found = match self.fields.get(value, "prompt") {
            Some(found) if !found.is_null() => Some((self.fields.path("prompt").to_owned(), found)),
            _ => PROMPT_KEYS[1..]
                .iter()
                .find_map(|key| value.get(*key).map(|found| ((*key).to_owned(), found))),
        };
        let Some((path, found)) = found else {
            return Err(format!(
                "no prompt: give `{}` (a string or a message list), `instruction` or `query`",
                self.fields.path("prompt")
            ));
        };
        prompt_messages(found, &path)
    }

    /// The input's responses and the label their layout implies.
    #[allow(clippy::type_complexity)]
    fn responses(&self, value: &Value) -> Result<(Vec<(String, String)>, Option<String>), String> {
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
        };
        let listed = match self.fields.get(value, "responses") {
            Some(found) => Some((self.fields.path("responses").to_owned(), found)),
            None => value
                .get("responses")
                .map(|found| ("responses".to_owned(), found)),
        };
        if let Some((path, found)) = listed {
            let Value::Array(items) = found else {
                return Err(format!("`{path}` must be a list of responses"));
            };
            let mut responses = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let (id, text) = match item {
                    Value::String(text) => (None, text.trim()),
                    Value::Object(object) => (
                        object.get("id").and_then(|id| match id {
                            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        }),
                        RESPONSE_TEXT_KEYS
                            .iter()
                            .find_map(|key| object.get(*key).and_then(Value::as_str))
                            .map(str::trim)
                            .unwrap_or(""),
                    ),
                    _ => {
                        return Err(format!(
                            "`{path}` item {index} must be a string or an object with `text`"
                        ));
                    }
                };
                if text.is_empty() {
                    return Err(format!("`{path}` item {index} is empty"));
                }
                let id = id.unwrap_or_else(|| format!("response_{index}"));
                if responses
                    .iter()
                    .any(|(seen, _): &(String, String)| *seen == id)
                {
                    return Err(format!("`{path}` repeats the response id {id:?}"));
                }
                responses.push((id, text.to_owned()));
            }
            return Ok((responses, None));
        }
        if let (Some(chosen), Some(rejected)) = (text("chosen"), text("rejected")) {
            return Ok((
                vec![
                    ("chosen".into(), chosen.to_owned()),
                    ("rejected".into(), rejected.to_owned()),
                ],
                Some("chosen".into()),
            ));
        }
        if let (Some(a), Some(b)) = (text("response_a"), text("response_b")) {
            let label = match text("winner").map(str::to_ascii_uppercase).as_deref() {
                Some("A") | Some("RESPONSE_A") => Some("response_a".to_owned()),
                Some("B") | Some("RESPONSE_B") => Some("response_b".to_owned()),
                _ => None,
            };
            return Ok((
                vec![
                    ("response_a".into(), a.to_owned()),
                    ("response_b".into(), b.to_owned()),
                ],
                label,
            ));
        }
        for key in ["response", "completion"] {
            if let Some(text) = text(key) {
                return Ok((vec![("response".into(), text.to_owned())], None));
            }
        }
        Ok((Vec::new(), None))
    }
}

/// A rubric value in any of the layouts of the module docs.
fn rubric_of(found: &Value, path: &str) -> Result<(&'static str, Vec<ScoreCriterion>), String> {
    match found {
        Value::String(text) => {
            let tagged = parse_rubric_text(text);
            if !tagged.is_empty() {
                return Ok((
                    "openrubric",
                    tagged
                        .iter()
                        .map(|i| crg_criterion(&i.text, &i.kind))
                        .collect(),
                ));
            }
            let lines = text
                .lines()
                .map(|l| {
                    l.trim()
                        .trim_start_matches(|c: char| {
                            c.is_ascii_digit() || c == '.' || c == ')' || c == '-' || c == '*'
                        })
                        .trim()
                })
                .filter(|l| !l.is_empty())
                .map(plain)
                .collect();
            Ok(("plain", lines))
        }
        Value::Array(items) => {
            let first = items.first();
            let has = |key: &str| first.is_some_and(|f| f.get(key).is_some());
            if has("criterion") && has("points") {
                let layout = if has("category") {
                    "reference"
                } else {
                    "healthbench"
                };
                return weighted(found, path).map(|r| (layout, r));
            }
            if has("text") && has("kind") {
                let mut criteria = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    let text = item
                        .get("text")
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .unwrap_or("");
                    let kind = item.get("kind").and_then(Value::as_str).unwrap_or("");
                    if text.is_empty() {
                        return Err(format!("`{path}` item {index} has no text"));
                    }
                    criteria.push(crg_criterion(text, kind));
                }
                return Ok(("crg", criteria));
            }
            if has("rubric_item") {
                let mut criteria = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    match item
                        .get("rubric_item")
                        .and_then(Value::as_str)
                        .map(str::trim)
                    {
                        Some(text) if !text.is_empty() => criteria.push(plain(text)),
                        _ => return Err(format!("`{path}` item {index} has no rubric_item")),
                    }
                }
                return Ok(("researchqa", criteria));
            }
            let mut criteria = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                match item.as_str().map(str::trim) {
                    Some(text) if !text.is_empty() => criteria.push(plain(text)),
                    _ => {
                        return Err(format!(
                            "`{path}` item {index} is not a criterion: give strings, \
                             {{criterion, points}}, {{text, kind}} or {{rubric_item}}"
                        ));
                    }
                }
            }
            Ok(("plain", criteria))
        }
        _ => Err(format!("`{path}` must be a criterion list or rubric text")),
    }
}

fn plain(text: &str) -> ScoreCriterion {
    ScoreCriterion {
        criterion: text.to_owned(),
        points: 1,
        kind: "item".into(),
    }
}

fn crg_criterion(text: &str, kind: &str) -> ScoreCriterion {
    let hard = kind.trim().eq_ignore_ascii_case("hard_rule");
    ScoreCriterion {
        criterion: text.trim().to_owned(),
        points: if hard {
            HARD_RULE_POINTS
        } else {
            PRINCIPLE_POINTS
        },
        kind: if hard { "hard_rule" } else { "principle" }.into(),
    }
}

/// `[{criterion, points, category?, tags?}]`: HealthBench and our reference rows.
fn weighted(found: &Value, path: &str) -> Result<Vec<ScoreCriterion>, String> {
    let Value::Array(items) = found else {
        return Err(format!("`{path}` must be a list of {{criterion, points}}"));
    };
    let mut criteria = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let text = item
            .get("criterion")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("");
        if text.is_empty() {
            return Err(format!("`{path}` item {index} has no criterion text"));
        }
        let points = item
            .get("points")
            .and_then(|p| p.as_i64().or_else(|| p.as_f64().map(|f| f.round() as i64)))
            .ok_or_else(|| format!("`{path}` item {index} has no numeric points"))?;
        let points = i32::try_from(points)
            .map_err(|_| format!("`{path}` item {index}: points {points} out of range"))?;
        let kind = match item.get("category").and_then(Value::as_str) {
            Some(category) => category.trim().to_ascii_lowercase(),
            None if points < 0 => "pitfall".into(),
            None => "item".into(),
        };
        criteria.push(ScoreCriterion {
            criterion: text.to_owned(),
            points,
            kind,
        });
    }
    Ok(criteria)
}

/// The response from `{"response": "..."}`.
fn parse_response(answer: &str) -> Result<String, String> {
    let value = extract_json(answer).map_err(|e| e.to_string())?;
    match value.get("response").and_then(Value::as_str).map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err("give {\"response\": \"...\"} with a non-empty response".into()),
    }
}

/// The response with the single highest score; `None` on a tie, a missing score or fewer than
/// two responses.
pub fn predicted(responses: &[ScoredResponse]) -> Option<String> {
    if responses.len() < 2 {
        return None;
    }
    let scores: Vec<f64> = responses.iter().map(|r| r.score).collect::<Option<_>>()?;
    let best = scores.iter().copied().fold(f64::MIN, f64::max);
    let mut top = responses
        .iter()
        .zip(&scores)
        .filter(|(_, s)| (**s - best).abs() < 1e-9);
    let (winner, _) = top.next()?;
    top.next().is_none().then(|| winner.response_id.clone())
}

pub struct ScorePipeline {
    respond_gateway: Arc<Gateway>,
    respond_model: StageModel,
    grader: Grader,
    spec: ScoreSpec,
    reader: ScoreReader,
    respond_template: Template,
}

impl ScorePipeline {
    /// `fields` is `input.fields`, validated with the spec.
    pub fn new(stages: &Stages, spec: ScoreSpec, fields: &BTreeMap<String, String>) -> Self {
        let (respond_gateway, respond_model) = stages.get("respond");
        Self {
            respond_gateway,
            respond_model,
            grader: Grader::new(stages, "judge"),
            spec,
            reader: ScoreReader::new(FieldMap::new(fields)),
            respond_template: stages.templates.get("score_respond"),
        }
    }

    /// The record in normal form, with a response to grade or the means to write one.
    fn read(&self, record: &RawRecord) -> Result<ScoreInput, String> {
        let input = self.reader.read(record)?;
        if input.responses.is_empty() && self.spec.generate_responses == 0 {
            return Err(
                "no responses: give `responses`, `chosen` and `rejected`, `response_a` \
                        and `response_b` or `response`, or set score.generate_responses"
                    .into(),
            );
        }
        Ok(input)
    }

    /// The request for generated response `index` (0-based), each with its own seed.
    fn respond_request(&self, conversation: &str, index: u32) -> ChatRequest {
        ChatRequest {
            model: self.respond_model.model.clone(),
            messages: self
                .respond_template
                .render(&[("conversation", conversation)]),
            temperature: self.respond_model.temperature,
            max_tokens: self.respond_model.max_tokens,
            seed: attempt_seed(self.respond_model.seed, index + 1),
            response_format: Some(ResponseFormat {
                name: SCORE_RESPOND_TASK.into(),
                schema: json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["response"],
                    "properties": {"response": {"type": "string"}}
                }),
            }),
        }
    }

    fn criteria<'a>(rubric: &'a [ScoreCriterion]) -> Vec<GradeCriterion<'a>> {
        rubric
            .iter()
            .map(|c| GradeCriterion {
                text: &c.criterion,
                points: c.points,
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Pipeline for ScorePipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Score
    }

    fn prompt_hashes(&self) -> BTreeMap<String, String> {
        let respond = (self.spec.generate_responses > 0).then_some(&self.respond_template);
        template_hashes([self.grader.template()].into_iter().chain(respond))
    }

    fn estimate(&self, record: &RawRecord) -> Estimate {
        let Ok(input) = self.read(record) else {
            return Estimate::rejected();
        };
        let conversation = conversation_text(&input.prompt);
        let criteria = Self::criteria(&input.rubric);
        let typical_grade = criteria.len() as u64 * grading::TYPICAL_TOKENS_PER_CRITERION;
        let mut estimate = Estimate::default();
        let placeholder = "x ".repeat(TYPICAL_RESPONSE_TOKENS as usize * 2);
        for index in 0..self.spec.generate_responses {
            let request = self.respond_request(&conversation, index);
            estimate.add(&Estimate::call(
                &self.respond_gateway,
                &request,
                TYPICAL_RESPONSE_TOKENS,
            ));
            let grade = self
                .grader
                .request(&conversation, &criteria, &placeholder, None);
            estimate.add(&Estimate::call(
                self.grader.gateway(),
                &grade,
                typical_grade,
            ));
        }
        for (_, text) in &input.responses {
            let grade = self.grader.request(&conversation, &criteria, text, None);
            estimate.add(&Estimate::call(
                self.grader.gateway(),
                &grade,
                typical_grade,
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
        let conversation = conversation_text(&input.prompt);
        let mut usage = Usage::default();
        let mut responses: Vec<(String, &'static str, String)> = input
            .responses
            .iter()
            .map(|(id, text)| (id.clone(), "input", text.clone()))
            .collect();
        let generated = join_all((0..self.spec.generate_responses).map(|index| {
            let request = self.respond_request(&conversation, index);
            async move {
                in_stage(
                    "respond",
                    self.respond_gateway.chat_parsed(&request, parse_response),
                )
                .await
            }
        }))
        .await;
        let mut respond_error = None;
        for (index, (answer, spent)) in generated.into_iter().enumerate() {
            usage.add(&spent);
            outcome.enter("respond");
            match answer {
                Ok(text) => {
                    outcome.pass("respond");
                    responses.push((format!("generated_{}", index + 1), "generated", text));
                }
                Err(error) => {
                    let reason = classify_llm_error(error)?;
                    tracing::debug!(%reason, "score response unusable");
                    respond_error = Some(reason);
                }
            }
        }
        if responses.is_empty() {
            outcome.usage.add(&usage);
            let reason = format!(
                "no response to grade: every generated response failed ({})",
                respond_error.unwrap_or_default()
            );
            outcome.reject(ctx, &record.source, "respond", reason, &conversation);
            return Ok(outcome);
        }
        let criteria = Self::criteria(&input.rubric);
        let points: Vec<i32> = input.rubric.iter().map(|c| c.points).collect();
        let grades = join_all(
            responses
                .iter()
                .map(|(_, _, text)| self.grader.grade(&conversation, &criteria, text, None)),
        )
        .await;
        let hard_rules: Vec<usize> = input
            .rubric
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == "hard_rule")
            .map(|(i, _)| i)
            .collect();
        let mut scored = Vec::with_capacity(responses.len());
        for ((id, origin, text), (grade, spent)) in responses.into_iter().zip(grades) {
            usage.add(&spent);
            outcome.enter("judge");
            let verdicts = match grade {
                Ok(verdicts) => {
                    outcome.pass("judge");
                    verdicts
                }
                Err(error) => {
                    let reason = classify_llm_error(error)?;
                    tracing::debug!(%reason, response_id = %id, "score grade unusable");
                    Vec::new()
                }
            };
            let graded = !verdicts.is_empty();
            let hard_rules_met = (!hard_rules.is_empty() && graded).then(|| {
                hard_rules
                    .iter()
                    .all(|i| verdicts.get(*i).is_some_and(|v| v.met == Some(true)))
            });
            let mut score = if graded {
                grading::score(&points, &verdicts)
            } else {
                None
            };
            if self.spec.hard_rules_gate && hard_rules_met == Some(false) && score.is_some() {
                score = Some(0.0);
            }
            scored.push(ScoredResponse {
                response_id: id,
                origin: origin.to_owned(),
                text,
                verdicts,
                score,
                hard_rules_met,
            });
        }
        outcome.usage.add(&usage);
        // A labelled comparison is between the input's responses; generated ones join it only
        // when the input has fewer than two.
        let inputs = scored.iter().filter(|r| r.origin == "input").count();
        let predicted = if inputs >= 2 {
            predicted(&scored[..inputs])
        } else {
            predicted(&scored)
        };
        let agrees = input.label.as_ref().map(|label| {
            outcome.enter("agreement");
            let agrees = predicted.as_ref() == Some(label);
            if agrees {
                outcome.pass("agreement");
            }
            agrees
        });
        let source = source_name(&record.source);
        let provenance = provenance(
            &record.source,
            ctx,
            self.grader.gateway().provider_kind(),
            self.grader.model(),
            &self.grader.template().hash,
            &usage,
        );
        outcome.rows.push(OutputRow::Score(ScoreRow {
            id: input.id,
            source,
            rubric_layout: input.layout.to_owned(),
            prompt: input.prompt,
            rubric: input.rubric,
            responses: scored,
            label: input.label,
            predicted,
            agrees,
            judge_model: self.grader.model().to_owned(),
            judge_prompt_hash: self.grader.template().hash.clone(),
            provenance,
        }));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::json_record as record;
    use rubricmill_core::CriterionVerdict;

    fn read(value: Value) -> Result<ScoreInput, String> {
        ScoreReader::new(FieldMap::default()).read(&record(value))
    }

    #[test]
    fn score_reads_every_rubric_layout() {
        let verl = read(json!({"prompt": [{"role": "user", "content": "Leg cramps?"}], "reward_model": {"rubrics": [{"criterion": "Notes potassium is normal.", "points": 8, "tags": []}, {"criterion": "Recommends supplements.", "points": -5, "tags": []}]}, "response": "Stretch."})).unwrap();
        assert_eq!(verl.layout, "healthbench");
        assert_eq!(verl.rubric[1].kind, "pitfall");
        assert_eq!(
            verl.responses,
            [("response".to_owned(), "Stretch.".to_owned())]
        );

        let crg = read(json!({"pair_id": "p1", "prompt": [{"role": "user", "content": "Sauces?"}], "chosen": "Pesto.", "rejected": "No.", "rubric": [{"text": "Names a sauce.", "kind": "hard_rule"}, {"text": "Is brief.", "kind": "principle"}]})).unwrap();
        assert_eq!((crg.layout, crg.id.as_str()), ("crg", "p1"));
        assert_eq!(crg.rubric[0].points, HARD_RULE_POINTS);
        assert_eq!(crg.rubric[1].points, PRINCIPLE_POINTS);
        assert_eq!(crg.label.as_deref(), Some("chosen"));

        let open = read(json!({"instruction": "Sauces?", "response_a": "No.", "response_b": "Pesto.", "winner": "B", "rubric": "1. The response names a sauce. [Hard Rule]\n2. The response is brief. [Principle]"})).unwrap();
        assert_eq!(open.layout, "openrubric");
        assert_eq!(open.rubric.len(), 2);
        assert_eq!(open.label.as_deref(), Some("response_b"));

        let rq = read(json!({"id": "d-s1", "query": "What limits X?", "rubric": [{"rubric_item": "Does the response name Y?", "type": ["content"]}], "responses": ["Y does.", {"id": "mine", "text": "Z."}], "label": 1})).unwrap();
        assert_eq!(rq.layout, "researchqa");
        assert_eq!(rq.rubric[0].points, 1);
        assert_eq!(rq.responses[0].0, "response_0");
        assert_eq!(rq.label.as_deref(), Some("mine"));

        let reference = read(json!({"prompt": "Q?", "rubric": [{"criterion": "Says A.", "points": 6, "category": "important", "tags": []}], "responses": ["A."]})).unwrap();
        assert_eq!(reference.layout, "reference");
        assert_eq!(reference.rubric[0].kind, "important");
    }

    #[test]
    fn score_refuses_records_it_cannot_grade() {
        let no_rubric = read(json!({"prompt": "Q?", "response": "A."})).unwrap_err();
        assert!(no_rubric.contains("no rubric"), "{no_rubric}");
        let empty = read(json!({"prompt": "Q?", "rubric": [], "response": "A."})).unwrap_err();
        assert!(empty.contains("no criteria"), "{empty}");
        let no_prompt = read(json!({"rubric": ["Says A."], "response": "A."})).unwrap_err();
        assert!(no_prompt.contains("no prompt"), "{no_prompt}");
        let bad_label =
            read(json!({"prompt": "Q?", "rubric": ["Says A."], "responses": ["A."], "label": 3}))
                .unwrap_err();
        assert!(bad_label.contains("1 responses"), "{bad_label}");
        let bad_points =
            read(json!({"prompt": "Q?", "rubrics": [{"criterion": "Says A."}], "response": "A."}))
                .unwrap_err();
        assert!(bad_points.contains("numeric points"), "{bad_points}");
    }

    #[test]
    fn prediction_is_the_single_best_score() {
        let response = |id: &str, score: Option<f64>| ScoredResponse {
            response_id: id.into(),
            origin: "input".into(),
            text: String::new(),
            verdicts: vec![CriterionVerdict {
                criterion: 0,
                met: Some(true),
                rationale: String::new(),
            }],
            score,
            hard_rules_met: None,
        };
        let pair = [
            response("chosen", Some(0.8)),
            response("rejected", Some(0.2)),
        ];
        assert_eq!(predicted(&pair).as_deref(), Some("chosen"));
        let tie = [response("a", Some(0.5)), response("b", Some(0.5))];
        assert_eq!(predicted(&tie), None);
        let missing = [response("a", Some(0.5)), response("b", None)];
        assert_eq!(predicted(&missing), None);
        assert_eq!(predicted(&pair[..1]), None);
    }
}
