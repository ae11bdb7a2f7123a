//! The researchqa pipeline: a survey document is split into sections ([`crate::sections`]);
//! each kept section becomes at most one research query with typed rubric items, through these
//! stages, each counted in the commit marker and leaving reject rows with reasons:
//!
//! | stage | unit | what | rejects when |
//! |---|---|---|---|
//! | `parse`, `sections` | document, heading unit | section extraction | no content sections; non-content, empty or too-short units |
//! | `classify` (optional) | document | one LLM call choosing a `classify_taxonomy` entry for labels the spec and input lack | the answer is unusable (the rows keep their other labels) |
//! | `generate` | section | one LLM call: a standalone query and ≤ `max_rubric_items` "Does the response …?" items, typed from `rubric_types`, citation items linked to the section's references | the answer stays unusable after one repair (a query naming "this survey", "the authors", … is refused and repaired) |
//! | `query_judge` (optional, `query_judge`) | query | one LLM call: standalone, specific, answerable | any criterion fails |
//! | `rubric_check` | rubric item | well-formed, grounded in the section (key-term overlap ≥ `grounding_threshold`), no near-duplicate within the query (token Jaccard ≥ `near_duplicate_threshold`) | any check fails (one reject row per item) |
//! | `min_items` | query | at least `min_items` items left | too few items |
//!
//! So, summed over a job: `generate.input = rows + generate.rejected + query_judge.rejected +
//! min_items.rejected`, and `rubric_check.input = rubric_check.output + rubric_check.rejected`.
//! Field labels: the job spec wins, then the input's JSON fields, then the classification, then
//! (for `general_domain`) the input's folder name. Rows record the generate template's hash;
//! the file metadata lists every template in force.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use rubricmill_core::spec::ResearchQaSpec;
use rubricmill_core::{
    CitedReference, OutputRow, PipelineKind, RawPayload, RawRecord, ResearchQaRow, RubricItem,
    SourceRef, Usage, short_hash,
};
use rubricmill_llm::scope::in_stage;
use rubricmill_llm::simulated::{RESEARCHQA_CLASSIFY_TASK, RESEARCHQA_JUDGE_TASK, RESEARCHQA_TASK};
use rubricmill_llm::structured::{extract_json, validate};
use rubricmill_llm::{ChatRequest, Gateway, ResponseFormat};
use serde_json::{Value, json};

use crate::pipeline::{
    Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, StageModel, Stages,
    classify_llm_error, provenance, template_hashes,
};
use crate::prompt::Template;
use crate::rubric_filters::{ItemChecks, check_items, content_stems, source_reference};
use crate::sections::{
    ParsedSurvey, Reference, Section, SectionKind, SectionOptions, parse_markdown_survey,
    parse_structured_survey,
};

/// Sections of one document sent to the model at once.
const SECTION_CONCURRENCY: usize = 8;
/// Output tokens of a typical answer (a query and eight items), for estimates.
const TYPICAL_ANSWER_TOKENS: u64 = 400;
/// Output tokens of a typical judge or classification answer, for estimates.
const TYPICAL_VERDICT_TOKENS: u64 = 60;
/// Characters of the document shown to the classifier.
const CLASSIFY_EXCERPT_CHARS: usize = 3_000;

/// One LLM stage: where it calls, with what sampling, with which prompt.
struct LlmStage {
    /// The stage's name (`generate`, `judge`, `classify`), the label of its calls' metrics.
    stage: String,
    gateway: Arc<Gateway>,
    model: StageModel,
    template: Template,
}

impl LlmStage {
    fn new(stages: &Stages, stage: &str, template: &str) -> Self {
        let (gateway, model) = stages.get(stage);
        Self {
            stage: stage.to_owned(),
            gateway,
            model,
            template: stages.templates.get(template),
        }
    }

    fn request(&self, values: &[(&str, &str)], format: ResponseFormat) -> ChatRequest {
        ChatRequest {
            model: self.model.model.clone(),
            messages: self.template.render(values),
            temperature: self.model.temperature,
            max_tokens: self.model.max_tokens,
            seed: self.model.seed,
            response_format: Some(format),
        }
    }

    fn estimate(&self, request: &ChatRequest, typical: u64) -> Estimate {
        Estimate::call(&self.gateway, request, typical)
    }
}

pub struct ResearchQaPipeline {
    generate: LlmStage,
    judge: Option<LlmStage>,
    classify: Option<LlmStage>,
    spec: ResearchQaSpec,
    options: SectionOptions,
}

impl ResearchQaPipeline {
    pub fn new(stages: &Stages, spec: ResearchQaSpec) -> Self {
        let options = SectionOptions {
            min_section_chars: spec.min_section_chars as usize,
            max_section_chars: spec.max_section_chars as usize,
        };
        let judge = spec
            .query_judge
            .then(|| LlmStage::new(stages, "judge", "researchqa_judge"));
        let classify = (!spec.classify_taxonomy.is_empty())
            .then(|| LlmStage::new(stages, "classify", "researchqa_classify"));
        Self {
            generate: LlmStage::new(stages, "generate", "researchqa_generate"),
            judge,
            classify,
            spec,
            options,
        }
    }

    fn response_format(&self) -> ResponseFormat {
        ResponseFormat {
            name: RESEARCHQA_TASK.into(),
            schema: json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["query", "rubric"],
                "properties": {
                    "query": {"type": "string"},
                    "decline": {"type": ["string", "null"]},
                    "rubric": {"type": "array", "maxItems": self.spec.max_rubric_items, "items": {
                        "type": "object",
                        "additionalProperties": false,
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

fn judge_format() -> ResponseFormat {
    ResponseFormat {
        name: RESEARCHQA_JUDGE_TASK.into(),
        schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["standalone", "specific", "answerable", "reason"],
            "properties": {
                "standalone": {"type": "boolean"},
                "specific": {"type": "boolean"},
                "answerable": {"type": "boolean"},
                "reason": {"type": "string"}
            }
        }),
    }
}

/// A judge's verdict: `Ok(())` accepts the query, `Err(reason)` rejects it.
fn parse_verdict(answer: &str, schema: &Value) -> Result<Result<(), String>, String> {
    let value = extract_json(answer)?;
    validate(&value, schema)?;
    let flag = |key: &str| value.get(key).and_then(Value::as_bool).unwrap_or(false);
    let failed: Vec<&str> = ["standalone", "specific", "answerable"]
        .into_iter()
        .filter(|key| !flag(key))
        .collect();
    if failed.is_empty() {
        return Ok(Ok(()));
    }
    let reason = value
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    Ok(Err(format!("not {}: {reason}", failed.join(", not "))))
}

/// A usable generation answer: a query with its rubric, or a refusal to mine the section.
enum Answer {
    Mined(String, Vec<RubricItem>),
    Declined(String),
}

/// Document-level values every row of one survey shares.
#[derive(Debug, Clone, Default)]
struct Document {
    id: String,
    title: Option<String>,
    date: Option<String>,
    general_domain: Option<String>,
    subdomain: Option<String>,
    field: Option<String>,
    /// The input's folder name, the last fallback for `general_domain`.
    folder: Option<String>,
}

impl Document {
    fn needs_labels(&self) -> bool {
        self.general_domain.is_none() || self.subdomain.is_none() || self.field.is_none()
    }

    /// Fills the labels still missing from a taxonomy entry "domain > subdomain > field".
    fn apply_classification(&mut self, entry: &str) {
        let mut parts = entry
            .split('>')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        let (domain, subdomain, field) = (parts.next(), parts.next(), parts.next());
        self.general_domain = self.general_domain.take().or(domain);
        self.subdomain = self.subdomain.take().or(subdomain);
        self.field = self.field.take().or(field);
    }
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

/// What became of one section, before it is counted.
struct Mined {
    usage: Usage,
    /// The stage that stopped the section and why.
    rejected: Option<(&'static str, String)>,
    /// Whether the query reached the judge.
    judged: bool,
    query: String,
    /// Items out of generation that went through the item checks.
    checked: usize,
    kept: Vec<RubricItem>,
    dropped: Vec<(RubricItem, String)>,
}

impl Mined {
    fn failed(usage: Usage, stage: &'static str, reason: String) -> Self {
        Self {
            usage,
            rejected: Some((stage, reason)),
            judged: false,
            query: String::new(),
            checked: 0,
            kept: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

impl ResearchQaPipeline {
    fn document(&self, record: &RawRecord, text_for_id: &str) -> Document {
        let json = match &record.payload {
            RawPayload::Json(value) => Some(value),
            RawPayload::Text(_) => None,
        };
        let from_json = |key: &str| json.and_then(|v| string_field(v, key));
        Document {
            id: from_json("id").unwrap_or_else(|| document_id(&record.source, text_for_id)),
            title: from_json("title"),
            date: from_json("date"),
            general_domain: self
                .spec
                .general_domain
                .clone()
                .or_else(|| from_json("general_domain")),
            subdomain: self
                .spec
                .subdomain
                .clone()
                .or_else(|| from_json("subdomain")),
            field: self.spec.field.clone().or_else(|| from_json("field")),
            folder: record.source.file.rsplit('/').nth(1).map(humanize),
        }
    }

    /// Parses the answer into a query and rubric items, or says why it cannot.
    fn parse_answer(
        &self,
        answer: &str,
        schema: &Value,
        section: &Section,
    ) -> Result<Answer, String> {
        let value = extract_json(answer)?;
        validate(&value, schema)?;
        if let Some(reason) = value
            .get("decline")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            return Ok(Answer::Declined(reason.to_owned()));
        }
        let query = value
            .get("query")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("");
        if query.is_empty() {
            return Err("answer has no query".into());
        }
        if let Some(phrase) = source_reference(query) {
            return Err(format!(
                "the query is not standalone: it says \"{phrase}\"; rewrite it so that a reader who has never seen the survey understands it"
            ));
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
            let citation_metadata = item
                .get("citation")
                .and_then(Value::as_str)
                .and_then(|key| section.citations.iter().find(|r| r.key == key.trim()))
                .map(Reference::citation_metadata);
            if citation_metadata.is_none() {
                // A citation item must name a work the section cites.
                types.retain(|t| !t.eq_ignore_ascii_case("citation"));
            }
            if types.is_empty() {
                types.push(self.fallback_type());
            }
            rubric.push(RubricItem {
                rubric_item: text.to_owned(),
                types,
                citation_metadata,
            });
        }
        if rubric.is_empty() {
            return Err("answer has no usable rubric items".into());
        }
        Ok(Answer::Mined(query.to_owned(), rubric))
    }

    /// The type of an item whose types were all unknown: "Other" when configured, else the
    /// last configured type.
    fn fallback_type(&self) -> String {
        let types = &self.spec.rubric_types;
        types
            .iter()
            .find(|t| t.eq_ignore_ascii_case("other"))
            .or(types.last())
            .cloned()
            .unwrap_or_else(|| "Other".into())
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
        self.generate.request(
            &[
                ("max_items", &max_items),
                ("rubric_types", &types),
                ("heading_path", &heading_path),
                ("section_text", &section.text),
                ("cited_works", &cited),
            ],
            self.response_format(),
        )
    }

    fn judge_request(judge: &LlmStage, section: &Section, query: &str) -> ChatRequest {
        let heading_path = section.heading_path.join(" › ");
        judge.request(
            &[
                ("heading_path", &heading_path),
                ("section_text", &section.text),
                ("query", query),
            ],
            judge_format(),
        )
    }

    /// The sections to mine, and the others with why they are skipped: review-method sections
    /// (`skip_method_sections`), then those over `max_sections_per_doc`, which keeps sections
    /// spread evenly over the survey.
    fn select_sections<'a>(
        &self,
        sections: &'a [Section],
    ) -> (Vec<&'a Section>, Vec<(&'a Section, String)>) {
        let mut skipped = Vec::new();
        let mut keep = Vec::with_capacity(sections.len());
        for section in sections {
            if self.spec.skip_method_sections && section.kind == SectionKind::ReviewMethod {
                skipped.push((
                    section,
                    "review-method section (researchqa.skip_method_sections)".to_owned(),
                ));
            } else {
                keep.push(section);
            }
        }
        let Some(cap) = self.spec.max_sections_per_doc.map(|c| c as usize) else {
            return (keep, skipped);
        };
        if cap == 0 || keep.len() <= cap {
            return (keep, skipped);
        }
        let n = keep.len();
        let chosen: std::collections::HashSet<usize> = (0..cap).map(|k| k * n / cap).collect();
        let mut kept = Vec::with_capacity(cap);
        for (i, section) in keep.into_iter().enumerate() {
            if chosen.contains(&i) {
                kept.push(section);
            } else {
                skipped.push((
                    section,
                    format!("over researchqa.max_sections_per_doc ({cap}) for this survey"),
                ));
            }
        }
        skipped.sort_by_key(|(s, _)| s.index);
        (kept, skipped)
    }

    fn classify_format(&self) -> ResponseFormat {
        ResponseFormat {
            name: RESEARCHQA_CLASSIFY_TASK.into(),
            schema: json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["label"],
                "properties": {"label": {"type": "string", "enum": self.spec.classify_taxonomy}}
            }),
        }
    }

    fn classify_request(
        classify: &LlmStage,
        format: ResponseFormat,
        title: &str,
        parsed: &ParsedSurvey,
        taxonomy: &[String],
    ) -> ChatRequest {
        let mut excerpt = String::new();
        for section in &parsed.sections {
            if excerpt.len() >= CLASSIFY_EXCERPT_CHARS {
                break;
            }
            excerpt.push_str(&section.heading);
            excerpt.push('\n');
            excerpt.push_str(&section.text);
            excerpt.push_str("\n\n");
        }
        let excerpt: String = excerpt.chars().take(CLASSIFY_EXCERPT_CHARS).collect();
        let taxonomy = taxonomy.join("\n");
        classify.request(
            &[
                ("taxonomy", &taxonomy),
                ("title", title),
                ("excerpt", &excerpt),
            ],
            format,
        )
    }

    /// The taxonomy entry the classifier chose, or why the record's labels stay as they are.
    async fn classify_document(
        &self,
        classify: &LlmStage,
        title: &str,
        parsed: &ParsedSurvey,
    ) -> Result<(Usage, Result<String, String>), PipelineError> {
        let request = Self::classify_request(
            classify,
            self.classify_format(),
            title,
            parsed,
            &self.spec.classify_taxonomy,
        );
        let schema = self.classify_format().schema;
        let (parsed, usage) = in_stage(
            &classify.stage,
            classify.gateway.chat_parsed(&request, |answer| {
                let value = extract_json(answer)?;
                validate(&value, &schema)?;
                let label = value.get("label").and_then(Value::as_str).unwrap_or("");
                self.spec
                    .classify_taxonomy
                    .iter()
                    .find(|entry| entry.as_str() == label.trim())
                    .cloned()
                    .ok_or_else(|| format!("label {label:?} is not an entry of the taxonomy"))
            }),
        )
        .await;
        match parsed {
            Ok(entry) => Ok((usage, Ok(entry))),
            Err(error) => classify_llm_error(error).map(|reason| (usage, Err(reason))),
        }
    }

    /// Parses a record into a survey, or says why it cannot.
    fn parse_record(&self, record: &RawRecord) -> Result<ParsedSurvey, String> {
        match &record.payload {
            RawPayload::Text(text) => Ok(parse_markdown_survey(text, &self.options)),
            RawPayload::Json(value) => parse_structured_survey(value, &self.options),
        }
    }

    /// Generate, judge and check one section.
    async fn mine_section(&self, section: &Section) -> Result<Mined, PipelineError> {
        let request = self.section_request(section);
        let schema = request
            .response_format
            .as_ref()
            .map(|f| f.schema.clone())
            .unwrap_or_default();
        let (parsed, mut usage) = in_stage(
            &self.generate.stage,
            self.generate.gateway.chat_parsed(&request, |answer| {
                self.parse_answer(answer, &schema, section)
            }),
        )
        .await;
        let (query, rubric) = match parsed {
            Ok(Answer::Mined(query, rubric)) => (query, rubric),
            Ok(Answer::Declined(reason)) => {
                return Ok(Mined::failed(
                    usage,
                    "generate",
                    format!("the generator declined the section: {reason}"),
                ));
            }
            Err(error) => {
                let reason = classify_llm_error(error)?;
                return Ok(Mined::failed(usage, "generate", reason));
            }
        };
        let mut judged = false;
        if let Some(judge) = &self.judge {
            judged = true;
            let request = Self::judge_request(judge, section, &query);
            let schema = judge_format().schema;
            let (verdict, judge_usage) = in_stage(
                &judge.stage,
                judge
                    .gateway
                    .chat_parsed(&request, |answer| parse_verdict(answer, &schema)),
            )
            .await;
            usage.add(&judge_usage);
            let refusal = match verdict {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(reason),
                Err(error) => Some(format!(
                    "judge answer unusable: {}",
                    classify_llm_error(error)?
                )),
            };
            if let Some(reason) = refusal {
                let mut mined =
                    Mined::failed(usage, "query_judge", format!("{reason} (query: {query})"));
                mined.judged = true;
                mined.query = query;
                return Ok(mined);
            }
        }
        let mut corpus = String::with_capacity(section.text.len() + 256);
        corpus.push_str(&section.heading_path.join(" "));
        corpus.push('\n');
        corpus.push_str(&section.text);
        for work in &section.citations {
            corpus.push('\n');
            corpus.push_str(&work.raw);
        }
        let checked = rubric.len();
        let (kept, dropped) = check_items(
            rubric,
            &content_stems(&corpus),
            ItemChecks {
                grounding_threshold: self.spec.grounding_threshold,
                near_duplicate_threshold: self.spec.near_duplicate_threshold,
            },
        );
        let rejected = (kept.len() < self.spec.min_items as usize).then(|| {
            (
                "min_items",
                format!(
                    "{} rubric item(s) left after the checks, min_items = {} (query: {query})",
                    kept.len(),
                    self.spec.min_items
                ),
            )
        });
        Ok(Mined {
            usage,
            rejected,
            judged,
            query,
            checked,
            kept,
            dropped,
        })
    }

    fn row(
        &self,
        section: &Section,
        document: &Document,
        source: &SourceRef,
        ctx: &RecordContext,
        mined: Mined,
    ) -> ResearchQaRow {
        ResearchQaRow {
            id: format!("{}-s{}", document.id, section.index),
            general_domain: document.general_domain.clone(),
            subdomain: document.subdomain.clone(),
            field: document.field.clone(),
            query: mined.query,
            date: document.date.clone(),
            rubric: mined.kept,
            doc_id: document.id.clone(),
            doc_title: document.title.clone(),
            section_heading: section.heading.clone(),
            heading_path: section.heading_path.clone(),
            section_text_hash: short_hash(section.text.as_bytes(), 24),
            section_kind: section.kind.as_str().to_owned(),
            section_text: self.spec.keep_section_text.then(|| section.text.clone()),
            cited_references: section
                .citations
                .iter()
                .map(|r| CitedReference {
                    key: r.key.clone(),
                    first_author: r.first_author.clone(),
                    title: r.title.clone(),
                    url: r.url.clone(),
                    year: r.year.clone(),
                })
                .collect(),
            provenance: provenance(
                source,
                ctx,
                self.generate.gateway.provider_kind(),
                &self.generate.model.model,
                &self.generate.template.hash,
                &mined.usage,
            ),
        }
    }
}

/// Counts one section's way through the stages and records its rejects; returns the mined
/// section when it became a row.
fn account(
    outcome: &mut RecordOutcome,
    ctx: &RecordContext,
    source: &SourceRef,
    section: &Section,
    mut mined: Mined,
) -> Option<Mined> {
    outcome.usage.add(&mined.usage);
    outcome.enter("generate");
    if let Some(("generate", reason)) = &mined.rejected {
        let reason = format!("{}: {reason}", section.heading);
        outcome.reject(ctx, source, "generate", reason, &section.text);
        return None;
    }
    outcome.pass("generate");
    if mined.judged {
        outcome.enter("query_judge");
        if let Some(("query_judge", reason)) = &mined.rejected {
            let reason = format!("{}: {reason}", section.heading);
            outcome.reject(ctx, source, "query_judge", reason, &mined.query);
            return None;
        }
        outcome.pass("query_judge");
    }
    for _ in 0..mined.checked {
        outcome.enter("rubric_check");
    }
    for _ in 0..mined.kept.len() {
        outcome.pass("rubric_check");
    }
    for (item, reason) in std::mem::take(&mut mined.dropped) {
        let reason = format!("{}: {reason}", section.heading);
        outcome.reject(ctx, source, "rubric_check", reason, &item.rubric_item);
    }
    outcome.enter("min_items");
    if let Some((stage, reason)) = &mined.rejected {
        let reason = format!("{}: {reason}", section.heading);
        outcome.reject(ctx, source, stage, reason, &mined.query);
        return None;
    }
    outcome.pass("min_items");
    Some(mined)
}

#[async_trait::async_trait]
impl Pipeline for ResearchQaPipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Researchqa
    }

    fn prompt_hashes(&self) -> BTreeMap<String, String> {
        let stages = [
            Some(&self.generate),
            self.judge.as_ref(),
            self.classify.as_ref(),
        ];
        template_hashes(stages.into_iter().flatten().map(|stage| &stage.template))
    }

    fn estimate(&self, record: &RawRecord) -> Estimate {
        let Ok(parsed) = self.parse_record(record) else {
            return Estimate::rejected();
        };
        let mut estimate = Estimate::default();
        if let Some(classify) = &self.classify
            && !parsed.sections.is_empty()
        {
            let title = parsed.title.as_deref().unwrap_or("");
            let request = Self::classify_request(
                classify,
                self.classify_format(),
                title,
                &parsed,
                &self.spec.classify_taxonomy,
            );
            estimate.add(&classify.estimate(&request, TYPICAL_VERDICT_TOKENS));
        }
        let (mined, _skipped) = self.select_sections(&parsed.sections);
        for section in mined {
            let request = self.section_request(section);
            estimate.add(&self.generate.estimate(&request, TYPICAL_ANSWER_TOKENS));
            if let Some(judge) = &self.judge {
                let request = Self::judge_request(judge, section, "");
                let mut judged = judge.estimate(&request, TYPICAL_VERDICT_TOKENS);
                // the query the judge reads is about as long as a typical answer's query
                judged.prompt_tokens += 40;
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
        let (to_mine, skipped) = self.select_sections(&parsed.sections);
        for (section, reason) in skipped {
            let reason = format!("{}: {reason}", section.heading);
            outcome.reject(ctx, &record.source, "sections", reason, &section.text);
        }
        if to_mine.is_empty() {
            return Ok(outcome);
        }
        let mut document = self.document(&record, &raw);
        if document.title.is_none() {
            document.title = parsed.title.clone();
        }
        let classification = async {
            match &self.classify {
                Some(classify) if document.needs_labels() => {
                    let title = document.title.as_deref().unwrap_or("");
                    Some(self.classify_document(classify, title, &parsed).await)
                }
                _ => None,
            }
        };
        // Futures are lazy: `buffered` runs SECTION_CONCURRENCY of them at a time, in order.
        let calls: Vec<_> = to_mine
            .iter()
            .map(|section| self.mine_section(section))
            .collect();
        let sections = futures::stream::iter(calls)
            .buffered(SECTION_CONCURRENCY)
            .collect::<Vec<_>>();
        let (classification, results) = futures::join!(classification, sections);
        if let Some(classification) = classification {
            let (usage, result) = classification?;
            outcome.usage.add(&usage);
            outcome.enter("classify");
            match result {
                Ok(entry) => {
                    outcome.pass("classify");
                    document.apply_classification(&entry);
                }
                Err(reason) => {
                    let excerpt = document.title.clone().unwrap_or_default();
                    outcome.reject(ctx, &record.source, "classify", reason, &excerpt);
                }
            }
        }
        if document.general_domain.is_none() {
            document.general_domain = document.folder.clone();
        }
        for (section, result) in to_mine.into_iter().zip(results) {
            let mined = result?;
            if let Some(mined) = account(&mut outcome, ctx, &record.source, section, mined) {
                let row = self.row(section, &document, &record.source, ctx, mined);
                outcome.rows.push(OutputRow::ResearchQa(row));
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rubricmill_core::{Location, Message};
    use rubricmill_llm::simulated::simulated_answer;
    use rubricmill_llm::{ChatProvider, ChatResponse, GatewayConfig, LlmError, TokenUsage};

    type Script = Box<dyn Fn(&ChatRequest) -> Option<String> + Send + Sync>;

    /// The simulated provider, except where `script` answers; counts calls per task.
    struct Scripted {
        script: Script,
        calls: std::sync::Mutex<BTreeMap<String, usize>>,
    }

    #[async_trait::async_trait]
    impl ChatProvider for Scripted {
        fn kind(&self) -> &'static str {
            "simulated"
        }

        async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
            let task = request
                .response_format
                .as_ref()
                .map(|f| f.name.clone())
                .unwrap_or_default();
            *self.calls.lock().unwrap().entry(task).or_default() += 1;
            let content = (self.script)(request).unwrap_or_else(|| simulated_answer(request));
            Ok(ChatResponse {
                content,
                finish_reason: "stop".into(),
                usage: TokenUsage {
                    prompt_tokens: 10,
                    completion_tokens: 10,
                },
            })
        }
    }

    fn pipeline(spec: ResearchQaSpec, script: Script) -> (ResearchQaPipeline, Arc<Scripted>) {
        let provider = Arc::new(Scripted {
            script,
            calls: Default::default(),
        });
        let gateway = Arc::new(Gateway::new(provider.clone(), GatewayConfig::default()));
        let model = StageModel {
            model: "test".into(),
            temperature: 0.0,
            max_tokens: 1024,
            seed: None,
        };
        let stages = ["generate", "judge", "classify"]
            .into_iter()
            .map(|s| (s.to_owned(), (gateway.clone(), model.clone())))
            .collect();
        let stages = Stages::new(stages, crate::Templates::default());
        (ResearchQaPipeline::new(&stages, spec), provider)
    }

    fn no_script() -> Script {
        Box::new(|_| None)
    }

    fn prompt_of(request: &ChatRequest) -> String {
        request
            .messages
            .iter()
            .map(|m: &Message| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn paragraph(topic: &str) -> String {
        format!(
            "{topic} methods allocate cache memory to shared prefixes. Eviction policies for {topic} \
             decide which prefixes survive under memory pressure, and admission control limits churn. \
             Benchmarks of {topic} report hit rates, latency and throughput for production workloads \
             with long prompts and many concurrent sessions [1]."
        )
    }

    /// A survey with four content sections and a reference list.
    fn survey() -> RawRecord {
        let text = format!(
            "# Prefix caching for language model serving\n\n# 1 Introduction\n\n{}\n\n{}\n\n\
             # 2 Eviction\n\n{}\n\n{}\n\n# 3 Vague topics\n\n{}\n\n{}\n\n# 4 Admission\n\n{}\n\n{}\n\n\
             # References\n\n[1] Okafor, A. Prefix sharing in serving systems. 2019.\n",
            paragraph("Prefix caching"),
            paragraph("Serving"),
            paragraph("Eviction"),
            paragraph("Replacement"),
            paragraph("Vague"),
            paragraph("Blurry"),
            paragraph("Admission"),
            paragraph("Gatekeeping"),
        );
        RawRecord {
            source: SourceRef::new(
                "file:///data/computer_science/prefix.md",
                Location::Document,
            ),
            payload: RawPayload::Text(text),
        }
    }

    fn ctx() -> RecordContext {
        RecordContext {
            shard_id: "shard".into(),
            attempt_id: "attempt".into(),
        }
    }

    fn stage(outcome: &RecordOutcome, name: &str) -> (u64, u64, u64) {
        let counts = outcome.stages.get(name).cloned().unwrap_or_default();
        (counts.input, counts.output, counts.rejected)
    }

    fn rejects<'a>(outcome: &'a RecordOutcome, stage: &str) -> Vec<&'a str> {
        outcome
            .rejects
            .iter()
            .filter(|r| r.stage == stage)
            .map(|r| r.reason.as_str())
            .collect()
    }

    fn rows(outcome: &RecordOutcome) -> Vec<&ResearchQaRow> {
        outcome
            .rows
            .iter()
            .map(|r| match r {
                OutputRow::ResearchQa(row) => row,
                other => panic!("researchqa made another pipeline's row: {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn every_section_becomes_a_row_or_a_reject_and_stages_add_up() {
        let (pipeline, provider) = pipeline(ResearchQaSpec::default(), no_script());
        let outcome = pipeline.process(survey(), &ctx()).await.unwrap();
        let rows = rows(&outcome);
        let (gen_in, gen_out, gen_rej) = stage(&outcome, "generate");
        assert_eq!(gen_in, 4, "one generation per kept section");
        assert_eq!(gen_in, gen_out + gen_rej);
        let (judge_in, judge_out, judge_rej) = stage(&outcome, "query_judge");
        assert_eq!(judge_in, gen_out);
        assert_eq!(judge_in, judge_out + judge_rej);
        let (min_in, min_out, min_rej) = stage(&outcome, "min_items");
        assert_eq!(min_in, judge_out);
        assert_eq!(min_in, min_out + min_rej);
        assert_eq!(min_out as usize, rows.len());
        let (check_in, check_out, check_rej) = stage(&outcome, "rubric_check");
        assert_eq!(check_in, check_out + check_rej);
        assert_eq!(rejects(&outcome, "rubric_check").len() as u64, check_rej);
        assert!(!rows.is_empty());
        for row in &rows {
            assert!(
                row.id.starts_with("prefix-") && row.id.contains("-s"),
                "{}",
                row.id
            );
            assert!(row.rubric.len() >= 3 && row.rubric.len() <= 8);
            assert_eq!(row.general_domain.as_deref(), Some("Computer Science"));
            assert_eq!(row.provenance.prompt_hash, pipeline.generate.template.hash);
            assert!(source_reference(&row.query).is_none(), "{}", row.query);
        }
        let calls = provider.calls.lock().unwrap().clone();
        assert_eq!(calls.get(RESEARCHQA_TASK), Some(&4));
        assert_eq!(calls.get(RESEARCHQA_JUDGE_TASK), Some(&4));
        assert_eq!(
            calls.get(RESEARCHQA_CLASSIFY_TASK),
            None,
            "no taxonomy, no call"
        );
        let hashes = pipeline.prompt_hashes();
        assert!(
            hashes.contains_key("researchqa_generate") && hashes.contains_key("researchqa_judge")
        );
        assert!(!hashes.contains_key("researchqa_classify"));
    }

    #[tokio::test]
    async fn a_query_naming_its_source_is_repaired_once_then_rejected() {
        // Always answers with a query that points at "this survey".
        let script: Script = Box::new(|request| {
            (request.response_format.as_ref()?.name == RESEARCHQA_TASK).then(|| {
                json!({"query": "What does this survey say about eviction?", "rubric": [
                    {"item": "Does the response explain eviction policies under memory pressure?", "types": ["Explanation"], "citation": null}
                ]})
                .to_string()
            })
        });
        let (pipeline, provider) = pipeline(ResearchQaSpec::default(), script);
        let outcome = pipeline.process(survey(), &ctx()).await.unwrap();
        assert!(outcome.rows.is_empty());
        let reasons = rejects(&outcome, "generate");
        assert_eq!(reasons.len(), 4);
        assert!(reasons[0].contains("not standalone"), "{}", reasons[0]);
        // one call and one repair per section, no judge calls
        let calls = provider.calls.lock().unwrap().clone();
        assert_eq!(calls.get(RESEARCHQA_TASK), Some(&8));
        assert_eq!(calls.get(RESEARCHQA_JUDGE_TASK), None);
    }

    #[tokio::test]
    async fn the_judge_rejects_vague_queries_and_can_be_turned_off() {
        // The "Vague topics" section gets a short query the simulated judge finds unspecific.
        let script: Script = Box::new(|request| {
            let prompt = prompt_of(request);
            let generate = request.response_format.as_ref()?.name == RESEARCHQA_TASK;
            (generate && prompt.contains("3 Vague topics</section_heading>")).then(|| {
                let answer = simulated_answer(request);
                let mut value: Value = serde_json::from_str(&answer).unwrap();
                value["query"] = json!("What about vague eviction?");
                value.to_string()
            })
        });
        let (judged, _) = pipeline(ResearchQaSpec::default(), script);
        let outcome = judged.process(survey(), &ctx()).await.unwrap();
        let reasons = rejects(&outcome, "query_judge");
        assert_eq!(reasons.len(), 1, "{:?}", outcome.rejects);
        assert!(
            reasons[0].starts_with("3 Vague topics: not specific"),
            "{}",
            reasons[0]
        );
        assert!(rows(&outcome).iter().all(|r| !r.id.ends_with("-s2")));

        let script: Script = Box::new(|request| {
            let generate = request.response_format.as_ref()?.name == RESEARCHQA_TASK;
            (generate && prompt_of(request).contains("3 Vague topics</section_heading>")).then(
                || {
                    let mut value: Value =
                        serde_json::from_str(&simulated_answer(request)).unwrap();
                    value["query"] = json!("What about vague eviction?");
                    value.to_string()
                },
            )
        });
        let spec = ResearchQaSpec {
            query_judge: false,
            ..ResearchQaSpec::default()
        };
        let (unjudged, provider) = pipeline(spec, script);
        let outcome = unjudged.process(survey(), &ctx()).await.unwrap();
        assert!(rejects(&outcome, "query_judge").is_empty());
        assert!(!outcome.stages.contains_key("query_judge"));
        assert!(rows(&outcome).iter().any(|r| r.id.ends_with("-s2")));
        assert_eq!(
            provider.calls.lock().unwrap().get(RESEARCHQA_JUDGE_TASK),
            None
        );
        assert!(!unjudged.prompt_hashes().contains_key("researchqa_judge"));
    }

    #[tokio::test]
    async fn dropped_items_are_rejects_and_too_few_items_reject_the_query() {
        let script: Script = Box::new(|request| {
            (request.response_format.as_ref()?.name == RESEARCHQA_TASK).then(|| {
                json!({"query": "How do eviction policies for prefix caches trade hit rate against memory pressure?", "rubric": [
                    {"item": "Does the response explain how eviction policies handle memory pressure?", "types": ["Explanation"], "citation": null},
                    {"item": "Does the response explain how the eviction policy handles memory pressure?", "types": ["Explanation"], "citation": null},
                    {"item": "Does the response describe quantum annealing hardware for protein folding?", "types": ["Other"], "citation": null},
                    {"item": "Mentions admission control.", "types": ["Other"], "citation": null},
                    {"item": "Does the response cite the work of Okafor on prefix sharing?", "types": ["Citation"], "citation": "1"}
                ]})
                .to_string()
            })
        });
        let spec = ResearchQaSpec {
            min_items: 2,
            ..ResearchQaSpec::default()
        };
        let (pipeline_two, _) = pipeline(spec, script);
        let outcome = pipeline_two.process(survey(), &ctx()).await.unwrap();
        let rows = rows(&outcome);
        assert_eq!(rows.len(), 4);
        for row in &rows {
            assert_eq!(row.rubric.len(), 2);
            let citation = &row.rubric[1];
            assert_eq!(citation.types, ["Citation"]);
            let metadata = citation
                .citation_metadata
                .as_ref()
                .expect("linked citation");
            assert_eq!(metadata.first_author.as_deref(), Some("Okafor"));
        }
        let reasons = rejects(&outcome, "rubric_check");
        assert_eq!(
            reasons.len(),
            12,
            "three dropped items in each of four sections"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("near-duplicate of item 1"))
        );
        assert!(reasons.iter().any(|r| r.contains("not grounded")));
        assert!(reasons.iter().any(|r| r.contains("malformed")));
        assert_eq!(stage(&outcome, "rubric_check"), (20, 8, 12));

        // The same answers with min_items = 3: every query is rejected, its items with it.
        let script: Script = Box::new(move |request| {
            (request.response_format.as_ref()?.name == RESEARCHQA_TASK).then(|| {
                json!({"query": "How do eviction policies for prefix caches trade hit rate against memory pressure?", "rubric": [
                    {"item": "Does the response explain how eviction policies handle memory pressure?", "types": ["Explanation"], "citation": null},
                    {"item": "Does the response explain how the eviction policy handles memory pressure?", "types": ["Explanation"], "citation": null}
                ]})
                .to_string()
            })
        });
        let (pipeline_three, _) = pipeline(ResearchQaSpec::default(), script);
        let outcome = pipeline_three.process(survey(), &ctx()).await.unwrap();
        assert!(outcome.rows.is_empty());
        let reasons = rejects(&outcome, "min_items");
        assert_eq!(reasons.len(), 4);
        assert!(
            reasons[0].contains("1 rubric item(s) left"),
            "{}",
            reasons[0]
        );
        assert_eq!(stage(&outcome, "min_items"), (4, 0, 4));
    }

    #[tokio::test]
    async fn classification_fills_missing_labels_once_per_document() {
        let taxonomy = vec![
            "Medicine > Oncology > Precision Oncology".to_owned(),
            "Computer Science > Systems > Caching".to_owned(),
        ];
        let spec = ResearchQaSpec {
            classify_taxonomy: taxonomy.clone(),
            ..ResearchQaSpec::default()
        };
        let (classified, provider) = pipeline(spec, no_script());
        let outcome = classified.process(survey(), &ctx()).await.unwrap();
        assert_eq!(stage(&outcome, "classify"), (1, 1, 0));
        assert_eq!(
            provider.calls.lock().unwrap().get(RESEARCHQA_CLASSIFY_TASK),
            Some(&1)
        );
        for row in rows(&outcome) {
            assert_eq!(row.general_domain.as_deref(), Some("Computer Science"));
            assert_eq!(row.subdomain.as_deref(), Some("Systems"));
            assert_eq!(row.field.as_deref(), Some("Caching"));
        }
        assert!(
            classified
                .prompt_hashes()
                .contains_key("researchqa_classify")
        );

        // Labels from the job spec win; a complete set needs no call.
        let spec = ResearchQaSpec {
            classify_taxonomy: taxonomy,
            general_domain: Some("Engineering".into()),
            subdomain: Some("Serving".into()),
            field: Some("LLM inference".into()),
            ..ResearchQaSpec::default()
        };
        let (labelled, provider) = pipeline(spec, no_script());
        let outcome = labelled.process(survey(), &ctx()).await.unwrap();
        assert!(!outcome.stages.contains_key("classify"));
        assert_eq!(
            provider.calls.lock().unwrap().get(RESEARCHQA_CLASSIFY_TASK),
            None
        );
        assert!(
            rows(&outcome)
                .iter()
                .all(|r| r.field.as_deref() == Some("LLM inference"))
        );
    }

    #[tokio::test]
    async fn an_unusable_classification_is_a_reject_and_the_rows_keep_the_folder_label() {
        let script: Script = Box::new(|request| {
            (request.response_format.as_ref()?.name == RESEARCHQA_CLASSIFY_TASK)
                .then(|| json!({"label": "Astrology"}).to_string())
        });
        let spec = ResearchQaSpec {
            classify_taxonomy: vec!["Medicine > Oncology > Precision Oncology".to_owned()],
            ..ResearchQaSpec::default()
        };
        let (pipeline, _) = pipeline(spec, script);
        let outcome = pipeline.process(survey(), &ctx()).await.unwrap();
        assert_eq!(stage(&outcome, "classify"), (1, 0, 1));
        assert!(rejects(&outcome, "classify")[0].contains("unusable answer"));
        let rows = rows(&outcome);
        assert!(!rows.is_empty());
        assert!(
            rows.iter()
                .all(|r| r.general_domain.as_deref() == Some("Computer Science"))
        );
        assert!(rows.iter().all(|r| r.field.is_none()));
    }

    #[test]
    fn estimates_count_the_judge_and_the_classifier() {
        let (plain, _) = pipeline(
            ResearchQaSpec {
                query_judge: false,
                ..ResearchQaSpec::default()
            },
            no_script(),
        );
        assert_eq!(plain.estimate(&survey()).calls, 4);
        let (full, _) = pipeline(
            ResearchQaSpec {
                classify_taxonomy: vec!["A > B > C".into()],
                ..ResearchQaSpec::default()
            },
            no_script(),
        );
        assert_eq!(full.estimate(&survey()).calls, 4 + 4 + 1);
    }

    /// The `survey()` fixture with a review-method section inserted as section 2.
    fn survey_with_method_section() -> RawRecord {
        let mut record = survey();
        let RawPayload::Text(text) = &mut record.payload else {
            unreachable!("the fixture is Markdown")
        };
        let method = "We searched PubMed, Scopus and Web of Science for studies on prefix caching. \
            Two reviewers screened titles and abstracts against the inclusion criteria and \
            resolved disagreements by discussion; the PRISMA diagram shows the records screened.";
        *text = text.replace(
            "# 2 Eviction",
            &format!("# 1.5 Search strategy\n\n{method} {method}\n\n# 2 Eviction"),
        );
        record
    }

    #[tokio::test]
    async fn review_method_sections_are_skipped_unless_asked_for() {
        let (skipping, provider) = pipeline(ResearchQaSpec::default(), no_script());
        let outcome = skipping
            .process(survey_with_method_section(), &ctx())
            .await
            .unwrap();
        let mut skipped = rejects(&outcome, "sections");
        skipped.retain(|r| !r.starts_with("References:"));
        assert_eq!(
            skipped,
            ["1.5 Search strategy: review-method section (researchqa.skip_method_sections)"]
        );
        assert_eq!(stage(&outcome, "generate").0, 4);
        assert_eq!(
            provider.calls.lock().unwrap().get(RESEARCHQA_TASK),
            Some(&4)
        );
        assert!(rows(&outcome).iter().all(|r| r.section_kind == "content"));

        let spec = ResearchQaSpec {
            skip_method_sections: false,
            query_judge: false,
            min_items: 1,
            grounding_threshold: 0.0,
            ..ResearchQaSpec::default()
        };
        let (keeping, _) = pipeline(spec, no_script());
        let outcome = keeping
            .process(survey_with_method_section(), &ctx())
            .await
            .unwrap();
        assert_eq!(
            rejects(&outcome, "sections"),
            ["References: non-content section: references"]
        );
        let kinds: Vec<(&str, &str)> = rows(&outcome)
            .iter()
            .map(|r| (r.section_heading.as_str(), r.section_kind.as_str()))
            .collect();
        assert!(
            kinds.contains(&("1.5 Search strategy", "review_method")),
            "{kinds:?}"
        );
    }

    #[tokio::test]
    async fn max_sections_per_doc_caps_a_survey_evenly_and_rejects_the_rest() {
        let spec = ResearchQaSpec {
            max_sections_per_doc: Some(2),
            ..ResearchQaSpec::default()
        };
        let (capped, provider) = pipeline(spec, no_script());
        let outcome = capped.process(survey(), &ctx()).await.unwrap();
        assert_eq!(
            provider.calls.lock().unwrap().get(RESEARCHQA_TASK),
            Some(&2)
        );
        let skipped = rejects(&outcome, "sections");
        assert_eq!(
            skipped,
            [
                "References: non-content section: references",
                "2 Eviction: over researchqa.max_sections_per_doc (2) for this survey",
                "4 Admission: over researchqa.max_sections_per_doc (2) for this survey"
            ]
        );
        let (gen_in, _, _) = stage(&outcome, "generate");
        assert_eq!(gen_in, 2);
    }

    #[tokio::test]
    async fn the_generator_may_decline_a_section() {
        let script: Script = Box::new(|request| {
            let generate = request.response_format.as_ref()?.name == RESEARCHQA_TASK;
            (generate && prompt_of(request).contains("4 Admission</section_heading>")).then(|| {
                json!({"query": "", "rubric": [], "decline": "the section lists admission tools only"})
                    .to_string()
            })
        });
        let (pipeline, provider) = pipeline(ResearchQaSpec::default(), script);
        let outcome = pipeline.process(survey(), &ctx()).await.unwrap();
        assert_eq!(
            rejects(&outcome, "generate"),
            [
                "4 Admission: the generator declined the section: the section lists admission tools only"
            ]
        );
        // a decline is an answer, not an error: no repair call
        assert_eq!(
            provider.calls.lock().unwrap().get(RESEARCHQA_TASK),
            Some(&4)
        );
        assert!(
            rows(&outcome)
                .iter()
                .all(|r| r.section_heading != "4 Admission")
        );
    }

    #[tokio::test]
    async fn rows_carry_the_section_text_kind_and_cited_works_and_the_judge_sees_the_text() {
        let judge_prompts = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = judge_prompts.clone();
        let script: Script = Box::new(move |request| {
            if request.response_format.as_ref()?.name == RESEARCHQA_JUDGE_TASK {
                seen.lock().unwrap().push(prompt_of(request));
            }
            None
        });
        let (judged, _) = pipeline(ResearchQaSpec::default(), script);
        let record = survey();
        let outcome = judged.process(record.clone(), &ctx()).await.unwrap();
        let RawPayload::Text(markdown) = &record.payload else {
            unreachable!("the fixture is Markdown")
        };
        let parsed = parse_markdown_survey(markdown, &judged.options);
        let mined = rows(&outcome);
        assert!(!mined.is_empty());
        for row in &mined {
            let section = parsed
                .sections
                .iter()
                .find(|s| s.heading == row.section_heading)
                .expect("the row's section");
            assert_eq!(row.section_text.as_deref(), Some(section.text.as_str()));
            assert_eq!(
                row.section_text_hash,
                short_hash(section.text.as_bytes(), 24)
            );
            assert_eq!(row.section_kind, "content");
            let cited: Vec<(&str, Option<&str>)> = row
                .cited_references
                .iter()
                .map(|r| (r.key.as_str(), r.first_author.as_deref()))
                .collect();
            assert_eq!(cited, [("1", Some("Okafor"))], "{}", row.section_heading);
        }
        let prompts = judge_prompts.lock().unwrap().clone();
        assert_eq!(prompts.len(), 4);
        let eviction = parsed
            .sections
            .iter()
            .find(|s| s.heading == "2 Eviction")
            .expect("eviction section");
        assert!(
            prompts.iter().any(|p| p.contains(&eviction.text)),
            "the judge prompt carries the section text"
        );

        let spec = ResearchQaSpec {
            keep_section_text: false,
            ..ResearchQaSpec::default()
        };
        let (lean, _) = pipeline(spec, no_script());
        let outcome = lean.process(survey(), &ctx()).await.unwrap();
        let lean_rows = rows(&outcome);
        assert!(!lean_rows.is_empty());
        assert!(lean_rows.iter().all(|r| r.section_text.is_none()));
    }
}
