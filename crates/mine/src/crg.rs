//! The crg pipeline, first form: each preference pair is normalised, then one LLM call writes a
//! contrastive rubric of hard rules and principles. Pairs that do not normalise and answers that
//! hold no rubric become rejects. (The consistency judge and rejection sampling come with the
//! full CRG miner; until then every row has `attempts = 1`, no verdicts and `kept = true`.)

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use rubricmill_core::spec::CrgSpec;
use rubricmill_core::{
    CrgRow, CrgRubricItem, OutputRow, PairLayout, PipelineKind, PreferencePair, RawPayload,
    RawRecord,
};
use rubricmill_llm::simulated::CRG_TASK;
use rubricmill_llm::structured::extract_json;
use rubricmill_llm::{ChatRequest, Gateway, ResponseFormat};
use serde_json::{Value, json};

use crate::pairs::{FieldMap, normalize_pair};
use crate::pipeline::{
    Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, StageModel, Stages,
    classify_llm_error, provenance,
};
use crate::prompt::Template;

/// Output tokens of a typical answer (a dozen one-sentence items), for estimates.
const TYPICAL_ANSWER_TOKENS: u64 = 250;

pub struct CrgPipeline {
    gateway: Arc<Gateway>,
    model: StageModel,
    spec: CrgSpec,
    layout: PairLayout,
    fields: FieldMap,
    template: Template,
}

impl CrgPipeline {
    pub fn new(
        stages: &Stages,
        spec: CrgSpec,
        layout: PairLayout,
        fields: &BTreeMap<String, String>,
    ) -> Self {
        let (gateway, model) = stages.get("generate");
        Self {
            gateway,
            model,
            spec,
            layout,
            fields: FieldMap::new(fields),
            template: stages.templates.get("crg_generate"),
        }
    }

    fn response_format(&self) -> ResponseFormat {
        ResponseFormat {
            name: CRG_TASK.into(),
            schema: json!({
                "type": "object",
                "required": ["items"],
                "properties": {"items": {"type": "array", "maxItems": self.spec.max_items, "items": {
                    "type": "object",
                    "required": ["text", "kind"],
                    "properties": {
                        "text": {"type": "string"},
                        "kind": {"type": "string", "enum": ["hard_rule", "principle"]}
                    }
                }}}
            }),
        }
    }

    /// Rubric items from a JSON answer or, failing that, from the text format
    /// ("1. The response … [Hard Rule]"). Duplicates (ignoring case) are dropped; an answer
    /// with no items is refused (the gateway then asks for one repair).
    fn parse_rubric(&self, answer: &str) -> Result<Vec<CrgRubricItem>, String> {
        let mut items = Vec::new();
        if let Ok(value) = extract_json(answer)
            && let Some(list) = value.get("items").and_then(Value::as_array)
        {
            for item in list {
                let text = item
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .unwrap_or("");
                let kind = match item
                    .get("kind")
                    .and_then(Value::as_str)
                    .map(|k| k.trim().to_ascii_lowercase())
                {
                    Some(k) if k.replace([' ', '-'], "_") == "hard_rule" => "hard_rule",
                    Some(k) if k == "principle" => "principle",
                    _ => continue,
                };
                if !text.is_empty() {
                    items.push(CrgRubricItem {
                        text: text.to_owned(),
                        kind: kind.to_owned(),
                    });
                }
            }
        } else {
            for line in answer.lines() {
                let line = line
                    .trim()
                    .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ')')
                    .trim();
                let (text, kind) = if let Some(text) = line.strip_suffix("[Hard Rule]") {
                    (text, "hard_rule")
                } else if let Some(text) = line.strip_suffix("[Principle]") {
                    (text, "principle")
                } else {
                    continue;
                };
                let text = text.trim();
                if !text.is_empty() {
                    items.push(CrgRubricItem {
                        text: text.to_owned(),
                        kind: kind.to_owned(),
                    });
                }
            }
        }
        let mut seen = HashSet::new();
        items.retain(|item| seen.insert(item.text.to_lowercase()));
        items.truncate(self.spec.max_items as usize);
        if items.is_empty() {
            return Err(
                "no rubric items: give items with \"text\" and \"kind\" (hard_rule or principle)"
                    .into(),
            );
        }
        Ok(items)
    }
}

impl CrgPipeline {
    /// The generation request for one pair.
    fn pair_request(&self, pair: &PreferencePair) -> ChatRequest {
        let conversation: Vec<String> = pair
            .prompt
            .iter()
            .map(|m| format!("{}: {}", m.role, m.content))
            .collect();
        let conversation = conversation.join("\n\n");
        let max_items = self.spec.max_items.to_string();
        ChatRequest {
            model: self.model.model.clone(),
            messages: self.template.render(&[
                ("max_items", &max_items),
                ("conversation", &conversation),
                ("chosen", &pair.chosen),
                ("rejected", &pair.rejected),
            ]),
            temperature: self.model.temperature,
            max_tokens: self.model.max_tokens,
            seed: self.model.seed,
            response_format: Some(self.response_format()),
        }
    }

    fn pair_of(&self, record: &RawRecord) -> Result<PreferencePair, String> {
        match &record.payload {
            RawPayload::Json(value) => {
                normalize_pair(value, self.layout, &self.fields).map_err(|e| e.to_string())
            }
            RawPayload::Text(_) => Err("crg reads structured records, not text documents".into()),
        }
    }
}

#[async_trait::async_trait]
impl Pipeline for CrgPipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Crg
    }

    fn prompt_hashes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(self.template.name.clone(), self.template.hash.clone())])
    }

    fn estimate(&self, record: &RawRecord) -> Estimate {
        let Ok(pair) = self.pair_of(record) else {
            return Estimate {
                rejected: 1,
                ..Estimate::default()
            };
        };
        let request = self.pair_request(&pair);
        Estimate {
            rejected: 0,
            calls: 1,
            prompt_tokens: self.gateway.estimate_prompt_tokens(&request.messages),
            max_output_tokens: u64::from(request.max_tokens),
            typical_output_tokens: TYPICAL_ANSWER_TOKENS.min(u64::from(request.max_tokens)),
        }
    }

    async fn process(
        &self,
        record: RawRecord,
        ctx: &RecordContext,
    ) -> Result<RecordOutcome, PipelineError> {
        let mut outcome = RecordOutcome::default();
        outcome.enter("parse");
        let pair = match self.pair_of(&record) {
            Ok(pair) => pair,
            Err(reason) => {
                let raw = match &record.payload {
                    RawPayload::Json(value) => value.to_string(),
                    RawPayload::Text(text) => text.clone(),
                };
                outcome.reject(ctx, &record.source, "parse", reason, &raw);
                return Ok(outcome);
            }
        };
        outcome.pass("parse");
        outcome.enter("generate");
        let request = self.pair_request(&pair);
        let (parsed, usage) = self
            .gateway
            .chat_parsed(&request, |answer| self.parse_rubric(answer))
            .await;
        outcome.usage.add(&usage);
        let rubric = match parsed {
            Ok(rubric) => rubric,
            Err(error) => {
                let reason = classify_llm_error(error)?;
                outcome.reject(
                    ctx,
                    &record.source,
                    "generate",
                    reason,
                    &request
                        .messages
                        .last()
                        .map(|m| m.content.clone())
                        .unwrap_or_default(),
                );
                return Ok(outcome);
            }
        };
        outcome.pass("generate");
        let provenance = provenance(
            &record.source,
            ctx,
            self.gateway.provider_kind(),
            &self.model.model,
            &self.template.hash,
            &usage,
        );
        let source = record
            .source
            .file
            .rsplit('/')
            .next()
            .unwrap_or(&record.source.file)
            .to_owned();
        outcome.rows.push(OutputRow::Crg(CrgRow {
            pair_id: pair.pair_id,
            source,
            prompt: pair.prompt,
            chosen: pair.chosen,
            rejected: pair.rejected,
            rubric,
            verdicts: Vec::new(),
            consistency: None,
            attempts: 1,
            kept: true,
            provenance,
        }));
        Ok(outcome)
    }
}
