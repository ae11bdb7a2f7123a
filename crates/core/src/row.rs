//! Output rows of the pipelines and of the rejects table ("Output schemas" in
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
    /// The worse answer the self-check graded: the record's own, else one the `degrade` stage
    /// wrote; `None` when the self-check did not run.
    pub degraded_answer: Option<String>,
    /// `input` or `generated`; `None` when the self-check did not run.
    pub degraded_origin: Option<String>,
    /// The final rubric's score of the reference answer (HealthBench's score, in [0, 1]).
    pub reference_score: Option<f64>,
    /// The final rubric's score of the degraded answer.
    pub degraded_score: Option<f64>,
    /// The judge's verdicts on the reference answer under the final rubric, one per criterion.
    pub reference_verdicts: Vec<CriterionVerdict>,
    /// The judge's verdicts on the degraded answer under the final rubric.
    pub degraded_verdicts: Vec<CriterionVerdict>,
    /// Generations made (1 + regenerations of rubrics the self-check failed).
    pub attempts: u32,
    /// Whether the rubric passed the self-check (always true when it did not run).
    pub kept: bool,
    /// Why `kept` is false.
    pub drop_reason: Option<String>,
    /// Model of the judge stage (empty when the self-check did not run).
    pub judge_model: String,
    /// Hash of the grading prompt template (empty when the self-check did not run).
    pub judge_prompt_hash: String,
    pub provenance: Provenance,
}

/// The judge's verdict on one criterion for one response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriterionVerdict {
    /// Index of the criterion in the rubric (0-based).
    pub criterion: u32,
    /// Whether the response meets it (for a pitfall: commits it); `None` when the judge gave
    /// no usable verdict on it.
    pub met: Option<bool>,
    /// The judge's one-sentence reason.
    pub rationale: String,
}

/// A passage a nugget may cite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NuggetPassage {
    pub passage_id: String,
    /// The passage text as the prompt showed it (cut to `nuggets.max_passage_chars`).
    pub text: String,
}

/// One information nugget: an atomic fact a good answer to the question states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nugget {
    /// The fact, as one self-contained sentence.
    pub nugget: String,
    /// The passage that supports it.
    pub passage_id: String,
    /// The supporting quote, verbatim from the passage.
    pub span: String,
    /// Character offsets of the quote in the passage text, `[start, end)`.
    pub span_start: u32,
    pub span_end: u32,
    /// `vital` or `okay`.
    pub importance: String,
    /// The judge's support verdict; `None` when the support check is off.
    pub supported: Option<bool>,
}

/// The nuggets of one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NuggetRow {
    /// The record's id, or one derived from the question.
    pub id: String,
    /// Input dataset or file the record came from.
    pub source: String,
    pub question: String,
    pub passages: Vec<NuggetPassage>,
    /// Nuggets kept: spans found, deduplicated, supported (when checked).
    pub nuggets: Vec<Nugget>,
    /// Nuggets the model wrote that were dropped, with why.
    pub dropped_nuggets: Vec<String>,
    /// Model of the judge stage (empty when the support check is off).
    pub judge_model: String,
    /// Hash of the support prompt template (empty when the support check is off).
    pub judge_prompt_hash: String,
    pub provenance: Provenance,
}

/// One criterion of a rubric being scored, in a common form for every rubric layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreCriterion {
    pub criterion: String,
    /// Weight: HealthBench points as given; 1 for rubrics without points.
    pub points: i32,
    /// `hard_rule`, `principle`, `essential`, `important`, `optional`, `pitfall` or `item`.
    pub kind: String,
}

/// One response and how the rubric grades it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredResponse {
    /// `chosen`, `rejected`, `response_<i>` or `generated_<i>`.
    pub response_id: String,
    /// `input` or `generated`.
    pub origin: String,
    pub text: String,
    pub verdicts: Vec<CriterionVerdict>,
    /// Points of met criteria over the sum of positive points, clipped to [0, 1]; 0 when a
    /// hard rule failed and `score.hard_rules_gate` is on; `None` when the judge gave no usable
    /// answer.
    pub score: Option<f64>,
    /// Whether every hard rule is met; `None` when the rubric has none.
    pub hard_rules_met: Option<bool>,
}

/// One rubric with its graded responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow {
    /// The rubric's id in its source (`id`, `pair_id`, `prompt_id`), else one derived from it.
    pub id: String,
    /// Input dataset or file the record came from.
    pub source: String,
    /// The layout the rubric was read from: `researchqa`, `crg`, `reference`, `openrubric`,
    /// `healthbench` or `plain`.
    pub rubric_layout: String,
    pub prompt: Vec<crate::record::Message>,
    pub rubric: Vec<ScoreCriterion>,
    pub responses: Vec<ScoredResponse>,
    /// The response the input's preference label prefers, if it has one.
    pub label: Option<String>,
    /// The response the scores prefer; `None` on a tie or when a score is missing.
    pub predicted: Option<String>,
    /// Whether `predicted` equals `label`; `None` without a label.
    pub agrees: Option<bool>,
    /// Model of the judge stage.
    pub judge_model: String,
    /// Hash of the grading prompt template.
    pub judge_prompt_hash: String,
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

/// A row of any pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputRow {
    ResearchQa(ResearchQaRow),
    Crg(CrgRow),
    Reference(ReferenceRow),
    Nuggets(NuggetRow),
    Score(ScoreRow),
}

impl OutputRow {
    pub fn provenance_mut(&mut self) -> &mut Provenance {
        match self {
            OutputRow::ResearchQa(row) => &mut row.provenance,
            OutputRow::Crg(row) => &mut row.provenance,
            OutputRow::Reference(row) => &mut row.provenance,
            OutputRow::Nuggets(row) => &mut row.provenance,
            OutputRow::Score(row) => &mut row.provenance,
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
