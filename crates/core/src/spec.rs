//! The job spec: one TOML file describing what to mine, from where, with which model, to where.
//! Parsing rejects unknown fields; [`JobSpec::validate`] checks values, so a bad spec fails
//! before any work with a message naming the file, the field and the problem. Secrets never
//! live here: the spec names the environment variable that holds them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a job spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read job spec {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML parser's message with its snippet of the spec, secrets redacted (it quotes the
    /// line it stopped at, which may hold a pasted key).
    #[error("invalid job spec {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "invalid job spec {path}: field `{field}`: {}",
        crate::secret::redact_secrets(problem)
    )]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
}

impl SpecError {
    /// The dotted field path this error is about, when it is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PipelineKind {
    /// Survey sections → research queries with typed rubric items.
    Researchqa,
    /// Preference pairs → hard rules and principles (contrastive rubric generation).
    Crg,
    /// A prompt and an optional reference answer → weighted criteria with points
    /// (HealthBench-style rubrics, as in Rubrics as Rewards).
    Reference,
    /// A question and its passages → atomic information nuggets, each tied to the passage
    /// that supports it (nugget-as-rubric).
    Nuggets,
    /// Rubric rows and responses → per-criterion verdicts and a weighted score per response
    /// (judge and reward data).
    Score,
}

impl PipelineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineKind::Researchqa => "researchqa",
            PipelineKind::Crg => "crg",
            PipelineKind::Reference => "reference",
            PipelineKind::Nuggets => "nuggets",
            PipelineKind::Score => "score",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// One survey per file.
    Markdown,
    /// One record per line.
    Jsonl,
    /// One record, or an array of records, per file.
    Json,
    /// One record per row.
    Parquet,
}

impl InputFormat {
    /// The format a file name implies, looking through `.gz` and `.zst`.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(name);
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Some(InputFormat::Markdown),
            "jsonl" | "ndjson" => Some(InputFormat::Jsonl),
            "json" => Some(InputFormat::Json),
            "parquet" => Some(InputFormat::Parquet),
            _ => None,
        }
    }
}

/// How preference pairs are laid out in structured records (crg). `mine::pairs` documents each
/// layout's fields and the rule [`PairLayout::Auto`] detects it by.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PairLayout {
    /// Detect per record from the fields present.
    #[default]
    Auto,
    /// `{prompt, chosen, rejected}` with string responses (TRL's standard format with an
    /// explicit prompt).
    Strings,
    /// `{chosen, rejected}` strings that begin with the same prompt text (TRL's standard format
    /// with an implicit prompt).
    TrlImplicit,
    /// `chosen`/`rejected` whole "\n\nHuman: … \n\nAssistant: …" transcripts, or an HH
    /// transcript `prompt` with plain or transcript responses (Anthropic HH).
    HhRlhf,
    /// `conversations` (ShareGPT `from`/`value` turns) plus `chosen`/`rejected` turns
    /// (LLaMA-Factory's previous ShareGPT preference format).
    Sharegpt,
    /// `chosen`/`rejected` as chat message lists (`role`/`content`, content possibly a list of
    /// typed parts) sharing a prefix, with an optional separate `prompt` (TRL's conversational
    /// format, OpenAI chat messages).
    Messages,
    /// `{chosen_messages, rejected_messages}` with typed content parts (LLaMA-Factory's current
    /// preference sample).
    LlamaFactory,
    /// `{instruction, input, system, history, chosen, rejected}` (LLaMA-Factory's previous
    /// Alpaca preference format).
    Alpaca,
    /// `chosen`/`rejected` with per-side ratings or a distilabel `status`, the prompt in
    /// `prompt` or in `input` and `system` (Argilla and distilabel DPO exports).
    ArgillaDpo,
    /// `{prompt, responses}`: responses best first, or each with a `score` or `rank` (whose
    /// direction `input.score_order` states).
    Listwise,
    /// `{instruction, completions: [{response, overall_score, fine-grained_score,
    /// annotations}]}` (UltraFeedback; higher scores are better).
    Ultrafeedback,
    /// `{prompt, answers: [{answer, rank}]}` (Nectar; rank 1 is the best).
    Nectar,
    /// `{prompt, responses: [{response, helpfulness, correctness, coherence, complexity,
    /// verbosity}]}` (HelpSteer attribute scores, one prompt's responses grouped).
    Helpsteer,
}

impl PairLayout {
    /// Every layout a record can be read as (all but [`PairLayout::Auto`]).
    pub const CONCRETE: &[PairLayout] = &[
        PairLayout::Strings,
        PairLayout::TrlImplicit,
        PairLayout::HhRlhf,
        PairLayout::Sharegpt,
        PairLayout::Messages,
        PairLayout::LlamaFactory,
        PairLayout::Alpaca,
        PairLayout::ArgillaDpo,
        PairLayout::Listwise,
        PairLayout::Ultrafeedback,
        PairLayout::Nectar,
        PairLayout::Helpsteer,
    ];

    /// The name used in job specs, reports and reject reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            PairLayout::Auto => "auto",
            PairLayout::Strings => "strings",
            PairLayout::TrlImplicit => "trl-implicit",
            PairLayout::HhRlhf => "hh-rlhf",
            PairLayout::Sharegpt => "sharegpt",
            PairLayout::Messages => "messages",
            PairLayout::LlamaFactory => "llama-factory",
            PairLayout::Alpaca => "alpaca",
            PairLayout::ArgillaDpo => "argilla-dpo",
            PairLayout::Listwise => "listwise",
            PairLayout::Ultrafeedback => "ultrafeedback",
            PairLayout::Nectar => "nectar",
            PairLayout::Helpsteer => "helpsteer",
        }
    }

    /// The score direction this layout documents for its own score field, if it has one.
    pub fn documented_order(self, helpsteer: HelpsteerAttribute) -> Option<ScoreOrder> {
        match self {
            PairLayout::Ultrafeedback => Some(ScoreOrder::HigherIsBetter),
            PairLayout::Nectar => Some(ScoreOrder::LowerIsBetter),
            PairLayout::Helpsteer => helpsteer.documented_order(),
            _ => None,
        }
    }
}

impl std::fmt::Display for PairLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a score or rank orders responses (`input.score_order`). Needed wherever a layout
/// does not document it: a generic `score` or `rank` field, or a HelpSteer attribute that
/// measures "more" rather than "better".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreOrder {
    /// A larger score (or rank number) marks the better response.
    HigherIsBetter,
    /// A smaller score (or rank number) marks the better response, as rank 1 = best does.
    LowerIsBetter,
}

impl ScoreOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreOrder::HigherIsBetter => "higher_is_better",
            ScoreOrder::LowerIsBetter => "lower_is_better",
        }
    }
}

/// Which pairs a ranked record (listwise, UltraFeedback, Nectar, HelpSteer) gives
/// (`input.pairing`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// Adjacent pairs of the ranking, then the best against each of the rest; ties skipped.
    #[default]
    Listwise,
    /// One pair: the best response against the worst.
    BestVsWorst,
}

impl Pairing {
    pub fn as_str(self) -> &'static str {
        match self {
            Pairing::Listwise => "listwise",
            Pairing::BestVsWorst => "best_vs_worst",
        }
    }
}

/// The HelpSteer score responses are ranked by (`input.helpsteer_attribute`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HelpsteerAttribute {
    /// Overall helpfulness, higher is better.
    #[default]
    Helpfulness,
    /// Factual correctness, higher is better.
    Correctness,
    /// Coherence and clarity, higher is better.
    Coherence,
    /// Higher means more complex, not better: needs `input.score_order`.
    Complexity,
    /// Higher means more verbose, not better: needs `input.score_order`.
    Verbosity,
    /// The sum of the five attributes, higher is better.
    Sum,
}

impl HelpsteerAttribute {
    /// The five per-response attributes of the HelpSteer schema.
    pub const ATTRIBUTES: &[&str] = &[
        "helpfulness",
        "correctness",
        "coherence",
        "complexity",
        "verbosity",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HelpsteerAttribute::Helpfulness => "helpfulness",
            HelpsteerAttribute::Correctness => "correctness",
            HelpsteerAttribute::Coherence => "coherence",
            HelpsteerAttribute::Complexity => "complexity",
            HelpsteerAttribute::Verbosity => "verbosity",
            HelpsteerAttribute::Sum => "sum",
        }
    }

    /// Higher is better for the quality attributes and their sum; complexity and verbosity
    /// measure amount, so their direction is the user's to state.
    pub fn documented_order(self) -> Option<ScoreOrder> {
        match self {
            HelpsteerAttribute::Complexity | HelpsteerAttribute::Verbosity => None,
            _ => Some(ScoreOrder::HigherIsBetter),
        }
    }
}

/// The UltraFeedback score completions are ranked by (`input.ultrafeedback_score`); higher is
/// better for all of them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UltrafeedbackScore {
    /// `overall_score`, the critique's overall rating.
    #[default]
    OverallScore,
    /// `fine-grained_score` (also spelled `fine_grained_score`).
    FineGrainedScore,
    /// The mean of the `annotations.<aspect>.Rating` values (`"N/A"` aspects left out).
    MeanRating,
}

impl UltrafeedbackScore {
    pub fn as_str(self) -> &'static str {
        match self {
            UltrafeedbackScore::OverallScore => "overall_score",
            UltrafeedbackScore::FineGrainedScore => "fine_grained_score",
            UltrafeedbackScore::MeanRating => "mean_rating",
        }
    }
}

/// How preference records are read (crg): the layout and the settings that decide how a
/// layout's lists and scores become pairs. In the job spec these are flat keys of `[input]`
/// (`layout`, `score_order`, `pairing`, `drop_non_text`, `helpsteer_attribute`,
/// `ultrafeedback_score`); in code they travel together, so whatever reads pairs gets all of
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayoutSpec {
    /// `input.layout`: one layout for every record, or `auto`.
    pub kind: PairLayout,
    /// `input.score_order`: the direction of scores no layout documents.
    pub score_order: Option<ScoreOrder>,
    /// `input.pairing`: which pairs a ranked record gives.
    pub pairing: Pairing,
    /// `input.drop_non_text`: keep the text parts of messages that also hold images, audio or
    /// other non-text parts (otherwise such a record is rejected).
    pub drop_non_text: bool,
    /// `input.helpsteer_attribute`.
    pub helpsteer_attribute: HelpsteerAttribute,
    /// `input.ultrafeedback_score`.
    pub ultrafeedback_score: UltrafeedbackScore,
}

impl From<PairLayout> for LayoutSpec {
    fn from(kind: PairLayout) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }
}

impl LayoutSpec {
    /// True when every setting but the layout has its default value.
    pub fn has_default_settings(&self) -> bool {
        LayoutSpec {
            kind: PairLayout::Auto,
            ..*self
        } == LayoutSpec::default()
    }
}

/// A field mapping value (`input.fields.<key>`), parsed: an RFC 6901 JSON pointer when it
/// starts with `/` (`/answers/0/text`, `~1` for `/` and `~0` for `~` inside a key), else a
/// dotted path (`answers.0.text`, `answers.-1.text` counting from the end). Keys containing
/// dots need the pointer form; a dotted path that names a top-level key verbatim still finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    raw: String,
    pointer: bool,
    segments: Vec<String>,
}

/// Why a field mapping value is not a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    #[error(
        "must not be empty; write a dotted path (\"answers.0.text\") or a JSON pointer (\"/answers/0/text\")"
    )]
    Empty,
    #[error(
        "dotted path {raw:?} has an empty segment; for keys that contain dots use a JSON pointer such as {pointer:?}"
    )]
    EmptySegment { raw: String, pointer: String },
    #[error(
        "JSON pointer {raw:?}: `~` must be followed by `0` (for `~`) or `1` (for `/`), as RFC 6901 says"
    )]
    BadEscape { raw: String },
}

impl FieldPath {
    pub fn parse(raw: &str) -> Result<Self, FieldPathError> {
        if raw.is_empty() {
            return Err(FieldPathError::Empty);
        }
        if let Some(tokens) = raw.strip_prefix('/') {
            let segments = tokens
                .split('/')
                .map(unescape_pointer_token)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| FieldPathError::BadEscape {
                    raw: raw.to_owned(),
                })?;
            return Ok(Self {
                raw: raw.to_owned(),
                pointer: true,
                segments,
            });
        }
        let segments: Vec<String> = raw.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            let escaped = raw.replace('~', "~0").replace('/', "~1");
            return Err(FieldPathError::EmptySegment {
                raw: raw.to_owned(),
                pointer: format!("/{escaped}"),
            });
        }
        Ok(Self {
            raw: raw.to_owned(),
            pointer: false,
            segments,
        })
    }

    /// A path to one top-level key, spelled as the key itself.
    pub fn key(name: &str) -> Self {
        Self {
            raw: name.to_owned(),
            pointer: false,
            segments: vec![name.to_owned()],
        }
    }

    /// The path as written in the spec, for messages.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn is_pointer(&self) -> bool {
        self.pointer
    }

    /// The value at this path, or `None` when the path leads nowhere (a missing key, an index
    /// out of range, a step through a scalar).
    pub fn lookup<'a>(&self, root: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        use serde_json::Value;
        if !self.pointer
            && let Some(v) = root.as_object().and_then(|o| o.get(&self.raw))
        {
            return Some(v);
        }
        let mut current = root;
        for segment in &self.segments {
            current = match current {
                Value::Object(o) => o.get(segment)?,
                Value::Array(a) => a.get(self.index(segment, a.len())?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// An array index: RFC 6901 digits (no leading zeros) for pointers; digits or `-N` (from
    /// the end) for dotted paths.
    fn index(&self, segment: &str, len: usize) -> Option<usize> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if self.pointer {
            let canonical = segment == "0" || (digits(segment) && !segment.starts_with('0'));
            return if canonical {
                segment.parse().ok()
            } else {
                None
            };
        }
        match segment.strip_prefix('-') {
            Some(back) if digits(back) => {
                len.checked_sub(back.parse::<usize>().ok().filter(|n| *n > 0)?)
            }
            Some(_) => None,
            None if digits(segment) => segment.parse().ok(),
            None => None,
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// `~1` → `/`, `~0` → `~`; `None` for any other `~`.
fn unescape_pointer_token(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            },
            other => out.push(other),
        }
    }
    Some(out)
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible `/v1/chat/completions` server.
    #[default]
    Openai,
    /// Anthropic's Messages API (`/v1/messages`), spoken natively: `x-api-key`, the system
    /// prompt cached, structured answers through a forced tool.
    Anthropic,
    /// An Azure OpenAI resource: deployment URLs, `api-version`, the key in `api-key`.
    Azure,
    /// The in-process simulated provider: deterministic answers derived from the input text,
    /// for tests and dry runs only. It is not a model.
    Simulated,
}

/// Where the Anthropic Messages API is when `llm.base_url` is unset.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Azure => "azure",
            ProviderKind::Simulated => "simulated",
        }
    }

    /// Whether calls go over HTTP to an endpoint that bills for them (every kind but the
    /// simulated provider).
    pub fn is_remote(self) -> bool {
        self != ProviderKind::Simulated
    }
}

/// How a stage's calls reach the provider.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LlmMode {
    /// One request per call, answered at once.
    #[default]
    Online,
    /// A shard's calls are sent as one provider batch (OpenAI Batch API, Azure OpenAI batches,
    /// Anthropic Message Batches), billed at about half the online price and answered within the
    /// provider's window (24 hours); the shard waits without holding a worker.
    Batch,
}

impl LlmMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmMode::Online => "online",
            LlmMode::Batch => "batch",
        }
    }
}

/// How a structured answer is asked for. Whatever the mode, the schema is also spelled out in
/// the prompt and every answer is validated locally, so the modes differ in how often the
/// model gets it right the first time, never in the rows they make.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// Start with `json_schema` and step down to `json_object`, then to plain instructions,
    /// when the endpoint refuses a mode.
    #[default]
    Auto,
    /// Always `response_format: json_schema`; a refusal is an error.
    JsonSchema,
    /// Always `response_format: json_object` (JSON mode).
    JsonObject,
    /// No `response_format`: the prompt's instructions only.
    None,
}

impl StructuredOutput {
    pub fn as_str(self) -> &'static str {
        match self {
            StructuredOutput::Auto => "auto",
            StructuredOutput::JsonSchema => "json_schema",
            StructuredOutput::JsonObject => "json_object",
            StructuredOutput::None => "none",
        }
    }
}

/// The `[input]` table. In TOML every key is flat; the keys that say how preference pairs are
/// read are gathered into [`InputSpec::layout`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(from = "InputToml", into = "InputToml")]
pub struct InputSpec {
    /// Object URL or local path, with glob patterns (`**`, `*`, `?`, `[…]`) in the path.
    pub url: String,
    /// Inferred from the file extension when absent.
    pub format: Option<InputFormat>,
    /// How preference pairs are read (crg only): `layout` and the settings that go with it.
    pub layout: LayoutSpec,
    /// Records per shard; for Markdown and JSON, files per shard.
    pub records_per_shard: u64,
    /// Field mapping for structured inputs: our field name → where it is in the record, as a
    /// dotted path (`answers.0.text`) or a JSON pointer (`/answers/0/text`); see [`FieldPath`].
    pub fields: BTreeMap<String, String>,
    /// A record larger than this is rejected instead of read.
    pub max_record_bytes: u64,
}

/// `[input]` as written in TOML (unknown keys are errors). Its doc comments are the user
/// reference of the table (docs/SPEC.md). Keys left out at their default are not serialised, so
/// the reference states those defaults with `extend("default" = …)`; a test checks each against
/// the real default.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct InputToml {
    /// Where the input is: a local path or an object store URL (`s3://`, `gs://`, `az://`,
    /// `file://`), with glob patterns (`**`, `*`, `?`, `[…]`) in the path. Every matching file
    /// is read.
    #[schemars(example = &"s3://corpus/surveys/**/*.md")]
    url: String,
    /// How the files are read. Unset: each file's extension decides (`.md`, `.jsonl` or
    /// `.ndjson`, `.json`, `.parquet`, looking through `.gz` and `.zst`). The crg pipeline
    /// reads structured records only (not `markdown`).
    #[schemars(example = &"jsonl")]
    format: Option<InputFormat>,
    /// How preference pairs are laid out in each record (crg only): one layout for every
    /// record, or `auto` to detect it per record from the fields present. `rubricmill validate`
    /// reports which layouts it detected.
    #[serde(default)]
    #[schemars(example = &"hh-rlhf")]
    layout: PairLayout,
    /// Records per shard, the unit of work, retry and commit; for Markdown and JSON inputs,
    /// files per shard. At least 1.
    #[serde(default = "default_records_per_shard")]
    #[schemars(example = 200)]
    records_per_shard: u64,
    /// Field mapping for structured inputs: our field name → where the value is in the record,
    /// as a dotted path (`answers.0.text`, `answers.-1.text` counting from the end) or an RFC
    /// 6901 JSON pointer (`/answers/0/text`; `~1` stands for `/` and `~0` for `~` inside a key,
    /// so keys containing dots need the pointer form). Keys are our field names such as `id`,
    /// `prompt`, `chosen`, `rejected`, `responses`, `title`, `text` or `references`; an unknown
    /// name is refused with the full list.
    #[serde(default)]
    #[schemars(example = json_example(r#"{"prompt": "question", "chosen": "answers.0.text"}"#))]
    fields: BTreeMap<String, String>,
    /// A record (for Markdown and JSON, a file) larger than this many bytes becomes a reject
    /// row instead of being read. At least 1024.
    #[serde(default = "default_max_record_bytes")]
    max_record_bytes: u64,
    /// Which way scores or ranks order responses where the layout does not say: a generic
    /// `score` or `rank` field (`listwise`), or a HelpSteer attribute that measures amount
    /// (`complexity`, `verbosity`). Unset: the layout's documented direction. A stated direction
    /// that contradicts the layout's own (UltraFeedback scores, Nectar ranks) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"lower_is_better")]
    score_order: Option<ScoreOrder>,
    /// Which pairs a ranked record (`listwise`, `ultrafeedback`, `nectar`, `helpsteer`) gives.
    #[serde(default, skip_serializing_if = "is_default")]
    #[schemars(extend("default" = "listwise"))]
    pairing: Pairing,
    /// Keep the text parts of messages that also hold images, audio or other non-text parts;
    /// `false` rejects such a record, naming the part.
    #[serde(default, skip_serializing_if = "is_default")]
    #[schemars(extend("default" = false))]
    drop_non_text: bool,
    /// The HelpSteer attribute responses are ranked by (`helpsteer` layout).
    #[serde(default, skip_serializing_if = "is_default")]
    #[schemars(extend("default" = "helpfulness"))]
    helpsteer_attribute: HelpsteerAttribute,
    /// The UltraFeedback score completions are ranked by (`ultrafeedback` layout); higher is
    /// better for all of them.
    #[serde(default, skip_serializing_if = "is_default")]
    #[schemars(extend("default" = "overall_score"))]
    ultrafeedback_score: UltrafeedbackScore,
}

/// An example value for the reference, written as JSON.
fn json_example(json: &str) -> serde_json::Value {
    serde_json::from_str(json).expect("example is JSON")
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl From<InputToml> for InputSpec {
    fn from(t: InputToml) -> Self {
        Self {
            url: t.url,
            format: t.format,
            layout: LayoutSpec {
                kind: t.layout,
                score_order: t.score_order,
                pairing: t.pairing,
                drop_non_text: t.drop_non_text,
                helpsteer_attribute: t.helpsteer_attribute,
                ultrafeedback_score: t.ultrafeedback_score,
            },
            records_per_shard: t.records_per_shard,
            fields: t.fields,
            max_record_bytes: t.max_record_bytes,
        }
    }
}

impl From<InputSpec> for InputToml {
    fn from(s: InputSpec) -> Self {
        Self {
            url: s.url,
            format: s.format,
            layout: s.layout.kind,
            records_per_shard: s.records_per_shard,
            fields: s.fields,
            max_record_bytes: s.max_record_bytes,
            score_order: s.layout.score_order,
            pairing: s.layout.pairing,
            drop_non_text: s.layout.drop_non_text,
            helpsteer_attribute: s.layout.helpsteer_attribute,
            ultrafeedback_score: s.layout.ultrafeedback_score,
        }
    }
}

/// Field names the mapping may rename.
pub const MAPPABLE_FIELDS: &[&str] = &[
    "id",
    "prompt",
    "chosen",
    "rejected",
    "conversations",
    "messages",
    "responses",
    "instruction",
    "input",
    "system",
    "history",
    "chosen_messages",
    "rejected_messages",
    "chosen_rating",
    "rejected_rating",
    "completions",
    "answers",
    "title",
    "text",
    "sections",
    "references",
    "date",
    "general_domain",
    "subdomain",
    "field",
    "reference",
    "tags",
    "domain",
    "degraded",
    "question",
    "passages",
    "rubric",
    "responses",
    "label",
];

fn default_records_per_shard() -> u64 {
    50
}

fn default_max_record_bytes() -> u64 {
    16 * 1024 * 1024
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Where the job writes: a local path or an object store URL (`s3://`, `gs://`, `az://`,
    /// `file://`). The rows, reject rows, commit markers and the plan go under `<url>/<name>/`;
    /// the LLM response cache under `<url>/_cache/llm` unless `llm.cache_url` says otherwise.
    #[schemars(example = &"s3://datasets/rubricmill")]
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
/// A model's prices in USD per million tokens.
pub struct Price {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmSpec {
    /// Which kind of endpoint answers the calls.
    #[serde(default)]
    pub provider: ProviderKind,
    /// Base URL of the endpoint. Provider `openai`: the OpenAI-compatible server's, ending in
    /// `/v1` (OpenAI, vLLM, SGLang, Ollama, llama.cpp, LiteLLM, …), required. Provider `azure`:
    /// the resource endpoint (`https://RESOURCE.openai.azure.com`), required. Provider
    /// `anthropic`: unset means `https://api.anthropic.com`. Unset is fine for `simulated`.
    #[schemars(example = &"https://api.openai.com/v1")]
    pub base_url: Option<String>,
    /// Model name sent with every request.
    #[serde(default = "default_model")]
    pub model: String,
    /// Provider `azure` only: the deployment the calls go to
    /// (`{base_url}/openai/deployments/{deployment}/chat/completions`). Unset: `llm.model`.
    #[schemars(example = &"gpt-4o-mini-prod")]
    pub deployment: Option<String>,
    /// Provider `azure` only: the `api-version` every request names; required for `azure`.
    /// Unset: none (fine for every other provider).
    #[schemars(example = &"2024-10-21")]
    pub api_version: Option<String>,
    /// Name of the environment variable holding the API key, never the key itself: the spec is
    /// stored with the job's output, so a value that looks like a key is refused. Unset:
    /// requests carry no key.
    #[schemars(example = &"OPENAI_API_KEY")]
    pub api_key_env: Option<String>,
    /// Request rate limit for the whole job, shared by every worker of a cluster. Unset: no
    /// limit (429 answers still slow the job down).
    #[schemars(example = 500)]
    pub requests_per_minute: Option<u32>,
    /// Token rate limit (input + output) for the whole job, shared by every worker. A request
    /// reserves its input plus `max_tokens`, so `max_tokens` must be below it. Unset: no limit.
    #[schemars(example = 200000)]
    pub tokens_per_minute: Option<u32>,
    /// Requests in flight at once to this endpoint, per process (embedded run or worker).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// Seconds one request may take before it counts as failed and is retried.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Budget in USD for the whole job, every stage and every run of it together: no new calls
    /// once spent, and the run stops with a message; raise it and run again to resume. Needs
    /// `price_per_million` with every provider but `simulated`. Unset: no budget.
    #[schemars(example = 5.0)]
    pub max_cost_usd: Option<f64>,
    /// The model's prices in USD per million tokens, which cost and the budget are counted
    /// with. Unset: cost is not measured (reported as 0).
    #[schemars(example = json_example(r#"{"input": 0.4, "output": 1.6}"#))]
    pub price_per_million: Option<Price>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: f32,
    /// Most tokens one answer may have (sent as the request's `max_tokens`).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling seed sent with every request, for endpoints that support reproducible
    /// sampling. Unset: none sent.
    pub seed: Option<u64>,
    /// Simulated provider only: latency added to every call, in milliseconds, to make dry runs
    /// look like work.
    #[serde(default)]
    pub simulated_latency_ms: u64,
    /// Simulated provider only: fraction (0..=1) of judge verdicts that are wrong, drawn per
    /// request (crg judge answers prefer the wrong response; rubric grades and nugget support
    /// checks flip per criterion or claim), so the filters and resampling get exercised.
    #[serde(default)]
    pub simulated_judge_error_rate: f64,
    /// Extra HTTP headers sent with every request. Not for secrets: a header that looks like
    /// a credential (`Authorization`, `*-key`, a cookie, a key-like value) is refused, because
    /// the spec is stored with the output; name the key's variable with `api_key_env`.
    #[serde(default)]
    #[schemars(example = json_example(r#"{"X-Title": "rubricmill"}"#))]
    pub headers: BTreeMap<String, String>,
    /// Retries of one request (429, 5xx, timeouts) before its shard is handed back.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// How structured answers are asked for (`auto`, `json_schema`, `json_object`, `none`).
    #[serde(default)]
    pub structured_output: StructuredOutput,
    /// Largest response body read from the endpoint, in MiB; a larger answer is a retryable
    /// error instead of a memory spike.
    #[serde(default = "default_max_response_mb")]
    pub max_response_mb: u32,
    /// Where the response cache lives (a local path or object store URL). Unset:
    /// `<output.url>/_cache/llm`. Answers of the simulated provider are never cached.
    #[schemars(example = &"s3://cache/rubricmill-llm")]
    pub cache_url: Option<String>,
    /// `online` sends each call at once; `batch` sends a shard's calls of a stage as one
    /// provider batch (about half the price, answered within the provider's window): the shard
    /// is released while the provider works, any worker collects the answers, which go through
    /// the same parsing, validation, cache and accounting as online ones. Needs a provider with a
    /// batch API (`openai`, `azure`, `anthropic`) and the response cache.
    #[serde(default)]
    pub mode: LlmMode,
    /// Batch mode: seconds between looks at a submitted batch. The shard is released to the
    /// queue in between, so a waiting batch holds no worker slot.
    #[serde(default = "default_batch_poll_s")]
    pub batch_poll_s: u64,
    /// Batch mode: the batch price as a fraction of `price_per_million` (OpenAI and Anthropic
    /// bill batches at half the online price).
    #[serde(default = "default_batch_price_factor")]
    pub batch_price_factor: f64,
    /// Batch mode: times an item that failed or expired in a batch is submitted again in a later
    /// batch before it is sent online.
    #[serde(default = "default_batch_resubmits")]
    pub batch_resubmits: u32,
    /// Per-stage overrides: a stage may use its own endpoint, model, key, limits and prices
    /// (`[llm.stages.judge]`); keys it leaves out inherit `[llm]`. Stages share the job's
    /// budget. The researchqa pipeline's stages are `generate`, `judge` and `classify`; crg's are
    /// `generate` and `judge`.
    #[serde(default)]
    #[schemars(extend("x-key-name" = "stage"))]
    pub stages: BTreeMap<String, StageLlmSpec>,
}

/// Overrides of [`LlmSpec`] for one pipeline stage; unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageLlmSpec {
    /// This stage's `llm.provider`. Unset: inherited.
    pub provider: Option<ProviderKind>,
    /// This stage's `llm.base_url`. Unset: inherited.
    pub base_url: Option<String>,
    /// This stage's `llm.model`. Unset: inherited.
    #[schemars(example = &"gpt-4.1")]
    pub model: Option<String>,
    /// This stage's `llm.deployment` (provider `azure`). Unset: inherited.
    #[schemars(example = &"gpt-4.1-judge")]
    pub deployment: Option<String>,
    /// This stage's `llm.api_version` (provider `azure`). Unset: inherited.
    #[schemars(example = &"2024-10-21")]
    pub api_version: Option<String>,
    /// This stage's `llm.api_key_env`: the name of the environment variable holding its API
    /// key, never the key itself. Unset: inherited.
    #[schemars(example = &"JUDGE_API_KEY")]
    pub api_key_env: Option<String>,
    /// This stage's `llm.requests_per_minute`. Unset: inherited.
    pub requests_per_minute: Option<u32>,
    /// This stage's `llm.tokens_per_minute`. Unset: inherited.
    pub tokens_per_minute: Option<u32>,
    /// This stage's `llm.max_concurrency`. Unset: inherited.
    pub max_concurrency: Option<u32>,
    /// This stage's `llm.timeout_s`. Unset: inherited.
    pub timeout_s: Option<u64>,
    /// This stage's `llm.price_per_million`. Unset: inherited.
    #[schemars(example = json_example(r#"{"input": 2.0, "output": 8.0}"#))]
    pub price_per_million: Option<Price>,
    /// This stage's `llm.temperature`. Unset: inherited.
    pub temperature: Option<f32>,
    /// This stage's `llm.max_tokens`. Unset: inherited.
    pub max_tokens: Option<u32>,
    /// This stage's `llm.seed`. Unset: inherited.
    pub seed: Option<u64>,
    /// This stage's `llm.structured_output`. Unset: inherited.
    pub structured_output: Option<StructuredOutput>,
    /// This stage's `llm.max_response_mb`. Unset: inherited.
    pub max_response_mb: Option<u32>,
    /// This stage's `llm.mode`, e.g. online generation with a batch judge. Unset: inherited.
    pub mode: Option<LlmMode>,
}

impl LlmSpec {
    /// The URL the provider is reached at: `base_url`, or the provider's default (Anthropic's
    /// public API); `None` for the simulated provider or when `base_url` is missing.
    pub fn endpoint_url(&self) -> Option<String> {
        match (&self.base_url, self.provider) {
            (_, ProviderKind::Simulated) => None,
            (Some(url), _) => Some(url.clone()),
            (None, ProviderKind::Anthropic) => Some(ANTHROPIC_BASE_URL.to_owned()),
            (None, _) => None,
        }
    }

    /// The Azure deployment the calls go to: `deployment`, else the model name.
    pub fn deployment_name(&self) -> &str {
        self.deployment.as_deref().unwrap_or(&self.model)
    }

    /// The settings one stage runs with: the stage's overrides over the job's `[llm]`.
    /// Stages share the job's budget.
    pub fn for_stage(&self, stage: &str) -> LlmSpec {
        let mut merged = self.clone();
        merged.stages.clear();
        let Some(o) = self.stages.get(stage) else {
            return merged;
        };
        if let Some(v) = o.provider {
            merged.provider = v;
        }
        if o.base_url.is_some() {
            merged.base_url = o.base_url.clone();
        }
        if let Some(v) = &o.model {
            merged.model = v.clone();
        }
        if o.deployment.is_some() {
            merged.deployment = o.deployment.clone();
        }
        if o.api_version.is_some() {
            merged.api_version = o.api_version.clone();
        }
        if o.api_key_env.is_some() {
            merged.api_key_env = o.api_key_env.clone();
        }
        if o.requests_per_minute.is_some() {
            merged.requests_per_minute = o.requests_per_minute;
        }
        if o.tokens_per_minute.is_some() {
            merged.tokens_per_minute = o.tokens_per_minute;
        }
        if let Some(v) = o.max_concurrency {
            merged.max_concurrency = v;
        }
        if let Some(v) = o.timeout_s {
            merged.timeout_s = v;
        }
        if o.price_per_million.is_some() {
            merged.price_per_million = o.price_per_million;
        }
        if let Some(v) = o.temperature {
            merged.temperature = v;
        }
        if let Some(v) = o.max_tokens {
            merged.max_tokens = v;
        }
        if o.seed.is_some() {
            merged.seed = o.seed;
        }
        if let Some(v) = o.structured_output {
            merged.structured_output = v;
        }
        if let Some(v) = o.max_response_mb {
            merged.max_response_mb = v;
        }
        if let Some(v) = o.mode {
            merged.mode = v;
        }
        merged
    }
}

/// Pipeline stages that call a model, by pipeline.
pub fn llm_stages(pipeline: PipelineKind) -> &'static [&'static str] {
    match pipeline {
        PipelineKind::Researchqa => &["generate", "judge", "classify"],
        PipelineKind::Crg => &["generate", "judge"],
        PipelineKind::Reference => &["generate", "degrade", "judge"],
        PipelineKind::Nuggets => &["generate", "judge"],
        PipelineKind::Score => &["respond", "judge"],
    }
}

impl Default for LlmSpec {
    fn default() -> Self {
        Self {
            provider: ProviderKind::default(),
            base_url: None,
            model: default_model(),
            deployment: None,
            api_version: None,
            api_key_env: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            max_concurrency: default_max_concurrency(),
            timeout_s: default_timeout_s(),
            max_cost_usd: None,
            price_per_million: None,
            temperature: 0.0,
            max_tokens: default_max_tokens(),
            seed: None,
            simulated_latency_ms: 0,
            simulated_judge_error_rate: 0.0,
            headers: BTreeMap::new(),
            max_retries: default_max_retries(),
            structured_output: StructuredOutput::default(),
            max_response_mb: default_max_response_mb(),
            cache_url: None,
            mode: LlmMode::Online,
            batch_poll_s: default_batch_poll_s(),
            batch_price_factor: default_batch_price_factor(),
            batch_resubmits: default_batch_resubmits(),
            stages: BTreeMap::new(),
        }
    }
}

fn default_model() -> String {
    "gpt-4.1-mini".into()
}
fn default_max_concurrency() -> u32 {
    16
}
fn default_timeout_s() -> u64 {
    120
}
fn default_max_tokens() -> u32 {
    2048
}
fn default_max_retries() -> u32 {
    6
}
fn default_max_response_mb() -> u32 {
    16
}
fn default_batch_poll_s() -> u64 {
    60
}
fn default_batch_price_factor() -> f64 {
    0.5
}
fn default_batch_resubmits() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResearchQaSpec {
    /// Most rubric items asked for per query, 1 to 32.
    #[serde(default = "default_max_rubric_items")]
    pub max_rubric_items: u32,
    /// The item types the model labels each rubric item with (at least one).
    #[serde(default = "default_rubric_types")]
    pub rubric_types: Vec<String>,
    /// The general-domain label of every row, unless the input carries its own. Unset: from
    /// the input, or the classify stage, or empty.
    #[schemars(example = &"Computer Science")]
    pub general_domain: Option<String>,
    /// The subdomain label of every row, unless the input carries its own. Unset: as
    /// `general_domain`.
    #[schemars(example = &"Machine Learning")]
    pub subdomain: Option<String>,
    /// The field label of every row, unless the input carries its own. Unset: as
    /// `general_domain`.
    #[schemars(example = &"Reinforcement Learning")]
    pub field: Option<String>,
    /// Sections shorter than this many characters are merged into their parent; must be
    /// below `max_section_chars`.
    #[serde(default = "default_min_section_chars")]
    pub min_section_chars: u32,
    /// Sections longer than this many characters are split at paragraph boundaries.
    #[serde(default = "default_max_section_chars")]
    pub max_section_chars: u32,
    /// Ask an LLM judge whether each query is standalone, specific and answerable.
    #[serde(default = "default_true")]
    pub query_judge: bool,
    /// Queries left with fewer rubric items than this (after the item checks) are rejected.
    #[serde(default = "default_min_items")]
    pub min_items: u32,
    /// Items of one query whose normalised-token Jaccard similarity reaches this are
    /// near-duplicates; the later one is dropped. 1.0 drops exact duplicates only.
    #[serde(default = "default_near_duplicate_threshold")]
    pub near_duplicate_threshold: f64,
    /// Share of an item's key terms that must occur in the section (text, headings, cited
    /// works) for the item to count as grounded; 0 turns the check off.
    #[serde(default = "default_grounding_threshold")]
    pub grounding_threshold: f64,
    /// Taxonomy for the optional LLM field classification (one call per document), each entry
    /// "General domain > Subdomain > Field"; empty turns the stage off. Labels from this job
    /// spec or the input win over classified ones.
    #[serde(default)]
    #[schemars(example = json_example(r#"["Computer Science > Machine Learning > Reinforcement Learning", "Medicine > Oncology > Immunotherapy"]"#))]
    pub classify_taxonomy: Vec<String>,
    /// Sections describing the review's own method (search strategy, inclusion criteria,
    /// study selection) become reject rows instead of queries.
    #[serde(default = "default_true")]
    pub skip_method_sections: bool,
    /// At most this many sections of one survey are mined (spread evenly over the survey);
    /// the others become reject rows. Unset: no cap.
    #[serde(default)]
    pub max_sections_per_doc: Option<u32>,
    /// Write the exact section text the prompt saw in the `section_text` column; `false`
    /// leaves the column null to keep outputs small (`section_text_hash` stays).
    #[serde(default = "default_true")]
    pub keep_section_text: bool,
}

impl Default for ResearchQaSpec {
    fn default() -> Self {
        Self {
            max_rubric_items: default_max_rubric_items(),
            rubric_types: default_rubric_types(),
            general_domain: None,
            subdomain: None,
            field: None,
            min_section_chars: default_min_section_chars(),
            max_section_chars: default_max_section_chars(),
            query_judge: true,
            min_items: default_min_items(),
            near_duplicate_threshold: default_near_duplicate_threshold(),
            grounding_threshold: default_grounding_threshold(),
            classify_taxonomy: Vec::new(),
            skip_method_sections: true,
            max_sections_per_doc: None,
            keep_section_text: true,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_min_items() -> u32 {
    3
}
fn default_near_duplicate_threshold() -> f64 {
    0.8
}
fn default_grounding_threshold() -> f64 {
    0.5
}

fn default_max_rubric_items() -> u32 {
    8
}
fn default_rubric_types() -> Vec<String> {
    [
        "Citation",
        "Comparison",
        "Explanation",
        "Limitation",
        "Impact",
        "Other",
    ]
    .map(String::from)
    .to_vec()
}
fn default_min_section_chars() -> u32 {
    400
}
fn default_max_section_chars() -> u32 {
    12_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrgSpec {
    /// Upper bound on rubric items kept per pair.
    #[serde(default = "default_max_crg_items")]
    pub max_items: u32,
    /// Re-judge every pair with its rubric (both orders) and keep only rubrics that recover the
    /// human label; `false` keeps every generated rubric unjudged.
    #[serde(default = "default_true")]
    pub consistency_filter: bool,
    /// k: how many times an inconsistent (or empty) rubric is regenerated before it is dropped
    /// (at most 20); 0 drops it at once.
    #[serde(default = "default_max_resamples")]
    #[schemars(example = 5)]
    pub max_resamples: u32,
    /// τ: the accuracy over a record's pairs a rubric needs to be kept (listwise records; a
    /// single pair needs its one verdict right); in (0, 1].
    #[serde(default = "default_min_accuracy")]
    pub min_accuracy: f64,
    /// Sampling temperature of regenerated rubrics: the higher of this and the generate
    /// stage's own; above 0, at most 2.
    #[serde(default = "default_resample_temperature")]
    pub resample_temperature: f32,
}

impl Default for CrgSpec {
    fn default() -> Self {
        Self {
            max_items: default_max_crg_items(),
            consistency_filter: true,
            max_resamples: default_max_resamples(),
            min_accuracy: default_min_accuracy(),
            resample_temperature: default_resample_temperature(),
        }
    }
}

fn default_max_resamples() -> u32 {
    3
}
fn default_min_accuracy() -> f64 {
    0.5
}
fn default_resample_temperature() -> f32 {
    0.7
}

fn default_max_crg_items() -> u32 {
    12
}

/// `[reference]`: rubrics from a prompt and an optional reference answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// Fewest criteria a rubric needs; a record whose rubric has fewer valid criteria becomes a
    /// reject row. At least 1.
    #[serde(default = "default_reference_min_criteria")]
    #[schemars(example = 3)]
    pub min_criteria: u32,
    /// Upper bound on criteria kept per record (the first ones the model wrote). At least
    /// `min_criteria`, at most 100.
    #[serde(default = "default_reference_max_criteria")]
    #[schemars(example = 20)]
    pub max_criteria: u32,
    /// Whether a record without a reference answer is mined from its prompt alone; `false`
    /// rejects it.
    #[serde(default = "default_true")]
    pub allow_missing_reference: bool,
    /// The self-check filter: the judge grades the reference answer and a degraded answer
    /// under each rubric; a rubric is kept when the reference scores at least
    /// `pass_threshold` and the degraded answer below it. Records without a reference answer
    /// skip it.
    #[serde(default = "default_true")]
    pub self_check: bool,
    /// The score (HealthBench's: points of met criteria over the sum of positive points,
    /// clipped to [0, 1]) the reference answer must reach and the degraded answer must stay
    /// below. In (0, 1].
    #[serde(default = "default_reference_pass_threshold")]
    #[schemars(example = 0.5)]
    pub pass_threshold: f64,
    /// Regenerations of a rubric the self-check failed (new seed, temperature at least
    /// `crg.resample_temperature`'s default of 0.7), so a record takes at most
    /// `max_resamples + 1` generations. At most 20.
    #[serde(default = "default_reference_max_resamples")]
    #[schemars(example = 2)]
    pub max_resamples: u32,
}

impl Default for ReferenceSpec {
    fn default() -> Self {
        Self {
            min_criteria: default_reference_min_criteria(),
            max_criteria: default_reference_max_criteria(),
            allow_missing_reference: true,
            self_check: true,
            pass_threshold: default_reference_pass_threshold(),
            max_resamples: default_reference_max_resamples(),
        }
    }
}

fn default_reference_pass_threshold() -> f64 {
    0.5
}
fn default_reference_max_resamples() -> u32 {
    2
}

/// `[nuggets]`: information nuggets from a question and its passages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NuggetsSpec {
    /// Upper bound on nuggets kept per question (the first ones the model wrote). 1 to 100.
    #[serde(default = "default_max_nuggets")]
    #[schemars(example = 20)]
    pub max_nuggets: u32,
    /// Passages shown per question (the first ones of the record); the rest are left out of
    /// the prompt and named in the row. 1 to 100.
    #[serde(default = "default_max_passages")]
    #[schemars(example = 20)]
    pub max_passages: u32,
    /// Characters of each passage shown (longer passages are cut on a character boundary,
    /// and spans must fall in the part shown). At least 200.
    #[serde(default = "default_max_passage_chars")]
    #[schemars(example = 6000)]
    pub max_passage_chars: u32,
    /// The support check: the judge decides, per nugget, whether its passage entails it;
    /// unsupported nuggets are dropped with the reason.
    #[serde(default = "default_true")]
    pub support_check: bool,
}

impl Default for NuggetsSpec {
    fn default() -> Self {
        Self {
            max_nuggets: default_max_nuggets(),
            max_passages: default_max_passages(),
            max_passage_chars: default_max_passage_chars(),
            support_check: true,
        }
    }
}

fn default_max_nuggets() -> u32 {
    20
}
fn default_max_passages() -> u32 {
    20
}
fn default_max_passage_chars() -> u32 {
    6000
}

/// `[score]`: rubric rows and responses → per-criterion verdicts and weighted scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreSpec {
    /// Responses the `respond` stage writes for each record, graded beside the record's own
    /// (0: grade only the responses the input gives; a record with none is then a reject).
    /// At most 16.
    #[serde(default)]
    #[schemars(example = 2)]
    pub generate_responses: u32,
    /// Whether a response that fails any hard rule (crg and OpenRubrics rubrics) scores 0, as
    /// OpenRubrics treats hard rules as gatekeepers.
    #[serde(default = "default_true")]
    pub hard_rules_gate: bool,
}

impl Default for ScoreSpec {
    fn default() -> Self {
        Self {
            generate_responses: 0,
            hard_rules_gate: true,
        }
    }
}

fn default_reference_min_criteria() -> u32 {
    2
}
fn default_reference_max_criteria() -> u32 {
    20
}

/// A whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name: the output folder and the key that `status`, `retry` and `export` use; 1-128
    /// letters, digits, `-`, `_` or `.`, not starting with `.`.
    #[schemars(example = &"surveys-2026")]
    pub name: String,
    /// Which pipeline mines the input.
    #[schemars(example = &"crg")]
    pub pipeline: PipelineKind,
    /// Where the records come from and how they are read.
    pub input: InputSpec,
    /// Where the rows go.
    pub output: OutputSpec,
    /// The model endpoint the stages call, its limits, prices and budget.
    #[serde(default)]
    pub llm: LlmSpec,
    /// Settings of the researchqa pipeline (survey sections → research queries with rubrics).
    #[serde(default)]
    pub researchqa: ResearchQaSpec,
    /// Settings of the crg pipeline (preference pairs → rubrics by contrastive rubric
    /// generation).
    #[serde(default)]
    pub crg: CrgSpec,
    /// Settings of the reference pipeline (a prompt and an optional reference answer →
    /// weighted criteria with points).
    #[serde(default)]
    pub reference: ReferenceSpec,
    /// Settings of the nuggets pipeline (a question and its passages → information nuggets).
    #[serde(default)]
    pub nuggets: NuggetsSpec,
    /// Settings of the score pipeline (rubric rows and responses → verdicts and scores).
    #[serde(default)]
    pub score: ScoreSpec,
    /// Prompt template overrides: template name → file path (relative to the working
    /// directory). The texts are read when the job is planned and stored with the plan. The
    /// templates are `researchqa_generate`, `researchqa_judge`, `researchqa_classify`,
    /// `crg_generate`, `crg_judge`, `reference_generate`, `reference_degrade`, `rubric_grade`,
    /// `nuggets_generate`, `nuggets_support` and `score_respond`; `configs/prompts/` holds the
    /// built-in texts.
    #[serde(default)]
    #[schemars(example = json_example(r#"{"crg_judge": "prompts/my_judge.md"}"#))]
    pub prompts: BTreeMap<String, String>,
    /// What `export` writes into the dataset card.
    #[serde(default)]
    pub dataset: DatasetSpec,
}

/// Dataset card details for `export`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// License id for the card's front matter, as the Hugging Face Hub spells it
    /// (`cc-by-4.0`, `mit`, …). Unset: no license line.
    #[schemars(example = &"cc-by-4.0")]
    pub license: Option<String>,
    /// The dataset's display name: the card's title and `pretty_name`. Unset: the job name.
    #[schemars(example = &"Survey rubrics 2026")]
    pub pretty_name: Option<String>,
    /// A paragraph placed under the card's title. Unset: none.
    pub description: Option<String>,
}

impl JobSpec {
    /// Reads, parses and validates a job spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates spec text; `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SpecError> {
        let spec: JobSpec = toml::from_str(text).map_err(|error| SpecError::Parse {
            path: path.to_owned(),
            message: crate::secret::redact_secrets(&error.to_string()).into_owned(),
        })?;
        spec.validate(path)?;
        Ok(spec)
    }

    /// Checks values that the types alone do not rule out.
    pub fn validate(&self, path: &Path) -> Result<(), SpecError> {
        let invalid = |field: &str, problem: String| SpecError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            problem,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 128
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !self.name.starts_with('.');
        if !name_ok {
            return Err(invalid(
                "name",
                format!(
                    "{:?} must be 1-128 characters of letters, digits, '-', '_' or '.', not starting with '.'",
                    self.name
                ),
            ));
        }
        if self.input.url.trim().is_empty() {
            return Err(invalid("input.url", "must not be empty".into()));
        }
        if self.input.records_per_shard == 0 {
            return Err(invalid(
                "input.records_per_shard",
                "must be at least 1".into(),
            ));
        }
        if self.input.max_record_bytes < 1024 {
            return Err(invalid(
                "input.max_record_bytes",
                "must be at least 1024".into(),
            ));
        }
        for (key, value) in &self.input.fields {
            if !MAPPABLE_FIELDS.contains(&key.as_str()) {
                return Err(invalid(
                    &format!("input.fields.{key}"),
                    format!(
                        "unknown field; mappable fields are {}",
                        MAPPABLE_FIELDS.join(", ")
                    ),
                ));
            }
            if let Err(problem) = FieldPath::parse(value) {
                return Err(invalid(&format!("input.fields.{key}"), problem.to_string()));
            }
        }
        self.validate_layout(path)?;
        if self.output.url.trim().is_empty() {
            return Err(invalid("output.url", "must not be empty".into()));
        }
        self.validate_llm(path)?;
        match self.pipeline {
            PipelineKind::Researchqa => {
                let rq = &self.researchqa;
                if !(1..=32).contains(&rq.max_rubric_items) {
                    return Err(invalid(
                        "researchqa.max_rubric_items",
                        "must be between 1 and 32".into(),
                    ));
                }
                if rq.rubric_types.is_empty() {
                    return Err(invalid(
                        "researchqa.rubric_types",
                        "must name at least one type".into(),
                    ));
                }
                if rq.min_items > rq.max_rubric_items {
                    return Err(invalid(
                        "researchqa.min_items",
                        format!(
                            "must not exceed researchqa.max_rubric_items ({})",
                            rq.max_rubric_items
                        ),
                    ));
                }
                if !(0.0..=1.0).contains(&rq.near_duplicate_threshold) {
                    return Err(invalid(
                        "researchqa.near_duplicate_threshold",
                        "must be between 0 and 1".into(),
                    ));
                }
                if !(0.0..=1.0).contains(&rq.grounding_threshold) {
                    return Err(invalid(
                        "researchqa.grounding_threshold",
                        "must be between 0 and 1".into(),
                    ));
                }
                if rq.classify_taxonomy.iter().any(|t| t.trim().is_empty()) {
                    return Err(invalid(
                        "researchqa.classify_taxonomy",
                        "entries must not be empty".into(),
                    ));
                }
                if rq.max_sections_per_doc == Some(0) {
                    return Err(invalid(
                        "researchqa.max_sections_per_doc",
                        "must be at least 1 (leave it out for no cap)".into(),
                    ));
                }
                if rq.min_section_chars >= rq.max_section_chars {
                    return Err(invalid(
                        "researchqa.min_section_chars",
                        format!(
                            "must be below researchqa.max_section_chars ({})",
                            rq.max_section_chars
                        ),
                    ));
                }
            }
            PipelineKind::Crg => {
                if self.crg.max_items == 0 {
                    return Err(invalid("crg.max_items", "must be at least 1".into()));
                }
                if self.crg.max_resamples > 20 {
                    return Err(invalid("crg.max_resamples", "must be at most 20".into()));
                }
                if !(self.crg.min_accuracy > 0.0 && self.crg.min_accuracy <= 1.0) {
                    return Err(invalid("crg.min_accuracy", "must be in (0, 1]".into()));
                }
                if !(self.crg.resample_temperature > 0.0 && self.crg.resample_temperature <= 2.0) {
                    return Err(invalid(
                        "crg.resample_temperature",
                        "must be above 0 and at most 2".into(),
                    ));
                }
                if self.input.format == Some(InputFormat::Markdown) {
                    return Err(invalid(
                        "input.format",
                        "crg reads preference pairs: use jsonl, json or parquet".into(),
                    ));
                }
            }
            PipelineKind::Reference => {
                let r = &self.reference;
                if r.min_criteria == 0 {
                    return Err(invalid(
                        "reference.min_criteria",
                        "must be at least 1".into(),
                    ));
                }
                if r.max_criteria > 100 {
                    return Err(invalid(
                        "reference.max_criteria",
                        "must be at most 100".into(),
                    ));
                }
                if r.max_criteria < r.min_criteria {
                    return Err(invalid(
                        "reference.max_criteria",
                        format!(
                            "must be at least reference.min_criteria ({})",
                            r.min_criteria
                        ),
                    ));
                }
                if !(r.pass_threshold > 0.0 && r.pass_threshold <= 1.0) {
                    return Err(invalid(
                        "reference.pass_threshold",
                        "must be in (0, 1]".into(),
                    ));
                }
                if r.max_resamples > 20 {
                    return Err(invalid(
                        "reference.max_resamples",
                        "must be at most 20".into(),
                    ));
                }
                if self.input.format == Some(InputFormat::Markdown) {
                    return Err(invalid(
                        "input.format",
                        "reference reads prompt records: use jsonl, json or parquet".into(),
                    ));
                }
            }
            PipelineKind::Nuggets => {
                let n = &self.nuggets;
                if !(1..=100).contains(&n.max_nuggets) {
                    return Err(invalid("nuggets.max_nuggets", "must be 1 to 100".into()));
                }
                if !(1..=100).contains(&n.max_passages) {
                    return Err(invalid("nuggets.max_passages", "must be 1 to 100".into()));
                }
                if n.max_passage_chars < 200 {
                    return Err(invalid(
                        "nuggets.max_passage_chars",
                        "must be at least 200".into(),
                    ));
                }
                if self.input.format == Some(InputFormat::Markdown) {
                    return Err(invalid(
                        "input.format",
                        "nuggets reads question records: use jsonl, json or parquet".into(),
                    ));
                }
            }
            PipelineKind::Score => {
                if self.score.generate_responses > 16 {
                    return Err(invalid(
                        "score.generate_responses",
                        "must be at most 16".into(),
                    ));
                }
                if self.input.format == Some(InputFormat::Markdown) {
                    return Err(invalid(
                        "input.format",
                        "score reads rubric rows: use jsonl, json or parquet".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `[input]` settings for preference pairs: crg only, and never a score direction
    /// left to guess or contradicting the forced layout's own.
    fn validate_layout(&self, path: &Path) -> Result<(), SpecError> {
        let invalid = |field: &str, problem: String| SpecError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            problem,
        };
        let layout = &self.input.layout;
        if self.pipeline != PipelineKind::Crg {
            let defaults = LayoutSpec::default();
            let set = [
                ("input.layout", layout.kind != defaults.kind),
                ("input.score_order", layout.score_order.is_some()),
                ("input.pairing", layout.pairing != defaults.pairing),
                ("input.drop_non_text", layout.drop_non_text),
                (
                    "input.helpsteer_attribute",
                    layout.helpsteer_attribute != defaults.helpsteer_attribute,
                ),
                (
                    "input.ultrafeedback_score",
                    layout.ultrafeedback_score != defaults.ultrafeedback_score,
                ),
            ];
            if let Some((field, _)) = set.iter().find(|(_, is_set)| *is_set) {
                return Err(invalid(
                    field,
                    format!(
                        "only the crg pipeline reads preference pairs; the {} pipeline does not use it",
                        self.pipeline.as_str()
                    ),
                ));
            }
            return Ok(());
        }
        let attribute = layout.helpsteer_attribute;
        if attribute.documented_order().is_none() && layout.score_order.is_none() {
            return Err(invalid(
                "input.score_order",
                format!(
                    "input.helpsteer_attribute = \"{}\" measures amount, not quality, so which way \
                     is better is not documented: set input.score_order = \"higher_is_better\" or \
                     \"lower_is_better\"",
                    attribute.as_str()
                ),
            ));
        }
        if let (Some(documented), Some(stated)) =
            (layout.kind.documented_order(attribute), layout.score_order)
            && documented != stated
        {
            return Err(invalid(
                "input.score_order",
                format!(
                    "\"{}\" contradicts the {} layout, whose scores are {} by its schema; \
                     remove input.score_order or choose another input.layout",
                    stated.as_str(),
                    layout.kind.as_str(),
                    documented.as_str()
                ),
            ));
        }
        Ok(())
    }

    fn validate_llm(&self, path: &Path) -> Result<(), SpecError> {
        let known = llm_stages(self.pipeline);
        for stage in self.llm.stages.keys() {
            if !known.contains(&stage.as_str()) {
                return Err(SpecError::Invalid {
                    path: path.to_owned(),
                    field: format!("llm.stages.{stage}"),
                    problem: format!(
                        "unknown stage; the {} pipeline has {}",
                        self.pipeline.as_str(),
                        known.join(", ")
                    ),
                });
            }
        }
        self.validate_llm_settings(path, &self.llm, "llm")?;
        for stage in self.llm.stages.keys() {
            self.validate_llm_settings(
                path,
                &self.llm.for_stage(stage),
                &format!("llm.stages.{stage}"),
            )?;
        }
        if let Some(budget) = self.llm.max_cost_usd
            && !(budget.is_finite() && budget >= 0.0)
        {
            return Err(SpecError::Invalid {
                path: path.to_owned(),
                field: "llm.max_cost_usd".into(),
                problem: "must be a non-negative number".into(),
            });
        }
        Ok(())
    }

    fn validate_llm_settings(
        &self,
        path: &Path,
        llm: &LlmSpec,
        prefix: &str,
    ) -> Result<(), SpecError> {
        let invalid = |field: &str, problem: String| SpecError::Invalid {
            path: path.to_owned(),
            field: format!("{prefix}.{}", field.trim_start_matches("llm.")),
            problem,
        };
        if llm.model.trim().is_empty() {
            return Err(invalid("llm.model", "must not be empty".into()));
        }
        if llm.provider == ProviderKind::Openai && llm.base_url.is_none() {
            return Err(invalid(
                "llm.base_url",
                "required for provider \"openai\" (e.g. \"https://api.openai.com/v1\"); use provider = \"simulated\" for a dry run".into(),
            ));
        }
        if llm.provider == ProviderKind::Azure {
            if llm.base_url.is_none() {
                return Err(invalid(
                    "llm.base_url",
                    "required for provider \"azure\": the resource endpoint, e.g. \"https://RESOURCE.openai.azure.com\"".into(),
                ));
            }
            let version = llm.api_version.as_deref().unwrap_or("").trim();
            if version.is_empty() {
                return Err(invalid(
                    "llm.api_version",
                    "required for provider \"azure\" (e.g. \"2024-10-21\")".into(),
                ));
            }
            if !version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(invalid(
                    "llm.api_version",
                    format!("{version:?} is not an API version (e.g. \"2024-10-21\")"),
                ));
            }
            let deployment = llm.deployment_name();
            if deployment.is_empty()
                || !deployment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(invalid(
                    "llm.deployment",
                    format!(
                        "{deployment:?} is not an Azure deployment name (letters, digits, '-', '_', '.'); set llm.deployment when the model name is not one"
                    ),
                ));
            }
        }
        if llm.provider.is_remote()
            && let Some(url) = &llm.base_url
        {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
            if host.is_none_or(str::is_empty) || url.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "llm.base_url",
                    "must be an http:// or https:// URL with a host".into(),
                ));
            }
        }
        if let Some(var) = &llm.api_key_env {
            let looks_like_name = !var.is_empty()
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !var.chars().next().is_some_and(|c| c.is_ascii_digit());
            if !looks_like_name {
                // Never echo the value: it may be a pasted key.
                return Err(invalid(
                    "llm.api_key_env",
                    "must be the name of an environment variable (letters, digits, '_'), not the key itself".into(),
                ));
            }
        }
        // The spec is stored beside the output (job.json) and in the cluster: a credential in a
        // header would be written there. Name the header, never the value.
        for (name, value) in &llm.headers {
            let lowered = name.to_ascii_lowercase();
            if crate::secret::is_secret_key(name)
                || lowered == "cookie"
                || value
                    .split_whitespace()
                    .any(crate::secret::looks_like_secret)
            {
                return Err(invalid(
                    &format!("llm.headers.{name}"),
                    "looks like a credential; the spec is stored with the job's output, so keep \
                     keys in the environment and name the variable with llm.api_key_env"
                        .into(),
                ));
            }
        }
        if llm.mode == LlmMode::Batch && llm.provider == ProviderKind::Simulated {
            return Err(invalid(
                "llm.mode",
                "\"batch\" needs a provider with a batch API (openai, azure, anthropic); the \
                 simulated provider answers at once, so use mode = \"online\" with it"
                    .into(),
            ));
        }
        if llm.batch_poll_s == 0 {
            return Err(invalid("llm.batch_poll_s", "must be at least 1".into()));
        }
        if !(llm.batch_price_factor > 0.0 && llm.batch_price_factor <= 1.0) {
            return Err(invalid(
                "llm.batch_price_factor",
                "must be a fraction of the online price, above 0 and at most 1".into(),
            ));
        }
        if llm.max_concurrency == 0 {
            return Err(invalid("llm.max_concurrency", "must be at least 1".into()));
        }
        if llm.timeout_s == 0 {
            return Err(invalid("llm.timeout_s", "must be at least 1".into()));
        }
        if llm.max_tokens == 0 {
            return Err(invalid("llm.max_tokens", "must be at least 1".into()));
        }
        if llm.max_response_mb == 0 {
            return Err(invalid("llm.max_response_mb", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&llm.simulated_judge_error_rate) {
            return Err(invalid(
                "llm.simulated_judge_error_rate",
                "must be a rate between 0 and 1".into(),
            ));
        }
        if !(0.0..=2.0).contains(&llm.temperature) {
            return Err(invalid("llm.temperature", "must be between 0 and 2".into()));
        }
        if llm.requests_per_minute == Some(0) {
            return Err(invalid(
                "llm.requests_per_minute",
                "must be at least 1 (omit it for no limit)".into(),
            ));
        }
        if llm.tokens_per_minute == Some(0) {
            return Err(invalid(
                "llm.tokens_per_minute",
                "must be at least 1 (omit it for no limit)".into(),
            ));
        }
        if let Some(tpm) = llm.tokens_per_minute
            && llm.max_tokens >= tpm
        {
            return Err(invalid(
                "llm.max_tokens",
                format!(
                    "{} leaves no room for any input within llm.tokens_per_minute = {tpm}: a \
                     request reserves its input plus max_tokens, and one larger than the whole \
                     limit can never be sent; lower max_tokens or raise tokens_per_minute",
                    llm.max_tokens
                ),
            ));
        }
        if let Some(budget) = llm.max_cost_usd
            && !(budget.is_finite() && budget >= 0.0)
        {
            return Err(invalid(
                "llm.max_cost_usd",
                "must be a non-negative number".into(),
            ));
        }
        if let Some(price) = llm.price_per_million
            && !(price.input >= 0.0 && price.output >= 0.0)
        {
            return Err(invalid(
                "llm.price_per_million",
                "prices must be non-negative".into(),
            ));
        }
        if llm.max_cost_usd.is_some() && llm.price_per_million.is_none() && llm.provider.is_remote()
        {
            return Err(invalid(
                "llm.price_per_million",
                "required when llm.max_cost_usd is set, or the budget could never be measured"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Hash of everything that decides what the output rows contain. Two runs with the same
    /// fingerprint may share one output folder (resume); budgets, rate limits, concurrency and
    /// the output location are left out so they can change between runs.
    pub fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Fingerprinted<'a> {
            pipeline: PipelineKind,
            input_url: &'a str,
            input_format: Option<InputFormat>,
            layout: PairLayout,
            /// Only when a setting differs from its default, so older plans keep their
            /// fingerprint.
            #[serde(skip_serializing_if = "Option::is_none")]
            layout_settings: Option<LayoutSpec>,
            records_per_shard: u64,
            fields: &'a BTreeMap<String, String>,
            provider: ProviderKind,
            model: &'a str,
            /// Only when set, so older plans keep their fingerprint.
            #[serde(skip_serializing_if = "Option::is_none")]
            deployment: Option<&'a str>,
            temperature: f32,
            max_tokens: u32,
            seed: Option<u64>,
            researchqa: Option<&'a ResearchQaSpec>,
            crg: Option<&'a CrgSpec>,
            /// Only for reference jobs, so older plans keep their fingerprint.
            #[serde(skip_serializing_if = "Option::is_none")]
            reference: Option<&'a ReferenceSpec>,
            #[serde(skip_serializing_if = "Option::is_none")]
            nuggets: Option<&'a NuggetsSpec>,
            #[serde(skip_serializing_if = "Option::is_none")]
            score: Option<&'a ScoreSpec>,
            stage_models: Vec<(&'a str, String, u32, Option<u64>)>,
        }
        let fingerprinted = Fingerprinted {
            pipeline: self.pipeline,
            input_url: &self.input.url,
            input_format: self.input.format,
            layout: self.input.layout.kind,
            layout_settings: (!self.input.layout.has_default_settings())
                .then_some(self.input.layout),
            records_per_shard: self.input.records_per_shard,
            fields: &self.input.fields,
            provider: self.llm.provider,
            model: &self.llm.model,
            deployment: self.llm.deployment.as_deref(),
            temperature: self.llm.temperature,
            max_tokens: self.llm.max_tokens,
            seed: self.llm.seed,
            researchqa: (self.pipeline == PipelineKind::Researchqa).then_some(&self.researchqa),
            crg: (self.pipeline == PipelineKind::Crg).then_some(&self.crg),
            reference: (self.pipeline == PipelineKind::Reference).then_some(&self.reference),
            nuggets: (self.pipeline == PipelineKind::Nuggets).then_some(&self.nuggets),
            score: (self.pipeline == PipelineKind::Score).then_some(&self.score),
            stage_models: self
                .llm
                .stages
                .keys()
                .map(|stage| {
                    let merged = self.llm.for_stage(stage);
                    (
                        stage.as_str(),
                        format!("{}@{}", merged.model, merged.temperature),
                        merged.max_tokens,
                        merged.seed,
                    )
                })
                .collect(),
        };
        let json = serde_json::to_vec(&fingerprinted).expect("spec serializes");
        crate::hash::short_hash(&json, 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "pairs-test"
pipeline = "crg"
[input]
url = "data/pairs.jsonl"
[output]
url = "out"
[llm]
provider = "simulated"
"#;

    fn parse(text: &str) -> Result<JobSpec, SpecError> {
        JobSpec::parse(Path::new("job.toml"), text)
    }

    #[test]
    fn reference_settings_are_checked_and_named() {
        let reference = MINIMAL.replace("pipeline = \"crg\"", "pipeline = \"reference\"");
        let spec = parse(&reference).unwrap();
        assert_eq!(spec.pipeline, PipelineKind::Reference);
        assert_eq!(spec.reference, ReferenceSpec::default());
        assert_eq!(
            llm_stages(PipelineKind::Reference),
            ["generate", "degrade", "judge"]
        );
        let field_of = |extra: &str| match parse(&format!("{reference}{extra}")).unwrap_err() {
            SpecError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(
            field_of("[reference]\nmin_criteria = 0\n"),
            "reference.min_criteria"
        );
        assert_eq!(
            field_of("[reference]\nmin_criteria = 5\nmax_criteria = 4\n"),
            "reference.max_criteria"
        );
        assert_eq!(
            field_of("[reference]\nmax_criteria = 101\n"),
            "reference.max_criteria"
        );
        let markdown = reference.replace(
            "url = \"data/pairs.jsonl\"",
            "url = \"d.md\"\nformat = \"markdown\"",
        );
        assert_eq!(field_of_text(&markdown), "input.format");
        let mapped = reference.replace(
            "url = \"data/pairs.jsonl\"",
            "url = \"d.jsonl\"\nfields = { prompt = \"question\", reference = \"answers.0\", tags = \"/meta/tags\", domain = \"area\" }",
        );
        assert!(parse(&mapped).is_ok());
        // Another pipeline's spec does not fingerprint the reference settings.
        let crg = parse(MINIMAL).unwrap();
        let mut changed = crg.clone();
        changed.reference.max_criteria = 7;
        assert_eq!(crg.fingerprint(), changed.fingerprint());
        let mut changed_ref = spec.clone();
        changed_ref.reference.max_criteria = 7;
        assert_ne!(spec.fingerprint(), changed_ref.fingerprint());
    }

    fn field_of_text(text: &str) -> String {
        match parse(text).unwrap_err() {
            SpecError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec = parse(MINIMAL).unwrap();
        assert_eq!(spec.input.records_per_shard, 50);
        assert_eq!(spec.llm.provider, ProviderKind::Simulated);
        assert_eq!(spec.researchqa.max_rubric_items, 8);
        assert_eq!(spec.input.layout, LayoutSpec::default());
    }

    #[test]
    fn unknown_field_is_named() {
        let text = MINIMAL.replace("url = \"out\"", "url = \"out\"\nurll = 3");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("job.toml"), "{err}");
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn anthropic_and_azure_settings_are_checked_naming_the_field() {
        let with = |llm: &str| MINIMAL.replace("provider = \"simulated\"", llm);
        let anthropic = parse(&with("provider = \"anthropic\"\nmodel = \"claude-x\"")).unwrap();
        assert_eq!(
            anthropic.llm.endpoint_url().as_deref(),
            Some(ANTHROPIC_BASE_URL)
        );
        assert_eq!(ProviderKind::Anthropic.as_str(), "anthropic");
        assert_eq!(ProviderKind::Azure.as_str(), "azure");
        let azure = "provider = \"azure\"\nmodel = \"gpt-4o\"\nbase_url = \"https://r.openai.azure.com\"\napi_version = \"2024-10-21\"";
        let spec = parse(&with(azure)).unwrap();
        assert_eq!(spec.llm.deployment_name(), "gpt-4o");
        let deployed = parse(&with(&format!("{azure}\ndeployment = \"prod-4o\""))).unwrap();
        assert_eq!(deployed.llm.deployment_name(), "prod-4o");
        assert_ne!(deployed.fingerprint(), spec.fingerprint());
        let staged = parse(&format!(
            "{}\n[llm.stages.judge]\napi_version = \"2025-01-01\"\ndeployment = \"judge\"\n",
            with(azure)
        ))
        .unwrap();
        let judge = staged.llm.for_stage("judge");
        assert_eq!(
            (judge.api_version.as_deref(), judge.deployment_name()),
            (Some("2025-01-01"), "judge")
        );
        let field_of = |text: String| match parse(&text).unwrap_err() {
            SpecError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(
            field_of(with("provider = \"azure\"\napi_version = \"2024-10-21\"")),
            "llm.base_url"
        );
        assert_eq!(
            field_of(with(
                "provider = \"azure\"\nbase_url = \"https://r.openai.azure.com\""
            )),
            "llm.api_version"
        );
        assert_eq!(
            field_of(with(&format!("{azure}\ndeployment = \"a/b\""))),
            "llm.deployment"
        );
        assert_eq!(
            field_of(with(
                "provider = \"anthropic\"\nbase_url = \"api.anthropic.com\""
            )),
            "llm.base_url"
        );
        assert_eq!(
            field_of(with("provider = \"anthropic\"\nmax_cost_usd = 1.0")),
            "llm.price_per_million"
        );
    }

    #[test]
    fn batch_mode_settings_are_checked_and_left_out_of_the_fingerprint() {
        let with = |llm: &str| MINIMAL.replace("provider = \"simulated\"", llm);
        let online = parse(&with("provider = \"openai\"\nbase_url = \"http://h/v1\"")).unwrap();
        assert_eq!(online.llm.mode, LlmMode::Online);
        let batch = parse(&with(
            "provider = \"openai\"\nbase_url = \"http://h/v1\"\nmode = \"batch\"",
        ))
        .unwrap();
        assert_eq!(batch.llm.mode, LlmMode::Batch);
        assert_eq!(batch.llm.batch_poll_s, 60);
        assert_eq!(batch.llm.batch_price_factor, 0.5);
        // The same answers either way: a job may switch modes and resume.
        assert_eq!(batch.fingerprint(), online.fingerprint());
        let staged = parse(&format!(
            "{}\n[llm.stages.judge]\nmode = \"batch\"\n",
            with("provider = \"openai\"\nbase_url = \"http://h/v1\"")
        ))
        .unwrap();
        assert_eq!(staged.llm.for_stage("judge").mode, LlmMode::Batch);
        assert_eq!(staged.llm.for_stage("generate").mode, LlmMode::Online);
        let field_of = |text: String| match parse(&text).unwrap_err() {
            SpecError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(
            field_of(with("provider = \"simulated\"\nmode = \"batch\"")),
            "llm.mode"
        );
        assert_eq!(
            field_of(format!(
                "{}\n[llm.stages.judge]\nmode = \"batch\"\n",
                MINIMAL
            )),
            "llm.stages.judge.mode"
        );
        let openai = "provider = \"openai\"\nbase_url = \"http://h/v1\"\nmode = \"batch\"";
        assert_eq!(
            field_of(with(&format!("{openai}\nbatch_poll_s = 0"))),
            "llm.batch_poll_s"
        );
        assert_eq!(
            field_of(with(&format!("{openai}\nbatch_price_factor = 1.5"))),
            "llm.batch_price_factor"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (MINIMAL.replace("pairs-test", "bad name!"), "name"),
            (MINIMAL.replace("url = \"out\"", "url = \"\""), "output.url"),
            (
                MINIMAL.replace("[input]", "[input]\nrecords_per_shard = 0"),
                "input.records_per_shard",
            ),
            (
                MINIMAL.replace("[input]", "[input]\nfields = { answer = \"x\" }"),
                "input.fields.answer",
            ),
            (
                MINIMAL.replace("provider = \"simulated\"", "provider = \"openai\""),
                "llm.base_url",
            ),
            (
                MINIMAL.replace("[llm]", "[llm]\napi_key_env = \"sk-abc123-def\""),
                "llm.api_key_env",
            ),
            (
                MINIMAL.replace("[llm]", "[llm]\ntemperature = 3.5"),
                "llm.temperature",
            ),
        ];
        for (text, field) in cases {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn pasted_key_in_a_parse_error_is_not_echoed() {
        // An unknown key, a key of the wrong type and a broken line: the parser quotes the
        // line it stopped at, and the key must not reach the message.
        let cases = [
            MINIMAL.replace("[llm]", "[llm]\napi_key = \"sk-proj-Zx81kQ0aa91LmPq2\""),
            MINIMAL.replace("[llm]", "[llm]\nmax_tokens = \"sk-proj-Zx81kQ0aa91LmPq2\""),
            MINIMAL.replace("[llm]", "[llm]\nmodel = sk-proj-Zx81kQ0aa91LmPq2"),
        ];
        for text in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("job.toml"), "{err}");
            assert!(!err.contains("Zx81kQ0aa91LmPq2"), "{err}");
            assert!(!err.contains("plainpass"), "{err}");
        }
    }

    #[test]
    fn credentials_in_headers_are_refused_without_echo() {
        for header in [
            "Authorization = \"Bearer plainpass\"",
            "x-api-key = \"plainpass\"",
            "X-Custom = \"sk-proj-Zx81kQ0aa91LmPq2plainpass\"",
        ] {
            let text = MINIMAL.replace("[llm]", &format!("[llm]\nheaders = {{ {header} }}"));
            let err = parse(&text).unwrap_err();
            assert!(err.field().unwrap().starts_with("llm.headers."), "{err}");
            assert!(!err.to_string().contains("plainpass"), "{err}");
        }
        let text = MINIMAL.replace("[llm]", "[llm]\nheaders = { X-Title = \"rubricmill\" }");
        parse(&text).unwrap();
    }

    #[test]
    fn pasted_key_is_not_echoed() {
        let text = MINIMAL.replace("[llm]", "[llm]\napi_key_env = \"sk-secret-value\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(!err.contains("sk-secret-value"), "{err}");
    }

    #[test]
    fn fingerprint_ignores_budget_and_rates_but_not_model() {
        let base = parse(MINIMAL).unwrap();
        let mut budget = base.clone();
        budget.llm.max_cost_usd = Some(3.0);
        budget.llm.requests_per_minute = Some(10);
        budget.output.url = "elsewhere".into();
        assert_eq!(base.fingerprint(), budget.fingerprint());
        let mut model = base.clone();
        model.llm.model = "other".into();
        assert_ne!(base.fingerprint(), model.fingerprint());
    }

    #[test]
    fn stages_override_the_job_llm_settings() {
        let text = format!("{MINIMAL}[llm.stages.generate]\nmodel = \"cheap\"\nmax_tokens = 300\n");
        let spec = parse(&text).unwrap();
        let stage = spec.llm.for_stage("generate");
        assert_eq!(stage.model, "cheap");
        assert_eq!(stage.max_tokens, 300);
        assert_eq!(stage.provider, ProviderKind::Simulated);
        assert_ne!(spec.fingerprint(), parse(MINIMAL).unwrap().fingerprint());
    }

    #[test]
    fn format_from_file_name_sees_through_compression() {
        assert_eq!(
            InputFormat::from_file_name("a.jsonl.gz"),
            Some(InputFormat::Jsonl)
        );
        assert_eq!(
            InputFormat::from_file_name("a.JSON.zst"),
            Some(InputFormat::Json)
        );
        assert_eq!(
            InputFormat::from_file_name("survey.md"),
            Some(InputFormat::Markdown)
        );
        assert_eq!(
            InputFormat::from_file_name("x.parquet"),
            Some(InputFormat::Parquet)
        );
        assert_eq!(InputFormat::from_file_name("x.csv"), None);
    }
    #[test]
    fn layout_settings_are_flat_input_keys_gathered_into_one_value() {
        let text = MINIMAL.replace(
            "[input]",
            "[input]\nlayout = \"nectar\"\npairing = \"best_vs_worst\"\ndrop_non_text = true\n\
             score_order = \"lower_is_better\"\nultrafeedback_score = \"mean_rating\"",
        );
        let spec = parse(&text).unwrap();
        assert_eq!(
            spec.input.layout,
            LayoutSpec {
                kind: PairLayout::Nectar,
                score_order: Some(ScoreOrder::LowerIsBetter),
                pairing: Pairing::BestVsWorst,
                drop_non_text: true,
                helpsteer_attribute: HelpsteerAttribute::Helpfulness,
                ultrafeedback_score: UltrafeedbackScore::MeanRating,
            }
        );
        // The plan stores the spec as JSON: it reads back the same, still flat.
        let json = serde_json::to_value(&spec.input).unwrap();
        assert_eq!(json["layout"], "nectar");
        assert_eq!(json["pairing"], "best_vs_worst");
        let back: InputSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec.input);
        // Defaults are not written, so a default spec serialises as it did before.
        let json = serde_json::to_value(&parse(MINIMAL).unwrap().input).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "fields",
                "format",
                "layout",
                "max_record_bytes",
                "records_per_shard",
                "url"
            ]
        );
        // Every layout name parses.
        for layout in PairLayout::CONCRETE {
            let text = MINIMAL.replace(
                "[input]",
                &format!("[input]\nlayout = \"{}\"", layout.as_str()),
            );
            assert_eq!(parse(&text).unwrap().input.layout.kind, *layout);
        }
        let err = parse(&MINIMAL.replace("[input]", "[input]\npairing = \"all\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pairing") || err.contains("best_vs_worst"),
            "{err}"
        );
    }

    #[test]
    fn layout_settings_that_leave_a_direction_to_guess_or_contradict_it_name_the_field() {
        let cases = [
            (
                "layout = \"nectar\"\nscore_order = \"higher_is_better\"",
                "input.score_order",
                "contradicts the nectar layout",
            ),
            (
                "layout = \"ultrafeedback\"\nscore_order = \"lower_is_better\"",
                "input.score_order",
                "contradicts the ultrafeedback layout",
            ),
            (
                "helpsteer_attribute = \"verbosity\"",
                "input.score_order",
                "measures amount",
            ),
            (
                "fields = { prompt = \"/q/~2x\" }",
                "input.fields.prompt",
                "RFC 6901",
            ),
            (
                "fields = { chosen = \"answers..text\" }",
                "input.fields.chosen",
                "\"/answers..text\"",
            ),
            (
                "fields = { rejected = \"\" }",
                "input.fields.rejected",
                "must not be empty",
            ),
        ];
        for (settings, field, problem) in cases {
            let text = MINIMAL.replace("[input]", &format!("[input]\n{settings}"));
            let err = parse(&text).unwrap_err();
            assert_eq!(err.field(), Some(field), "{settings}: {err}");
            assert!(err.to_string().contains(problem), "{settings}: {err}");
        }
        // Stated and documented directions that agree are fine, and so is a stated direction
        // for an attribute that needs one.
        for settings in [
            "layout = \"nectar\"\nscore_order = \"lower_is_better\"",
            "layout = \"helpsteer\"\nhelpsteer_attribute = \"verbosity\"\nscore_order = \"lower_is_better\"",
            "layout = \"listwise\"\nscore_order = \"higher_is_better\"",
            "fields = { prompt = \"/meta/q.text\", chosen = \"answers.-1.text\" }",
        ] {
            let text = MINIMAL.replace("[input]", &format!("[input]\n{settings}"));
            assert!(parse(&text).is_ok(), "{settings}");
        }
        // Pair settings on the researchqa pipeline are refused, naming the key.
        let text = MINIMAL
            .replace("pipeline = \"crg\"", "pipeline = \"researchqa\"")
            .replace("[input]", "[input]\npairing = \"best_vs_worst\"");
        assert_eq!(parse(&text).unwrap_err().field(), Some("input.pairing"));
    }

    #[test]
    fn fingerprint_counts_layout_settings_only_when_set() {
        let base = parse(MINIMAL).unwrap();
        let explicit = parse(&MINIMAL.replace(
            "[input]",
            "[input]\nlayout = \"auto\"\npairing = \"listwise\"\ndrop_non_text = false",
        ))
        .unwrap();
        assert_eq!(base.fingerprint(), explicit.fingerprint());
        let best =
            parse(&MINIMAL.replace("[input]", "[input]\npairing = \"best_vs_worst\"")).unwrap();
        assert_ne!(base.fingerprint(), best.fingerprint());
    }

    #[test]
    fn field_paths_dotted_and_json_pointer() {
        use serde_json::json;
        let record = json!({
            "meta.v2": {"a/b": {"x~y": "escaped"}},
            "answers": [{"text": "first"}, {"text": "mid"}, {"text": "last"}],
            "q.text": "literal dotted key",
            "10": "digits as a key"
        });
        let at = |raw: &str| FieldPath::parse(raw).unwrap().lookup(&record).cloned();
        assert_eq!(at("/meta.v2/a~1b/x~0y"), Some(json!("escaped")));
        assert_eq!(at("/answers/0/text"), Some(json!("first")));
        assert_eq!(at("/answers/2/text"), Some(json!("last")));
        assert_eq!(at("answers.-1.text"), Some(json!("last")));
        assert_eq!(at("answers.1.text"), Some(json!("mid")));
        assert_eq!(at("q.text"), Some(json!("literal dotted key")));
        assert_eq!(at("/10"), Some(json!("digits as a key")));
        // Pointers have no negative or zero-padded indices, and `-` is past the end.
        assert_eq!(at("/answers/-1/text"), None);
        assert_eq!(at("/answers/01/text"), None);
        assert_eq!(at("/answers/-"), None);
        assert_eq!(at("/answers/3/text"), None);
        assert_eq!(at("answers.x"), None);
        assert_eq!(at("/q.text/deeper"), None);
        // The dotted form cannot reach a key with dots below the top level.
        assert_eq!(at("meta.v2.a/b"), None);
        assert!(FieldPath::parse("/answers/0").unwrap().is_pointer());
        assert_eq!(FieldPath::parse("a.b").unwrap().as_str(), "a.b");
        assert_eq!(
            FieldPath::parse("/a~"),
            Err(FieldPathError::BadEscape { raw: "/a~".into() })
        );
        assert_eq!(
            FieldPath::parse(".a"),
            Err(FieldPathError::EmptySegment {
                raw: ".a".into(),
                pointer: "/.a".into()
            })
        );
    }
}
