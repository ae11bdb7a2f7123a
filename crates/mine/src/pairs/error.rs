//! What can go wrong reading a preference record: [`PairError`] for a record that gives no
//! comparison at all (a reject at stage `parse`), [`RecordError`] for the same with the layout
//! auto-detection chose, and [`SkippedPair`] for one comparison of a readable record that gives
//! no pair (a tie, two identical texts: a reject at stage `pairs`).

use rubricmill_core::PairLayout;

/// Why a record could not become preference pairs; `Display` gives a short lowercase reason
/// for the rejects table that names the field (its path in the record) where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// The record (or a value that must hold messages) is not a JSON object.
    #[error("record is not a json object (found {0})")]
    NotAnObject(&'static str),
    /// A required field is absent (or null); holds its path in the record.
    #[error("missing field `{0}`")]
    MissingField(String),
    /// Neither of two alternative fields is present (the first is the usual one).
    #[error("missing field `{0}` (or `{1}`)")]
    MissingEither(String, String),
    /// A field has the wrong JSON type.
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A message's speaker is not one we know.
    #[error("field `{field}`: unknown speaker role `{role}`")]
    UnknownRole { field: String, role: String },
    /// A message content part that is not text (an image, audio, a tool call, reasoning).
    #[error(
        "field `{field}`: non-text content part `{part_type}`; set input.drop_non_text = true to keep only the text parts"
    )]
    NonTextPart { field: String, part_type: String },
    /// `"chosen"` or `"rejected"` is empty or whitespace.
    #[error("empty {0} response")]
    EmptyResponse(&'static str),
    /// A response of a ranked record is empty (its path).
    #[error("empty response `{0}`")]
    EmptyListedResponse(String),
    /// The two responses are the same text after trimming.
    #[error("chosen and rejected responses are identical")]
    IdenticalResponses,
    /// An HH transcript could not be split into Human/Assistant turns.
    #[error("unparsable transcript: {0}")]
    TranscriptUnparsable(String),
    /// `"chosen"` or `"rejected"` does not end with an assistant turn.
    #[error("{0} does not end with an assistant turn")]
    NoFinalAssistant(&'static str),
    /// Chosen and rejected disagree before their final turn (one-based turn number).
    #[error("chosen and rejected differ before their final assistant turn (at turn {0})")]
    PromptMismatch(usize),
    /// A transcript response does not begin with the record's separate `prompt`.
    #[error("{side} transcript does not begin with the `{prompt}` turns (differs at turn {turn})")]
    TranscriptPromptMismatch {
        side: &'static str,
        prompt: String,
        turn: usize,
    },
    /// No prompt turn with any content.
    #[error("empty prompt")]
    EmptyPrompt,
    /// TRL's implicit prompt: no `prompt` field and no shared leading text either.
    #[error(
        "missing field `{0}`, and chosen and rejected share no leading text to take as the prompt"
    )]
    NoImplicitPrompt(String),
    /// A score or rank whose direction neither the layout nor the job spec states.
    #[error(
        "field `{0}`: which way this score is better is not documented for this layout; set input.score_order = \"higher_is_better\" or \"lower_is_better\""
    )]
    ScoreOrderRequired(String),
    /// Auto-detection found no layout that fits (what the record has instead).
    #[error("fits no known pair layout: {0}")]
    UnknownLayout(String),
    /// A record holding a single response (a HelpSteer row, one response per line).
    #[error("record holds one response, so nothing to compare: {0}")]
    OneResponse(&'static str),
    /// The record yields no comparison (or, for [`super::normalize_pair`], not exactly one).
    #[error("record yields no pair: {0}")]
    NoPairs(&'static str),
}

impl PairError {
    /// The reason for the rejects table (the same text as `Display`).
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// A stable snake_case category, for counting rejects by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            PairError::NotAnObject(_) => "not_an_object",
            PairError::MissingField(_) | PairError::MissingEither(..) => "missing_field",
            PairError::WrongType { .. } => "wrong_type",
            PairError::UnknownRole { .. } => "unknown_role",
            PairError::NonTextPart { .. } => "non_text_part",
            PairError::EmptyResponse(_) | PairError::EmptyListedResponse(_) => "empty_response",
            PairError::IdenticalResponses => "identical_responses",
            PairError::TranscriptUnparsable(_) => "transcript_unparsable",
            PairError::NoFinalAssistant(_) => "no_final_assistant",
            PairError::PromptMismatch(_) | PairError::TranscriptPromptMismatch { .. } => {
                "prompt_mismatch"
            }
            PairError::EmptyPrompt => "empty_prompt",
            PairError::NoImplicitPrompt(_) => "missing_field",
            PairError::ScoreOrderRequired(_) => "score_order_required",
            PairError::UnknownLayout(_) => "unknown_layout",
            PairError::OneResponse(_) => "one_response",
            PairError::NoPairs(_) => "no_pairs",
        }
    }
}

/// A record that gives no comparison: the error, and the layout auto-detection read it as
/// (`None` when the layout was forced by `input.layout` or none was detected). `Display` is the
/// reason for the rejects table: the error, then `(read as <layout>)` when detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub detected: Option<PairLayout>,
    pub error: PairError,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.detected {
            Some(layout) => write!(f, "{} (read as {layout})", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for RecordError {}

/// One comparison a readable record offered that gives no pair.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedPair {
    /// Where the better-placed response is in the record (`completions.0`, `chosen`).
    pub better: String,
    /// Where the worse-placed response is.
    pub worse: String,
    pub reason: SkipReason,
    /// The two texts, for the reject row's excerpt.
    pub better_text: String,
    pub worse_text: String,
}

/// Why a comparison gives no pair.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// Both responses have the same score or rank (`key` names it, `value` as read).
    Tie { key: String, value: f64 },
    /// The record itself says the two are tied (`detail` names the fields and values).
    LabelledTie(String),
    /// Both responses are the same text after trimming.
    IdenticalTexts,
    /// The same two texts were already paired (the record repeats a response).
    Repeated,
}

impl SkippedPair {
    /// A stable snake_case category, for counting skips by kind.
    pub fn kind(&self) -> &'static str {
        match self.reason {
            SkipReason::Tie { .. } | SkipReason::LabelledTie(_) => "tie",
            SkipReason::IdenticalTexts => "identical_responses",
            SkipReason::Repeated => "repeated_pair",
        }
    }

    /// The reject row's excerpt: both texts.
    pub fn excerpt(&self) -> String {
        format!(
            "{}: {}\n{}: {}",
            self.better, self.better_text, self.worse, self.worse_text
        )
    }
}

impl std::fmt::Display for SkippedPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (better, worse) = (&self.better, &self.worse);
        match &self.reason {
            SkipReason::Tie { key, value } => write!(
                f,
                "tie: `{better}` and `{worse}` have the same {key} ({value}), so neither is preferred"
            ),
            SkipReason::LabelledTie(detail) => {
                write!(f, "tie: {detail}, so neither response is preferred")
            }
            SkipReason::IdenticalTexts => {
                write!(
                    f,
                    "`{better}` and `{worse}` are the same text: no preference to learn"
                )
            }
            SkipReason::Repeated => write!(
                f,
                "`{better}` over `{worse}` repeats a pair this record already gave (a response appears twice)"
            ),
        }
    }
}
