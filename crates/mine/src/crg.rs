//! The crg pipeline: Contrastive Rubric Generation (OpenRubrics-style) with the preference-
//! consistency filter and rejection sampling.
//!
//! For each input record:
//!
//! 1. **Normalise** ([`PairReader::read`], layouts and settings in [`crate::pairs`]): a
//!    pairwise record gives one preference pair, a ranked record (listwise, UltraFeedback,
//!    Nectar, HelpSteer) the pairs `input.pairing` induces. A record that cannot be read becomes
//!    a reject (stage `parse`). Stage `pairs` counts the comparisons of every readable record:
//!    each comparison that gives no pair (a tie, two identical texts, a repeated pair) is a
//!    reject there with its reason, so `pairs.input = pairs.output + pairs.rejected`, and a
//!    record whose comparisons were all skipped ends there.
//! 2. **Generate** (stage `generate`, template `crg_generate`): one call writes hard rules and
//!    principles contrasting the chosen and the rejected response. A listwise record gets one
//!    rubric, written from its widest induced pair (the last one: best versus worst). The answer
//!    may be JSON (`{"items": [{text, kind}]}`) or the OpenRubrics text format (numbered
//!    `"The response … [Hard Rule]"` lines); see [`parse_rubric`]. Items are deduplicated; an
//!    answer without items gets one repair from the gateway, and if still empty the rubric is
//!    regenerated like an inconsistent one.
//! 3. **Judge** (stage `judge`, template `crg_judge`, its own model, endpoint and limits via
//!    `[llm.stages.judge]`): the rubric judges every pair of the record twice, with the chosen
//!    response first (as A) and with it second, which cancels position bias. A pair counts as
//!    predicted correctly only when both orders prefer the chosen response. The rubric's
//!    accuracy is the fraction of the record's pairs predicted correctly; it is consistent when
//!    the accuracy reaches τ (`crg.min_accuracy`, default 0.5; a pairwise record thus needs its
//!    one pair right).
//! 4. **Rejection sampling**: an inconsistent rubric is regenerated with a new seed (`seed + n -
//!    1` for attempt n) at a temperature of at least `crg.resample_temperature`, up to k times
//!    (`crg.max_resamples`, default 3), so a record takes at most k + 1 attempts. Every attempt
//!    is logged in the row's `attempt_log` (number, seed, this pair's verdicts, accuracy,
//!    consistent, error).
//!
//! # Rows and accounting
//!
//! Every normalised pair whose record got at least one rubric becomes exactly one crg row: a
//! listwise record gives one row per induced pair, all sharing `rubric_id` (the record id, or a
//! hash of the pair ids), the final rubric, `attempts`, `consistency` (the final rubric's
//! accuracy) and `attempt_log` numbers; `verdicts` are the row's own pair's. `kept` is true when
//! the final rubric is consistent and the row's pair was predicted correctly; otherwise
//! `kept = false` and `drop_reason` says why (inconsistent after all attempts, or — listwise —
//! a pair the kept rubric mispredicted). Dropped rubrics are rows, not rejects, so they are
//! never counted twice: for every job,
//!
//! `normalised pairs = rows (kept) + rows (kept = false) + rejects at stage "generate"`,
//!
//! where a `generate` reject (one per pair) means no attempt produced a rubric at all (context
//! too long, content filter, unusable answers every time). The LLM usage of a record is written
//! into the provenance of its first row (the others carry zero), so token and cost sums over
//! rows are exact. With `crg.consistency_filter = false` there is no judge: one attempt, every
//! rubric kept, `consistency` null.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::future::join_all;
use rubricmill_core::spec::{CrgSpec, LayoutSpec};
use rubricmill_core::{
    CrgAttempt, CrgRow, CrgRubricItem, JudgeVerdict, OutputRow, PipelineKind, PreferencePair,
    RawPayload, RawRecord, Usage, short_hash,
};
use rubricmill_llm::scope::in_stage;
use rubricmill_llm::simulated::{CRG_JUDGE_TASK, CRG_TASK};
use rubricmill_llm::structured::extract_json;
use rubricmill_llm::{ChatRequest, Gateway, LlmError, ResponseFormat};
use serde_json::{Value, json};

use crate::grading::conversation_text;
use crate::pairs::{FieldMap, Normalized, PairReader};
use crate::pipeline::{
    Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, StageModel, Stages,
    classify_llm_error, provenance, source_name, template_hashes,
};
use crate::prompt::Template;

/// Output tokens of a typical answer (a dozen one-sentence items), for estimates.
const TYPICAL_ANSWER_TOKENS: u64 = 250;
/// Output tokens of a typical judge answer.
const TYPICAL_JUDGE_TOKENS: u64 = 40;

/// Verdict orders: the chosen response shown as A, or as B.
pub const CHOSEN_FIRST: &str = "chosen_first";
pub const REJECTED_FIRST: &str = "rejected_first";

pub struct CrgPipeline {
    gateway: Arc<Gateway>,
    model: StageModel,
    judge_gateway: Arc<Gateway>,
    judge_model: StageModel,
    spec: CrgSpec,
    reader: PairReader,
    template: Template,
    judge_template: Template,
}

/// Rubric items from a model answer: JSON (`{"items": [{text, kind}]}`, items may also be
/// text-format strings) or, when the answer holds no JSON item list, the OpenRubrics text format
/// ([`parse_rubric_text`]). Items are deduplicated (case, spacing and a final full stop ignored)
/// and cut to `max_items`; an answer without items is refused with the reason.
pub fn parse_rubric(answer: &str, max_items: usize) -> Result<Vec<CrgRubricItem>, String> {
    let mut items = Vec::new();
    let json_items = extract_json(answer)
        .ok()
        .and_then(|value| value.get("items").and_then(Value::as_array).cloned());
    match json_items {
        Some(list) => {
            for item in &list {
                match item {
                    Value::String(line) => items.extend(parse_rubric_line(line)),
                    Value::Object(_) => {
                        let text = item
                            .get("text")
                            .and_then(Value::as_str)
                            .map(str::trim)
                            .unwrap_or("");
                        let kind = item.get("kind").and_then(Value::as_str).and_then(kind_of);
                        if let Some(kind) = kind
                            && !text.is_empty()
                        {
                            items.push(CrgRubricItem {
                                text: text.to_owned(),
                                kind: kind.to_owned(),
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        None => items = parse_rubric_text(answer),
    }
    let mut seen = HashSet::new();
    items.retain(|item| seen.insert(dedup_key(&item.text)));
    items.truncate(max_items);
    if items.is_empty() {
        return Err(
            "no rubric items: give items with \"text\" and \"kind\" (hard_rule or principle)"
                .into(),
        );
    }
    Ok(items)
}

/// Items of the OpenRubrics text format: one item a line, optionally numbered (`1.`, `1)`) or
/// bulleted (`-`, `*`, `•`), with a `[Hard Rule]` or `[Principle]` tag (any case, optionally in
/// bold, at the end or the start of the line). Lines without a tag (headings, prose) are
/// skipped; so are tagged lines with no text.
pub fn parse_rubric_text(answer: &str) -> Vec<CrgRubricItem> {
    answer.lines().filter_map(parse_rubric_line).collect()
}

fn parse_rubric_line(line: &str) -> Option<CrgRubricItem> {
    let mut line = line.trim();
    // List markers: "12.", "3)", "-", "*", "•" (repeated markdown emphasis is stripped later).
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && line[digits..].starts_with(['.', ')']) {
        line = &line[digits + 1..];
    } else if let Some(rest) = line.strip_prefix(['-', '•']) {
        line = rest;
    } else if let Some(rest) = line.strip_prefix("* ") {
        line = rest;
    }
    let line = line.trim();
    let lower = line.to_ascii_lowercase();
    let tags = [("[hard rule]", "hard_rule"), ("[principle]", "principle")];
    for (tag, kind) in tags {
        let Some(at) = lower.rfind(tag) else {
            continue;
        };
        let before = &line[..at];
        let after = &line[at + tag.len()..];
        let text = if after
            .trim_matches(|c: char| c == '*' || c == '.' || c.is_whitespace())
            .is_empty()
        {
            before
        } else if before
            .trim_matches(|c: char| c == '*' || c.is_whitespace())
            .is_empty()
        {
            after
        } else {
            continue;
        };
        let text = text
            .trim_matches(|c: char| c == '*' || c.is_whitespace())
            .trim_start_matches([':', '-'])
            .trim_end_matches([':', '-', '—'])
            .trim();
        if text.is_empty() {
            return None;
        }
        return Some(CrgRubricItem {
            text: text.to_owned(),
            kind: kind.to_owned(),
        });
    }
    None
}

fn kind_of(kind: &str) -> Option<&'static str> {
    let kind = kind
        .trim()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase()
        .replace([' ', '-'], "_");
    match kind.as_str() {
        "hard_rule" | "hardrule" | "rule" => Some("hard_rule"),
        "principle" => Some("principle"),
        _ => None,
    }
}

fn dedup_key(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").trim_end_matches('.').trim().to_lowercase()
}

/// The seed of attempt `attempt` (1-based): the configured seed first, then `seed + n - 1` (a
/// missing seed counting as 0), so each resample asks for a different answer.
pub(crate) fn attempt_seed(seed: Option<u64>, attempt: u32) -> Option<u64> {
    if attempt <= 1 {
        return seed;
    }
    Some(seed.unwrap_or(0).wrapping_add(u64::from(attempt - 1)))
}

/// The numbered OpenRubrics text of a rubric: `"1. The response … [Hard Rule]"`, one item a line.
pub fn rubric_text(items: &[CrgRubricItem]) -> String {
    numbered_rubric(
        items
            .iter()
            .map(|item| (item.text.as_str(), item.kind.as_str())),
    )
}

/// The numbered OpenRubrics text of `(text, kind)` items; a kind other than `hard_rule` is a
/// principle.
pub fn numbered_rubric<'a>(items: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    items
        .enumerate()
        .map(|(i, (text, kind))| {
            let tag = if kind == "hard_rule" {
                "Hard Rule"
            } else {
                "Principle"
            };
            format!("{}. {text} [{tag}]", i + 1)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which response a judge answer prefers: `A`, `B` or `tie`.
pub fn parse_verdict(answer: &str) -> Result<&'static str, String> {
    let value = extract_json(answer).map_err(|e| e.to_string())?;
    let preferred = value
        .get("preferred")
        .and_then(Value::as_str)
        .ok_or("give \"preferred\": \"A\", \"B\" or \"tie\"")?;
    let preferred = preferred.trim().to_ascii_lowercase();
    let preferred = preferred
        .strip_prefix("response")
        .unwrap_or(&preferred)
        .trim();
    match preferred {
        "a" => Ok("A"),
        "b" => Ok("B"),
        "tie" | "equal" | "neither" => Ok("tie"),
        other => Err(format!(
            "\"preferred\" is {other:?}; it must be \"A\", \"B\" or \"tie\""
        )),
    }
}

/// One attempt's outcome over the record's pairs.
struct Judged {
    /// Per pair: the two verdicts and whether both recovered the label.
    pairs: Vec<(Vec<JudgeVerdict>, bool)>,
    accuracy: f64,
    consistent: bool,
}

impl CrgPipeline {
    /// `layout` is the job's `input.layout` with its settings (a bare
    /// [`PairLayout`](rubricmill_core::PairLayout) takes the default settings); `fields` is
    /// `input.fields`, validated with the spec.
    pub fn new(
        stages: &Stages,
        spec: CrgSpec,
        layout: impl Into<LayoutSpec>,
        fields: &BTreeMap<String, String>,
    ) -> Self {
        let (gateway, model) = stages.get("generate");
        let (judge_gateway, judge_model) = stages.get("judge");
        Self {
            gateway,
            model,
            judge_gateway,
            judge_model,
            spec,
            reader: PairReader::new(layout, FieldMap::new(fields)),
            template: stages.templates.get("crg_generate"),
            judge_template: stages.templates.get("crg_judge"),
        }
    }

    fn response_format(&self) -> ResponseFormat {
        ResponseFormat {
            name: CRG_TASK.into(),
            schema: json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["items"],
                "properties": {"items": {"type": "array", "maxItems": self.spec.max_items, "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["text", "kind"],
                    "properties": {
                        "text": {"type": "string"},
                        "kind": {"type": "string", "enum": ["hard_rule", "principle"]}
                    }
                }}}
            }),
        }
    }

    fn judge_format() -> ResponseFormat {
        // `reason` is optional: OpenAI's strict mode would require it, so this schema stays open
        // (sent without `strict`) rather than change which verdicts are accepted.
        ResponseFormat {
            name: CRG_JUDGE_TASK.into(),
            schema: json!({
                "type": "object",
                "required": ["preferred"],
                "properties": {
                    "preferred": {"type": "string", "enum": ["A", "B", "tie"]},
                    "reason": {"type": "string"}
                }
            }),
        }
    }

    fn max_attempts(&self) -> u32 {
        if self.spec.consistency_filter {
            self.spec.max_resamples + 1
        } else {
            1
        }
    }

    /// The generation request for one pair, at attempt `attempt` (1-based).
    fn pair_request(&self, pair: &PreferencePair, attempt: u32) -> ChatRequest {
        let conversation = conversation_text(&pair.prompt);
        let max_items = self.spec.max_items.to_string();
        let temperature = if attempt <= 1 {
            self.model.temperature
        } else {
            self.model.temperature.max(self.spec.resample_temperature)
        };
        let seed = attempt_seed(self.model.seed, attempt);
        ChatRequest {
            model: self.model.model.clone(),
            messages: self.template.render(&[
                ("max_items", &max_items),
                ("conversation", &conversation),
                ("chosen", &pair.chosen),
                ("rejected", &pair.rejected),
            ]),
            temperature,
            max_tokens: self.model.max_tokens,
            seed,
            response_format: Some(self.response_format()),
        }
    }

    /// The judge request for one pair in one order.
    fn judge_request(
        &self,
        pair: &PreferencePair,
        rubric: &str,
        chosen_first: bool,
        attempt: u32,
    ) -> ChatRequest {
        let conversation = conversation_text(&pair.prompt);
        let (a, b) = if chosen_first {
            (&pair.chosen, &pair.rejected)
        } else {
            (&pair.rejected, &pair.chosen)
        };
        let seed = attempt_seed(self.judge_model.seed, attempt);
        ChatRequest {
            model: self.judge_model.model.clone(),
            messages: self.judge_template.render(&[
                ("conversation", &conversation),
                ("rubric", rubric),
                ("response_a", a),
                ("response_b", b),
            ]),
            temperature: self.judge_model.temperature,
            max_tokens: self.judge_model.max_tokens,
            seed,
            response_format: Some(Self::judge_format()),
        }
    }

    fn read_pairs(&self, record: &RawRecord) -> Result<Normalized, String> {
        self.reader.read_input(record)
    }

    /// The id the record's rubric goes by.
    fn rubric_id(&self, record: &RawRecord, pairs: &[PreferencePair]) -> String {
        if let [pair] = pairs {
            return pair.pair_id.clone();
        }
        if let RawPayload::Json(value) = &record.payload
            && let Some(id) = self.reader.fields().id(value)
        {
            return id;
        }
        let ids: Vec<&str> = pairs.iter().map(|p| p.pair_id.as_str()).collect();
        short_hash(ids.join("\n").as_bytes(), 24)
    }

    /// One generation attempt. `Ok(Err(reason))` when the record gave no usable rubric;
    /// `resample` tells whether another attempt may do better (the answer was unusable, not
    /// refused).
    async fn generate(
        &self,
        pair: &PreferencePair,
        attempt: u32,
        usage: &mut Usage,
    ) -> Result<(ChatRequest, Result<Vec<CrgRubricItem>, (String, bool)>), PipelineError> {
        let request = self.pair_request(pair, attempt);
        let max_items = self.spec.max_items as usize;
        let (parsed, spent) = in_stage(
            "generate",
            self.gateway
                .chat_parsed(&request, |answer| parse_rubric(answer, max_items)),
        )
        .await;
        usage.add(&spent);
        let result = match parsed {
            Ok(rubric) => Ok(rubric),
            Err(error) => {
                let resample = matches!(error, LlmError::Unusable(_));
                Err((classify_llm_error(error)?, resample))
            }
        };
        Ok((request, result))
    }

    /// Judges every pair in both orders with `rubric`.
    async fn judge(
        &self,
        pairs: &[PreferencePair],
        rubric: &[CrgRubricItem],
        attempt: u32,
        usage: &mut Usage,
    ) -> Result<Judged, PipelineError> {
        let text = rubric_text(rubric);
        let calls = pairs.iter().flat_map(|pair| {
            [true, false].map(|chosen_first| {
                let request = self.judge_request(pair, &text, chosen_first, attempt);
                async move {
                    let (parsed, spent) = in_stage(
                        "judge",
                        self.judge_gateway.chat_parsed(&request, parse_verdict),
                    )
                    .await;
                    (chosen_first, parsed, spent)
                }
            })
        });
        let answers = join_all(calls).await;
        let mut judged = Vec::with_capacity(pairs.len());
        let mut verdicts = Vec::with_capacity(2);
        for (chosen_first, parsed, spent) in answers {
            usage.add(&spent);
            let preferred = match parsed {
                Ok("tie") => "tie",
                Ok(side) => match (side == "A", chosen_first) {
                    (true, true) | (false, false) => "chosen",
                    _ => "rejected",
                },
                Err(error) => {
                    let reason = classify_llm_error(error)?;
                    tracing::debug!(%reason, "crg judge answer unusable");
                    "invalid"
                }
            };
            verdicts.push(JudgeVerdict {
                order: if chosen_first {
                    CHOSEN_FIRST
                } else {
                    REJECTED_FIRST
                }
                .to_owned(),
                preferred: preferred.to_owned(),
            });
            if verdicts.len() == 2 {
                let correct = verdicts.iter().all(|v| v.preferred == "chosen");
                judged.push((std::mem::take(&mut verdicts), correct));
            }
        }
        let correct = judged.iter().filter(|(_, c)| *c).count();
        let accuracy = correct as f64 / judged.len().max(1) as f64;
        Ok(Judged {
            pairs: judged,
            accuracy,
            consistent: correct > 0 && accuracy >= self.spec.min_accuracy,
        })
    }
}

#[async_trait::async_trait]
impl Pipeline for CrgPipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Crg
    }

    fn prompt_hashes(&self) -> BTreeMap<String, String> {
        let judge = self.spec.consistency_filter.then_some(&self.judge_template);
        template_hashes([&self.template].into_iter().chain(judge))
    }

    fn estimate(&self, record: &RawRecord) -> Estimate {
        let pairs = match self.read_pairs(record) {
            Ok(normalized) if !normalized.pairs.is_empty() => normalized.pairs,
            _ => {
                return Estimate::rejected();
            }
        };
        let Some(widest) = pairs.last() else {
            return Estimate::default();
        };
        let request = self.pair_request(widest, 1);
        let mut estimate = Estimate::call(&self.gateway, &request, TYPICAL_ANSWER_TOKENS);
        if self.spec.consistency_filter {
            let placeholder = "x ".repeat(TYPICAL_ANSWER_TOKENS as usize * 4 / 2);
            for pair in &pairs {
                let judge = self.judge_request(pair, &placeholder, true, 1);
                let judged = Estimate::call(&self.judge_gateway, &judge, TYPICAL_JUDGE_TOKENS);
                // Each pair is judged in both orders.
                estimate.add(&judged);
                estimate.add(&judged);
            }
        }
        estimate
    }

    async fn process(
        &self,
        record: RawRecord,
        ctx: &RecordContext,
    ) -> Result<RecordOutcome, PipelineError> {
        let mut outcome = RecordOutcome::default();
        let Some(normalized) = outcome.parse(ctx, &record, |r| self.read_pairs(r)) else {
            return Ok(outcome);
        };
        for skipped in &normalized.skipped {
            outcome.enter("pairs");
            outcome.reject(
                ctx,
                &record.source,
                "pairs",
                skipped.to_string(),
                &skipped.excerpt(),
            );
        }
        for _ in &normalized.pairs {
            outcome.enter("pairs");
            outcome.pass("pairs");
        }
        if normalized.comparisons() == 0 {
            // Every layout offers at least one comparison; should one ever offer none, the
            // record still ends as a reject, never silently.
            outcome.enter("pairs");
            outcome.reject(ctx, &record.source, "pairs", "record yields no pair", "");
        }
        let pairs = normalized.pairs;
        if pairs.is_empty() {
            return Ok(outcome);
        }
        let rubric_id = self.rubric_id(&record, &pairs);
        let widest = pairs.last().expect("pairs are not empty");
        let mut usage = Usage::default();
        let mut log: Vec<(CrgAttempt, Vec<Vec<JudgeVerdict>>)> = Vec::new();
        // The last rubric that was made, with its judgement (None when unjudged).
        let mut last: Option<(Vec<CrgRubricItem>, Option<Judged>)> = None;
        let mut last_error: Option<(String, String)> = None;
        for attempt in 1..=self.max_attempts() {
            outcome.enter("generate");
            let (request, generated) = self.generate(widest, attempt, &mut usage).await?;
            let mut entry = CrgAttempt {
                attempt,
                seed: request.seed,
                verdicts: Vec::new(),
                accuracy: None,
                consistent: false,
                error: None,
            };
            let rubric = match generated {
                Ok(rubric) => rubric,
                Err((reason, resample)) => {
                    entry.error = Some(reason.clone());
                    log.push((entry, Vec::new()));
                    let prompt = request
                        .messages
                        .last()
                        .map(|m| m.content.clone())
                        .unwrap_or_default();
                    last_error = Some((reason, prompt));
                    if resample {
                        continue;
                    }
                    break;
                }
            };
            outcome.pass("generate");
            last_error = None;
            if !self.spec.consistency_filter {
                entry.consistent = true;
                log.push((entry, Vec::new()));
                last = Some((rubric, None));
                break;
            }
            outcome.enter("judge");
            let judged = self.judge(&pairs, &rubric, attempt, &mut usage).await?;
            entry.accuracy = Some(judged.accuracy);
            entry.consistent = judged.consistent;
            let per_pair = judged.pairs.iter().map(|(v, _)| v.clone()).collect();
            log.push((entry, per_pair));
            let consistent = judged.consistent;
            last = Some((rubric, Some(judged)));
            if consistent {
                outcome.pass("judge");
                break;
            }
        }
        outcome.usage.add(&usage);

        let Some((rubric, judged)) = last else {
            let (reason, prompt) =
                last_error.unwrap_or_else(|| ("no rubric was generated".into(), String::new()));
            for _ in &pairs {
                outcome.reject(ctx, &record.source, "generate", reason.clone(), &prompt);
            }
            return Ok(outcome);
        };
        let attempts = log.len() as u32;
        let source = source_name(&record.source);
        let (judge_model, judge_hash) = if self.spec.consistency_filter {
            (
                self.judge_model.model.clone(),
                self.judge_template.hash.clone(),
            )
        } else {
            (String::new(), String::new())
        };
        let accuracy = judged.as_ref().map(|j| j.accuracy);
        let consistent = judged.as_ref().is_none_or(|j| j.consistent);
        for (index, pair) in pairs.into_iter().enumerate() {
            outcome.enter("consistency");
            let (verdicts, correct) = match &judged {
                Some(j) => j.pairs[index].clone(),
                None => (Vec::new(), true),
            };
            let kept = consistent && correct;
            let drop_reason = if kept {
                None
            } else if !consistent {
                let mut reason = format!(
                    "rubric inconsistent after {attempts} attempt(s): accuracy {:.2} below {:.2}",
                    accuracy.unwrap_or(0.0),
                    self.spec.min_accuracy
                );
                if let Some((error, _)) = &last_error {
                    reason.push_str(&format!("; last attempt made no rubric: {error}"));
                }
                Some(reason)
            } else {
                Some(format!(
                    "pair mispredicted by the kept rubric (accuracy {:.2} over {} pairs)",
                    accuracy.unwrap_or(0.0),
                    log.last().map_or(0, |(_, per_pair)| per_pair.len())
                ))
            };
            if kept {
                outcome.pass("consistency");
            } else {
                tracing::debug!(
                    pair_id = %pair.pair_id,
                    rubric_id = %rubric_id,
                    attempts,
                    "crg pair dropped by the consistency filter"
                );
            }
            let attempt_log = log
                .iter()
                .map(|(entry, per_pair)| CrgAttempt {
                    verdicts: per_pair.get(index).cloned().unwrap_or_default(),
                    ..entry.clone()
                })
                .collect();
            let row_usage = if index == 0 { usage } else { Usage::default() };
            let provenance = provenance(
                &record.source,
                ctx,
                self.gateway.provider_kind(),
                &self.model.model,
                &self.template.hash,
                &row_usage,
            );
            outcome.rows.push(OutputRow::Crg(CrgRow {
                pair_id: pair.pair_id,
                source: source.clone(),
                prompt: pair.prompt,
                chosen: pair.chosen,
                rejected: pair.rejected,
                rubric: rubric.clone(),
                verdicts,
                consistency: accuracy,
                attempts,
                kept,
                rubric_id: rubric_id.clone(),
                drop_reason,
                attempt_log,
                judge_model: judge_model.clone(),
                judge_prompt_hash: judge_hash.clone(),
                provenance,
            }));
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(items: &[CrgRubricItem]) -> Vec<(&str, &str)> {
        items
            .iter()
            .map(|i| (i.text.as_str(), i.kind.as_str()))
            .collect()
    }

    #[test]
    fn json_answers_parse_with_items_deduplicated_and_bad_items_skipped() {
        let answer = r#"Here it is: {"items": [
            {"text": "The response is in French.", "kind": "hard_rule"},
            {"text": "the response is in  french", "kind": "Hard Rule"},
            {"text": "The response is kind.", "kind": "principle"},
            {"text": "", "kind": "principle"},
            {"text": "The response has no kind."},
            {"text": "The response has a bad kind.", "kind": "rule of thumb"},
            "The response is short. [Principle]",
            42
        ]}"#;
        let items = parse_rubric(answer, 12).unwrap();
        assert_eq!(
            kinds(&items),
            vec![
                ("The response is in French.", "hard_rule"),
                ("The response is kind.", "principle"),
                ("The response is short.", "principle"),
            ]
        );
        assert_eq!(parse_rubric(answer, 2).unwrap().len(), 2);
    }

    #[test]
    fn text_answers_parse_numbered_bulleted_and_tagged_lines_only() {
        let answer = "Rubric:\n\
            Hard Rules\n\
            1. The response lists three sauces. [Hard Rule]\n\
            2) The response is written in French [hard rule].\n\
            - The response explains each choice. [Principle]\n\
            * **The response stays concise.** **[Principle]**\n\
            • [Principle] The response avoids jargon.\n\
            10. The response lists three sauces.   [Hard Rule]\n\
            3. This line has no tag.\n\
            4. [Hard Rule]\n\
            5. The response [Principle] puts the tag mid-line.\n\
            The response is unnumbered but tagged. [Principle]";
        let items = parse_rubric(answer, 12).unwrap();
        assert_eq!(
            kinds(&items),
            vec![
                ("The response lists three sauces.", "hard_rule"),
                ("The response is written in French", "hard_rule"),
                ("The response explains each choice.", "principle"),
                ("The response stays concise.", "principle"),
                ("The response avoids jargon.", "principle"),
                ("The response is unnumbered but tagged.", "principle"),
            ]
        );
    }

    #[test]
    fn malformed_and_empty_answers_are_refused() {
        for answer in [
            "",
            "I cannot write a rubric for this.",
            "{\"items\": []}",
            "{\"items\": [{\"text\": \"\", \"kind\": \"principle\"}]}",
            "{\"items\": [",
            "1. [Hard Rule]\n2. [Principle]",
        ] {
            let error = parse_rubric(answer, 12).unwrap_err();
            assert!(error.contains("no rubric items"), "{answer:?}: {error}");
        }
        // A truncated JSON answer falls back to the text lines it holds.
        let cut = "{\"items\": [\n1. The response is brief. [Principle]\n";
        assert_eq!(
            parse_rubric(cut, 12).unwrap()[0].text,
            "The response is brief."
        );
        // JSON without an item list is read as text.
        let other = "{\"rubric\": 1}\n1. The response is brief. [Principle]";
        assert_eq!(parse_rubric(other, 12).unwrap().len(), 1);
    }

    #[test]
    fn rubric_text_round_trips_through_the_text_parser() {
        let items = vec![
            CrgRubricItem {
                text: "The response is in French.".into(),
                kind: "hard_rule".into(),
            },
            CrgRubricItem {
                text: "The response is kind.".into(),
                kind: "principle".into(),
            },
        ];
        let text = rubric_text(&items);
        assert_eq!(
            text,
            "1. The response is in French. [Hard Rule]\n2. The response is kind. [Principle]"
        );
        assert_eq!(parse_rubric_text(&text), items);
    }

    #[test]
    fn verdicts_parse_sides_and_ties_and_refuse_the_rest() {
        assert_eq!(parse_verdict(r#"{"preferred": "A"}"#), Ok("A"));
        assert_eq!(
            parse_verdict(r#"{"preferred": "Response B", "reason": "x"}"#),
            Ok("B")
        );
        assert_eq!(parse_verdict(r#"{"preferred": "Tie"}"#), Ok("tie"));
        assert!(parse_verdict(r#"{"preferred": "C"}"#).is_err());
        assert!(parse_verdict(r#"{"winner": "A"}"#).is_err());
        assert!(parse_verdict("A").is_err());
    }
}
