//! Preference-pair normalisation for the crg pipeline: turns a structured input record, in any
//! of the layouts below, into [`PreferencePair`]s in normal form (the conversation so far as
//! messages, the chosen and the rejected assistant answer). A record that cannot be read is a
//! [`RecordError`] (a reject at stage `parse`); a readable record gives its pairs plus the
//! comparisons that gave none ([`SkippedPair`]: ties, identical texts; a reject each at stage
//! `pairs`). Nothing here panics on bad data, and nothing is dropped silently: for every record,
//! `comparisons = pairs + skipped`, or the record is rejected.
//!
//! # Layouts
//!
//! | layout | fields | pairs |
//! |---|---|---|
//! | `strings` | `{prompt, chosen, rejected}`; responses strings or one assistant turn (TRL standard, explicit prompt) | 1 |
//! | `trl-implicit` | `{chosen, rejected}` strings beginning with the same prompt text (TRL standard, implicit prompt) | 1 |
//! | `hh-rlhf` | `chosen`/`rejected` whole `"\n\nHuman: …\n\nAssistant: …"` transcripts; or an HH transcript `prompt` with plain or transcript responses (Anthropic HH with a separate prompt) | 1 |
//! | `sharegpt` | `conversations` (`{from, value}` turns) + `chosen`/`rejected` turns, strings or turn lists (LLaMA-Factory's previous ShareGPT preference format) | 1 |
//! | `messages` | `chosen`/`rejected` `{role, content}` lists sharing a prefix, optional separate `prompt` (TRL conversational, explicit or implicit prompt; OpenAI chat messages) | 1 |
//! | `llama-factory` | `{chosen_messages, rejected_messages}` of `{role, content: [{type, value}], loss_weight}` (LLaMA-Factory's current preference sample) | 1 |
//! | `alpaca` | `{instruction, input, system, history, chosen, rejected}` (LLaMA-Factory's previous Alpaca preference format) | 1 |
//! | `argilla-dpo` | `chosen`/`rejected` (strings, turns or lists) with `prompt`, or `system` + `input`; ratings `chosen_rating`/`rejected_rating` (or `chosen-rating`, `rating_chosen`, `score_chosen` spellings), distilabel `status` (Argilla and distilabel DPO exports) | 1, or a tie |
//! | `listwise` | `{prompt, responses}`: strings best first, or `{text, score\|rank}` objects | by `input.pairing` |
//! | `ultrafeedback` | `{instruction, completions: [{response, overall_score, fine-grained_score, annotations}]}` | by `input.pairing` |
//! | `nectar` | `{prompt, answers: [{answer, rank}]}`, the prompt an HH transcript | by `input.pairing` |
//! | `helpsteer` | `{prompt, responses: [{response, helpfulness, correctness, coherence, complexity, verbosity}]}` | by `input.pairing` |
//!
//! Message objects may spell role as `role` or `from` and content as `content`, `value` or
//! `text`. Content may be a list of typed parts: `{type: "text", text}` (OpenAI) or `{type:
//! "text", value}` (LLaMA-Factory), and plain strings; text parts are joined by a newline. A
//! part of another type (`image_url`, `input_audio`, `tool_calls`, `reasoning`, …) rejects the
//! record naming the part, unless `input.drop_non_text = true` keeps only the text parts. Roles
//! are normalised to `user`, `assistant`, `system` and `tool`.
//!
//! # Auto-detection ([`PairLayout::Auto`], per record, first rule that applies)
//!
//! 1. `chosen_messages` or `rejected_messages` present: `llama-factory`;
//! 2. no `chosen` (through the field mapping): a ranked layout: `completions` is a list:
//!    `ultrafeedback`; `answers` is a list: `nectar`; `responses` is a list: `helpsteer` when a
//!    response carries a HelpSteer attribute, else `listwise`; a `response` and an attribute:
//!    `helpsteer` (a single row, rejected: nothing to compare); otherwise rejected (`missing
//!    field chosen` when there is a `rejected`, else "fits no known pair layout" listing the
//!    record's fields);
//! 3. a `conversations` field: `sharegpt`;
//! 4. an `instruction` field: `alpaca`;
//! 5. per-side ratings, a string `status`, or an `input` without a `prompt`: `argilla-dpo`;
//! 6. `chosen` is a list: `messages`;
//! 7. `chosen` is a string and `prompt` is an HH transcript, or `chosen` is one: `hh-rlhf`;
//! 8. `chosen` is a string or a turn and there is a `prompt`: `strings`;
//! 9. `chosen` is a string: `trl-implicit` (rejected when the two share no leading text);
//! 10. otherwise rejected (`chosen` mistyped, or a turn without `prompt`).
//!
//! `input.layout` forces one layout for every record instead. Reasons of records read by a
//! detected layout end with `(read as <layout>)`.
//!
//! # Ranked records, ties and score directions
//!
//! See the `ranked` submodule: responses are ordered best first by the layout's score, then
//! paired by `input.pairing` (`listwise`: adjacent pairs and best-versus-rest; `best_vs_worst`:
//! one pair). Equal scores, identical texts and repeated pairs are skipped comparisons. A score's
//! direction is never guessed: UltraFeedback scores (`input.ultrafeedback_score`:
//! `overall_score`, `fine_grained_score`, `mean_rating`) and HelpSteer's helpfulness,
//! correctness, coherence and their `sum` are higher-is-better by their schemas; Nectar's
//! `rank` is 1 = best; a generic `score` or `rank` (listwise, or standing in for a layout's own
//! field) and HelpSteer's complexity and verbosity follow `input.score_order`, and without it
//! the record is rejected naming that setting. In `argilla-dpo`, equal per-side ratings or
//! `status = "tie"` make the record's one comparison a skipped tie.
//!
//! # Normal form
//!
//! Responses are trimmed of surrounding whitespace; so are the contents of turns split from HH
//! transcripts (message contents from structured layouts are kept verbatim; turns are compared
//! trimmed). In HH transcripts consecutive turns of the same speaker are merged into one turn
//! (joined by a blank line): the real data has Assistant turns whose text itself contains
//! `"\n\nAssistant:"`. Alpaca's `instruction` and `input` are joined by a newline. Rejected:
//! identical responses (after trimming), empty responses, transcripts that do not parse (no
//! markers, text before the first marker, an opening Assistant turn), transcripts or message
//! lists not ending in an assistant turn, chosen/rejected disagreeing before their final turn
//! (or with the separate prompt), an empty prompt, and missing or mistyped fields (the error
//! names the field's path in the record and what was expected).
//!
//! The pair id is the record's `id` (string or number) when present (`"{id}-{i}-{j}"` for the
//! pairs of a ranked record, positions best first), else the first 24 hex characters of the
//! hash of a canonical, length-prefixed encoding of (prompt, chosen, rejected), so the same pair
//! always gets the same id.
//!
//! # Field mapping
//!
//! `input.fields` renames our fields (`prompt`, `chosen`, `rejected`, `conversations`,
//! `responses`, `instruction`, `input`, `system`, `history`, `chosen_messages`,
//! `rejected_messages`, `chosen_rating`, `rejected_rating`, `completions`, `answers`, `id`) to
//! paths in the record: dotted (`answers.0.text`, `answers.-1.text`) or RFC 6901 JSON pointers
//! (`/answers/0/text`, `/meta/q.text` for a key with a dot, `~1` and `~0` escapes); see
//! [`FieldMap`]. Paths in reasons are written in the syntax of the mapping they come from.

mod content;
mod detect;
mod error;
mod fields;
mod hh;
mod pairwise;
mod ranked;

use rubricmill_core::spec::{InputSpec, LayoutSpec};
use rubricmill_core::{PairLayout, PreferencePair};
use serde_json::Value;

use content::Cx;
pub use error::{PairError, RecordError, SkipReason, SkippedPair};
pub use fields::FieldMap;
pub use hh::split_hh_transcript;

/// What one readable record gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The layout the record was read as.
    pub layout: PairLayout,
    pub pairs: Vec<PreferencePair>,
    /// Comparisons the record offered that gave no pair, each with its reason.
    pub skipped: Vec<SkippedPair>,
}

impl Normalized {
    /// Comparisons the record offered: pairs plus skipped.
    pub fn comparisons(&self) -> usize {
        self.pairs.len() + self.skipped.len()
    }
}

/// Reads preference records by the job's layout settings and field mapping.
#[derive(Debug, Clone, Default)]
pub struct PairReader {
    layout: LayoutSpec,
    fields: FieldMap,
}

impl PairReader {
    pub fn new(layout: impl Into<LayoutSpec>, fields: FieldMap) -> Self {
        Self {
            layout: layout.into(),
            fields,
        }
    }

    /// The reader a job's `[input]` describes (its field mapping validated with the spec).
    pub fn for_input(input: &InputSpec) -> Self {
        Self::new(input.layout, FieldMap::new(&input.fields))
    }

    pub fn layout(&self) -> &LayoutSpec {
        &self.layout
    }

    pub fn fields(&self) -> &FieldMap {
        &self.fields
    }

    fn cx<'r>(&'r self, record: &'r Value) -> Cx<'r> {
        Cx {
            record,
            fields: &self.fields,
            layout: &self.layout,
        }
    }

    /// The layout this record is read as: the forced one, or the detected one.
    pub fn detect(&self, record: &Value) -> Result<PairLayout, PairError> {
        match self.layout.kind {
            PairLayout::Auto => detect::detect(&self.cx(record)),
            forced => Ok(forced),
        }
    }

    /// Reads one input record: a structured record through [`PairReader::read`]; a text
    /// document is no preference record. The error is the reason for the rejects table.
    pub fn read_input(&self, record: &rubricmill_core::RawRecord) -> Result<Normalized, String> {
        match &record.payload {
            rubricmill_core::RawPayload::Json(value) => self.read(value).map_err(|e| e.to_string()),
            rubricmill_core::RawPayload::Text(_) => {
                Err("crg reads structured records, not text documents".into())
            }
        }
    }

    /// Reads one record.
    pub fn read(&self, record: &Value) -> Result<Normalized, RecordError> {
        let forced = self.layout.kind != PairLayout::Auto;
        if !record.is_object() {
            let error = PairError::NotAnObject(content::type_name(record));
            return Err(RecordError {
                detected: None,
                error,
            });
        }
        let layout = self.detect(record).map_err(|error| RecordError {
            detected: None,
            error,
        })?;
        read_as(&self.cx(record), layout).map_err(|error| RecordError {
            detected: (!forced).then_some(layout),
            error,
        })
    }
}

fn read_as(cx: &Cx<'_>, layout: PairLayout) -> Result<Normalized, PairError> {
    let one = |pair: PreferencePair| Normalized {
        layout,
        pairs: vec![pair],
        skipped: Vec::new(),
    };
    let ranked = |(pairs, skipped): ranked::RankedPairs| Normalized {
        layout,
        pairs,
        skipped,
    };
    match layout {
        PairLayout::Strings => pairwise::strings_pair(cx).map(one),
        PairLayout::TrlImplicit => pairwise::trl_implicit_pair(cx).map(one),
        PairLayout::HhRlhf => hh::hh_pair(cx).map(one),
        PairLayout::Sharegpt => pairwise::sharegpt_pair(cx).map(one),
        PairLayout::Messages => pairwise::messages_pair(cx).map(one),
        PairLayout::LlamaFactory => pairwise::llama_factory_pair(cx).map(one),
        PairLayout::Alpaca => pairwise::alpaca_pair(cx).map(one),
        PairLayout::ArgillaDpo => Ok(match pairwise::argilla_pair(cx)? {
            Ok(pair) => one(pair),
            Err(tie) => Normalized {
                layout,
                pairs: Vec::new(),
                skipped: vec![tie],
            },
        }),
        PairLayout::Listwise => ranked::listwise_pairs(cx).map(ranked),
        PairLayout::Ultrafeedback => ranked::ultrafeedback_pairs(cx).map(ranked),
        PairLayout::Nectar => ranked::nectar_pairs(cx).map(ranked),
        PairLayout::Helpsteer => ranked::helpsteer_pairs(cx).map(ranked),
        PairLayout::Auto => detect::detect(cx).and_then(|detected| read_as(cx, detected)),
    }
}

/// The layout [`PairLayout::Auto`] picks for this record (rules in the module doc).
pub fn detect_layout(record: &Value, fields: &FieldMap) -> Result<PairLayout, PairError> {
    PairReader::new(PairLayout::Auto, fields.clone()).detect(record)
}

/// Turns a record that holds one comparison into its pair, in the given layout (or detected),
/// with default settings. A tie, or a ranked record with several pairs, is an error here: read
/// those with [`PairReader::read`].
pub fn normalize_pair(
    record: &Value,
    layout: PairLayout,
    fields: &FieldMap,
) -> Result<PreferencePair, PairError> {
    let normalized = PairReader::new(layout, fields.clone())
        .read(record)
        .map_err(|e| e.error)?;
    let mut pairs = normalized.pairs.into_iter();
    match (pairs.next(), pairs.next(), normalized.skipped.is_empty()) {
        (Some(pair), None, true) => Ok(pair),
        (None, _, _) => Err(PairError::NoPairs("its one comparison was skipped")),
        _ => Err(PairError::NoPairs("it gives several pairs")),
    }
}

#[cfg(test)]
mod tests;
