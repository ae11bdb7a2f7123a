//! The researchqa pipeline, first form: a survey document is split into sections; each kept
//! section gets one LLM call that returns a research query and typed rubric items; citation
//! items are linked to the reference they name. Dropped sections and unusable answers become
//! rejects. (Filters and the query judge come with the full survey miner.)

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use rubricmill_core::spec::ResearchQaSpec;
use rubricmill_core::{
    OutputRow, PipelineKind, RawPayload, RawRecord, ResearchQaRow, RubricItem, SourceRef, Usage,
    short_hash,
};
use rubricmill_llm::simulated::RESEARCHQA_TASK;
use rubricmill_llm::structured::{extract_json, validate};
use rubricmill_llm::{ChatRequest, Gateway, ResponseFormat};
use serde_json::{Value, json};

use crate::pipeline::{
    Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, StageModel, Stages,
    classify_llm_error, provenance,
};
use crate::prompt::Template;
use crate::sections::{
    ParsedSurvey, Reference, Section, SectionOptions, parse_markdown_survey,
    parse_structured_survey,
};

/// Sections of one document sent to the model at once.
const SECTION_CONCURRENCY: usize = 8;
/// Output tokens of a typical answer (a query and eight items), for estimates.
const TYPICAL_ANSWER_TOKENS: u64 = 400;

pub struct ResearchQaPipeline {
    gateway: Arc<Gateway>,
    model: StageModel,
    spec: ResearchQaSpec,
    template: Template,
    options: SectionOptions,
}

impl ResearchQaPipeline {
    pub fn new(stages: &Stages, spec: ResearchQaSpec) -> Self {
        let options = SectionOptions {
            min_section_chars: spec.min_section_chars as usize,
            max_section_chars: spec.max_section_chars as usize,
        };
        let (gateway, model) = stages.get("generate");
        Self {
            gateway,
            model,
            spec,
            template: stages.templates.get("researchqa_generate"),
            options,
        }
    }

    fn response_format(&self) -> ResponseFormat {
        ResponseFormat {
            name: RESEARCHQA_TASK.into(),
            schema: json!({
                "type": "object",
                "required": ["query", "rubric"],
                "properties": {
                    "query": {"type": "string"},
                    "rubric": {"type": "array", "maxItems": self.spec.max_rubric_items, "items": {
                        "type": "object",
                        "required": ["item", "types", "citation"],
                        "properties": {
                            "item": {"type": "string"},
                            "types": {"type": "array", "items": {"type": "string", "enum": self.spec.rubric_types}},
                            "citation": {"type": ["string", "null"]}
                        }
                    }}
                }
            }),
        }
    }
}

/// Document-level values every row of one survey shares.
struct Document {
    id: String,
    title: Option<String>,
    date: Option<String>,
    general_domain: Option<String>,
    subdomain: Option<String>,
    field: Option<String>,
}

fn string_field(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `computer_science` → `Computer Science`.
fn humanize(folder: &str) -> String {
    folder
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A readable, content-derived document id: the file stem plus a hash of the text.
fn document_id(source: &SourceRef, text: &str) -> String {
    let stem = source.file.rsplit('/').next().unwrap_or("doc");
    let stem = stem.split('.').next().unwrap_or(stem);
    let mut slug: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    slug.truncate(40);
    format!(
        "{}-{}",
        slug.trim_matches('_'),
        short_hash(text.as_bytes(), 8)
    )
}

impl ResearchQaPipeline {
    fn document(&self, record: &RawRecord, text_for_id: &str) -> Document {
        let json = match &record.payload {
            RawPayload::Json(value) => Some(value),
            RawPayload::Text(_) => None,
        };
        let from_json = |key: &str| json.and_then(|v| string_field(v, key));
        let folder = record.source.file.rsplit('/').nth(1).map(humanize);
        Document {
            id: from_json("id").unwrap_or_else(|| document_id(&record.source, text_for_id)),
            title: from_json("title"),
            date: from_json("date"),
            general_domain: self
                .spec
                .general_domain
                .clone()
                .or_else(|| from_json("general_domain"))
                .or(folder),
            subdomain: self
                .spec
                .subdomain
                .clone()
                .or_else(|| from_json("subdomain")),
            field: self.spec.field.clone().or_else(|| from_json("field")),
        }
    }

    /// Parses the answer into a query and rubric items, or says why it cannot.
    fn parse_answer(
        &self,
        answer: &str,
        schema: &Value,
        section: &Section,
    ) -> Result<(String, Vec<RubricItem>), String> {
        let value = extract_json(answer)?;
        validate(&value, schema)?;
        let query = value
            .get("query")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("");
        if query.is_empty() {
            return Err("answer has no query".into());
        }
        let items = value
            .get("rubric")
            .and_then(Value::as_array)
            .ok_or("answer has no rubric array")?;
        let mut rubric = Vec::new();
        for item in items.iter().take(self.spec.max_rubric_items as usize) {
            let Some(text) = item
                .get("item")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty())
            else {
                continue;
            };
            let mut types: Vec<String> = item
                .get("types")
                .and_then(Value::as_array)
                .map(|types| {
                    types
                        .iter()
                        .filter_map(Value::as_str)
                        .filter_map(|t| {
                            self.spec
                                .rubric_types
                                .iter()
                                .find(|known| known.eq_ignore_ascii_case(t.trim()))
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            types.dedup();
            if types.is_empty() {
                types.push("Other".into());
            }
            let citation_metadata = item
                .get("citation")
                .and_then(Value::as_str)
                .and_then(|key| section.citations.iter().find(|r| r.key == key.trim()))
                .map(Reference::citation_metadata);
            rubric.push(RubricItem {
                rubric_item: text.to_owned(),
                types,
                citation_metadata,
            });
        }
        if rubric.is_empty() {
            return Err("answer has no usable rubric items".into());
        }
        Ok((query.to_owned(), rubric))
    }

    /// The generation request for one section.
    fn section_request(&self, section: &Section) -> ChatRequest {
        let cited: Vec<String> = section
            .citations
            .iter()
            .map(|r| {
                let author = r.first_author.as_deref().unwrap_or("unknown");
                let year = r.year.as_deref().unwrap_or("n.d.");
                format!(
                    "[{}] {author} ({year}). {}",
                    r.key,
                    r.title.as_deref().unwrap_or("")
                )
            })
            .collect();
        let heading_path = section.heading_path.join(" › ");
        let max_items = self.spec.max_rubric_items.to_string();
        let types = self.spec.rubric_types.join(", ");
        let cited = cited.join("\n");
        let messages = self.template.render(&[
            ("max_items", &max_items),
            ("rubric_types", &types),
            ("heading_path", &heading_path),
            ("section_text", &section.text),
            ("cited_works", &cited),
        ]);
        ChatRequest {
            model: self.model.model.clone(),
            messages,
            temperature: self.model.temperature,
            max_tokens: self.model.max_tokens,
            seed: self.model.seed,
            response_format: Some(self.response_format()),
        }
    }

    /// Parses a record into a survey, or says why it cannot.
    fn parse_record(&self, record: &RawRecord) -> Result<ParsedSurvey, String> {
        match &record.payload {
            RawPayload::Text(text) => Ok(parse_markdown_survey(text, &self.options)),
            RawPayload::Json(value) => parse_structured_survey(value, &self.options),
        }
    }

    async fn mine_section(
        &self,
        section: &Section,
        document: &Document,
        source: &SourceRef,
        ctx: &RecordContext,
    ) -> Result<(Usage, Result<ResearchQaRow, String>), PipelineError> {
        let request = self.section_request(section);
        let schema = request
            .response_format
            .as_ref()
            .map(|f| f.schema.clone())
            .unwrap_or_default();
        let (parsed, usage) = self
            .gateway
            .chat_parsed(&request, |answer| {
                self.parse_answer(answer, &schema, section)
            })
            .await;
        let (query, rubric) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => return classify_llm_error(error).map(|reason| (usage, Err(reason))),
        };
        let row = ResearchQaRow {
            id: format!("{}-s{}", document.id, section.index),
            general_domain: document.general_domain.clone(),
            subdomain: document.subdomain.clone(),
            field: document.field.clone(),
            query,
            date: document.date.clone(),
            rubric,
            doc_id: document.id.clone(),
            doc_title: document.title.clone(),
            section_heading: section.heading.clone(),
            heading_path: section.heading_path.clone(),
            section_text_hash: short_hash(section.text.as_bytes(), 24),
            provenance: provenance(
                source,
                ctx,
                self.gateway.provider_kind(),
                &self.model.model,
                &self.template.hash,
                &usage,
            ),
        };
        Ok((usage, Ok(row)))
    }
}

#[async_trait::async_trait]
impl Pipeline for ResearchQaPipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Researchqa
    }

    fn prompt_hashes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(self.template.name.clone(), self.template.hash.clone())])
    }

    fn estimate(&self, record: &RawRecord) -> Estimate {
        let Ok(parsed) = self.parse_record(record) else {
            return Estimate {
                rejected: 1,
                ..Estimate::default()
            };
        };
        let mut estimate = Estimate::default();
        for section in &parsed.sections {
            let request = self.section_request(section);
            estimate.calls += 1;
            estimate.prompt_tokens += self.gateway.estimate_prompt_tokens(&request.messages);
            estimate.max_output_tokens += u64::from(request.max_tokens);
            estimate.typical_output_tokens +=
                TYPICAL_ANSWER_TOKENS.min(u64::from(request.max_tokens));
        }
        estimate
    }

    async fn process(
        &self,
        record: RawRecord,
        ctx: &RecordContext,
    ) -> Result<RecordOutcome, PipelineError> {
        let mut outcome = RecordOutcome::default();
        outcome.enter("parse");
        let raw: Cow<str> = match &record.payload {
            RawPayload::Text(text) => Cow::Borrowed(text),
            RawPayload::Json(value) => Cow::Owned(value.to_string()),
        };
        let parsed = match self.parse_record(&record) {
            Ok(parsed) => parsed,
            Err(reason) => {
                outcome.reject(ctx, &record.source, "parse", reason, &raw);
                return Ok(outcome);
            }
        };
        for dropped in &parsed.dropped {
            let reason = format!("{}: {}", dropped.heading, dropped.reason);
            outcome.reject(ctx, &record.source, "sections", reason, &dropped.excerpt);
        }
        if parsed.sections.is_empty() {
            outcome.reject(
                ctx,
                &record.source,
                "parse",
                "document has no content sections",
                &raw,
            );
            return Ok(outcome);
        }
        outcome.pass("parse");
        let mut document = self.document(&record, &raw);
        if document.title.is_none() {
            document.title = parsed.title.clone();
        }
        // Futures are lazy: `buffered` runs SECTION_CONCURRENCY of them at a time, in order.
        let calls: Vec<_> = parsed
            .sections
            .iter()
            .map(|section| self.mine_section(section, &document, &record.source, ctx))
            .collect();
        let results: Vec<_> = futures::stream::iter(calls)
            .buffered(SECTION_CONCURRENCY)
            .collect()
            .await;
        for (section, result) in parsed.sections.iter().zip(results) {
            outcome.enter("generate");
            let (usage, result) = result?;
            outcome.usage.add(&usage);
            match result {
                Ok(row) => {
                    outcome.pass("generate");
                    outcome.rows.push(OutputRow::ResearchQa(row));
                }
                Err(reason) => {
                    outcome.reject(
                        ctx,
                        &record.source,
                        "generate",
                        format!("{}: {reason}", section.heading),
                        &section.text,
                    );
                }
            }
        }
        Ok(outcome)
    }
}
