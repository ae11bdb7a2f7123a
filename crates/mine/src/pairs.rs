//! Preference-pair normalisation for the crg pipeline: turns a structured input record, in any
//! of the layouts of DESIGN §2.2, into a [`PreferencePair`] in normal form (the conversation so
//! far as messages, the chosen and the rejected assistant answer), or into a [`PairError`] whose
//! [`reason`](PairError::reason) goes into the job's rejects table. Nothing here panics on bad
//! data, and bad records are never dropped silently: every record yields pairs or an error.
//!
//! # Layouts
//!
//! * [`PairLayout::Strings`]: `{prompt, chosen, rejected}`. `chosen`/`rejected` are strings (or
//!   one `{role, content}` turn); `prompt` is a string, one message or a message list. A prompt
//!   string that is itself an HH transcript (`"\n\nHuman: …\n\nAssistant:"`) is split into turns.
//! * [`PairLayout::HhRlhf`]: `chosen`/`rejected` are whole `"\n\nHuman: …\n\nAssistant: …"`
//!   transcripts (see [`split_hh_transcript`]). Both must agree on every turn but the final
//!   Assistant turn; those shared turns become the prompt, the final turns the two responses.
//! * [`PairLayout::Sharegpt`]: `conversations` is a list of `{from, value}` turns (`from` is
//!   `human`, `gpt` or `system`, …); `chosen`/`rejected` are each one such turn, a string, or a
//!   list of turns (whose shared leading turns are appended to the conversation).
//! * [`PairLayout::Messages`]: `chosen`/`rejected` are `{role, content}` lists sharing a prefix
//!   and ending in differing assistant messages; an optional separate `prompt` (string or
//!   message list) is prepended unless the shared prefix already begins with it.
//! * Listwise ([`normalize_listwise`]): `{prompt, responses}` with `responses` best first, or
//!   with a `score` (higher is better) or `rank` (lower is better) on every response. It yields
//!   the adjacent pairs and the top-versus-rest pairs, deduplicated, skipping ties.
//!
//! Message objects may spell role as `role` or `from` and content as `content`, `value` or
//! `text` (content may also be a list of `{type: "text", text}` parts). Roles are normalised to
//! `user`, `assistant`, `system` and `tool`.
//!
//! # Auto-detection ([`PairLayout::Auto`], per record, first rule that applies)
//!
//! 0. ([`normalize_record`] only) no `chosen` but a `responses` field: listwise;
//! 1. a `conversations` field: ShareGPT;
//! 2. `chosen` is a list: messages;
//! 3. `chosen` is a string or an object and there is a `prompt` field: strings;
//! 4. `chosen` is a string that begins with, or contains, an HH `Human:` marker: HH-RLHF;
//! 5. otherwise the record is rejected (`chosen` missing or mistyped, or `prompt` missing).
//!
//! # Normal form
//!
//! Responses are trimmed of surrounding whitespace; so are the contents of turns split from HH
//! transcripts (message contents from structured layouts are kept verbatim). In HH transcripts
//! consecutive turns of the same speaker are merged into one turn (joined by a blank line): the
//! real data has Assistant turns whose text itself contains `"\n\nAssistant:"`. Rejected:
//! identical responses (after trimming), empty responses, transcripts that do not parse (no
//! markers, text before the first marker, an opening Assistant turn), transcripts or message
//! lists not ending in an assistant turn, chosen/rejected disagreeing before their final turn,
//! an empty prompt, and missing or mistyped fields (the error names the field and what was
//! expected).
//!
//! The pair id is the record's `id` (string or number) when present, else the first 24 hex
//! characters of the hash of a canonical, length-prefixed encoding of (prompt, chosen,
//! rejected), so the same pair always gets the same id.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rubricmill_core::{Message, PairLayout, PreferencePair, short_hash};
use serde_json::Value;

/// Why a record could not become a preference pair; `Display` gives a short lowercase reason
/// for the rejects table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// The record (or a value that must hold messages) is not a JSON object.
    #[error("record is not a json object (found {0})")]
    NotAnObject(&'static str),
    /// A required field is absent (or null); holds its path in the record.
    #[error("missing field `{0}`")]
    MissingField(String),
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
    /// `"chosen"` or `"rejected"` is empty or whitespace.
    #[error("empty {0} response")]
    EmptyResponse(&'static str),
    /// A listwise response (zero-based position in best-first order) is empty.
    #[error("empty response at rank {0}")]
    EmptyRankedResponse(usize),
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
    /// No prompt turn with any content.
    #[error("empty prompt")]
    EmptyPrompt,
    /// Auto-detection found no layout that fits.
    #[error("cannot detect pair layout: {0}")]
    AmbiguousLayout(String),
    /// A listwise record yields no pair.
    #[error("listwise record yields no pair: {0}")]
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
            PairError::MissingField(_) => "missing_field",
            PairError::WrongType { .. } => "wrong_type",
            PairError::UnknownRole { .. } => "unknown_role",
            PairError::EmptyResponse(_) | PairError::EmptyRankedResponse(_) => "empty_response",
            PairError::IdenticalResponses => "identical_responses",
            PairError::TranscriptUnparsable(_) => "transcript_unparsable",
            PairError::NoFinalAssistant(_) => "no_final_assistant",
            PairError::PromptMismatch(_) => "prompt_mismatch",
            PairError::EmptyPrompt => "empty_prompt",
            PairError::AmbiguousLayout(_) => "ambiguous_layout",
            PairError::NoPairs(_) => "no_pairs",
        }
    }
}

/// Field mapping from the job spec: our field name → dotted path in the record
/// (`"answers.0.text"`; array indices may be negative, `-1` being the last element).
/// Unmapped fields use their own name as a top-level key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMap {
    paths: BTreeMap<String, String>,
}

impl FieldMap {
    pub fn new(map: &BTreeMap<String, String>) -> Self {
        Self { paths: map.clone() }
    }

    /// The path in the record that `field` is read from.
    pub fn path<'s>(&'s self, field: &'s str) -> &'s str {
        self.paths.get(field).map_or(field, String::as_str)
    }

    /// The value of our field `field` in `record`, or `None` when the path does not lead
    /// anywhere. A key that literally contains dots is found too.
    pub fn get<'a>(&self, record: &'a Value, field: &str) -> Option<&'a Value> {
        match self.paths.get(field) {
            None => record.as_object()?.get(field),
            Some(path) => lookup_path(record, path),
        }
    }
}

fn lookup_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = root.as_object().and_then(|o| o.get(path)) {
        return Some(v);
    }
    let mut cur = root;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(o) => o.get(seg)?,
            Value::Array(a) => {
                let i = match seg.strip_prefix('-') {
                    Some(back) => a
                        .len()
                        .checked_sub(back.parse::<usize>().ok().filter(|n| *n > 0)?)?,
                    None => seg.parse::<usize>().ok()?,
                };
                a.get(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// Turns one record into a preference pair, in the given layout (or detected per record).
pub fn normalize_pair(
    record: &Value,
    layout: PairLayout,
    fields: &FieldMap,
) -> Result<PreferencePair, PairError> {
    if !record.is_object() {
        return Err(PairError::NotAnObject(type_name(record)));
    }
    let layout = match layout {
        PairLayout::Auto => detect_layout(record, fields)?,
        other => other,
    };
    match layout {
        PairLayout::HhRlhf => hh_pair(record, fields),
        PairLayout::Strings => structured_pair(record, fields, Structured::Strings),
        PairLayout::Sharegpt => structured_pair(record, fields, Structured::Sharegpt),
        PairLayout::Messages => structured_pair(record, fields, Structured::Messages),
        PairLayout::Auto => Err(PairError::AmbiguousLayout("auto".into())),
    }
}

/// Like [`normalize_pair`], but with [`PairLayout::Auto`] a record without `chosen` that has
/// `responses` is read as listwise ([`normalize_listwise`]). One record may give several pairs.
pub fn normalize_record(
    record: &Value,
    layout: PairLayout,
    fields: &FieldMap,
) -> Result<Vec<PreferencePair>, PairError> {
    if layout == PairLayout::Auto
        && fields.get(record, "chosen").is_none()
        && fields.get(record, "responses").is_some()
    {
        return normalize_listwise(record, fields);
    }
    normalize_pair(record, layout, fields).map(|p| vec![p])
}

/// The layout [`PairLayout::Auto`] picks for this record (rules in the module doc).
pub fn detect_layout(record: &Value, fields: &FieldMap) -> Result<PairLayout, PairError> {
    if !record.is_object() {
        return Err(PairError::NotAnObject(type_name(record)));
    }
    if present(fields.get(record, "conversations")).is_some() {
        return Ok(PairLayout::Sharegpt);
    }
    let chosen = present(fields.get(record, "chosen"))
        .ok_or_else(|| PairError::MissingField(fields.path("chosen").to_owned()))?;
    match chosen {
        Value::Array(_) => Ok(PairLayout::Messages),
        Value::String(_) | Value::Object(_) if present(fields.get(record, "prompt")).is_some() => {
            Ok(PairLayout::Strings)
        }
        Value::String(s) if looks_like_hh(s) => Ok(PairLayout::HhRlhf),
        Value::String(_) | Value::Object(_) => {
            Err(PairError::MissingField(fields.path("prompt").to_owned()))
        }
        other => Err(PairError::WrongType {
            field: fields.path("chosen").to_owned(),
            expected: "a string, a message or a list of messages",
            found: type_name(other),
        }),
    }
}

/// Splits an HH-RLHF transcript (`"\n\nHuman: …\n\nAssistant: …"`) into messages with roles
/// `user` and `assistant`, contents trimmed, consecutive turns of one speaker merged. Fails when
/// there is no marker, text precedes the first marker, or the first turn is not a Human turn.
pub fn split_hh_transcript(text: &str) -> Result<Vec<Message>, PairError> {
    let turns = split_turns(text).map_err(|p| PairError::TranscriptUnparsable(p.to_owned()))?;
    Ok(turns.into_iter().map(Msg::into_message).collect())
}

/// Listwise: `{prompt, responses: [best first …]}` (or responses carrying `score`/`rank`) →
/// adjacent pairs, then top-versus-rest pairs, deduplicated; tied or identical responses give
/// no pair. With a record `id`, pair ids are `"{id}-{i}-{j}"` (best-first positions).
pub fn normalize_listwise(
    record: &Value,
    fields: &FieldMap,
) -> Result<Vec<PreferencePair>, PairError> {
    if !record.is_object() {
        return Err(PairError::NotAnObject(type_name(record)));
    }
    let id = record_id(record, fields)?;
    let prompt_path = fields.path("prompt");
    let prompt = parse_prompt(require(record, fields, "prompt")?, prompt_path)?;
    let resp_path = fields.path("responses");
    let list = match require(record, fields, "responses")? {
        Value::Array(a) => a,
        other => {
            return Err(PairError::WrongType {
                field: resp_path.to_owned(),
                expected: "a list of responses, best first",
                found: type_name(other),
            });
        }
    };
    if list.len() < 2 {
        return Err(PairError::NoPairs("fewer than two responses"));
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Key {
        None,
        Score(f64),
        Rank(f64),
    }
    let mut items: Vec<(Cow<'_, str>, Key)> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let at = || format!("{resp_path}.{i}");
        let (text, key) = match v {
            Value::String(s) => (Cow::Borrowed(s.as_str()), Key::None),
            Value::Object(o) => {
                let t = ["text", "content", "response", "value"]
                    .iter()
                    .find_map(|k| o.get(*k))
                    .ok_or_else(|| PairError::MissingField(format!("{}.text", at())))?;
                let key = match (o.get("score"), o.get("rank")) {
                    (Some(s), _) => Key::Score(s.as_f64().ok_or_else(|| PairError::WrongType {
                        field: format!("{}.score", at()),
                        expected: "a number",
                        found: type_name(s),
                    })?),
                    (None, Some(r)) => {
                        Key::Rank(r.as_f64().ok_or_else(|| PairError::WrongType {
                            field: format!("{}.rank", at()),
                            expected: "a number",
                            found: type_name(r),
                        })?)
                    }
                    (None, None) => Key::None,
                };
                (text_of(t, &|| format!("{}.text", at()))?, key)
            }
            other => {
                return Err(PairError::WrongType {
                    field: at(),
                    expected: "a string or a {text, score|rank} object",
                    found: type_name(other),
                });
            }
        };
        let text = match text {
            Cow::Borrowed(t) => Cow::Borrowed(t.trim()),
            Cow::Owned(t) => Cow::Owned(t.trim().to_owned()),
        };
        items.push((text, key));
    }
    let kind = |k: &Key| std::mem::discriminant(k);
    if let Some(i) = items.iter().position(|(_, k)| kind(k) != kind(&items[0].1)) {
        return Err(PairError::WrongType {
            field: format!("{resp_path}.{i}"),
            expected: "the same ranking key (score, rank or none) as the first response",
            found: "another key",
        });
    }
    match items[0].1 {
        Key::None => {}
        // Stable sorts keep input order among ties.
        Key::Score(_) => items.sort_by(|a, b| key_value(b.1).total_cmp(&key_value(a.1))),
        Key::Rank(_) => items.sort_by(|a, b| key_value(a.1).total_cmp(&key_value(b.1))),
    }
    fn key_value(k: Key) -> f64 {
        match k {
            Key::Score(x) | Key::Rank(x) => x,
            Key::None => 0.0,
        }
    }
    if let Some(i) = items.iter().position(|(t, _)| t.is_empty()) {
        return Err(PairError::EmptyRankedResponse(i));
    }
    if !prompt.iter().any(|m| !m.content.trim().is_empty()) {
        return Err(PairError::EmptyPrompt);
    }

    let n = items.len();
    let candidates = (0..n - 1).map(|i| (i, i + 1)).chain((2..n).map(|j| (0, j)));
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut prompt_msgs: Option<Vec<Message>> = None;
    let mut out = Vec::new();
    for (i, j) in candidates {
        let ((better, kb), (worse, kw)) = (&items[i], &items[j]);
        let (better, worse, kb, kw) = (better.as_ref(), worse.as_ref(), *kb, *kw);
        let tied = kb != Key::None && key_value(kb) == key_value(kw);
        if tied || better == worse || seen.contains(&(better, worse)) {
            continue;
        }
        seen.push((better, worse));
        let prompt = prompt_msgs
            .get_or_insert_with(|| prompt.iter().map(|m| m.to_message()).collect())
            .clone();
        let pair_id = match &id {
            Some(id) => format!("{id}-{i}-{j}"),
            None => content_id(&prompt, better, worse),
        };
        out.push(PreferencePair {
            pair_id,
            prompt,
            chosen: better.to_owned(),
            rejected: worse.to_owned(),
        });
    }
    if out.is_empty() {
        return Err(PairError::NoPairs("all responses are tied or identical"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Internals

/// A message borrowed from the record where possible.
#[derive(Debug, Clone, PartialEq)]
struct Msg<'a> {
    role: &'static str,
    content: Cow<'a, str>,
}

impl Msg<'_> {
    fn to_message(&self) -> Message {
        Message {
            role: self.role.to_owned(),
            content: self.content.as_ref().to_owned(),
        }
    }
    fn into_message(self) -> Message {
        Message {
            role: self.role.to_owned(),
            content: self.content.into_owned(),
        }
    }
}

const USER: &str = "user";
const ASSISTANT: &str = "assistant";

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `None` for absent and for null.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn require<'a>(record: &'a Value, fields: &FieldMap, field: &str) -> Result<&'a Value, PairError> {
    present(fields.get(record, field))
        .ok_or_else(|| PairError::MissingField(fields.path(field).to_owned()))
}

fn record_id(record: &Value, fields: &FieldMap) -> Result<Option<String>, PairError> {
    match present(fields.get(record, "id")) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(PairError::WrongType {
            field: fields.path("id").to_owned(),
            expected: "a string or a number",
            found: type_name(other),
        }),
    }
}

/// 24 hex characters of the hash of a length-prefixed encoding of the pair's content.
fn content_id(prompt: &[Message], chosen: &str, rejected: &str) -> String {
    fn put(buf: &mut Vec<u8>, s: &str) {
        buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    let size: usize = prompt
        .iter()
        .map(|m| m.role.len() + m.content.len() + 16)
        .sum::<usize>()
        + chosen.len()
        + rejected.len()
        + 64;
    let mut buf = Vec::with_capacity(size);
    buf.extend_from_slice(b"rubricmill-pair-v1");
    buf.extend_from_slice(&(prompt.len() as u64).to_le_bytes());
    for m in prompt {
        put(&mut buf, &m.role);
        put(&mut buf, &m.content);
    }
    put(&mut buf, chosen);
    put(&mut buf, rejected);
    short_hash(&buf, 24)
}

fn normalize_role(raw: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("user", USER),
        ("human", USER),
        ("prompter", USER),
        ("assistant", ASSISTANT),
        ("gpt", ASSISTANT),
        ("bot", ASSISTANT),
        ("model", ASSISTANT),
        ("chatgpt", ASSISTANT),
        ("system", "system"),
        ("tool", "tool"),
        ("function", "tool"),
    ];
    let raw = raw.trim();
    TABLE
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(raw))
        .map(|(_, v)| *v)
}

/// Text content: a string, null (empty), or a list of parts (strings or `{text}` objects).
fn text_of<'a>(v: &'a Value, at: &dyn Fn() -> String) -> Result<Cow<'a, str>, PairError> {
    match v {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Null => Ok(Cow::Borrowed("")),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.as_str()),
                    Value::Object(o) => o.get("text").and_then(Value::as_str),
                    _ => None,
                })
                .collect();
            if texts.is_empty() && !parts.is_empty() {
                return Err(PairError::WrongType {
                    field: at(),
                    expected: "a string or a list of text parts",
                    found: "array without text parts",
                });
            }
            Ok(Cow::Owned(texts.join("\n")))
        }
        other => Err(PairError::WrongType {
            field: at(),
            expected: "a string",
            found: type_name(other),
        }),
    }
}

/// One `{role|from, content|value|text}` message.
fn parse_message<'a>(v: &'a Value, at: &dyn Fn() -> String) -> Result<Msg<'a>, PairError> {
    let o = v.as_object().ok_or_else(|| PairError::WrongType {
        field: at(),
        expected: "a {role, content} message",
        found: type_name(v),
    })?;
    let role_v = o
        .get("role")
        .or_else(|| o.get("from"))
        .ok_or_else(|| PairError::MissingField(format!("{}.role", at())))?;
    let raw_role = role_v.as_str().ok_or_else(|| PairError::WrongType {
        field: format!("{}.role", at()),
        expected: "a string",
        found: type_name(role_v),
    })?;
    let role = normalize_role(raw_role).ok_or_else(|| PairError::UnknownRole {
        field: at(),
        role: raw_role.to_owned(),
    })?;
    let content_v = o
        .get("content")
        .or_else(|| o.get("value"))
        .or_else(|| o.get("text"))
        .ok_or_else(|| PairError::MissingField(format!("{}.content", at())))?;
    let content = text_of(content_v, &|| format!("{}.content", at()))?;
    Ok(Msg { role, content })
}

fn parse_messages<'a>(list: &'a [Value], path: &str) -> Result<Vec<Msg<'a>>, PairError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| parse_message(v, &|| format!("{path}.{i}")))
        .collect()
}

/// Does this string look like an HH transcript (a `Human:` marker at the start or after a
/// blank line)?
fn looks_like_hh(s: &str) -> bool {
    s.trim_start().starts_with("Human:") || s.contains("\n\nHuman:")
}

/// A prompt: a string (an HH transcript is split into turns), one message, or a message list.
fn parse_prompt<'a>(v: &'a Value, path: &str) -> Result<Vec<Msg<'a>>, PairError> {
    match v {
        Value::String(s) => {
            if looks_like_hh(s)
                && s.contains("\n\nAssistant:")
                && let Ok(mut turns) = split_turns(s)
            {
                if turns
                    .last()
                    .is_some_and(|t| t.role == ASSISTANT && t.content.is_empty())
                {
                    turns.pop();
                }
                return Ok(turns);
            }
            Ok(vec![Msg {
                role: USER,
                content: Cow::Borrowed(s),
            }])
        }
        Value::Array(list) => parse_messages(list, path),
        Value::Object(_) => Ok(vec![parse_message(v, &|| path.to_owned())?]),
        other => Err(PairError::WrongType {
            field: path.to_owned(),
            expected: "a string or a list of messages",
            found: type_name(other),
        }),
    }
}

/// The HH marker at `rest`'s start, if any, with its length.
fn marker_at(rest: &str) -> Option<(&'static str, usize)> {
    if rest.starts_with("Human:") {
        Some((USER, "Human:".len()))
    } else if rest.starts_with("Assistant:") {
        Some((ASSISTANT, "Assistant:".len()))
    } else {
        None
    }
}

/// Splits an HH transcript into trimmed turns borrowed from `text`, merging consecutive turns
/// of the same speaker. A marker is `Human:`/`Assistant:` at the start (after whitespace) or
/// right after a blank line (`"\n\n"`); markers inside a line are part of the text.
fn split_turns(text: &str) -> Result<Vec<Msg<'_>>, &'static str> {
    fn push<'a>(turns: &mut Vec<Msg<'a>>, role: &'static str, raw: &'a str) {
        let content = raw.trim();
        match turns.last_mut() {
            Some(last) if last.role == role => {
                if content.is_empty() {
                } else if last.content.is_empty() {
                    last.content = Cow::Borrowed(content);
                } else {
                    let mut joined = std::mem::take(&mut last.content).into_owned();
                    joined.push_str("\n\n");
                    joined.push_str(content);
                    last.content = Cow::Owned(joined);
                }
            }
            _ => turns.push(Msg {
                role,
                content: Cow::Borrowed(content),
            }),
        }
    }

    let mut turns = Vec::new();
    // (role, start of its content) of the turn being read.
    let mut current: Option<(&'static str, usize)> = None;
    let lead = text.len() - text.trim_start().len();
    if let Some((role, len)) = marker_at(&text[lead..]) {
        current = Some((role, lead + len));
    }
    let mut pos = current.map_or(0, |(_, start)| start);
    while let Some(off) = text[pos..].find("\n\n") {
        let at = pos + off;
        match marker_at(&text[at + 2..]) {
            Some((role, len)) => {
                match current {
                    Some((r, start)) => push(&mut turns, r, &text[start..at]),
                    None if !text[..at].trim().is_empty() => {
                        return Err("text before the first human/assistant marker");
                    }
                    None => {}
                }
                current = Some((role, at + 2 + len));
                pos = at + 2 + len;
            }
            // "\n\n\nHuman:" has its marker after the second of three newlines.
            None => pos = at + 1,
        }
    }
    let Some((role, start)) = current else {
        return Err("no human/assistant markers");
    };
    push(&mut turns, role, &text[start..]);
    if turns.first().is_some_and(|t| t.role != USER) {
        return Err("starts with an assistant turn");
    }
    Ok(turns)
}

fn finish(
    id: Option<String>,
    prompt: Vec<Msg<'_>>,
    chosen: &str,
    rejected: &str,
) -> Result<PreferencePair, PairError> {
    let (chosen, rejected) = (chosen.trim(), rejected.trim());
    if chosen.is_empty() {
        return Err(PairError::EmptyResponse("chosen"));
    }
    if rejected.is_empty() {
        return Err(PairError::EmptyResponse("rejected"));
    }
    if chosen == rejected {
        return Err(PairError::IdenticalResponses);
    }
    if !prompt.iter().any(|m| !m.content.trim().is_empty()) {
        return Err(PairError::EmptyPrompt);
    }
    let prompt: Vec<Message> = prompt.into_iter().map(Msg::into_message).collect();
    let pair_id = match id {
        Some(id) => id,
        None => content_id(&prompt, chosen, rejected),
    };
    Ok(PreferencePair {
        pair_id,
        prompt,
        chosen: chosen.to_owned(),
        rejected: rejected.to_owned(),
    })
}

/// One-based number of the first turn where the two prefixes differ.
fn first_difference(a: &[Msg<'_>], b: &[Msg<'_>]) -> Option<usize> {
    if a == b {
        return None;
    }
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    Some(common + 1)
}

fn hh_pair(record: &Value, fields: &FieldMap) -> Result<PreferencePair, PairError> {
    let id = record_id(record, fields)?;
    let transcript = |side: &'static str| -> Result<Vec<Msg<'_>>, PairError> {
        let v = require(record, fields, side)?;
        let s = v.as_str().ok_or_else(|| PairError::WrongType {
            field: fields.path(side).to_owned(),
            expected: "a human/assistant transcript string",
            found: type_name(v),
        })?;
        let mut turns =
            split_turns(s).map_err(|p| PairError::TranscriptUnparsable(format!("{side}: {p}")))?;
        match turns.pop() {
            Some(last) if last.role == ASSISTANT => {
                turns.push(last);
                Ok(turns)
            }
            _ => Err(PairError::NoFinalAssistant(side)),
        }
    };
    let mut chosen = transcript("chosen")?;
    let mut rejected = transcript("rejected")?;
    let (Some(c), Some(r)) = (chosen.pop(), rejected.pop()) else {
        return Err(PairError::NoFinalAssistant("chosen"));
    };
    if let Some(turn) = first_difference(&chosen, &rejected) {
        return Err(PairError::PromptMismatch(turn));
    }
    finish(id, chosen, &c.content, &r.content)
}

#[derive(Clone, Copy, PartialEq)]
enum Structured {
    Strings,
    Sharegpt,
    Messages,
}

/// One side (`chosen`/`rejected`) of a structured record: leading turns and the response.
struct Side<'a> {
    prefix: Vec<Msg<'a>>,
    response: Cow<'a, str>,
}

fn parse_side<'a>(
    record: &'a Value,
    fields: &FieldMap,
    side: &'static str,
    layout: Structured,
) -> Result<Side<'a>, PairError> {
    let path = fields.path(side);
    let v = require(record, fields, side)?;
    let expected = match layout {
        Structured::Strings => "a string",
        Structured::Sharegpt => "a {from, value} turn, a string or a list of turns",
        Structured::Messages => "a list of {role, content} messages",
    };
    let wrong = |v: &Value| PairError::WrongType {
        field: path.to_owned(),
        expected,
        found: type_name(v),
    };
    match v {
        Value::String(s) if layout != Structured::Messages => Ok(Side {
            prefix: Vec::new(),
            response: Cow::Borrowed(s),
        }),
        Value::Object(_) if layout != Structured::Messages => {
            let m = parse_message(v, &|| path.to_owned())?;
            if m.role != ASSISTANT {
                return Err(PairError::NoFinalAssistant(side));
            }
            Ok(Side {
                prefix: Vec::new(),
                response: m.content,
            })
        }
        Value::Array(list) if layout != Structured::Strings => {
            let mut prefix = parse_messages(list, path)?;
            match prefix.pop() {
                None => Err(PairError::EmptyResponse(side)),
                Some(last) if last.role == ASSISTANT => Ok(Side {
                    prefix,
                    response: last.content,
                }),
                Some(_) => Err(PairError::NoFinalAssistant(side)),
            }
        }
        other => Err(wrong(other)),
    }
}

/// Does `long` begin with `short` (contents compared trimmed)?
fn begins_with(long: &[Msg<'_>], short: &[Msg<'_>]) -> bool {
    long.len() >= short.len()
        && long
            .iter()
            .zip(short)
            .all(|(a, b)| a.role == b.role && a.content.trim() == b.content.trim())
}

fn structured_pair(
    record: &Value,
    fields: &FieldMap,
    layout: Structured,
) -> Result<PreferencePair, PairError> {
    let id = record_id(record, fields)?;
    let base: Vec<Msg<'_>> = match layout {
        Structured::Strings => {
            parse_prompt(require(record, fields, "prompt")?, fields.path("prompt"))?
        }
        Structured::Sharegpt => {
            let path = fields.path("conversations");
            match require(record, fields, "conversations")? {
                Value::Array(list) => parse_messages(list, path)?,
                other => {
                    return Err(PairError::WrongType {
                        field: path.to_owned(),
                        expected: "a list of {from, value} turns",
                        found: type_name(other),
                    });
                }
            }
        }
        Structured::Messages => match present(fields.get(record, "prompt")) {
            Some(v) => parse_prompt(v, fields.path("prompt"))?,
            None => Vec::new(),
        },
    };
    let chosen = parse_side(record, fields, "chosen", layout)?;
    let rejected = parse_side(record, fields, "rejected", layout)?;
    if let Some(turn) = first_difference(&chosen.prefix, &rejected.prefix) {
        return Err(PairError::PromptMismatch(base.len() + turn));
    }
    let shared = chosen.prefix;
    let prompt = if shared.is_empty() {
        base
    } else if base.is_empty() || begins_with(&shared, &base) {
        shared
    } else {
        let mut all = base;
        all.extend(shared);
        all
    };
    finish(id, prompt, &chosen.response, &rejected.response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none() -> FieldMap {
        FieldMap::default()
    }

    fn map(pairs: &[(&str, &str)]) -> FieldMap {
        FieldMap::new(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn msg(role: &str, content: &str) -> Message {
        Message::new(role, content)
    }

    fn auto(v: &Value) -> Result<PreferencePair, PairError> {
        normalize_pair(v, PairLayout::Auto, &none())
    }

    // ---- HH-RLHF ----------------------------------------------------------------------------

    const HH_CHOSEN: &str = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant:  Why did the chicken cross the road?";
    const HH_REJECTED: &str = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant: No.";

    #[test]
    fn hh_multi_turn_shared_prefix_becomes_prompt() {
        let rec = json!({"chosen": HH_CHOSEN, "rejected": HH_REJECTED});
        let p = normalize_pair(&rec, PairLayout::HhRlhf, &none()).unwrap();
        assert_eq!(
            p.prompt,
            vec![
                msg("user", "Hi there"),
                msg("assistant", "Hello! How can I help?"),
                msg("user", "Tell me a joke")
            ]
        );
        assert_eq!(p.chosen, "Why did the chicken cross the road?");
        assert_eq!(p.rejected, "No.");
        assert_eq!(p.pair_id.len(), 24);
        assert!(p.pair_id.chars().all(|c| c.is_ascii_hexdigit()));
        // Auto detects the same layout and gives the same pair.
        assert_eq!(auto(&rec).unwrap(), p);
        assert_eq!(detect_layout(&rec, &none()).unwrap(), PairLayout::HhRlhf);
    }

    #[test]
    fn hh_single_turn_and_markers_inside_a_line_stay_text() {
        let rec = json!({
            "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4. Human: thanks",
            "rejected": "Human: What is 2+2?\n\nAssistant: 5"
        });
        let p = auto(&rec).unwrap();
        assert_eq!(p.prompt, vec![msg("user", "What is 2+2?")]);
        assert_eq!(p.chosen, "4. Human: thanks");
        assert_eq!(p.rejected, "5");
    }

    #[test]
    fn hh_consecutive_assistant_turns_merge_into_one_response() {
        // As in the real corpus: the final Assistant text itself contains "\n\nAssistant:".
        let rec = json!({
            "chosen": "\n\nHuman: Q\n\nAssistant: part one.  Human: more?\n\nAssistant:  part two",
            "rejected": "\n\nHuman: Q\n\nAssistant: other"
        });
        let p = auto(&rec).unwrap();
        assert_eq!(p.prompt, vec![msg("user", "Q")]);
        assert_eq!(p.chosen, "part one.  Human: more?\n\npart two");
        assert_eq!(p.rejected, "other");
    }

    #[test]
    fn hh_triple_newline_before_marker_is_a_marker() {
        let turns = split_hh_transcript("\n\nHuman: a\n\n\nAssistant: b").unwrap();
        assert_eq!(turns, vec![msg("user", "a"), msg("assistant", "b")]);
    }

    #[test]
    fn hh_rejections() {
        let hh = |c: &str, r: &str| {
            normalize_pair(
                &json!({"chosen": c, "rejected": r}),
                PairLayout::HhRlhf,
                &none(),
            )
            .unwrap_err()
        };
        assert_eq!(
            hh("just text", "\n\nHuman: a\n\nAssistant: b"),
            PairError::TranscriptUnparsable("chosen: no human/assistant markers".into())
        );
        assert_eq!(
            hh(
                "\n\nHuman: a\n\nAssistant: b",
                "preamble\n\nHuman: a\n\nAssistant: c"
            ),
            PairError::TranscriptUnparsable(
                "rejected: text before the first human/assistant marker".into()
            )
        );
        assert_eq!(
            hh(
                "\n\nAssistant: b\n\nHuman: a\n\nAssistant: b",
                "\n\nHuman: a\n\nAssistant: c"
            ),
            PairError::TranscriptUnparsable("chosen: starts with an assistant turn".into())
        );
        assert_eq!(
            hh(
                "\n\nHuman: a\n\nAssistant: b\n\nHuman: c",
                "\n\nHuman: a\n\nAssistant: c"
            ),
            PairError::NoFinalAssistant("chosen")
        );
        assert_eq!(
            hh(
                "\n\nHuman: a\n\nAssistant:  ",
                "\n\nHuman: a\n\nAssistant: c"
            ),
            PairError::EmptyResponse("chosen")
        );
        assert_eq!(
            hh(
                "\n\nHuman: a\n\nAssistant: c ",
                "\n\nHuman: a\n\nAssistant:  c"
            ),
            PairError::IdenticalResponses
        );
        assert_eq!(
            hh(
                "\n\nHuman: a\n\nAssistant: x\n\nHuman: b\n\nAssistant: c",
                "\n\nHuman: a\n\nAssistant: y\n\nHuman: b\n\nAssistant: d"
            ),
            PairError::PromptMismatch(2)
        );
        assert_eq!(
            hh("\n\nHuman:  \n\nAssistant: c", "\n\nHuman:\n\nAssistant: d"),
            PairError::EmptyPrompt
        );
        let e = normalize_pair(
            &json!({"chosen": 3, "rejected": "x"}),
            PairLayout::HhRlhf,
            &none(),
        )
        .unwrap_err();
        assert_eq!(
            e.reason(),
            "field `chosen`: expected a human/assistant transcript string, found number"
        );
        let e =
            normalize_pair(&json!({"chosen": HH_CHOSEN}), PairLayout::HhRlhf, &none()).unwrap_err();
        assert_eq!(e, PairError::MissingField("rejected".into()));
        assert_eq!(e.reason(), "missing field `rejected`");
        assert_eq!(e.kind(), "missing_field");
    }

    // ---- strings ----------------------------------------------------------------------------

    #[test]
    fn strings_layout_with_string_and_list_prompts() {
        let p = auto(&json!({"prompt": "Q?", "chosen": " good ", "rejected": "bad"})).unwrap();
        assert_eq!(p.prompt, vec![msg("user", "Q?")]);
        assert_eq!((p.chosen.as_str(), p.rejected.as_str()), ("good", "bad"));

        let rec = json!({
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}],
            "chosen": "good", "rejected": "bad"
        });
        let p = normalize_pair(&rec, PairLayout::Strings, &none()).unwrap();
        assert_eq!(
            p.prompt,
            vec![msg("system", "Be brief."), msg("user", "Q?")]
        );
    }

    #[test]
    fn strings_prompt_given_as_hh_transcript_is_split() {
        let rec = json!({
            "prompt": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:",
            "chosen": " good", "rejected": " bad"
        });
        let p = auto(&rec).unwrap();
        assert_eq!(
            p.prompt,
            vec![msg("user", "a"), msg("assistant", "b"), msg("user", "c")]
        );
        assert_eq!(p.chosen, "good");
    }

    #[test]
    fn strings_rejections() {
        let s = |v: Value| normalize_pair(&v, PairLayout::Strings, &none()).unwrap_err();
        assert_eq!(
            s(json!({"prompt": "", "chosen": "a", "rejected": "b"})),
            PairError::EmptyPrompt
        );
        assert_eq!(
            s(json!({"chosen": "a", "rejected": "b"})),
            PairError::MissingField("prompt".into())
        );
        assert_eq!(
            s(json!({"prompt": "q", "chosen": "a", "rejected": null})),
            PairError::MissingField("rejected".into())
        );
        assert_eq!(
            s(json!({"prompt": "q", "chosen": "a", "rejected": " \n"})),
            PairError::EmptyResponse("rejected")
        );
        assert_eq!(
            s(json!({"prompt": "q", "chosen": "same", "rejected": "same\n"})),
            PairError::IdenticalResponses
        );
        assert_eq!(
            s(json!({"prompt": "q", "chosen": ["a"], "rejected": "b"})).reason(),
            "field `chosen`: expected a string, found array"
        );
        assert_eq!(
            s(json!({"prompt": 7, "chosen": "a", "rejected": "b"})).reason(),
            "field `prompt`: expected a string or a list of messages, found number"
        );
        assert_eq!(
            s(json!({"prompt": [{"role": "alien", "content": "q"}], "chosen": "a", "rejected": "b"}))
                .reason(),
            "field `prompt.0`: unknown speaker role `alien`"
        );
        assert_eq!(
            s(json!({"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"})),
            PairError::MissingField("prompt.0.content".into())
        );
        assert_eq!(s(json!([1, 2])), PairError::NotAnObject("array"));
    }

    // ---- field mapping and ids --------------------------------------------------------------

    #[test]
    fn field_mapping_with_dotted_paths_and_indices() {
        let fields = map(&[
            ("prompt", "question.text"),
            ("chosen", "answers.0.text"),
            ("rejected", "answers.-1.text"),
            ("id", "meta.uid"),
        ]);
        let rec = json!({
            "question": {"text": "Why is the sky blue?"},
            "answers": [{"text": "Rayleigh scattering."}, {"text": "x"}, {"text": "Because."}],
            "meta": {"uid": 42}
        });
        assert_eq!(
            fields.get(&rec, "chosen"),
            Some(&json!("Rayleigh scattering."))
        );
        assert_eq!(fields.get(&rec, "rejected"), Some(&json!("Because.")));
        assert_eq!(fields.get(&rec, "missing"), None);
        let p = normalize_pair(&rec, PairLayout::Auto, &fields).unwrap();
        assert_eq!(p.pair_id, "42");
        assert_eq!(p.prompt, vec![msg("user", "Why is the sky blue?")]);
        assert_eq!(p.chosen, "Rayleigh scattering.");
        assert_eq!(p.rejected, "Because.");

        // Missing mapped paths are named by their path in the record.
        let e = normalize_pair(
            &json!({"question": {"text": "q"}, "answers": []}),
            PairLayout::Strings,
            &fields,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "missing field `answers.0.text`");
        // Out-of-range and non-numeric indices and paths through scalars lead nowhere.
        let f = map(&[
            ("a", "answers.9.text"),
            ("b", "answers.x"),
            ("c", "meta.uid.deeper"),
        ]);
        assert_eq!(f.get(&rec, "a"), None);
        assert_eq!(f.get(&rec, "b"), None);
        assert_eq!(f.get(&rec, "c"), None);
        // A literal dotted key is found.
        let f = map(&[("prompt", "q.text")]);
        assert_eq!(
            f.get(&json!({"q.text": "hi"}), "prompt"),
            Some(&json!("hi"))
        );
    }

    #[test]
    fn pair_ids_from_id_field_or_content() {
        let a = json!({"prompt": "q", "chosen": "a", "rejected": "b"});
        let a2 = json!({"prompt": "q", "chosen": "a ", "rejected": "b", "id": null});
        let b = json!({"prompt": "q", "chosen": "b", "rejected": "a"});
        let (pa, pa2, pb) = (auto(&a).unwrap(), auto(&a2).unwrap(), auto(&b).unwrap());
        assert_eq!(pa.pair_id, pa2.pair_id);
        assert_ne!(pa.pair_id, pb.pair_id);
        assert_eq!(pa.pair_id.len(), 24);
        let with_id = json!({"id": "x-1", "prompt": "q", "chosen": "a", "rejected": "b"});
        assert_eq!(auto(&with_id).unwrap().pair_id, "x-1");
        let bad = json!({"id": [1], "prompt": "q", "chosen": "a", "rejected": "b"});
        assert_eq!(
            auto(&bad).unwrap_err().reason(),
            "field `id`: expected a string or a number, found array"
        );
    }

    // ---- ShareGPT ---------------------------------------------------------------------------

    #[test]
    fn sharegpt_turns_and_strings() {
        let rec = json!({
            "conversations": [
                {"from": "system", "value": "You are helpful."},
                {"from": "human", "value": "Name a colour."}
            ],
            "chosen": {"from": "gpt", "value": "Blue."},
            "rejected": "Seven."
        });
        let p = auto(&rec).unwrap();
        assert_eq!(detect_layout(&rec, &none()).unwrap(), PairLayout::Sharegpt);
        assert_eq!(
            p.prompt,
            vec![
                msg("system", "You are helpful."),
                msg("user", "Name a colour.")
            ]
        );
        assert_eq!(
            (p.chosen.as_str(), p.rejected.as_str()),
            ("Blue.", "Seven.")
        );
    }

    #[test]
    fn sharegpt_rejections() {
        let g = |v: Value| normalize_pair(&v, PairLayout::Sharegpt, &none()).unwrap_err();
        assert_eq!(
            g(json!({"conversations": "hi", "chosen": "a", "rejected": "b"})).reason(),
            "field `conversations`: expected a list of {from, value} turns, found string"
        );
        assert_eq!(
            g(json!({"conversations": [{"from": "human", "value": "q"}],
                     "chosen": {"from": "human", "value": "a"}, "rejected": "b"})),
            PairError::NoFinalAssistant("chosen")
        );
        assert_eq!(
            g(
                json!({"conversations": [{"from": "wizard", "value": "q"}], "chosen": "a", "rejected": "b"})
            ),
            PairError::UnknownRole {
                field: "conversations.0".into(),
                role: "wizard".into()
            }
        );
        assert_eq!(
            g(json!({"conversations": [], "chosen": "a", "rejected": "b"})),
            PairError::EmptyPrompt
        );
        assert_eq!(
            g(json!({"conversations": [{"from": "human", "value": "q"}], "chosen": 1, "rejected": "b"}))
                .reason(),
            "field `chosen`: expected a {from, value} turn, a string or a list of turns, found number"
        );
    }

    // ---- messages ---------------------------------------------------------------------------

    #[test]
    fn messages_shared_prefix_and_separate_prompt() {
        let rec = json!({
            "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}]
        });
        let p = auto(&rec).unwrap();
        assert_eq!(detect_layout(&rec, &none()).unwrap(), PairLayout::Messages);
        assert_eq!(p.prompt, vec![msg("user", "Q")]);
        assert_eq!((p.chosen.as_str(), p.rejected.as_str()), ("good", "bad"));

        // A separate prompt the prefix already begins with is not repeated (UltraFeedback style).
        let mut with_prompt = rec.clone();
        with_prompt["prompt"] = json!("Q");
        assert_eq!(auto(&with_prompt).unwrap().prompt, vec![msg("user", "Q")]);

        // A separate prompt and responses alone; content given as text parts.
        let rec = json!({
            "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "good"}]}],
            "rejected": [{"role": "assistant", "content": "bad"}]
        });
        let p = auto(&rec).unwrap();
        assert_eq!(p.prompt, vec![msg("system", "S"), msg("user", "Q")]);
        assert_eq!(p.chosen, "good");

        // A separate prompt the prefix does not begin with is prepended.
        let rec = json!({
            "prompt": [{"role": "system", "content": "S"}],
            "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}]
        });
        assert_eq!(
            auto(&rec).unwrap().prompt,
            vec![msg("system", "S"), msg("user", "Q")]
        );
    }

    #[test]
    fn messages_rejections() {
        let m = |v: Value| normalize_pair(&v, PairLayout::Messages, &none()).unwrap_err();
        let u = |c: &str| json!({"role": "user", "content": c});
        let a = |c: &str| json!({"role": "assistant", "content": c});
        assert_eq!(
            m(
                json!({"chosen": [u("Q"), a("x"), u("R"), a("good")], "rejected": [u("Q"), a("y"), u("R"), a("bad")]})
            ),
            PairError::PromptMismatch(2)
        );
        assert_eq!(
            m(json!({"chosen": [u("Q"), a("good"), u("more")], "rejected": [u("Q"), a("bad")]})),
            PairError::NoFinalAssistant("chosen")
        );
        assert_eq!(
            m(json!({"chosen": [], "rejected": [u("Q"), a("bad")]})),
            PairError::EmptyResponse("chosen")
        );
        assert_eq!(
            m(json!({"chosen": [a("good")], "rejected": [a("bad")]})),
            PairError::EmptyPrompt
        );
        assert_eq!(
            m(json!({"chosen": "good", "rejected": [a("bad")]})).reason(),
            "field `chosen`: expected a list of {role, content} messages, found string"
        );
        assert_eq!(
            m(json!({"chosen": [u("Q"), {"role": 5, "content": "x"}], "rejected": [u("Q"), a("b")]}))
                .reason(),
            "field `chosen.1.role`: expected a string, found number"
        );
        assert_eq!(
            m(json!({"chosen": [u("Q"), a(" same")], "rejected": [u("Q"), a("same")]})),
            PairError::IdenticalResponses
        );
    }

    // ---- auto-detection ---------------------------------------------------------------------

    #[test]
    fn auto_detection_rejections() {
        assert_eq!(
            auto(&json!({"rejected": "b"})),
            Err(PairError::MissingField("chosen".into()))
        );
        assert_eq!(
            auto(&json!({"chosen": "plain", "rejected": "b"})),
            Err(PairError::MissingField("prompt".into()))
        );
        assert_eq!(
            auto(&json!({"chosen": true, "rejected": "b"}))
                .unwrap_err()
                .reason(),
            "field `chosen`: expected a string, a message or a list of messages, found boolean"
        );
        assert_eq!(auto(&json!("text")), Err(PairError::NotAnObject("string")));
    }

    // ---- listwise ---------------------------------------------------------------------------

    #[test]
    fn listwise_adjacent_and_top_versus_rest() {
        let rec = json!({"prompt": "Q", "responses": ["A", "B", "C", "D"]});
        let pairs = normalize_listwise(&rec, &none()).unwrap();
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.chosen.as_str(), p.rejected.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("A", "B"), ("B", "C"), ("C", "D"), ("A", "C"), ("A", "D")]
        );
        assert!(pairs.iter().all(|p| p.prompt == vec![msg("user", "Q")]));
        let mut ids: Vec<&str> = pairs.iter().map(|p| p.pair_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 5);
        // normalize_record routes listwise records in auto mode.
        assert_eq!(
            normalize_record(&rec, PairLayout::Auto, &none()).unwrap(),
            pairs
        );
    }

    #[test]
    fn listwise_scores_ranks_ties_duplicates_and_ids() {
        let rec = json!({"id": 9, "prompt": "Q", "responses": [
            {"text": "low", "score": 1}, {"text": "high", "score": 5}, {"text": "mid", "score": 3}
        ]});
        let pairs = normalize_listwise(&rec, &none()).unwrap();
        let got: Vec<(&str, &str, &str)> = pairs
            .iter()
            .map(|p| (p.pair_id.as_str(), p.chosen.as_str(), p.rejected.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("9-0-1", "high", "mid"),
                ("9-1-2", "mid", "low"),
                ("9-0-2", "high", "low")
            ]
        );

        let rec = json!({"prompt": "Q", "responses": [
            {"content": "b", "rank": 2}, {"content": "a", "rank": 1}, {"content": "b2", "rank": 2}
        ]});
        let got: Vec<(String, String)> = normalize_listwise(&rec, &none())
            .unwrap()
            .into_iter()
            .map(|p| (p.chosen, p.rejected))
            .collect();
        // b and b2 tie: no pair between them.
        assert_eq!(
            got,
            vec![("a".into(), "b".into()), ("a".into(), "b2".into())]
        );

        // Duplicate texts give no pair with themselves and no repeated pair.
        let rec = json!({"prompt": "Q", "responses": ["A", "A ", "B"]});
        let got: Vec<(String, String)> = normalize_listwise(&rec, &none())
            .unwrap()
            .into_iter()
            .map(|p| (p.chosen, p.rejected))
            .collect();
        assert_eq!(got, vec![("A".into(), "B".into())]);
    }

    #[test]
    fn listwise_rejections() {
        let l = |v: Value| normalize_listwise(&v, &none()).unwrap_err();
        assert_eq!(
            l(json!({"prompt": "Q", "responses": ["A"]})),
            PairError::NoPairs("fewer than two responses")
        );
        assert_eq!(
            l(json!({"prompt": "Q", "responses": ["A", "A"]})),
            PairError::NoPairs("all responses are tied or identical")
        );
        assert_eq!(
            l(json!({"prompt": "Q", "responses": ["A", " "]})),
            PairError::EmptyRankedResponse(1)
        );
        assert_eq!(
            l(json!({"responses": ["A", "B"]})),
            PairError::MissingField("prompt".into())
        );
        assert_eq!(
            l(json!({"prompt": " ", "responses": ["A", "B"]})),
            PairError::EmptyPrompt
        );
        assert_eq!(
            l(json!({"prompt": "Q", "responses": "A"})).reason(),
            "field `responses`: expected a list of responses, best first, found string"
        );
        assert_eq!(
            l(json!({"prompt": "Q", "responses": [{"text": "A", "score": 1}, {"text": "B"}]}))
                .kind(),
            "wrong_type"
        );
        assert_eq!(
            l(json!({"prompt": "Q", "responses": [{"text": "A", "score": "high"}, {"text": "B", "score": 1}]}))
                .reason(),
            "field `responses.0.score`: expected a number, found string"
        );
    }
}
