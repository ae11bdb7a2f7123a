//! The nuggets pipeline: a question and its passages → information nuggets, each tied to the
//! passage and the span that support it (nugget-as-rubric, as in Search-Gen-V).
//!
//! For each input record:
//!
//! 1. **Read** (stage `parse`, [`NuggetsReader`]): the question is `question`, else `query`,
//!    else a string `prompt`; the passages are `passages`, else `contexts`, else `ctxs`: a list
//!    of strings or of objects with the text in `text`, `content`, `passage` or `segment`
//!    (a `title` is put before it) and the id in `passage_id`, `id`, `docid` or `pid` (else
//!    `P1`, `P2`, …). A researchqa row (`query` and `section_text`, as a researchqa job's export
//!    has them) reads as its query with its section as the one passage, id the row's `id`, so
//!    the survey corpus serves as a passage corpus. `input.fields` maps `id`, `question` and
//!    `passages`. Empty passages are skipped; a record without a question or without a
//!    non-empty passage is a reject. Passages past `nuggets.max_passages` are not shown (the
//!    row's `dropped_nuggets` says so), and each shown passage is cut to
//!    `nuggets.max_passage_chars` characters.
//! 2. **Generate** (stage `generate`, template `nuggets_generate`): one call writes nuggets,
//!    each `{nugget, passage_id, span, importance}`. A nugget is dropped, with its reason in
//!    `dropped_nuggets`, when its text is empty, it cites a passage that was not shown, its span
//!    is not in that passage (found verbatim, else ignoring case and spacing), its importance is
//!    not `vital` or `okay`, or it repeats an earlier nugget (same words, or at least 80% of
//!    their distinct words shared); nuggets past `nuggets.max_nuggets` are dropped too. An answer
//!    without a valid nugget gets the gateway's repair; if still empty the record is a reject.
//! 3. **Support** (stage `judge`, template `nuggets_support`; off with `nuggets.support_check =
//!    false`): one call shows the cited passages and every nugget; each nugget the judge does
//!    not find entailed by its passage is dropped with the reason. A record left without a
//!    supported nugget is a reject at stage `support`.
//!
//! Every record ends as exactly one row or one reject: `inputs = rows + rejects`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use rubricmill_core::spec::NuggetsSpec;
use rubricmill_core::{
    Nugget, NuggetPassage, NuggetRow, OutputRow, PipelineKind, RawRecord, Usage, short_hash,
};
use rubricmill_llm::scope::in_stage;
use rubricmill_llm::simulated::{NUGGETS_SUPPORT_TASK, NUGGETS_TASK};
use rubricmill_llm::structured::extract_json;
use rubricmill_llm::{ChatRequest, Gateway, ResponseFormat};
use serde_json::{Value, json};

use crate::grading::numbered_entries;
use crate::pairs::FieldMap;
use crate::pipeline::{
    Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, StageModel, Stages,
    classify_llm_error, json_object, provenance, source_name, template_hashes,
};
use crate::prompt::Template;

/// Output tokens of a typical answer (a dozen nuggets with spans), for estimates.
const TYPICAL_ANSWER_TOKENS: u64 = 600;
/// Output tokens of a typical support answer.
const TYPICAL_SUPPORT_TOKENS: u64 = 150;
/// Share of distinct words two nuggets have in common above which the later one repeats the
/// earlier.
const NEAR_DUPLICATE: f64 = 0.8;
const QUESTION_KEYS: &[&str] = &["question", "query", "prompt"];
const PASSAGE_KEYS: &[&str] = &["passages", "contexts", "ctxs"];
const TEXT_KEYS: &[&str] = &["text", "content", "passage", "segment"];
const PASSAGE_ID_KEYS: &[&str] = &["passage_id", "id", "docid", "pid"];

/// One record in normal form.
#[derive(Debug, Clone, PartialEq)]
pub struct NuggetsInput {
    pub id: String,
    pub question: String,
    /// Every non-empty passage of the record, in order.
    pub passages: Vec<NuggetPassage>,
}

/// Reads question records through the field mapping.
#[derive(Debug, Clone)]
pub struct NuggetsReader {
    fields: FieldMap,
}

impl NuggetsReader {
    pub fn new(fields: FieldMap) -> Self {
        Self { fields }
    }

    /// The record in normal form, or why it cannot be read.
    pub fn read(&self, record: &RawRecord) -> Result<NuggetsInput, String> {
        let value = json_object(record, "nuggets")?;
        let question = self.question(value)?;
        let passages = self.passages(value)?;
        let id = self
            .fields
            .id(value)
            .unwrap_or_else(|| short_hash(question.as_bytes(), 24));
        Ok(NuggetsInput {
            id,
            question,
            passages,
        })
    }

    fn question(&self, value: &Value) -> Result<String, String> {
        let found = match self.fields.get(value, "question") {
            Some(found) => Some((self.fields.path("question").to_owned(), found)),
            None => QUESTION_KEYS[1..]
                .iter()
                .find_map(|key| value.get(*key).map(|found| ((*key).to_owned(), found))),
        };
        match found {
            Some((_, Value::String(text))) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
            Some((key, Value::String(_))) => Err(format!("`{key}` is empty")),
            Some((key, _)) => Err(format!("`{key}` must be a string")),
            None => Err(format!(
                "no question: give `{}` (or `query`)",
                self.fields.path("question")
            )),
        }
    }

    fn passages(&self, value: &Value) -> Result<Vec<NuggetPassage>, String> {
        let found = match self.fields.get(value, "passages") {
            Some(found) => Some((self.fields.path("passages").to_owned(), found)),
            None => PASSAGE_KEYS[1..]
                .iter()
                .find_map(|key| value.get(*key).map(|found| ((*key).to_owned(), found))),
        };
        let (path, list) = match found {
            Some((path, Value::Array(list))) => (path, list),
            Some((path, _)) => return Err(format!("`{path}` must be a list of passages")),
            None => return researchqa_section(value),
        };
        let mut passages = Vec::with_capacity(list.len());
        let mut seen = HashSet::new();
        for (index, item) in list.iter().enumerate() {
            let (id, text) = match item {
                Value::String(text) => (None, text.trim().to_owned()),
                Value::Object(object) => {
                    let text = TEXT_KEYS
                        .iter()
                        .find_map(|key| object.get(*key).and_then(Value::as_str))
                        .map(str::trim)
                        .unwrap_or("");
                    let title = object
                        .get("title")
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .filter(|t| !t.is_empty());
                    let text = match title {
                        Some(title) if !text.is_empty() => format!("{title}\n{text}"),
                        _ => text.to_owned(),
                    };
                    let id = PASSAGE_ID_KEYS
                        .iter()
                        .find_map(|key| match object.get(*key) {
                            Some(Value::String(id)) if !id.trim().is_empty() => {
                                Some(id.trim().to_owned())
                            }
                            Some(Value::Number(id)) => Some(id.to_string()),
                            _ => None,
                        });
                    (id, text)
                }
                _ => {
                    return Err(format!(
                        "`{path}` item {index} must be a string or an object with `text`"
                    ));
                }
            };
            if text.is_empty() {
                continue;
            }
            let id = id.unwrap_or_else(|| format!("P{}", index + 1));
            // Ids must tell passages apart: a repeated one gets its position.
            let id = if seen.insert(id.clone()) {
                id
            } else {
                let unique = format!("{id}#{}", index + 1);
                seen.insert(unique.clone());
                unique
            };
            passages.push(NuggetPassage {
                passage_id: id.replace('"', "'"),
                text,
            });
        }
        if passages.is_empty() {
            return Err(format!("`{path}` has no non-empty passage"));
        }
        Ok(passages)
    }
}

/// A researchqa row's section as its one passage.
fn researchqa_section(value: &Value) -> Result<Vec<NuggetPassage>, String> {
    let text = value
        .get("section_text")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(text) = text else {
        return Err(
            "no passages: give `passages` (a list of strings or of {id, text}), or a researchqa \
             row with its `section_text`"
                .into(),
        );
    };
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("section")
        .to_owned();
    let text = match value.get("section_heading").and_then(Value::as_str) {
        Some(heading) if !heading.trim().is_empty() => format!("{}\n{text}", heading.trim()),
        _ => text.to_owned(),
    };
    Ok(vec![NuggetPassage {
        passage_id: id,
        text,
    }])
}

/// The first `max` characters of `text`, cut on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// The passages as the prompts show them.
fn passages_text<'a>(passages: impl Iterator<Item = &'a NuggetPassage>) -> String {
    passages
        .map(|p| format!("<passage id=\"{}\">\n{}\n</passage>", p.passage_id, p.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Nuggets parsed from an answer: the valid ones and, per dropped nugget, why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedNuggets {
    pub nuggets: Vec<Nugget>,
    pub dropped: Vec<String>,
}

/// Nuggets from a model answer (see the module docs for what is dropped). No valid nugget is an
/// error naming what was wrong.
pub fn parse_nuggets(
    answer: &str,
    passages: &[NuggetPassage],
    max: usize,
) -> Result<ParsedNuggets, String> {
    let value = extract_json(answer).map_err(|e| e.to_string())?;
    let list = value
        .get("nuggets")
        .and_then(Value::as_array)
        .ok_or("give {\"nuggets\": [{\"nugget\", \"passage_id\", \"span\", \"importance\"}]}")?;
    let mut nuggets: Vec<Nugget> = Vec::new();
    let mut words: Vec<HashSet<String>> = Vec::new();
    let mut dropped = Vec::new();
    for (index, item) in list.iter().enumerate() {
        let nugget = match nugget_of(item, passages) {
            Ok(nugget) => nugget,
            Err(why) => {
                dropped.push(format!("nugget {index}: {why}"));
                continue;
            }
        };
        let own = word_set(&nugget.nugget);
        if let Some(earlier) = words.iter().position(|w| near_duplicate(w, &own)) {
            dropped.push(format!(
                "nugget {index}: repeats nugget {earlier}: {}",
                nugget.nugget
            ));
            continue;
        }
        if nuggets.len() >= max {
            dropped.push(format!(
                "nugget {index}: over nuggets.max_nuggets ({max}): {}",
                nugget.nugget
            ));
            continue;
        }
        words.push(own);
        nuggets.push(nugget);
    }
    if nuggets.is_empty() {
        let mut reason = "no valid nugget".to_owned();
        if !dropped.is_empty() {
            reason.push_str(&format!(" ({})", dropped.join("; ")));
        }
        return Err(reason);
    }
    Ok(ParsedNuggets { nuggets, dropped })
}

fn nugget_of(item: &Value, passages: &[NuggetPassage]) -> Result<Nugget, String> {
    let text = item
        .get("nugget")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    if text.is_empty() {
        return Err("empty nugget text".into());
    }
    let passage_id = match item.get("passage_id") {
        Some(Value::String(id)) => id.trim().to_owned(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err(format!("no passage_id: {text}")),
    };
    let passage = passages
        .iter()
        .find(|p| p.passage_id == passage_id)
        .ok_or_else(|| format!("cites passage {passage_id:?}, which was not shown: {text}"))?;
    let span = item
        .get("span")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    if span.is_empty() {
        return Err(format!("no span: {text}"));
    }
    let (start, end) = find_span(&passage.text, span)
        .ok_or_else(|| format!("span not found in passage {passage_id}: {span:?}"))?;
    let importance = match item
        .get("importance")
        .and_then(Value::as_str)
        .map(|i| i.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("vital") => "vital",
        Some("okay" | "ok") => "okay",
        other => {
            return Err(format!(
                "importance {other:?} is not \"vital\" or \"okay\": {text}"
            ));
        }
    };
    let chars: Vec<char> = passage.text.chars().collect();
    Ok(Nugget {
        nugget: text.to_owned(),
        passage_id,
        span: chars[start..end].iter().collect(),
        span_start: start as u32,
        span_end: end as u32,
        importance: importance.to_owned(),
        supported: None,
    })
}

/// Where `span` is in `passage`, as character offsets `[start, end)`: verbatim first, else
/// ignoring case and runs of whitespace.
pub fn find_span(passage: &str, span: &str) -> Option<(usize, usize)> {
    if let Some(at) = passage.find(span) {
        let start = passage[..at].chars().count();
        return Some((start, start + span.chars().count()));
    }
    // Normalised text with, per normalised character, the passage character it came from.
    let mut normal = String::new();
    let mut origin = Vec::new();
    let mut last_space = true;
    for (i, c) in passage.chars().enumerate() {
        if c.is_whitespace() {
            if !last_space {
                normal.push(' ');
                origin.push(i);
            }
            last_space = true;
            continue;
        }
        for lower in c.to_lowercase() {
            normal.push(lower);
            origin.push(i);
        }
        last_space = false;
    }
    let wanted: String = span
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if wanted.is_empty() {
        return None;
    }
    let at = normal.find(&wanted)?;
    let first = normal[..at].chars().count();
    let last = first + wanted.chars().count() - 1;
    Some((origin[first], origin[last] + 1))
}

fn word_set(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn near_duplicate(a: &HashSet<String>, b: &HashSet<String>) -> bool {
    if a.is_empty() || b.is_empty() {
        return a == b;
    }
    let shared = a.intersection(b).count() as f64;
    let union = a.union(b).count() as f64;
    shared / union >= NEAR_DUPLICATE
}

/// Support verdicts from `{"checks": [{claim, supported}]}`, by claim number (1-based) in
/// order; a claim without a verdict is `None`.
pub fn parse_support(answer: &str, claims: usize) -> Result<Vec<Option<bool>>, String> {
    let value = extract_json(answer).map_err(|e| e.to_string())?;
    let list = value
        .get("checks")
        .and_then(Value::as_array)
        .ok_or("give {\"checks\": [{\"claim\": 1, \"supported\": true}]}")?;
    let mut verdicts = vec![None; claims];
    for (index, item) in numbered_entries(list, "claim", claims) {
        if verdicts[index].is_none() {
            verdicts[index] = item.get("supported").and_then(Value::as_bool);
        }
    }
    let given = verdicts.iter().filter(|v| v.is_some()).count();
    if given * 2 < claims {
        return Err(format!(
            "verdicts on {given} of {claims} claims; give one per claim"
        ));
    }
    Ok(verdicts)
}

pub struct NuggetsPipeline {
    gateway: Arc<Gateway>,
    model: StageModel,
    judge_gateway: Arc<Gateway>,
    judge_model: StageModel,
    spec: NuggetsSpec,
    reader: NuggetsReader,
    template: Template,
    support_template: Template,
}

impl NuggetsPipeline {
    /// `fields` is `input.fields`, validated with the spec.
    pub fn new(stages: &Stages, spec: NuggetsSpec, fields: &BTreeMap<String, String>) -> Self {
        let (gateway, model) = stages.get("generate");
        let (judge_gateway, judge_model) = stages.get("judge");
        Self {
            gateway,
            model,
            judge_gateway,
            judge_model,
            spec,
            reader: NuggetsReader::new(FieldMap::new(fields)),
            template: stages.templates.get("nuggets_generate"),
            support_template: stages.templates.get("nuggets_support"),
        }
    }

    /// The passages the prompt shows: the first `max_passages`, each cut to
    /// `max_passage_chars`; and a note on those left out.
    fn shown(&self, input: &NuggetsInput) -> (Vec<NuggetPassage>, Option<String>) {
        let max = self.spec.max_passages as usize;
        let shown = input
            .passages
            .iter()
            .take(max)
            .map(|p| NuggetPassage {
                passage_id: p.passage_id.clone(),
                text: cut(&p.text, self.spec.max_passage_chars as usize).to_owned(),
            })
            .collect();
        let left_out = (input.passages.len() > max).then(|| {
            let ids: Vec<&str> = input.passages[max..]
                .iter()
                .map(|p| p.passage_id.as_str())
                .collect();
            format!(
                "passages not shown (over nuggets.max_passages, {max}): {}",
                ids.join(", ")
            )
        });
        (shown, left_out)
    }

    fn request(&self, question: &str, passages: &[NuggetPassage]) -> ChatRequest {
        let max = self.spec.max_nuggets.to_string();
        ChatRequest {
            model: self.model.model.clone(),
            messages: self.template.render(&[
                ("max_nuggets", &max),
                ("question", question),
                ("passages", &passages_text(passages.iter())),
            ]),
            temperature: self.model.temperature,
            max_tokens: self.model.max_tokens,
            seed: self.model.seed,
            response_format: Some(ResponseFormat {
                name: NUGGETS_TASK.into(),
                schema: json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["nuggets"],
                    "properties": {"nuggets": {"type": "array", "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["nugget", "passage_id", "span", "importance"],
                        "properties": {
                            "nugget": {"type": "string"},
                            "passage_id": {"type": "string"},
                            "span": {"type": "string"},
                            "importance": {"type": "string", "enum": ["vital", "okay"]}
                        }
                    }}}
                }),
            }),
        }
    }

    fn support_request(&self, passages: &[NuggetPassage], nuggets: &[Nugget]) -> ChatRequest {
        let cited: Vec<&NuggetPassage> = passages
            .iter()
            .filter(|p| nuggets.iter().any(|n| n.passage_id == p.passage_id))
            .collect();
        let claims = nuggets
            .iter()
            .enumerate()
            .map(|(i, n)| format!("[{}] ({}) {}", i + 1, n.passage_id, n.nugget))
            .collect::<Vec<_>>()
            .join("\n");
        ChatRequest {
            model: self.judge_model.model.clone(),
            messages: self.support_template.render(&[
                ("passages", &passages_text(cited.into_iter())),
                ("claims", &claims),
            ]),
            temperature: self.judge_model.temperature,
            max_tokens: self.judge_model.max_tokens,
            seed: self.judge_model.seed,
            response_format: Some(ResponseFormat {
                name: NUGGETS_SUPPORT_TASK.into(),
                schema: json!({
                    "type": "object",
                    "required": ["checks"],
                    "properties": {"checks": {"type": "array", "items": {
                        "type": "object",
                        "required": ["claim", "supported"],
                        "properties": {
                            "claim": {"type": "integer"},
                            "supported": {"type": "boolean"}
                        }
                    }}}
                }),
            }),
        }
    }
}

#[async_trait::async_trait]
impl Pipeline for NuggetsPipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Nuggets
    }

    fn prompt_hashes(&self) -> BTreeMap<String, String> {
        let support = self.spec.support_check.then_some(&self.support_template);
        template_hashes([&self.template].into_iter().chain(support))
    }

    fn estimate(&self, record: &RawRecord) -> Estimate {
        let Ok(input) = self.reader.read(record) else {
            return Estimate::rejected();
        };
        let (shown, _) = self.shown(&input);
        let mut estimate = Estimate::call(
            &self.gateway,
            &self.request(&input.question, &shown),
            TYPICAL_ANSWER_TOKENS,
        );
        if self.spec.support_check {
            // The support call shows the cited passages (typically all) and the nuggets.
            let typical: Vec<Nugget> = shown
                .iter()
                .map(|p| Nugget {
                    nugget: "x ".repeat(20),
                    passage_id: p.passage_id.clone(),
                    span: String::new(),
                    span_start: 0,
                    span_end: 0,
                    importance: "okay".into(),
                    supported: None,
                })
                .collect();
            estimate.add(&Estimate::call(
                &self.judge_gateway,
                &self.support_request(&shown, &typical),
                TYPICAL_SUPPORT_TOKENS,
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
        let Some(input) = outcome.parse(ctx, &record, |r| self.reader.read(r)) else {
            return Ok(outcome);
        };
        let (shown, left_out) = self.shown(&input);
        let mut usage = Usage::default();
        outcome.enter("generate");
        let request = self.request(&input.question, &shown);
        let max = self.spec.max_nuggets as usize;
        let (parsed, spent) = in_stage(
            "generate",
            self.gateway
                .chat_parsed(&request, |answer| parse_nuggets(answer, &shown, max)),
        )
        .await;
        usage.add(&spent);
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                let reason = classify_llm_error(error)?;
                outcome.usage.add(&usage);
                outcome.reject(ctx, &record.source, "generate", reason, &input.question);
                return Ok(outcome);
            }
        };
        outcome.pass("generate");
        let mut dropped: Vec<String> = left_out.into_iter().collect();
        dropped.extend(parsed.dropped);
        let mut nuggets = parsed.nuggets;
        if self.spec.support_check {
            outcome.enter("judge");
            let request = self.support_request(&shown, &nuggets);
            let count = nuggets.len();
            let (checked, spent) = in_stage(
                "judge",
                self.judge_gateway
                    .chat_parsed(&request, |answer| parse_support(answer, count)),
            )
            .await;
            usage.add(&spent);
            let verdicts = match checked {
                Ok(verdicts) => {
                    outcome.pass("judge");
                    verdicts
                }
                Err(error) => {
                    let reason = classify_llm_error(error)?;
                    tracing::debug!(%reason, "nuggets support answer unusable");
                    vec![None; count]
                }
            };
            let mut supported = Vec::with_capacity(count);
            for (nugget, verdict) in nuggets.into_iter().zip(verdicts) {
                match verdict {
                    Some(true) => supported.push(Nugget {
                        supported: Some(true),
                        ..nugget
                    }),
                    Some(false) => dropped.push(format!(
                        "not supported by passage {}: {}",
                        nugget.passage_id, nugget.nugget
                    )),
                    None => dropped.push(format!(
                        "the judge gave no support verdict: {}",
                        nugget.nugget
                    )),
                }
            }
            nuggets = supported;
        }
        outcome.usage.add(&usage);
        outcome.enter("support");
        if nuggets.is_empty() {
            let reason = format!(
                "no nugget is supported by its passage ({})",
                dropped.join("; ")
            );
            outcome.reject(ctx, &record.source, "support", reason, &input.question);
            return Ok(outcome);
        }
        outcome.pass("support");
        let source = source_name(&record.source);
        let provenance = provenance(
            &record.source,
            ctx,
            self.gateway.provider_kind(),
            &self.model.model,
            &self.template.hash,
            &usage,
        );
        let (judge_model, judge_prompt_hash) = if self.spec.support_check {
            (
                self.judge_model.model.clone(),
                self.support_template.hash.clone(),
            )
        } else {
            (String::new(), String::new())
        };
        outcome.rows.push(OutputRow::Nuggets(NuggetRow {
            id: input.id,
            source,
            question: input.question,
            passages: shown,
            nuggets,
            dropped_nuggets: dropped,
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

    fn reader() -> NuggetsReader {
        NuggetsReader::new(FieldMap::default())
    }

    fn passage(id: &str, text: &str) -> NuggetPassage {
        NuggetPassage {
            passage_id: id.into(),
            text: text.into(),
        }
    }

    #[test]
    fn nuggets_read_passage_lists_in_several_shapes() {
        let strings = reader()
            .read(&record(json!({"question": "Why is the sky blue?", "passages": ["Rayleigh scattering.", "  ", "Blue light scatters more."]})))
            .unwrap();
        let ids: Vec<&str> = strings
            .passages
            .iter()
            .map(|p| p.passage_id.as_str())
            .collect();
        assert_eq!(ids, ["P1", "P3"]);
        let objects = reader()
            .read(&record(json!({"id": 4, "query": "q?", "ctxs": [{"docid": "d1", "title": "Sky", "text": "Blue."}, {"id": "d1", "content": "Again."}]})))
            .unwrap();
        assert_eq!(objects.id, "4");
        assert_eq!(objects.passages[0].text, "Sky\nBlue.");
        assert_eq!(objects.passages[1].passage_id, "d1#2");
        let section = reader()
            .read(&record(json!({"id": "doc-s2", "query": "What limits X?", "section_heading": "2 Limits", "section_text": "X is limited by Y."})))
            .unwrap();
        assert_eq!(
            section.passages,
            [passage("doc-s2", "2 Limits\nX is limited by Y.")]
        );
    }

    #[test]
    fn nuggets_refuse_records_without_question_or_passages() {
        let none = reader()
            .read(&record(json!({"passages": ["a"]})))
            .unwrap_err();
        assert!(none.contains("no question"), "{none}");
        let empty = reader()
            .read(&record(json!({"question": "q", "passages": ["", " "]})))
            .unwrap_err();
        assert!(empty.contains("no non-empty passage"), "{empty}");
        let missing = reader()
            .read(&record(json!({"question": "q"})))
            .unwrap_err();
        assert!(missing.contains("no passages"), "{missing}");
        let bad = reader()
            .read(&record(json!({"question": "q", "passages": [3]})))
            .unwrap_err();
        assert!(bad.contains("item 0"), "{bad}");
    }

    #[test]
    fn spans_are_found_verbatim_or_ignoring_case_and_spacing() {
        let text = "Café owners  open early.\nThey Close late.";
        assert_eq!(find_span(text, "open early"), Some((13, 23)));
        let (start, end) = find_span(text, "they close   LATE").unwrap();
        let found: String = text.chars().skip(start).take(end - start).collect();
        assert_eq!(found, "They Close late");
        assert_eq!(find_span(text, "opens early"), None);
    }

    #[test]
    fn invalid_repeated_and_excess_nuggets_are_dropped_with_reasons() {
        let passages = [
            passage(
                "P1",
                "Yeast ferments sugar into carbon dioxide. Dough rises.",
            ),
            passage("P2", "Salt slows fermentation."),
        ];
        let answer = json!({"nuggets": [
            {"nugget": "Yeast ferments sugar into carbon dioxide.", "passage_id": "P1", "span": "Yeast ferments sugar into carbon dioxide.", "importance": "vital"},
            {"nugget": "Yeast ferments sugar into carbon dioxide gas.", "passage_id": "P1", "span": "Yeast ferments sugar", "importance": "okay"},
            {"nugget": "Salt slows fermentation.", "passage_id": "P9", "span": "Salt slows fermentation.", "importance": "okay"},
            {"nugget": "Salt speeds fermentation.", "passage_id": "P2", "span": "Salt speeds fermentation.", "importance": "okay"},
            {"nugget": "Dough rises.", "passage_id": "P1", "span": "dough rises", "importance": "maybe"},
            {"nugget": "Salt slows fermentation.", "passage_id": "P2", "span": "salt slows", "importance": "OK"},
            {"nugget": "Dough rises.", "passage_id": "P1", "span": "Dough rises.", "importance": "okay"}
        ]})
        .to_string();
        let parsed = parse_nuggets(&answer, &passages, 2).unwrap();
        let kept: Vec<&str> = parsed.nuggets.iter().map(|n| n.nugget.as_str()).collect();
        assert_eq!(
            kept,
            [
                "Yeast ferments sugar into carbon dioxide.",
                "Salt slows fermentation."
            ]
        );
        assert_eq!(parsed.nuggets[1].span, "Salt slows");
        assert_eq!(
            (parsed.nuggets[1].span_start, parsed.nuggets[1].span_end),
            (0, 10)
        );
        assert_eq!(parsed.nuggets[1].importance, "okay");
        let reasons = parsed.dropped.join("\n");
        assert_eq!(parsed.dropped.len(), 5, "{reasons}");
        assert!(reasons.contains("repeats nugget 0"), "{reasons}");
        assert!(reasons.contains("was not shown"), "{reasons}");
        assert!(reasons.contains("span not found"), "{reasons}");
        assert!(reasons.contains("importance"), "{reasons}");
        assert!(reasons.contains("over nuggets.max_nuggets"), "{reasons}");
        let none = parse_nuggets(r#"{"nuggets": []}"#, &passages, 5).unwrap_err();
        assert!(none.contains("no valid nugget"), "{none}");
    }

    #[test]
    fn support_verdicts_are_read_by_claim_number() {
        let verdicts = parse_support(
            r#"{"checks": [{"claim": 2, "supported": false}, {"claim": 1, "supported": true}]}"#,
            3,
        )
        .unwrap();
        assert_eq!(verdicts, [Some(true), Some(false), None]);
        assert!(parse_support(r#"{"checks": []}"#, 2).is_err());
    }
}
