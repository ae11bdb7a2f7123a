//! Output rows of the two pipelines and of the rejects table ("Output schemas" in
//! docs/ARCHITECTURE.md). Arrow schemas for them live in the store crate; these are the plain
//! values pipelines produce.

use serde::{Deserialize, Serialize};

/// Where a row came from and what it cost. Every output row carries one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub source_file: String,
    pub source_location: String,
    pub shard_id: String,
    pub attempt_id: String,
    /// Provider kind (`openai`, `anthropic`, `azure`, or `simulated` for the test and dry-run
    /// provider).
    pub provider: String,
    pub model: String,
    /// blake3 hash of the prompt template that made this row.
    pub prompt_hash: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Calls behind this row answered from the response cache (they cost nothing here).
    #[serde(default)]
    pub cache_hits: u64,
    /// The attempts (`<job>/<shard>/<attempt id>`) that paid for those cached answers, sorted.
    #[serde(default)]
    pub cached_from: Vec<String>,
}

/// Bibliographic data of the work a citation rubric item names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitationMetadata {
    pub first_author: Option<String>,
    pub title: Option<String>,
    pub url: Option<String>,
    pub year: Option<String>,
}

/// A work a section cites: its key in the survey's reference list and its bibliographic data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitedReference {
    /// "12" in a numbered list, "Smith 2020" in an author-year list.
    pub key: String,
    pub first_author: Option<String>,
    pub title: Option<String>,
    pub url: Option<String>,
    pub year: Option<String>,
}

/// One ResearchQA rubric item ("Does the response …?").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RubricItem {
    pub rubric_item: String,
    #[serde(rename = "type")]
    pub types: Vec<String>,
    pub citation_metadata: Option<CitationMetadata>,
}

/// One mined research query with its rubric, in the released ResearchQA layout plus section
/// and provenance columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResearchQaRow {
    /// `<docid>-s<section index>`.
    pub id: String,
    pub general_domain: Option<String>,
    pub subdomain: Option<String>,
    pub field: Option<String>,
    pub query: String,
    pub date: Option<String>,
    pub rubric: Vec<RubricItem>,
    pub doc_id: String,
    pub doc_title: Option<String>,
    pub section_heading: String,
    /// Headings from the top of the document down to this section.
    pub heading_path: Vec<String>,
    pub section_text_hash: String,
    /// `content`, or `review_method` for a section describing the review's own method.
    #[serde(default)]
    pub section_kind: String,
    /// The exact section text the generation prompt saw; `None` when the job turned the
    /// column off (`researchqa.keep_section_text = false`).
    #[serde(default)]
    pub section_text: Option<String>,
    /// Works the section cites, resolved against the survey's reference list, in order of
    /// first citation.
    #[serde(default)]
    pub cited_references: Vec<CitedReference>,
    pub provenance: Provenance,
}

/// A rubric item of contrastive rubric generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrgRubricItem {
    pub text: String,
    /// `hard_rule` or `principle`.
    pub kind: String,
}

/// One judge verdict: which response the judge preferred when shown the pair in one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeVerdict {
    /// `chosen_first` or `rejected_first`.
    pub order: String,
    /// `chosen`, `rejected` or `tie`.
    pub preferred: String,
}

/// One generation attempt of a crg rubric and what the judge made of it (for this row's pair).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrgAttempt {
    /// 1 for the first generation, then 2, 3, … for regenerated rubrics.
    pub attempt: u32,
    /// Seed the generation request carried.
    pub seed: Option<u64>,
    /// The judge's verdicts on this row's pair with this attempt's rubric (empty when the
    /// attempt made no rubric or the filter is off).
    pub verdicts: Vec<JudgeVerdict>,
    /// The rubric's accuracy over the record's pairs; `None` when not judged.
    pub accuracy: Option<f64>,
    /// Whether this attempt's rubric passed the consistency filter.
    pub consistent: bool,
    /// Why the attempt made no rubric, if it did not.
    pub error: Option<String>,
}

/// One contrastive rubric for one preference pair. A listwise record gives one row per induced
/// pair; those rows share `rubric_id`, the rubric, `attempts`, `consistency` and the attempt
/// numbers, and carry their own pair's verdicts and `kept`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrgRow {
    pub pair_id: String,
    /// Input dataset or file the pair came from.
    pub source: String,
    pub prompt: Vec<crate::record::Message>,
    pub chosen: String,
    pub rejected: String,
    pub rubric: Vec<CrgRubricItem>,
    /// The final rubric's verdicts on this pair, one per order.
    pub verdicts: Vec<JudgeVerdict>,
    /// Accuracy of the final rubric over the record's pairs (a pair counts when both orders
    /// agree on the chosen response); `None` when not judged.
    pub consistency: Option<f64>,
    /// Generation attempts made for this rubric (1 + regenerations).
    pub attempts: u32,
    pub kept: bool,
    /// The rubric this row's pair was judged with: the pair id for pairwise records, shared by
    /// the pairs of one listwise record.
    pub rubric_id: String,
    /// Why `kept` is false; `None` for kept rows.
    pub drop_reason: Option<String>,
    /// Every generation attempt, in order.
    pub attempt_log: Vec<CrgAttempt>,
    /// Model of the judge stage (empty when the filter is off).
    pub judge_model: String,
    /// Hash of the judge prompt template (empty when the filter is off).
    pub judge_prompt_hash: String,
    pub provenance: Provenance,
}

/// One weighted criterion of a reference rubric (the HealthBench rubric layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceCriterion {
    /// What a response must do (or, with negative points, must not do).
    pub criterion: String,
    /// Integer points in [-10, 10]; negative for pitfalls.
    pub points: i32,
    /// `axis:<name>` and `level:<example|cluster>` tags.
    pub tags: Vec<String>,
    /// `essential`, `important`, `optional` or `pitfall`.
    pub category: String,
}

/// One rubric mined from a prompt and its optional reference answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceRow {
    /// The record's id, or one derived from its content.
    pub id: String,
    /// Input dataset or file the record came from.
    pub source: String,
    pub prompt: Vec<crate::record::Message>,
    /// The reference answer the rubric was written against, if the record had one.
    pub reference_answer: Option<String>,
    /// The record's own tags, passed through.
    pub example_tags: Vec<String>,
    pub domain: Option<String>,
    pub rubric: Vec<ReferenceCriterion>,
    /// Criteria the model wrote that were dropped (out-of-range points, empty text, over the
    /// cap), with why.
    pub dropped_criteria: Vec<String>,
    pub provenance: Provenance,
}

/// An input or intermediate item that did not become an output row, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectRow {
    pub source_file: String,
    pub source_location: String,
    pub shard_id: String,
    pub attempt_id: String,
    /// Pipeline stage that rejected it (`read`, `parse`, `sections`, `generate`, …).
    pub stage: String,
    pub reason: String,
    /// The first few hundred characters of the offending input.
    pub excerpt: String,
}

/// Upper bound on the characters of input kept in a reject row.
pub const REJECT_EXCERPT_CHARS: usize = 300;

/// The first [`REJECT_EXCERPT_CHARS`] characters of `text`, cut on a character boundary.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(REJECT_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// A row of either pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputRow {
    ResearchQa(ResearchQaRow),
    Crg(CrgRow),
    Reference(ReferenceRow),
}

impl OutputRow {
    pub fn provenance_mut(&mut self) -> &mut Provenance {
        match self {
            OutputRow::ResearchQa(row) => &mut row.provenance,
            OutputRow::Crg(row) => &mut row.provenance,
            OutputRow::Reference(row) => &mut row.provenance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_long_text_on_a_char_boundary() {
        let long = "é".repeat(REJECT_EXCERPT_CHARS + 10);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), REJECT_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }
}
